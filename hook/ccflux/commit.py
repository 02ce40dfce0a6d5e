"""Step 4 of a hook run: read what is new and commit it as one report, atomically.

Under ``state.lock`` and inside ONE SQLite transaction: advance every
transcript cursor, record each API response's counted usage (globally, so a
resumed or forked session that copies old lines counts nothing twice),
assign the session's next ``turn_index`` and queue the report. A kill -9
before COMMIT leaves everything as it was; after it, everything is in place.
"""

from __future__ import annotations

import os
import time
from typing import Optional

from . import log, paths, report, state, transcript
from .event import Event
from .state import MAX_OUTBOX, Cursor, StateStore, Usage

LOCK_FILE = "state.lock"


class Turn:
    """What one commit found: usage deltas per model, and the newest timestamp."""

    __slots__ = ("models", "last_timestamp")

    def __init__(self) -> None:
        self.models: dict[str, Usage] = {}
        self.last_timestamp = ""

    def add(self, model: str, delta: Usage, timestamp: str) -> None:
        old = self.models.get(model) or Usage(model, 0, 0, 0, 0)
        self.models[model] = Usage(
            model,
            old.input + delta.input,
            old.output + delta.output,
            old.cache_read + delta.cache_read,
            old.cache_write + delta.cache_write,
        )
        self.last_timestamp = max(self.last_timestamp, timestamp)


def commit_turn(ev: Event, files: list[str], lock_timeout: float) -> tuple[Optional[dict[str, int]], int]:
    """Commit the session's news. Returns (consumed offsets per file, reports queued);
    offsets is None when nothing could be committed (the hint stays as it was)."""
    from filelock import FileLock, Timeout

    directory = paths.ensure_dir(paths.state_dir())
    lock = FileLock(os.path.join(directory, LOCK_FILE), timeout=lock_timeout, mode=paths.FILE_MODE)
    try:
        with lock, StateStore.open(directory) as store:
            offsets, queued = _commit_locked(store, ev, files)
    except Timeout:
        log.error(f"{ev.name}: state lock busy for {lock_timeout}s; the turn stays in the transcript for the next run")
        return None, 0
    if queued and not os.path.exists(os.path.join(directory, state.PENDING_MARKER)):
        # Say "reports pending" at once: if this process dies before the sender
        # starts, the next run's no-news path still sends them.
        state.schedule_next_attempt(time.time())
    return offsets, queued


def _commit_locked(store: StateStore, ev: Event, files: list[str]) -> tuple[Optional[dict[str, int]], int]:
    with store.transaction():
        if store.outbox_count() >= MAX_OUTBOX:
            log.error(
                f"{ev.name}: spool full ({MAX_OUTBOX} reports waiting); transcripts are not read until it "
                "drains, so nothing is lost while they exist (check `ccflux status`)"
            )
            return None, 0
        cursors, responses, first_ts = _read_files(store, ev, files)
        turn = _count_once(store, responses)
        for path, cursor in cursors.items():
            store.set_cursor(path, ev.session_id, cursor)
        queued = _queue_reports(store, ev, turn, first_ts)
    if queued:
        log.activity(f"{ev.name}: session {ev.session_id}: {queued} report(s) queued, models {sorted(turn.models)}")
    return {path: c.offset for path, c in cursors.items()}, queued


def _read_files(
    store: StateStore, ev: Event, files: list[str]
) -> tuple[dict[str, Cursor], dict[str, transcript.Response], Optional[str]]:
    cursors: dict[str, Cursor] = {}
    responses: dict[str, transcript.Response] = {}
    first_ts: Optional[str] = None
    reset_at = store.get_meta("reset_at")
    for path in files:
        cursor = store.cursor(path)
        if cursor is None and reset_at is not None:
            cursor = _cursor_after_reset(path, float(reset_at))
        result = transcript.read_new(path, cursor, ev.session_id)
        if result is None:
            continue
        if result.restarted:
            log.activity(f"{ev.name}: {os.path.basename(path)} shrank or was replaced; read again from the start")
        if result.bad_lines:
            log.error(f"{ev.name}: {result.bad_lines} unreadable line(s) in {os.path.basename(path)} skipped")
        if path == ev.transcript_path:
            first_ts = result.first_timestamp
        transcript.merge(responses, result.responses)
        cursors[path] = result.cursor
    return cursors, responses, first_ts


def _count_once(store: StateStore, responses: dict[str, transcript.Response]) -> Turn:
    """Usage not yet counted anywhere: new responses whole, known ones only by
    how much a later copy exceeds what was counted (the largest count wins)."""
    turn = Turn()
    known = store.counted(responses.keys())
    for key, response in responses.items():
        new = response.usage
        old = known.get(key)
        if old is None:
            store.set_counted(key, new)
            turn.add(new.model, new, response.timestamp)
            continue
        top = Usage(old.model, max(old.input, new.input), max(old.output, new.output),
                    max(old.cache_read, new.cache_read), max(old.cache_write, new.cache_write))
        if top != old:
            store.set_counted(key, top)
            delta = Usage(old.model, top.input - old.input, top.output - old.output,
                          top.cache_read - old.cache_read, top.cache_write - old.cache_write)
            turn.add(old.model, delta, response.timestamp)
    return turn


def _queue_reports(store: StateStore, ev: Event, turn: Turn, first_ts: Optional[str]) -> int:
    if not turn.models:
        return 0
    start = store.session_start(ev.session_id) or first_ts
    email = report.user_email(store)
    queued = 0
    for models in report.split_models(turn.models):
        index = store.next_turn_index(ev.session_id, start)
        body = report.body(ev.session_id, index, email, turn.last_timestamp, start, models)
        store.enqueue(ev.session_id, index, body)
        queued += 1
    return queued


def _cursor_after_reset(path: str, reset_at: float) -> Optional[Cursor]:
    """After state.db was set aside, a transcript that began before the reset is
    skipped to its end: re-reading it could count its usage twice."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            head = fh.read(64 << 10)
    except OSError:
        return None
    began = transcript.first_timestamp(head) or ""
    if not began or began[:19] < time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(reset_at)):
        return Cursor(st.st_dev, st.st_ino, st.st_size)
    return None
