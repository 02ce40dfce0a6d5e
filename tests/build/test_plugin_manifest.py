"""The plugin's manifests: what Claude Code reads to install, configure and run ccflux."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EVENTS = ("Stop", "SubagentStop", "StopFailure", "SessionStart", "SessionEnd")
WRAPPER_COMMAND = '"${CLAUDE_PLUGIN_ROOT}/scripts/ccflux-hook"'


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_plugin_json(repo: Path, package_version: str):
    manifest = load(repo / "plugin" / ".claude-plugin" / "plugin.json")
    assert manifest["name"] == "ccflux"
    assert manifest["version"] == package_version
    assert manifest["description"]
    config = manifest["userConfig"]
    assert set(config) == {"api_endpoint", "api_token"}
    for key, entry in config.items():
        # Claude Code's schema requires type, title and description and rejects other keys.
        assert entry["type"] == "string" and entry["title"] and entry["description"], key
        assert set(entry) <= {"type", "title", "description", "required", "default", "sensitive"}, key
    assert config["api_token"]["sensitive"] is True
    assert not config["api_endpoint"].get("sensitive", False)


def test_every_event_runs_the_wrapper(repo: Path):
    hooks = load(repo / "plugin" / "hooks" / "hooks.json")["hooks"]
    assert set(hooks) == set(EVENTS)
    for name in EVENTS:
        [group] = hooks[name]
        [hook] = group["hooks"]
        assert hook["type"] == "command"
        assert hook["command"] == WRAPPER_COMMAND
        assert 0 < hook["timeout"] <= 60


@pytest.mark.parametrize("name", ["Stop", "StopFailure"])
def test_turn_ending_events_are_synchronous(repo: Path, name: str):
    # An async Stop hook is killed when `claude -p` exits (CLAUDE_CODE.md, "Two traps"): the
    # last turn would never be committed to the spool, nor reported as its own turn.
    [group] = load(repo / "plugin" / "hooks" / "hooks.json")["hooks"][name]
    assert not group["hooks"][0].get("async", False)


@pytest.mark.parametrize("name", ["SubagentStop", "SessionStart", "SessionEnd"])
def test_other_events_never_make_the_user_wait(repo: Path, name: str):
    # A synchronous SessionEnd hook is killed after 1.5 s; an async one outlives claude.
    # SubagentStop and SessionStart need not block the session: a commit is one
    # transaction, so an async run killed midway loses nothing (the next run reads it).
    [group] = load(repo / "plugin" / "hooks" / "hooks.json")["hooks"][name]
    assert group["hooks"][0]["async"] is True


def test_marketplace_lists_the_plugin(repo: Path):
    market = load(repo / ".claude-plugin" / "marketplace.json")
    assert market["name"] and market["owner"]["name"]
    [entry] = market["plugins"]
    assert entry["name"] == "ccflux"
    assert entry["source"] == "./plugin"
    assert (repo / entry["source"] / ".claude-plugin" / "plugin.json").is_file()
