"""Fixtures for the plugin, wrapper, release-check and frozen-binary tests (tests/build/)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def platform_dir() -> str:
    """This machine's <os>-<arch>, from build/common.sh: the name build/build writes to."""
    out = subprocess.run(
        ["bash", "-c", f'source "{REPO}/build/common.sh" && platform_dir'],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


@pytest.fixture(scope="session")
def exe_name(platform_dir: str) -> str:
    return "ccflux.exe" if platform_dir.startswith("windows") else "ccflux"


@pytest.fixture(scope="session")
def package_version() -> str:
    text = (REPO / "hook" / "ccflux" / "__init__.py").read_text()
    return re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M).group(1)


@pytest.fixture(scope="session")
def frozen_ccflux(platform_dir: str, exe_name: str) -> Path:
    """The frozen ccflux built for this machine. Missing is a FAILURE, never a skip: the
    bundle is what users run, and only running it proves no lazy import was left out."""
    exe = REPO / "plugin" / "bin" / platform_dir / "ccflux" / exe_name
    if not exe.is_file():
        pytest.fail(f"frozen binary missing at {exe}: run build/build", pytrace=False)
    return exe


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a hook minus anything from the developer's own Claude Code or
    ccflux setup, with a fresh HOME."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE", "CCFLUX", "ANTHROPIC"))}
    env["HOME"] = str(home)
    return env


@pytest.fixture
def plugin_copy(tmp_path: Path) -> Path:
    """A copy of plugin/ without bin/, at tmp_path/plugin."""
    root = tmp_path / "plugin"
    shutil.copytree(REPO / "plugin", root, ignore=shutil.ignore_patterns("bin"))
    return root
