"""kill -9 at any instant and parallel hooks: the spool still holds each
response exactly once (the receiver side is in test_exactness_receiver.py)."""

import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

from support.spool import queued_reports, totals
from support.transcripts import append, assistant_lines, hook_event, usage, user_line


def _spawn(stdin: bytes) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "ccflux", "hook"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(stdin)
    proc.stdin.close()
    return proc


def _integrity_ok(state_dir) -> bool:
    with sqlite3.connect(state_dir / "state.db") as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_kill_9_at_random_instants_loses_and_duplicates_nothing(configured, tmp_path):
    rng = random.Random(1234)
    t = tmp_path / "k.jsonl"
    want = Counter()
    for i in range(25):
        u = usage(i + 1, 10 * i + 3, i, 2 * i)
        append(t, [user_line()] + assistant_lines(u, blocks=("text", "tool_use"), text=f"turn {i}"))
        want.update({"input_tokens": i + 1, "output_tokens": 10 * i + 3, "cache_read_tokens": i,
                     "cache_write_tokens": 2 * i})
        proc = _spawn(hook_event("Stop", "k", t))
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    final = _spawn(hook_event("SessionEnd", "k", t))
    assert final.wait(60) == 0
    final.stdout.close()
    final.stderr.close()
    assert _integrity_ok(configured)
    reports = queued_reports(configured)
    assert totals(reports)[("k", "claude-sonnet-4-5")] == want
    indices = [r["turn_index"] for r in reports]
    assert indices == list(range(len(indices)))  # no gap, no repeat


def test_eight_processes_racing_on_one_state_dir(configured, tmp_path):
    sessions = [f"race{i}" for i in range(4)]
    files = {s: tmp_path / f"{s}.jsonl" for s in sessions}
    want = {s: Counter() for s in sessions}
    for round_ in range(4):
        for n, s in enumerate(sessions):
            u = usage(round_ + n + 1, 7 * round_ + n + 1, 1, 2)
            append(files[s], [user_line()] + assistant_lines(u, text=f"{s}-{round_}"))
            want[s].update({"input_tokens": round_ + n + 1, "output_tokens": 7 * round_ + n + 1,
                            "cache_read_tokens": 1, "cache_write_tokens": 2})
        # two processes per session at once: 8 hooks racing for the same state
        procs = [_spawn(hook_event("Stop", s, files[s])) for s in sessions for _ in range(2)]
        for p in procs:
            assert p.wait(120) == 0
            assert p.stdout.read() == b""
            p.stdout.close()
            p.stderr.close()
    assert _integrity_ok(configured)
    reports = queued_reports(configured)
    got = totals(reports)
    for s in sessions:
        assert got[(s, "claude-sonnet-4-5")] == want[s]
        idx = sorted(r["turn_index"] for r in reports if r["session_id"] == s)
        assert idx == list(range(len(idx)))
    assert not (configured / "error.log").exists() or "Traceback" not in (configured / "error.log").read_text()
