"""build/release-check against good and bad copies of the release tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def tree(tmp_path: Path, repo: Path, frozen_ccflux: Path, platform_dir: str) -> Path:
    """A copy of what the release check reads; the frozen bundle is linked, not copied."""
    root = tmp_path / "tree"
    shutil.copytree(repo / "build", root / "build",
                    ignore=shutil.ignore_patterns("out", "work", "__pycache__"))
    shutil.copytree(repo / "plugin", root / "plugin", ignore=shutil.ignore_patterns("bin"))
    shutil.copytree(repo / ".claude-plugin", root / ".claude-plugin")
    (root / "hook" / "ccflux").mkdir(parents=True)
    shutil.copy(repo / "hook" / "ccflux" / "__init__.py", root / "hook" / "ccflux" / "__init__.py")
    (root / "plugin" / "bin").mkdir()
    (root / "plugin" / "bin" / platform_dir).symlink_to(frozen_ccflux.parent.parent)
    return root


def release_check(root: Path, validate: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if not validate:  # Claude Code's own validation is slow; most cases are about our checks
        env["CCFLUX_E2E_CLAUDE_DIR"] = str(root / "no-claude-here")
    return subprocess.run([str(root / "build" / "release-check")], env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_good_tree_passes(tree: Path):
    r = release_check(tree, validate=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "release-check: all good" in r.stdout


@pytest.mark.parametrize(
    "where, text",
    [
        ("ccflux-hook", "\n# export CCFLUX_ALLOW_HTTP=1\n"),
        ("acme-endpoint.sh", "#!/bin/sh\nexport CCFLUX_ALLOW_HTTP=1\n"),
        ("acme-endpoint.ps1", "$env:ccflux_allow_http = '1'\n"),  # Windows ignores the case
        ("nested/dir/settings.env", "CCFLUX_ALLOW_HTTP=1\n"),
    ],
)
def test_dev_http_switch_in_scripts_fails(tree: Path, where: str, text: str):
    target = tree / "plugin" / "scripts" / where
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a") as f:
        f.write(text)
    r = release_check(tree)
    assert r.returncode != 0
    assert "CCFLUX_ALLOW_HTTP appears in plugin/scripts/" in r.stdout


def test_dev_http_switch_in_a_binary_or_linked_file_fails(tree: Path, tmp_path: Path):
    (tree / "plugin" / "scripts" / "blob").write_bytes(b"\x00\x01CCFLUX_ALLOW_HTTP\x00")
    r = release_check(tree)
    assert r.returncode != 0 and "plugin/scripts/blob" in r.stdout
    (tree / "plugin" / "scripts" / "blob").unlink()
    outside = tmp_path / "outside.sh"
    outside.write_text("export CCFLUX_ALLOW_HTTP=1\n")
    (tree / "plugin" / "scripts" / "linked.sh").symlink_to(outside)
    assert release_check(tree).returncode != 0


def test_plugin_version_mismatch_fails(tree: Path):
    manifest = tree / "plugin" / ".claude-plugin" / "plugin.json"
    data = json.loads(manifest.read_text())
    data["version"] = "99.0.0"
    manifest.write_text(json.dumps(data))
    r = release_check(tree)
    assert r.returncode != 0
    assert "plugin.json version 99.0.0 != package version" in r.stdout


def test_package_version_ahead_of_the_build_fails(tree: Path, package_version: str):
    # Bumped in both manifests but not rebuilt: the binary still answers the old version.
    init = tree / "hook" / "ccflux" / "__init__.py"
    init.write_text(init.read_text().replace(package_version, "99.0.0"))
    manifest = tree / "plugin" / ".claude-plugin" / "plugin.json"
    manifest.write_text(manifest.read_text().replace(package_version, "99.0.0"))
    r = release_check(tree)
    assert r.returncode != 0
    assert "expected 'ccflux 99.0.0'" in r.stdout


def test_missing_binary_fails(tree: Path, platform_dir: str):
    (tree / "plugin" / "bin" / platform_dir).unlink()
    r = release_check(tree)
    assert r.returncode != 0
    assert "run build/build" in r.stdout


def test_binary_that_does_not_answer_fails(tree: Path, platform_dir: str, exe_name: str):
    (tree / "plugin" / "bin" / platform_dir).unlink()
    fake = tree / "plugin" / "bin" / platform_dir / "ccflux" / exe_name
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho 'Traceback: no module named nacl' >&2\nexit 1\n")
    fake.chmod(0o755)
    r = release_check(tree)
    assert r.returncode != 0
    assert "--version answered" in r.stdout
