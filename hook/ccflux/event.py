"""Hook stdin -> a small typed event, on the hot path.

``json`` drags in ``re`` and costs more than the whole no-news budget, so the
event is decoded with ``jsonfast`` (the C scanner that ``json`` itself uses).
Hostile input (huge, not JSON, wrong types, odd ids) raises ``EventError``
with a message fit for the error log; nothing here touches the filesystem.
"""

from __future__ import annotations

from . import jsonfast

MAX_EVENT_BYTES = 32 << 20  # last_assistant_message can be long; past this the event is refused
HANDLED = frozenset({"Stop", "SubagentStop", "StopFailure", "SessionStart", "SessionEnd"})
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class EventError(ValueError):
    """The hook input cannot be used; the message is safe to log."""


class Event:
    __slots__ = (
        "name", "session_id", "transcript_path", "cwd", "last_assistant_message",
        "agent_id", "agent_transcript_path",
    )

    def __init__(self, data: dict) -> None:
        self.name = _text(data, "hook_event_name", 64)
        if self.name not in HANDLED:  # ignored events: nothing else is read from them
            data = {}
        self.session_id = _text(data, "session_id", 64)
        self.transcript_path = _text(data, "transcript_path", 4096)
        self.cwd = _text(data, "cwd", 4096)
        self.last_assistant_message = _text(data, "last_assistant_message", MAX_EVENT_BYTES)
        self.agent_id = _text(data, "agent_id", 256)
        self.agent_transcript_path = _text(data, "agent_transcript_path", 4096)

    @property
    def handled(self) -> bool:
        return self.name in HANDLED


def parse(raw: bytes) -> Event:
    """Decode one hook event; validate what later steps rely on."""
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError(f"hook input: {len(raw)} bytes, over the {MAX_EVENT_BYTES} byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EventError("hook input: not UTF-8") from None
    try:
        data, end = jsonfast.raw_decode(text)
    except ValueError as exc:
        reason = str(exc)
        raise EventError("hook input: empty" if reason == "empty" else f"hook input: not JSON ({reason[:100]})") from None
    except RecursionError:
        raise EventError("hook input: not JSON (nested too deeply)") from None
    if text[end:].strip():
        raise EventError("hook input: trailing data after the JSON object")
    if not isinstance(data, dict):
        raise EventError("hook input: not a JSON object")
    event = Event(data)
    if event.handled:
        _validate(event)
    return event


def _validate(event: Event) -> None:
    sid = event.session_id
    if not sid or not set(sid) <= _ID_CHARS:
        raise EventError("hook input: session_id missing or not an id (letters, digits, - and _)")
    for path in (event.transcript_path, event.agent_transcript_path):
        if path and (not path.endswith(".jsonl") or not path.startswith("/") and ":" not in path[:3]):
            raise EventError("hook input: transcript path is not an absolute .jsonl path")
    if not event.transcript_path:
        raise EventError("hook input: transcript_path missing")


def _text(data: dict, key: str, limit: int) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EventError(f"hook input: {key} is not a string")
    if len(value) > limit:
        raise EventError(f"hook input: {key} longer than {limit} characters")
    return value
