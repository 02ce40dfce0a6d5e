"""Incremental transcript reading: only the bytes past a cursor, whole lines only.

Claude Code writes one JSONL line per content block; every line of one API
response repeats the response's full usage. So a response is identified by
``message.id`` + ``requestId`` and counted once, whatever the number of its
lines; when copies disagree the largest count wins (PROTOCOL/CLAUDE_CODE.md).

Memory stays bounded: the file is read in chunks, a line longer than
``MAX_LINE`` is never held whole (its usage is recovered from its tail), and
a partial last line is left for the next run.
"""

from __future__ import annotations

import os
import stat
from collections import namedtuple
from collections.abc import Iterator

from . import jsonfast

from .state import Cursor, Usage

CHUNK = 1 << 20
MAX_LINE = 4 << 20  # lines longer than this are scanned, not parsed whole
MAX_READ_PER_RUN = 64 << 20  # a first read of a huge file is spread over several runs
_EDGE = 256 << 10  # head/tail kept of an oversized line
_USAGE_MARK = b'"usage"'
_COST_STATE_MARK = b'"cost-state"'


Response = namedtuple("Response", "key usage timestamp")  # one API response: its key, Usage, time

# What one read found. first_timestamp: of the file's first line when read from
# offset 0; restarted: the file shrank or was replaced and was read from the
# start; inherited: lines a fork copied from its parent (not this session's);
# cost_state: Claude Code's own cumulative per-model totals, last seen.
ReadResult = namedtuple(
    "ReadResult", "cursor responses first_timestamp bad_lines restarted inherited cost_state"
)


def read_new(path: str, cursor: Cursor | None, session_id: str = "",
             max_bytes: int = MAX_READ_PER_RUN) -> ReadResult | None:
    """Read the complete lines past ``cursor``; None when the file is gone.

    Lines copied from another session (``--fork-session`` copies the parent's
    history, marking each copy with ``requestSessionId``) belong to that
    session and are not counted here."""
    fd = open_regular(path)
    if fd is None:
        return None
    with os.fdopen(fd, "rb", buffering=0) as fh:
        st = os.fstat(fd)
        start = 0
        restarted = False
        if cursor is not None:
            same_file = (cursor.dev, cursor.ino) == (st.st_dev, st.st_ino)
            if same_file and cursor.offset <= st.st_size:
                start = cursor.offset
            else:
                restarted = True
        fh.seek(start)
        responses: dict[str, Response] = {}
        inherited: dict[str, Response] = {}
        cost_state: dict[str, Usage] | None = None
        first_ts: str | None = None
        bad = 0
        end = start
        for line_end, line in _lines(fh, start):
            if line_end - start > max_bytes and end > start:
                break  # bounded work per run (after at least one line): the rest is read next time
            end = line_end
            if first_ts is None and start == 0:
                first_ts = first_timestamp(line)
            try:
                if _USAGE_MARK in line:
                    found = _response(line, session_id)
                    if found is not None:
                        _keep_largest(inherited if found[1] else responses, found[0])
                elif _COST_STATE_MARK in line:
                    cost_state = _cost_state(line, session_id) or cost_state
            except (ValueError, RecursionError):  # never fatal: the cursor moves past it
                bad += 1
        return ReadResult(Cursor(st.st_dev, st.st_ino, end), responses, first_ts, bad, restarted,
                          inherited, cost_state)


def open_regular(path: str) -> int | None:
    """A read-only fd on ``path`` when it is a regular file, else None. Paths come
    from hook input: a FIFO must not block the hook, nor a device feed it forever."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return fd
    os.close(fd)
    return None


def merge(into: dict[str, Response], more: dict[str, Response]) -> None:
    for response in more.values():
        _keep_largest(into, response)


def _keep_largest(responses: dict[str, Response], new: Response) -> None:
    old = responses.get(new.key)
    if old is None:
        responses[new.key] = new
        return
    a, b = old.usage, new.usage
    usage = Usage(
        a.model,
        max(a.input, b.input),
        max(a.output, b.output),
        max(a.cache_read, b.cache_read),
        max(a.cache_write, b.cache_write),
    )
    responses[new.key] = Response(new.key, usage, max(old.timestamp, new.timestamp))


def _lines(fh, start: int) -> Iterator[tuple[int, bytes]]:
    """(offset after the line, line) for each complete line; a line longer than
    MAX_LINE comes back as head + tail only (enough to find its usage)."""
    pos = start
    buf = b""
    oversized_head: bytes | None = None
    while True:
        chunk = fh.read(CHUNK)
        if not chunk:
            return
        buf += chunk
        cut = 0
        while True:
            nl = buf.find(b"\n", cut)
            if nl == -1:
                break
            line = buf[cut:nl]
            if oversized_head is not None:
                line = oversized_head + b"\n" + line[-_EDGE:]
                oversized_head = None
            pos += nl + 1 - cut
            cut = nl + 1
            yield pos, line
        buf = buf[cut:]
        if len(buf) > MAX_LINE:
            # Keep the head once, then only a rolling tail: memory stays flat.
            if oversized_head is None:
                oversized_head = buf[:_EDGE]
            pos += len(buf) - _EDGE
            buf = buf[-_EDGE:]


def _response(line: bytes, session_id: str) -> tuple[Response, bool] | None:
    """(usage, copied from another session) of an assistant line; None for other lines."""
    if b"\n" in line:  # an oversized line (head + tail): recover the usage from its tail
        return _oversized_response(line, session_id)
    data = jsonfast.loads(line)
    if not isinstance(data, dict) or data.get("type") != "assistant":
        return None
    message = data.get("message")
    if not isinstance(message, dict):
        return None
    found = _from_message(data, message, message.get("usage"))
    return (found, _copied_from_elsewhere(data.get("requestSessionId"), session_id)) if found else None


def _cost_state(line: bytes, session_id: str) -> dict[str, Usage] | None:
    """Claude Code's cumulative per-model totals for the session (``cost-state``,
    written when a process ends). They include API calls no transcript shows,
    such as auto-compaction's."""
    if b"\n" in line:
        return None
    data = jsonfast.loads(line)
    if not isinstance(data, dict) or data.get("type") != "cost-state":
        return None
    if session_id and data.get("sessionId") not in (None, session_id):
        return None
    models = data.get("modelUsage")
    if not isinstance(models, dict):
        return None
    out: dict[str, Usage] = {}
    for name, u in models.items():
        if isinstance(name, str) and name and isinstance(u, dict):
            out[name[:128]] = Usage(name[:128], _count(u.get("inputTokens")), _count(u.get("outputTokens")),
                                    _count(u.get("cacheReadInputTokens")), _count(u.get("cacheCreationInputTokens")))
    return out


def _from_message(data: dict, message: dict, usage: object) -> Response | None:
    if not isinstance(usage, dict):
        return None
    counts = Usage(
        _model(message.get("model")),
        _count(usage.get("input_tokens")),
        _count(usage.get("output_tokens")),
        _count(usage.get("cache_read_input_tokens")),
        _count(usage.get("cache_creation_input_tokens")),
    )
    if not (counts.input or counts.output or counts.cache_read or counts.cache_write):
        return None  # synthetic/empty messages carry no usage worth a row
    msg_id = message.get("id")
    request_id = data.get("requestId")
    if isinstance(msg_id, str) and msg_id:
        key = f"{msg_id}|{request_id}" if isinstance(request_id, str) and request_id else msg_id
    elif isinstance(data.get("uuid"), str):
        key = "line|" + data["uuid"]
    else:
        raise ValueError("assistant line without message id or uuid")
    timestamp = data.get("timestamp")
    return Response(key[:300], counts, timestamp[:64] if isinstance(timestamp, str) else "")


def _copied_from_elsewhere(origin: object, session_id: str) -> bool:
    return bool(session_id) and isinstance(origin, str) and bool(origin) and origin != session_id


def _oversized_response(line: bytes, session_id: str) -> tuple[Response, bool] | None:
    """Usage from the tail of a line too long to parse: the message's ``usage``
    object and the line's own fields come after its (huge) content."""
    head, _, tail = line.partition(b"\n")
    edges = head + b"\n" + tail
    if b'"type":"assistant"' not in edges and b'"type": "assistant"' not in edges:
        return None
    at = tail.rfind(b'"usage":')
    if at == -1:
        return None
    text = tail[at + len(b'"usage":') :].decode("utf-8", "replace")
    usage, _ = jsonfast.raw_decode(text)

    def field(name: str) -> str | None:
        return _field(head, name) or _field(tail, name)

    data = {"requestId": field("requestId"), "uuid": field("uuid"), "timestamp": field("timestamp")}
    message = {"id": field("id"), "model": field("model")}
    found = _from_message(data, message, usage)
    return (found, _copied_from_elsewhere(field("requestSessionId"), session_id)) if found else None


def _field(blob: bytes, name: str) -> str | None:
    """The first string value of ``"name":`` in raw JSON bytes (no full parse)."""
    mark = f'"{name}":'.encode()
    at = blob.find(mark)
    while at != -1:
        start = at + len(mark)
        while start < len(blob) and blob[start] in b" \t":
            start += 1
        if blob[start : start + 1] == b'"':
            end = blob.find(b'"', start + 1)
            return blob[start + 1 : end].decode("utf-8", "replace") if end != -1 else None
        at = blob.find(mark, start)
    return None


def first_timestamp(line: bytes) -> str | None:
    value = _field(line[:_EDGE], "timestamp")
    return value[:64] if value else None


def _model(value: object) -> str:
    return value[:128] if isinstance(value, str) and value else "unknown"


def _count(value: object) -> int:
    if type(value) is int and value >= 0:
        return value
    return 0


FINAL_WINDOW = MAX_LINE  # how much of a transcript's tail the Stop wait looks at


def final_text_written(path: str, expected: str) -> bool:
    """True once the turn's final response is in the transcript.

    Claude Code can fire Stop 7-60 ms before it writes the turn's last line;
    the event's ``last_assistant_message`` is that line's text (the message's
    last text block, stripped). The line belongs to this turn only if no user
    line (the prompt, or a tool result) follows it: a previous turn's final
    message with the same words ("Done.") sits before this turn's prompt.
    Only the tail is read: bounded cost per poll.
    """
    want = expected.strip()
    fd = open_regular(path)
    if fd is None:
        return False
    with os.fdopen(fd, "rb", buffering=0) as fh:
        size = os.fstat(fd).st_size
        start = max(0, size - FINAL_WINDOW)
        fh.seek(start)
        blob = fh.read(size - start)
    lines = blob.split(b"\n")[:-1]  # complete lines only
    if start > 0 and lines:
        lines = lines[1:]  # the first piece may be the end of a longer line
    for line in reversed(lines):  # newest first
        kind, data = _typed(line)
        if kind == "user":
            return False  # this turn's final response is not written yet
        if kind == "assistant":
            for text in _texts(data):
                got = text.strip()
                if got and (got == want or (len(got) >= 16 and want.endswith(got))):
                    return True
    return False


def _typed(line: bytes) -> tuple[str, object]:
    """("user" | "assistant", parsed line) for those lines, else ("", None).
    A cheap byte test first: most lines are neither."""
    if b'"type":"user"' not in line and b'"type":"assistant"' not in line:
        return "", None
    try:
        data = jsonfast.loads(line)
    except (ValueError, RecursionError):
        return "", None
    kind = data.get("type") if isinstance(data, dict) else None
    return (kind, data) if kind in ("user", "assistant") else ("", None)


def _texts(data: object) -> list[str]:
    if not isinstance(data, dict) or data.get("type") != "assistant":
        return []
    message = data.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)]
