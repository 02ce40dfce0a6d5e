"""`ccflux hook` as Claude Code runs it: any stdin, never stdout, always exit 0."""

import os
import subprocess
import sys

import pytest
from support.transcripts import append, assistant_lines, hook_event, usage


def _run(stdin: bytes, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccflux", "hook"], input=stdin, env=env,
                          capture_output=True, timeout=timeout)


@pytest.fixture
def env(configured):
    return dict(os.environ)


@pytest.mark.parametrize("stdin", [
    b"",
    b"\x00\x01\x02garbage",
    b'{"hook_event_name": "Stop", "session_id": "../../../etc/passwd", "transcript_path": "/x.jsonl"}',
    b'{"hook_event_name": "Stop", "session_id": "s", "transcript_path": "/nonexistent/s.jsonl"}',
    b'{"hook_event_name": "Stop"' + b" " * (40 << 20),
    b"[" * 200000,
])
def test_hostile_stdin_is_logged_and_exit_is_zero(env, configured, stdin):
    done = _run(stdin, env)
    assert done.returncode == 0
    assert done.stdout == b""
    assert done.stderr == b""


def test_errors_go_to_the_error_log_one_line_each(env, configured):
    _run(b"not json", env)
    _run(b'{"hook_event_name": "Stop", "session_id": "a/b"}', env)
    lines = (configured / "error.log").read_text().splitlines()
    assert len(lines) == 2
    assert "not JSON" in lines[0] and "session_id" in lines[1]


def test_a_real_turn_is_queued_and_nothing_printed(env, configured, tmp_path):
    t = tmp_path / "sess.jsonl"
    append(t, assistant_lines(usage(1, 2), text="hello"))
    done = _run(hook_event("Stop", "sess", t, last_assistant_message="hello"), env)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert "1 report(s) queued" in (configured / "activity.log").read_text()


def test_stdin_that_never_closes_does_not_hang(state_dir, monkeypatch):
    from ccflux import hook

    monkeypatch.setattr(hook, "STDIN_TIMEOUT_SECS", 0.3)
    r, w = os.pipe()
    try:
        os.write(w, b'{"hook_event_name":')
        monkeypatch.setattr(sys, "stdin", os.fdopen(r, "rb"))
        assert hook.main() == 0
    finally:
        os.close(w)
    assert "time limit" in (state_dir / "error.log").read_text()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_transcript_path_that_is_no_regular_file_never_hangs(env, configured, tmp_path, kind):
    path = tmp_path / f"{kind}.jsonl"
    if kind == "fifo":
        os.mkfifo(path)  # no writer: a plain open() would block forever
    else:
        path.symlink_to("/dev/zero")  # would feed the reader forever
    ev = b'{"hook_event_name": "Stop", "session_id": "s", "transcript_path": "%s", "last_assistant_message": "x"}' % str(path).encode()
    done = _run(ev, env, timeout=30)
    assert (done.returncode, done.stdout) == (0, b"")
