"""The frozen ccflux itself: what users actually run.

The hook imports its heavy modules lazily, so PyInstaller cannot see them; a module left out of
the bundle fails only on the path that needs it (signing, sending...) and every report is lost
silently. These tests run the bundle and read its table of contents.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


# Imported lazily by the hook; each must be in the bundle (pure modules in the PYZ archive).
LAZY_MODULES = [
    "nacl.signing", "nacl.bindings", "cffi",
    "httpx", "httpcore", "h11", "anyio", "anyio._backends._asyncio", "idna", "certifi",
    "filelock", "pydantic", "pydantic_core", "sqlite3", "json", "ssl",
]
# Compiled modules; each must be a file of the bundle.
EXTENSIONS = ["_cffi_backend", "_sqlite3", "_ssl", "_json", "fcntl", "_pydantic_core", "_sodium"]
# Never in the hook's bundle.
EXCLUDED = ["ccflux_receiver", "fastapi", "starlette", "uvicorn", "pytest", "hypothesis", "trustme"]


def run(exe: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *args], capture_output=True, timeout=120, **kw)


def test_version(frozen_ccflux: Path, package_version: str):
    r = run(frozen_ccflux, "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == f"ccflux {package_version}"


def test_selftest_exercises_every_lazy_import(frozen_ccflux: Path, clean_env: dict):
    # `ccflux selftest` imports and uses what the send path needs: nacl signing (and signs),
    # httpx with an ssl context on certifi's CA bundle, filelock, sqlite3, the pydantic
    # protocol models; it exits 0 only if all of them work inside the bundle.
    r = run(frozen_ccflux, "selftest", env=clean_env)
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")


def test_bundle_contents(frozen_ccflux: Path, repo: Path):
    from PyInstaller.archive.readers import CArchiveReader

    pyz = set(CArchiveReader(str(frozen_ccflux)).open_embedded_archive("PYZ.pyz").toc)
    internal = frozen_ccflux.parent / "_internal"
    files = {p.name.split(".")[0] for p in internal.rglob("*") if p.is_file()}

    hook_modules = {
        "ccflux" if p.name == "__init__.py" else f"ccflux.{p.stem}"
        for p in (repo / "hook" / "ccflux").glob("*.py")
    }
    missing = sorted(m for m in [*LAZY_MODULES, *hook_modules] if m not in pyz)
    assert not missing, f"not in the frozen bundle: {missing}"
    missing_ext = sorted(e for e in EXTENSIONS if e not in files)
    assert not missing_ext, f"compiled modules not in the bundle: {missing_ext}"
    assert (internal / "certifi" / "cacert.pem").is_file()
    present = sorted(m for m in EXCLUDED if any(n == m or n.startswith(m + ".") for n in pyz))
    assert not present, f"must not be bundled: {present}"


def test_frozen_hook_through_the_wrapper(frozen_ccflux: Path, repo: Path, clean_env: dict, tmp_path: Path):
    # The real plugin tree, the real wrapper, the real bundle: an unconfigured install gets a
    # SessionStart and must stay silent, exit 0 and log no failure.
    state = tmp_path / "state"
    env = {**clean_env, "CLAUDE_PLUGIN_ROOT": str(repo / "plugin"), "CCFLUX_HOME": str(state)}
    ev = {"session_id": "frozen-test", "transcript_path": str(tmp_path / "none.jsonl"),
          "cwd": str(tmp_path), "hook_event_name": "SessionStart", "source": "startup"}
    r = subprocess.run([str(repo / "plugin" / "scripts" / "ccflux-hook")], input=json.dumps(ev).encode(),
                       env=env, capture_output=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, b"")
    log = state / "error.log"
    assert not log.exists() or "wrapper:" not in log.read_text(), log.read_text()
