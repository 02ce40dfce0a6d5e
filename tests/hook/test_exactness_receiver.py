"""Hook -> spool -> sender -> real receiver over TLS: totals exact through
kill -9 during sends, racing processes and a receiver outage."""

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from support.receiver import ReceiverProcess
from support.transcripts import append, assistant_lines, hook_event, usage, user_line

MODEL = "claude-sonnet-4-5"
COUNTERS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


@pytest.fixture
def receiver(tmp_path, test_ca):
    """A receiver whose rate limit stays out of the way: these tests are about
    exact totals, and kill -9 runs repeat token exchanges (the 429 path is
    tested in test_sender.py)."""
    rx = ReceiverProcess(tmp_path / "receiver", test_ca, env={"RATE_LIMIT_PER_MINUTE": "100000"})
    rx.start()
    try:
        yield rx
    finally:
        rx.stop()


@pytest.fixture
def hook_env(tmp_path, receiver):
    token = receiver.add_user("dev@example.com")
    env = dict(os.environ)
    for key in ("CCFLUX_ALLOW_HTTP", "CLAUDE_PLUGIN_DATA"):
        env.pop(key, None)
    env.update(receiver.client_env())
    env.update(CCFLUX_HOME=str(tmp_path / "state"), CLAUDE_CONFIG_DIR=str(tmp_path / "claude"),
               CLAUDE_PLUGIN_OPTION_API_ENDPOINT=receiver.base_url + "/report",
               CLAUDE_PLUGIN_OPTION_API_TOKEN=token, CCFLUX_SEND_MODE="inline")
    return env


def _hook(env, stdin, kill_after=None):
    proc = subprocess.Popen([sys.executable, "-m", "ccflux", "hook"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdin.write(stdin)
    proc.stdin.close()
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    proc.wait(120)
    out = proc.stdout.read()
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, out


def _flush(env):
    return subprocess.run([sys.executable, "-m", "ccflux", "flush"], env=env, capture_output=True,
                          text=True, timeout=180)


def _receiver_totals(receiver, session):
    rows = [r for r in receiver.usage(by="session,model") if r["session_id"] == session]
    return {r["model"]: Counter({k: r[k] for k in COUNTERS}) for r in rows}


def _turn(path, i, want):
    u = usage(1000 + i, 10 * i + 7, 3 * i, 2 * i + 1)
    append(path, [user_line()] + assistant_lines(u, blocks=("thinking", "text"), text=f"turn {i}"))
    want.update({"input_tokens": 1000 + i, "output_tokens": 10 * i + 7, "cache_read_tokens": 3 * i,
                 "cache_write_tokens": 2 * i + 1})


def test_kill_9_during_send_then_flush_exact_totals(hook_env, receiver, tmp_path):
    rng = random.Random(99)
    t = tmp_path / "proj" / "kill.jsonl"
    want = Counter()
    for i in range(15):
        _turn(t, i, want)
        _hook(hook_env, hook_event("Stop", "kill", t, last_assistant_message=f"turn {i}"),
              kill_after=rng.uniform(0.05, 0.6))
    assert _hook(hook_env, hook_event("SessionEnd", "kill", t)) == (0, b"")
    done = _flush(hook_env)
    assert done.returncode == 0, done.stderr
    assert _receiver_totals(receiver, "kill") == {MODEL: want}


def test_racing_hooks_report_exact_totals(hook_env, receiver, tmp_path):
    sessions = [f"r{i}" for i in range(4)]
    want = {s: Counter() for s in sessions}
    for round_ in range(3):
        procs = []
        for n, s in enumerate(sessions):
            t = tmp_path / "proj" / f"{s}.jsonl"
            _turn(t, round_ * 10 + n, want[s])
            ev = hook_event("Stop", s, t, last_assistant_message=f"turn {round_ * 10 + n}")
            for _ in range(2):
                p = subprocess.Popen([sys.executable, "-m", "ccflux", "hook"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=hook_env)
                p.stdin.write(ev)
                p.stdin.close()
                procs.append(p)
        for p in procs:
            assert p.wait(120) == 0 and p.stdout.read() == b""
            p.stdout.close()
    assert _flush(hook_env).returncode == 0
    for s in sessions:
        assert _receiver_totals(receiver, s) == {MODEL: want[s]}


def test_receiver_outage_spools_then_drains(hook_env, receiver, tmp_path):
    t = tmp_path / "proj" / "out.jsonl"
    want = Counter()
    _turn(t, 0, want)
    _hook(hook_env, hook_event("Stop", "out", t, last_assistant_message="turn 0"))
    receiver.stop()
    for i in range(1, 6):
        _turn(t, i, want)
        assert _hook(hook_env, hook_event("Stop", "out", t, last_assistant_message=f"turn {i}")) == (0, b"")
    receiver.start()
    done = _flush(hook_env)
    assert done.returncode == 0, done.stderr
    assert _receiver_totals(receiver, "out") == {MODEL: want}
    rows = receiver.usage(by="session,turn")
    assert sorted(r["turn_index"] for r in rows if r["session_id"] == "out") == list(range(6))
