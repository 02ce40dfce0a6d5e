import json
import os
import tracemalloc

from support.transcripts import append, assistant_lines, usage, user_line

from ccflux import transcript
from ccflux.state import Usage


def _totals(result) -> tuple[int, int, int, int]:
    rs = result.responses.values()
    return (sum(r.usage.input for r in rs), sum(r.usage.output for r in rs),
            sum(r.usage.cache_read for r in rs), sum(r.usage.cache_write for r in rs))


def test_one_response_with_three_block_lines_counts_once(tmp_path):
    f = tmp_path / "s.jsonl"
    append(f, [user_line()] + assistant_lines(usage(10, 20, 30, 40), blocks=("thinking", "text", "tool_use")))
    result = transcript.read_new(str(f), None)
    assert len(result.responses) == 1
    assert _totals(result) == (10, 20, 30, 40)
    assert result.cursor.offset == f.stat().st_size
    assert result.first_timestamp == "2026-11-23T09:59:00.000Z"


def test_partial_last_line_is_left_for_the_next_run(tmp_path):
    f = tmp_path / "s.jsonl"
    first = assistant_lines(usage(1, 2))
    second = assistant_lines(usage(5, 6))[0]
    append(f, first)
    with open(f, "a") as fh:
        fh.write(second[:40])
    r1 = transcript.read_new(str(f), None)
    assert _totals(r1) == (1, 2, 0, 0)
    assert r1.cursor.offset == len(first[0]) + 1
    with open(f, "a") as fh:
        fh.write(second[40:] + "\n")
    r2 = transcript.read_new(str(f), r1.cursor)
    assert _totals(r2) == (5, 6, 0, 0)


def test_largest_copy_wins(tmp_path):
    f = tmp_path / "s.jsonl"
    a = assistant_lines(usage(3, 10), msg_id="m1", request_id="r1")
    b = assistant_lines(usage(3, 99), msg_id="m1", request_id="r1")
    append(f, a + b)
    assert _totals(transcript.read_new(str(f), None)) == (3, 99, 0, 0)


def test_shrunk_or_replaced_file_is_read_from_the_start(tmp_path):
    f = tmp_path / "s.jsonl"
    append(f, assistant_lines(usage(1, 1)) * 3)
    r1 = transcript.read_new(str(f), None)
    f.write_text(assistant_lines(usage(7, 7))[0] + "\n")  # shorter: truncated and rewritten
    r2 = transcript.read_new(str(f), r1.cursor)
    assert r2.restarted and _totals(r2) == (7, 7, 0, 0)
    g = tmp_path / "g.jsonl"
    append(g, assistant_lines(usage(9, 9)) * 5)
    os.replace(g, f)  # replaced by a longer file: new inode
    r3 = transcript.read_new(str(f), r2.cursor)
    assert r3.restarted and _totals(r3)[0] == 9


def test_corrupt_and_foreign_lines_are_skipped_not_fatal(tmp_path):
    f = tmp_path / "s.jsonl"
    append(f, [
        '{"type":"assistant","message":{"usage":',  # cut short
        json.dumps({"type": "cost-state", "usage": {"input_tokens": 5}}),
        json.dumps({"type": "assistant", "message": {"id": "m", "usage": {"input_tokens": "7"}}}),
        "[1,2,3]",
        json.dumps({"type": "system", "subtype": "api_error"}),
    ] + assistant_lines(usage(2, 3)))
    result = transcript.read_new(str(f), None)
    assert result.bad_lines == 1
    assert _totals(result) == (2, 3, 0, 0)


def test_zero_usage_synthetic_messages_are_not_counted(tmp_path):
    f = tmp_path / "s.jsonl"
    append(f, assistant_lines(usage(0, 0), model="<synthetic>"))
    assert transcript.read_new(str(f), None).responses == {}


def test_a_50mb_line_is_streamed_with_bounded_memory(tmp_path):
    f = tmp_path / "s.jsonl"
    huge_user = json.dumps({"type": "user", "message": {"role": "user", "content": "x" * (50 << 20)}})
    big_text = "y" * (6 << 20)
    huge_assistant = assistant_lines(usage(11, 12, 13, 14), text=big_text)[0]
    append(f, [huge_user, huge_assistant] + assistant_lines(usage(1, 1)))
    tracemalloc.start()
    try:
        result = transcript.read_new(str(f), None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _totals(result) == (12, 13, 13, 14)
    assert result.cursor.offset == f.stat().st_size
    assert peak < 24 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_merge_keeps_the_largest_per_field():
    a = {"k": transcript.Response("k", Usage("m", 1, 5, 0, 0), "t1")}
    b = {"k": transcript.Response("k", Usage("m", 1, 9, 2, 0), "t2")}
    transcript.merge(a, b)
    assert a["k"].usage == Usage("m", 1, 9, 2, 0) and a["k"].timestamp == "t2"


def test_final_text_written(tmp_path):
    f = tmp_path / "s.jsonl"
    append(f, [user_line()] + assistant_lines(usage(1, 1), blocks=("text", "tool_use"), text="working"))
    assert not transcript.final_text_written(str(f), "All done.")
    append(f, assistant_lines(usage(2, 2), text="All done.\n"))
    assert transcript.final_text_written(str(f), "  All done.")


def test_a_previous_turns_identical_final_text_does_not_count(tmp_path):
    """Turn 1 ended with "Done."; turn 2 will too. Until turn 2's own final line
    is written, the old one (before turn 2's prompt) must not satisfy the wait."""
    f = tmp_path / "s.jsonl"
    append(f, [user_line("one")] + assistant_lines(usage(1, 1), text="Done."))
    append(f, [user_line("two")] + assistant_lines(usage(1, 1), blocks=("tool_use",)))
    append(f, [user_line("tool result")])
    assert not transcript.final_text_written(str(f), "Done.")
    append(f, assistant_lines(usage(2, 2), blocks=("thinking", "text"), text="Done."))
    assert transcript.final_text_written(str(f), "Done.")


def test_a_huge_backlog_is_read_over_several_runs(tmp_path):
    f = tmp_path / "s.jsonl"
    line = assistant_lines(usage(1, 1))[0]
    append(f, [line] + assistant_lines(usage(2, 2)) + assistant_lines(usage(4, 4)))
    budget = len(line) + 10  # room for one line per run
    seen = []
    cursor = None
    for _ in range(3):
        r = transcript.read_new(str(f), cursor, max_bytes=budget)
        seen.append(_totals(r)[0])
        cursor = r.cursor
    assert seen == [1, 2, 4] and cursor.offset == f.stat().st_size
    big = tmp_path / "big.jsonl"  # a single line over the budget is still consumed
    append(big, assistant_lines(usage(9, 9), text="z" * 5000))
    assert _totals(transcript.read_new(str(big), None, max_bytes=100))[0] == 9
