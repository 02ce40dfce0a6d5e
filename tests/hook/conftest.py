"""Fixtures for the hook's own tests: a private state dir and a configured hook
that queues reports but sends nothing (CCFLUX_SEND_MODE=none)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "ccflux-state"
    monkeypatch.setenv("CCFLUX_HOME", str(home))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-config"))
    monkeypatch.delenv("CLAUDE_PLUGIN_DATA", raising=False)
    monkeypatch.delenv("CCFLUX_ALLOW_HTTP", raising=False)
    return home


@pytest.fixture
def configured(state_dir, monkeypatch) -> Path:
    monkeypatch.setenv("CLAUDE_PLUGIN_OPTION_API_ENDPOINT", "https://127.0.0.1:9/report")
    monkeypatch.setenv("CLAUDE_PLUGIN_OPTION_API_TOKEN", "ccf_rt_testtoken")
    monkeypatch.setenv("CCFLUX_SEND_MODE", "none")
    return state_dir
