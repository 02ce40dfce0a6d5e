"""`ccflux hook`: one Claude Code hook event -> at most one committed report.

1. parse the event (stdlib only)                    unhandled / unconfigured -> done
2. cheap check: any transcript grown past the hint?  no -> maybe retry the spool, done
3. Stop/SubagentStop: wait (bounded) for the turn's final line
4. in one state.db transaction: read new bytes, count each response once, commit
   cursors + counted responses + turn_index + report in ONE transaction
5. hand the spool to a detached sender: the session never waits for the network

Nothing here writes to stdout, and every failure ends as one error-log line.
"""

from __future__ import annotations

import os
import sys
import time

from . import config, event, hints, log, paths

WAIT_FOR_FINAL_SECS = 1.5  # Stop precedes its last line by 7-60 ms (measured); this bounds the rare slow case
LOCK_TIMEOUT_SECS = 15.0
STDIN_TIMEOUT_SECS = 10.0
_WAITING_EVENTS = ("Stop", "SubagentStop")


def main() -> int:
    """Entry point of `ccflux hook`: always returns 0."""
    os.umask(0o077)
    try:
        run(_read_stdin())
    except event.EventError as exc:
        log.error(str(exc))
    except BaseException as exc:  # the hook must never disturb the session
        log.error(f"hook: unexpected {type(exc).__name__}: {log.redact(str(exc))[:300]}")
    return 0


def run(raw: bytes) -> None:
    ev = event.parse(raw)
    if not ev.handled:
        return
    if not config.might_be_configured():
        log.activity(f"{ev.name}: not configured, nothing recorded (run `ccflux configure`)")
        return
    files = paths.transcript_files(ev.transcript_path, ev.session_id)
    hint = hints.read(ev.session_id)
    if not hints.has_news(files, hint) and not _final_may_be_missing(ev, hint):
        _send_if_due()
        return
    final_seen = _wait_for_final(ev)
    cfg = config.load()
    if cfg is None:
        log.activity(f"{ev.name}: endpoint or token not set, nothing recorded (run `ccflux configure`)")
        return
    if cfg.ignores(ev.cwd):
        log.activity(f"{ev.name}: session in an ignored directory, not read")
        return
    from . import commit  # sqlite3 and the transcript reader: only when there is news

    offsets, queued = commit.commit_turn(ev, files, LOCK_TIMEOUT_SECS)
    if offsets is not None:
        crc = hints.text_crc(ev.last_assistant_message) if final_seen else hint.final_crc
        hints.write(ev.session_id, hints.Hint(offsets, crc))
    if queued or ev.name in ("SessionEnd", "SessionStart"):
        _send_now()
    else:
        _send_if_due()


def _final_may_be_missing(ev: event.Event, hint: hints.Hint) -> bool:
    """A Stop whose final message the last commit did not see: it may still be
    on its way to the transcript even though no size changed yet."""
    if ev.name not in _WAITING_EVENTS or not ev.last_assistant_message.strip():
        return False
    return hints.text_crc(ev.last_assistant_message) != hint.final_crc


def _wait_for_final(ev: event.Event) -> bool:
    """Poll until the event's final message is in its transcript (bounded)."""
    if ev.name not in _WAITING_EVENTS or not ev.last_assistant_message.strip():
        return False
    path = ev.agent_transcript_path if ev.name == "SubagentStop" and ev.agent_transcript_path else ev.transcript_path
    if not os.path.exists(path):
        return False  # e.g. auto-compaction's agents announce a transcript they never write
    from . import transcript

    deadline = time.monotonic() + WAIT_FOR_FINAL_SECS
    while True:
        if transcript.final_text_written(path, ev.last_assistant_message):
            return True
        if time.monotonic() >= deadline:
            log.activity(f"{ev.name}: final message not in the transcript after {WAIT_FOR_FINAL_SECS}s; a later run counts it")
            return False
        time.sleep(0.01)


def _send_if_due() -> None:
    """Retry the spool when it holds reports and no back-off is in force."""
    try:
        due = os.stat(paths.in_state("outbox.pending")).st_mtime <= time.time()
    except OSError:
        return
    if due:
        _send_now()


def _send_now() -> None:
    """Hand the spool to a sender (CCFLUX_SEND_MODE: detached | inline | none)."""
    mode = os.environ.get("CCFLUX_SEND_MODE", "detached").strip().lower()
    if mode == "none":
        return
    if mode == "inline":
        from . import sender

        sender.drain()
        return
    from . import detach  # the sender's heavy imports happen in the detached child only

    detach.spawn_sender()


def _read_stdin() -> bytes:
    """All of stdin, bounded in size and time (a hook must never hang)."""
    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    if fd < 0:
        return b""
    if os.name == "nt":  # select() takes no pipes there; Claude Code closes stdin anyway
        raw = sys.stdin.buffer.read(event.MAX_EVENT_BYTES + 1)
        if len(raw) > event.MAX_EVENT_BYTES:
            raise event.EventError(f"hook input: over the {event.MAX_EVENT_BYTES} byte limit")
        return raw
    import select

    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + STDIN_TIMEOUT_SECS
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise event.EventError("hook input: stdin not closed within the time limit")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > event.MAX_EVENT_BYTES:
            raise event.EventError(f"hook input: over the {event.MAX_EVENT_BYTES} byte limit")
        chunks.append(chunk)
