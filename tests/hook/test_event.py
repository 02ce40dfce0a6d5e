import json

import pytest

from ccflux import event


def _raw(**fields) -> bytes:
    base = {"hook_event_name": "Stop", "session_id": "abc-123", "transcript_path": "/t/abc-123.jsonl", "cwd": "/w"}
    base.update(fields)
    return json.dumps(base).encode()


def test_parses_a_stop_event():
    ev = event.parse(_raw(last_assistant_message="bye"))
    assert (ev.name, ev.session_id, ev.transcript_path, ev.last_assistant_message) == (
        "Stop", "abc-123", "/t/abc-123.jsonl", "bye")
    assert ev.handled


def test_leading_whitespace_and_unicode():
    ev = event.parse(b"  \n" + _raw(last_assistant_message="h\u00e9llo \u2603"))
    assert ev.last_assistant_message == "h\u00e9llo \u2603"


@pytest.mark.parametrize("raw, message", [
    (b"", "empty"),
    (b"   ", "empty"),
    (b"not json", "not JSON"),
    (b'{"a": NaN}', "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"hook_event_name": "Stop"} trailing', "trailing"),
    (b"\xff\xfe", "not UTF-8"),
    (b'{"hook_event_name": "Stop", "session_id": 5}', "session_id is not a string"),
    (b'{"hook_event_name": "Stop", "session_id": "x"}', "transcript_path missing"),
    (b'{' * 100000, "not JSON"),
])
def test_bad_input_raises_a_loggable_error(raw, message):
    with pytest.raises(event.EventError, match=message):
        event.parse(raw)


@pytest.mark.parametrize("sid", ["../../etc", "a/b", "a b", "", "x" * 65, "a\x00b"])
def test_hostile_session_ids_are_refused(sid):
    with pytest.raises(event.EventError):
        event.parse(_raw(session_id=sid))


@pytest.mark.parametrize("path", ["relative.jsonl", "/etc/passwd", "/t/x.json"])
def test_transcript_path_must_be_an_absolute_jsonl(path):
    with pytest.raises(event.EventError, match="transcript path"):
        event.parse(_raw(transcript_path=path))


def test_unhandled_events_are_ignored_whatever_they_hold():
    ev = event.parse(json.dumps({"hook_event_name": "PreToolUse", "session_id": 7, "x": [1]}).encode())
    assert not ev.handled


def test_oversized_input_is_refused():
    with pytest.raises(event.EventError, match="limit"):
        event.parse(b" " * (event.MAX_EVENT_BYTES + 1))
