"""The hook's commit step end to end in-process: exact counting across runs."""

import os
import random
import sqlite3
import threading
import time
from collections import Counter

from support.spool import queued_reports, totals
from support.transcripts import append, assistant_lines, hook_event, usage, user_line

from ccflux import hook, protocol


def _stop(sid, path, last=""):
    hook.run(hook_event("Stop", sid, path, last_assistant_message=last))


def _expect(inp, out, cr=0, cw=0):
    return Counter({"input_tokens": inp, "output_tokens": out, "cache_read_tokens": cr, "cache_write_tokens": cw})


def test_each_turn_reports_its_own_usage_once(configured, tmp_path):
    t = tmp_path / "proj" / "s1.jsonl"
    append(t, [user_line()] + assistant_lines(usage(10, 20, 30, 40), blocks=("thinking", "text", "tool_use"))
           + assistant_lines(usage(1, 2, 3, 4), text="first answer"))
    _stop("s1", t, "first answer")
    _stop("s1", t, "first answer")  # a repeated Stop with no news adds nothing
    append(t, [user_line()] + assistant_lines(usage(5, 6, 7, 8), text="second"))
    _stop("s1", t, "second")
    reports = queued_reports(configured)
    assert (configured / "outbox.pending").exists()  # a later run retries even if no sender ran
    assert [r["turn_index"] for r in reports] == [0, 1]
    assert reports[0]["models"]["claude-sonnet-4-5"] == _expect(11, 22, 33, 44)
    assert reports[1]["models"]["claude-sonnet-4-5"] == _expect(5, 6, 7, 8)
    for r in reports:
        protocol.ReportBody.model_validate(r)
        assert r["session_start_utc"] == "2026-11-23T09:59:00.000Z"


def test_a_message_straddling_two_runs_counts_once(configured, tmp_path):
    t = tmp_path / "s2.jsonl"
    lines = assistant_lines(usage(100, 200), blocks=("thinking", "text", "tool_use"), text="x")
    append(t, lines[:1])
    _stop("s2", t)
    append(t, lines[1:])
    _stop("s2", t)
    assert totals(queued_reports(configured))[("s2", "claude-sonnet-4-5")] == _expect(100, 200)


def test_random_split_points_keep_totals_exact(configured, tmp_path):
    rng = random.Random(7)
    t = tmp_path / "s3.jsonl"
    data = "".join(
        line + "\n"
        for i in range(60)
        for line in [user_line()] + assistant_lines(usage(i + 1, 2 * i + 1, i, 3), blocks=("text", "tool_use")[: 1 + i % 2])
    ).encode()
    cut = 0
    while cut < len(data):
        step = rng.randint(1, 900)
        with open(t, "ab") as fh:
            fh.write(data[cut:cut + step])
        cut += step
        _stop("s3", t)
    want = _expect(sum(range(1, 61)), sum(2 * i + 1 for i in range(60)), sum(range(60)), 3 * 60)
    assert totals(queued_reports(configured))[("s3", "claude-sonnet-4-5")] == want


def test_subagent_files_count_and_late_ones_are_picked_up(configured, tmp_path):
    t = tmp_path / "s4.jsonl"
    append(t, [user_line()] + assistant_lines(usage(1, 1), text="delegating"))
    sub = tmp_path / "s4" / "subagents"
    append(sub / "agent-a.jsonl", assistant_lines(usage(10, 10), sidechain=True, model="claude-haiku-4-5"))
    _stop("s4", t, "delegating")
    append(sub / "agent-b.jsonl", assistant_lines(usage(100, 100), sidechain=True, model="claude-haiku-4-5"))
    hook.run(hook_event("SessionEnd", "s4", t, reason="exit"))
    got = totals(queued_reports(configured))
    assert got[("s4", "claude-sonnet-4-5")] == _expect(1, 1)
    assert got[("s4", "claude-haiku-4-5")] == _expect(110, 110)


def test_forked_session_copying_old_lines_counts_only_new_ones(configured, tmp_path):
    old = assistant_lines(usage(7, 8), text="old")
    a = tmp_path / "sa.jsonl"
    append(a, old)
    _stop("sa", a, "old")
    b = tmp_path / "sb.jsonl"  # a fork: the old lines copied, then new work
    append(b, old + assistant_lines(usage(1, 2), text="new"))
    _stop("sb", b, "new")
    got = totals(queued_reports(configured))
    assert got[("sa", "claude-sonnet-4-5")] == _expect(7, 8)
    assert got[("sb", "claude-sonnet-4-5")] == _expect(1, 2)


def test_fork_copies_marked_with_another_session_are_not_counted(configured, tmp_path):
    """--fork-session copies the parent's lines (requestSessionId = the parent):
    even when the parent was never read here, the copies are the parent's usage."""
    import json

    copied = [json.loads(line) for line in assistant_lines(usage(70, 80), text="parent")]
    for doc in copied:
        doc["requestSessionId"] = "parent-session"
    f = tmp_path / "fork.jsonl"
    append(f, [json.dumps(d) for d in copied] + assistant_lines(usage(1, 2), text="child"))
    _stop("fork", f, "child")
    assert totals(queued_reports(configured)) == {("fork", "claude-sonnet-4-5"): _expect(1, 2)}


def test_stop_waits_for_the_final_line_written_after_it(configured, tmp_path):
    t = tmp_path / "s5.jsonl"
    append(t, [user_line()] + assistant_lines(usage(1, 1), blocks=("tool_use",)))
    late = assistant_lines(usage(50, 60), text="the end")

    def write_late():
        time.sleep(0.04)
        append(t, late)

    writer = threading.Thread(target=write_late)
    writer.start()
    _stop("s5", t, "the end")
    writer.join()
    reports = queued_reports(configured)
    assert len(reports) == 1
    assert reports[0]["models"]["claude-sonnet-4-5"] == _expect(51, 61)


def test_unconfigured_records_nothing(state_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("CLAUDE_PLUGIN_OPTION_API_ENDPOINT", raising=False)
    monkeypatch.delenv("CLAUDE_PLUGIN_OPTION_API_TOKEN", raising=False)
    t = tmp_path / "s6.jsonl"
    append(t, assistant_lines(usage(1, 1)))
    _stop("s6", t)
    assert not (state_dir / "state.db").exists()
    assert "not configured" in (state_dir / "activity.log").read_text()


def test_ignored_dirs_are_neither_read_nor_reported(configured, tmp_path):
    (configured).mkdir(parents=True, exist_ok=True)
    (configured / "config.json").write_text('{"ignore_dirs": ["%s"]}' % (tmp_path / "secret"))
    (tmp_path / "secret" / "deep").mkdir(parents=True)
    t = tmp_path / "s7.jsonl"
    append(t, assistant_lines(usage(1, 1)))
    hook.run(hook_event("Stop", "s7", t, cwd=str(tmp_path / "secret" / "deep")))
    assert queued_reports(configured) == []
    hook.run(hook_event("Stop", "s7", t, cwd=str(tmp_path / "secretary")))
    assert len(queued_reports(configured)) == 1


def test_full_spool_stops_reading_and_catches_up_later(configured, tmp_path, monkeypatch):
    from ccflux import commit

    monkeypatch.setattr(commit, "MAX_OUTBOX", 2)
    t = tmp_path / "s8.jsonl"
    for i in range(4):
        append(t, assistant_lines(usage(1, i + 1), text=f"t{i}"))
        _stop("s8", t, f"t{i}")
    assert len(queued_reports(configured)) == 2
    assert "spool full" in (configured / "error.log").read_text()
    with sqlite3.connect(configured / "state.db") as conn:
        conn.execute("DELETE FROM outbox")
    _stop("s8", t, "t3")
    got = totals(queued_reports(configured))[("s8", "claude-sonnet-4-5")]
    assert got == _expect(2, 3 + 4)  # turns 2 and 3, read late, none lost


def test_corrupt_state_is_set_aside_and_never_double_counts(configured, tmp_path):
    t = tmp_path / "s9.jsonl"
    append(t, assistant_lines(usage(3, 3), text="a", timestamp="2020-01-01T00:00:00.000Z"))
    _stop("s9", t, "a")
    db = configured / "state.db"
    for suffix in ("-wal", "-shm"):
        (configured / f"state.db{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"garbage" * 100)
    time.sleep(1.1)
    append(t, assistant_lines(usage(4, 4), text="b", timestamp="2099-01-01T00:00:00.000Z"))
    _stop("s9", t, "b")  # the old transcript began before the reset: skipped, not re-read
    assert queued_reports(configured) == []
    assert any(p.name.startswith("state.db.corrupt-") for p in configured.iterdir())
    assert "unreadable" in (configured / "error.log").read_text()
    t2 = tmp_path / "s10.jsonl"  # a session begun after the reset is read in full
    append(t2, [user_line(timestamp="2099-01-01T00:00:00.000Z")] + assistant_lines(usage(5, 5), text="c"))
    _stop("s10", t2, "c")
    reports = queued_reports(configured)
    assert len(reports) == 1 and reports[0]["turn_index"] >= 1000


def test_files_and_dirs_are_private(configured, tmp_path):
    t = tmp_path / "s11.jsonl"
    append(t, assistant_lines(usage(1, 1)))
    _stop("s11", t)
    assert (configured.stat().st_mode & 0o777) == 0o700
    for path in configured.rglob("*"):
        want = 0o700 if path.is_dir() else 0o600
        assert (path.stat().st_mode & 0o777) == want, path


def _cost_state(sid, **models):
    import json

    return json.dumps({"type": "cost-state", "sessionId": sid, "modelUsage": {
        m: {"inputTokens": u[0], "outputTokens": u[1], "cacheReadInputTokens": u[2],
            "cacheCreationInputTokens": u[3], "costUSD": 1.5} for m, u in models.items()}})


def test_usage_in_no_transcript_is_taken_from_cost_state(configured, tmp_path):
    """Auto-compaction's API calls appear in no transcript; Claude Code's cost-state
    (cumulative, written at process end) holds them. The session total must be true."""
    t = tmp_path / "c1.jsonl"
    append(t, [user_line()] + assistant_lines(usage(10, 20, 30, 40), text="a"))
    _stop("c1", t, "a")
    append(t, [user_line()] + assistant_lines(usage(1, 2, 3, 4), text="b"))
    append(t, [_cost_state("c1", **{"claude-sonnet-4-5": (111, 222, 333, 444)})])
    hook.run(hook_event("SessionEnd", "c1", t, reason="other"))
    reports = queued_reports(configured)
    assert totals(reports)[("c1", "claude-sonnet-4-5")] == _expect(111, 222, 333, 444)
    assert reports[1]["models"]["claude-sonnet-4-5"] == _expect(101, 202, 303, 404)
    # a resumed process appends more, and a new cumulative cost-state: only the new gap is added
    append(t, [user_line()] + assistant_lines(usage(5, 5, 5, 5), text="c"))
    _stop("c1", t, "c")
    append(t, [_cost_state("c1", **{"claude-sonnet-4-5": (126, 237, 348, 459)})])
    hook.run(hook_event("SessionEnd", "c1", t, reason="other"))
    assert totals(queued_reports(configured))[("c1", "claude-sonnet-4-5")] == _expect(126, 237, 348, 459)


def test_cost_state_never_lowers_or_inflates_what_transcripts_show(configured, tmp_path):
    t = tmp_path / "c2.jsonl"
    append(t, [user_line()] + assistant_lines(usage(10, 20, 30, 40), text="a"))
    append(t, [_cost_state("c2", **{"claude-sonnet-4-5": (5, 25, 30, 40)}),
               _cost_state("someone-else", **{"claude-sonnet-4-5": (999, 999, 999, 999)})])
    _stop("c2", t, "a")
    assert totals(queued_reports(configured))[("c2", "claude-sonnet-4-5")] == _expect(10, 25, 30, 40)


def test_cost_state_of_forks_and_untracked_sessions_is_not_used(configured, tmp_path):
    import json

    copied = [json.loads(line) for line in assistant_lines(usage(70, 80), text="parent")]
    for doc in copied:
        doc["requestSessionId"] = "parent"
    f = tmp_path / "fk.jsonl"  # a fork: its cost-state includes the parent's history
    append(f, [json.dumps(d) for d in copied] + assistant_lines(usage(1, 2), text="child")
           + [_cost_state("fk", **{"claude-sonnet-4-5": (171, 182, 0, 0)})])
    _stop("fk", f, "child")
    assert totals(queued_reports(configured))[("fk", "claude-sonnet-4-5")] == _expect(1, 2)


def test_daily_prune_drops_stale_hints(configured, tmp_path):
    t = tmp_path / "p1.jsonl"
    append(t, assistant_lines(usage(1, 1), text="a"))
    _stop("p1", t, "a")
    stale = configured / "hints" / "ancient-session"
    stale.write_text("0\n")
    os.utime(stale, (1, 1))
    with sqlite3.connect(configured / "state.db") as conn:
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'pruned_at'")
    append(t, assistant_lines(usage(1, 1), text="b"))
    _stop("p1", t, "b")
    assert not stale.exists() and (configured / "hints" / "p1").exists()
