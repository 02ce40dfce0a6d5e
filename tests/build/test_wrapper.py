"""plugin/scripts/ccflux-hook: the POSIX wrapper every hook event runs.

A fake binary stands in for the frozen ccflux, so these tests see exactly what the wrapper
hands it (argv, stdin bytes, environment) and how the wrapper reacts to what it does.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

FAKE_BINARY = """#!/bin/sh
# fake ccflux: records what it got, prints on stdout, exits with $FAKE_EXIT
out=$FAKE_OUT
printf '%s\\n' "$@" >"$out/argv"
cat >"$out/stdin"
printf '%s' "${CLAUDE_PLUGIN_OPTION_API_TOKEN:-}" >"$out/token"
echo "this must never reach Claude Code"
exit "${FAKE_EXIT:-0}"
"""


@pytest.fixture
def fake_plugin(plugin_copy: Path, platform_dir: str, exe_name: str, tmp_path: Path):
    """A plugin copy whose bin/<os>-<arch>/ccflux/ccflux is the fake; returns (root, out dir)."""
    bindir = plugin_copy / "bin" / platform_dir / "ccflux"
    bindir.mkdir(parents=True)
    fake = bindir / exe_name
    fake.write_text(FAKE_BINARY)
    fake.chmod(0o755)
    out = tmp_path / "fake-out"
    out.mkdir()
    return plugin_copy, out


def run_wrapper(root: Path, env: dict, stdin: bytes = b"{}", argv0: Path | None = None):
    script = argv0 or root / "scripts" / "ccflux-hook"
    return subprocess.run([str(script)], input=stdin, env=env, capture_output=True, timeout=60)


def event(name: str = "Stop") -> bytes:
    return json.dumps({"session_id": "s-1", "hook_event_name": name, "transcript_path": "/nowhere.jsonl",
                       "cwd": "/tmp"}).encode()


def test_passes_stdin_bytes_and_only_the_subcommand(fake_plugin, clean_env, tmp_path):
    root, out = fake_plugin
    # Big (past any pipe buffer) and not UTF-8: the wrapper must pass bytes through untouched.
    payload = event()[:-1] + b', "last_assistant_message": "' + b"x\xff\x00" * 300_000 + b'"}'
    env = {**clean_env, "CLAUDE_PLUGIN_ROOT": str(root), "FAKE_OUT": str(out),
           "CLAUDE_PLUGIN_OPTION_API_TOKEN": "secret-refresh-token", "CCFLUX_HOME": str(tmp_path / "state")}
    r = run_wrapper(root, env, payload)
    assert r.returncode == 0
    assert r.stdout == b""
    assert (out / "stdin").read_bytes() == payload
    # Only the subcommand in argv; the token reaches the binary through the environment.
    assert (out / "argv").read_text() == "hook\n"
    assert (out / "token").read_text() == "secret-refresh-token"
    assert not (tmp_path / "state" / "error.log").exists()


@pytest.mark.parametrize("code", [1, 2, 3, 127])
def test_failing_binary_still_exits_0_and_is_logged(fake_plugin, clean_env, tmp_path, code):
    root, out = fake_plugin
    state = tmp_path / "state"
    env = {**clean_env, "CLAUDE_PLUGIN_ROOT": str(root), "FAKE_OUT": str(out), "FAKE_EXIT": str(code),
           "CCFLUX_HOME": str(state)}
    r = run_wrapper(root, env, event())
    assert (r.returncode, r.stdout) == (0, b"")
    log = (state / "error.log").read_text()
    assert f"exited with status {code}" in log


def test_finds_the_binary_without_claude_plugin_root(fake_plugin, clean_env, tmp_path):
    root, out = fake_plugin
    env = {**clean_env, "FAKE_OUT": str(out), "CCFLUX_HOME": str(tmp_path / "state")}
    r = run_wrapper(root, env, event())
    assert (r.returncode, r.stdout) == (0, b"")
    assert (out / "argv").read_text() == "hook\n"


def _state_dir_cases(tmp_path: Path, home: Path):
    return {
        "CCFLUX_HOME": ({"CCFLUX_HOME": str(tmp_path / "a" / "ccflux-home"),
                         "CLAUDE_PLUGIN_DATA": str(tmp_path / "b")}, tmp_path / "a" / "ccflux-home"),
        "CLAUDE_PLUGIN_DATA": ({"CLAUDE_PLUGIN_DATA": str(tmp_path / "b" / "data"),
                                "CLAUDE_CONFIG_DIR": str(tmp_path / "c")}, tmp_path / "b" / "data"),
        "CLAUDE_CONFIG_DIR": ({"CLAUDE_CONFIG_DIR": str(tmp_path / "c")}, tmp_path / "c" / "ccflux"),
        "HOME": ({}, home / ".claude" / "ccflux"),
    }


@pytest.mark.parametrize("case", ["CCFLUX_HOME", "CLAUDE_PLUGIN_DATA", "CLAUDE_CONFIG_DIR", "HOME"])
def test_missing_binary_logs_to_the_state_dir_and_exits_0(plugin_copy, clean_env, tmp_path, case):
    extra, state = _state_dir_cases(tmp_path, Path(clean_env["HOME"]))[case]
    env = {**clean_env, "CLAUDE_PLUGIN_ROOT": str(plugin_copy), **extra}
    r = run_wrapper(plugin_copy, env, event() * 10_000)  # bigger than a pipe buffer: drained
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    log = state / "error.log"
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and "binary missing" in lines[0], lines
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    # A second failure appends.
    run_wrapper(plugin_copy, env, event())
    assert len(log.read_text().splitlines()) == 2


def test_missing_binary_without_a_usable_state_dir_goes_to_stderr(plugin_copy, clean_env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**clean_env, "CLAUDE_PLUGIN_ROOT": str(plugin_copy), "CCFLUX_HOME": str(blocker / "state")}
    r = run_wrapper(plugin_copy, env, event())
    assert (r.returncode, r.stdout) == (0, b"")
    assert b"binary missing" in r.stderr


def test_error_log_stays_bounded(plugin_copy, clean_env, tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    log = state / "error.log"
    log.write_bytes(b"old line\n" * 130_000)  # > 1 MiB
    env = {**clean_env, "CLAUDE_PLUGIN_ROOT": str(plugin_copy), "CCFLUX_HOME": str(state)}
    assert run_wrapper(plugin_copy, env, event()).returncode == 0
    assert (state / "error.log.1").stat().st_size > 1024 * 1024
    assert "binary missing" in log.read_text() and log.stat().st_size < 1000


def test_wrappers_never_name_the_dev_http_switch(repo: Path):
    for f in (repo / "plugin" / "scripts").rglob("*"):
        if f.is_file():
            assert b"ccflux_allow_http" not in f.read_bytes().lower(), f


def test_wrapper_is_executable_posix_sh(repo: Path):
    wrapper = repo / "plugin" / "scripts" / "ccflux-hook"
    assert wrapper.read_text().startswith("#!/bin/sh\n")
    assert os.access(wrapper, os.X_OK)
    # Syntax-check it with sh -n, and with dash when present (Debian's /bin/sh).
    for shell in ("sh", "dash", "bash"):
        try:
            subprocess.run([shell, "-n", str(wrapper)], check=True, timeout=30)
        except FileNotFoundError:
            continue


@pytest.mark.parametrize(
    "uname, expected",
    [
        ("Linux x86_64", "linux-x86_64"),
        ("Linux aarch64", "linux-arm64"),
        ("Darwin arm64", "darwin-arm64"),
        ("Darwin x86_64", "darwin-x86_64"),
        ("MINGW64_NT-10.0-22631 x86_64", "windows-x86_64"),
        ("MSYS_NT-10.0 x86_64", "windows-x86_64"),
        ("FreeBSD amd64", "freebsd-x86_64"),
    ],
)
def test_wrapper_and_build_name_platforms_alike(plugin_copy, clean_env, tmp_path, repo, uname, expected):
    # Both derive <os>-<arch> from `uname -sm`: build/build writes there, the wrapper looks
    # there. A disagreement would ship binaries the wrapper never finds.
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    (fakebin / "uname").write_text(f"#!/bin/sh\necho '{uname}'\n")
    (fakebin / "uname").chmod(0o755)
    env = {**clean_env, "PATH": f"{fakebin}:{clean_env['PATH']}"}
    built = subprocess.run(["bash", "-c", f'source "{repo}/build/common.sh" && platform_dir'],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert built == expected

    exe = "ccflux.exe" if expected.startswith("windows") else "ccflux"
    fake = plugin_copy / "bin" / expected / "ccflux" / exe
    fake.parent.mkdir(parents=True)
    out = tmp_path / "ran"
    fake.write_text(f"#!/bin/sh\ncat >/dev/null\ntouch '{out}'\n")
    fake.chmod(0o755)
    r = run_wrapper(plugin_copy, {**env, "CLAUDE_PLUGIN_ROOT": str(plugin_copy),
                                  "CCFLUX_HOME": str(tmp_path / "state")}, event())
    assert r.returncode == 0
    assert out.exists(), (tmp_path / "state" / "error.log").read_text()


def test_apple_silicon_falls_back_to_an_x86_64_build(plugin_copy, clean_env, tmp_path):
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    (fakebin / "uname").write_text("#!/bin/sh\necho 'Darwin arm64'\n")
    (fakebin / "uname").chmod(0o755)
    fake = plugin_copy / "bin" / "darwin-x86_64" / "ccflux" / "ccflux"
    fake.parent.mkdir(parents=True)
    out = tmp_path / "ran"
    fake.write_text(f"#!/bin/sh\ncat >/dev/null\ntouch '{out}'\n")
    fake.chmod(0o755)
    env = {**clean_env, "PATH": f"{fakebin}:{clean_env['PATH']}", "CLAUDE_PLUGIN_ROOT": str(plugin_copy),
           "CCFLUX_HOME": str(tmp_path / "state")}
    assert run_wrapper(plugin_copy, env, event()).returncode == 0
    assert out.exists()
