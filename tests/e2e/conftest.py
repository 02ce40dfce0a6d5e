"""Fixtures of the end-to-end suite: the real Claude Code client, our plugin (the
frozen binary through the wrapper), the fake Anthropic API and our receiver over TLS.

Prerequisites are installed or checked here and their absence FAILS the run
(never a skip): Claude Code is installed from the npm registry into
${XDG_CACHE_HOME:-~/.cache}/ccflux-e2e/; the frozen binary must have been built
by build/build.

CCFLUX_E2E_PLUGIN_DIR=<dir> runs the suite against another plugin folder (e.g. a
development plugin whose hook runs the venv's `ccflux hook`); the default is the
repository's plugin/ and then the frozen binary is required.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from e2e.fake_api import FakeAnthropicAPI
from e2e.harness import PLUGIN_DIR, SetupError, Workspace, ensure_claude, frozen_binary, plugin_name

E2E_USER = "e2e-user@example.com"


@pytest.fixture(scope="session")
def claude_exe() -> Path:
    try:
        return ensure_claude()
    except SetupError as exc:
        pytest.fail(f"cannot run the e2e suite: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def plugin_dir() -> Path:
    override = os.environ.get("CCFLUX_E2E_PLUGIN_DIR")
    try:
        if override:
            path = Path(override).resolve()
        else:
            path = PLUGIN_DIR
            frozen_binary(path)
        plugin_name(path)
    except SetupError as exc:
        pytest.fail(f"cannot run the e2e suite: {exc}", pytrace=False)
    return path


@pytest.fixture
def fake_api():
    api = FakeAnthropicAPI().start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def ws(tmp_path: Path, claude_exe: Path, plugin_dir: Path, fake_api: FakeAnthropicAPI, receiver) -> Workspace:
    """One user's machine with the plugin configured for the test receiver."""
    token = receiver.add_user(E2E_USER)
    return Workspace(tmp_path / "ws", claude_exe, fake_api, plugin_dir, receiver, token,
                     receiver.ca.ca_pem_path)
