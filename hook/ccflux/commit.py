"""Step 4 of a hook run: read what is new and commit it as one report, atomically.

Inside ONE SQLite transaction (BEGIN IMMEDIATE: hooks serialise on it): advance every
transcript cursor, record each API response's counted usage (globally, so a
resumed or forked session that copies old lines counts nothing twice),
assign the session's next ``turn_index`` and queue the report. A kill -9
before COMMIT leaves everything as it was; after it, everything is in place.
"""

from __future__ import annotations

import os
import sqlite3
import time

from . import hints, log, paths, report, state, transcript
from .event import Event
from .state import COUNTED_KEEP_SECS, MAX_OUTBOX, Cursor, StateStore, Usage


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


def commit_turn(ev: Event, files: list[str], lock_timeout: float) -> tuple[dict[str, int] | None, int]:
    """Commit the session's news. Returns (consumed offsets per file, reports queued);
    offsets is None when nothing could be committed (the hint stays as it was).

    Concurrent hooks serialise on state.db's own write lock: the transaction
    starts with BEGIN IMMEDIATE *before* any transcript is read, so two hooks
    can never read the same bytes. (A separate filelock would add nothing but
    its import, ~80 ms on every turn.)"""
    directory = paths.ensure_dir(paths.state_dir())
    try:
        with StateStore.open(directory, busy_timeout=lock_timeout) as store:
            offsets, queued = _commit_locked(store, ev, files)
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
        log.error(f"{ev.name}: state busy for {lock_timeout}s; the turn stays in the transcript for the next run")
        return None, 0
    if queued and not os.path.exists(os.path.join(directory, state.PENDING_MARKER)):
        # Say "reports pending" at once: if this process dies before the sender
        # starts, the next run's no-news path still sends them.
        state.schedule_next_attempt(time.time())
    return offsets, queued


def _commit_locked(store: StateStore, ev: Event, files: list[str]) -> tuple[dict[str, int] | None, int]:
    with store.transaction():
        if store.outbox_count() >= MAX_OUTBOX:
            log.error(
                f"{ev.name}: spool full ({MAX_OUTBOX} reports waiting); transcripts are not read until it "
                "drains, so nothing is lost while they exist (check `ccflux status`)"
            )
            return None, 0
        found = _read_files(store, ev, files)
        turn = _count_once(store, found.responses)
        _record_totals(store, ev.session_id, "own", turn.models)
        copied = _count_once(store, found.inherited, prefix=f"inherited|{ev.session_id}|")
        _record_totals(store, ev.session_id, "inherited", copied.models)
        if found.main_from_start:
            store.set_tracked(ev.session_id)
        if found.cost_state:
            _reconcile(store, ev, turn, found.cost_state)
        for path, cursor in found.cursors.items():
            store.set_cursor(path, ev.session_id, cursor)
        queued = _queue_reports(store, ev, turn, found.first_timestamp)
        if store.prune_if_due(time.time()) is not None:
            hints.prune(time.time() - COUNTED_KEEP_SECS)
    if queued:
        log.activity(f"{ev.name}: session {ev.session_id}: {queued} report(s) queued, models {sorted(turn.models)}")
    return {path: c.offset for path, c in found.cursors.items()}, queued


class _Found:
    """What the session's transcripts hold past their cursors."""

    __slots__ = ("cursors", "responses", "inherited", "first_timestamp", "cost_state", "main_from_start")

    def __init__(self) -> None:
        self.cursors: dict[str, Cursor] = {}
        self.responses: dict[str, transcript.Response] = {}
        self.inherited: dict[str, transcript.Response] = {}
        self.first_timestamp: str | None = None
        self.cost_state: dict[str, Usage] | None = None
        self.main_from_start = False


def _read_files(store: StateStore, ev: Event, files: list[str]) -> _Found:
    found = _Found()
    reset_at = store.get_meta("reset_at")
    for path in files:
        cursor = store.cursor(path)
        fresh = cursor is None
        if fresh and reset_at is not None:
            cursor = _cursor_after_reset(path, float(reset_at))
        result = transcript.read_new(path, cursor, ev.session_id)
        if result is None:
            continue
        if result.restarted:
            log.activity(f"{ev.name}: {os.path.basename(path)} shrank or was replaced; read again from the start")
        if result.bad_lines:
            log.error(f"{ev.name}: {result.bad_lines} unreadable line(s) in {os.path.basename(path)} skipped")
        if path == ev.transcript_path:
            found.first_timestamp = result.first_timestamp
            found.cost_state = result.cost_state
            found.main_from_start = fresh and cursor is None
        transcript.merge(found.responses, result.responses)
        transcript.merge(found.inherited, result.inherited)
        found.cursors[path] = result.cursor
    return found


def _count_once(store: StateStore, responses: dict[str, transcript.Response], prefix: str = "") -> Turn:
    """Usage not yet counted anywhere: new responses whole, known ones only by
    how much a later copy exceeds what was counted (the largest count wins)."""
    turn = Turn()
    known = store.counted(prefix + key for key in responses)
    for key, response in responses.items():
        new = response.usage
        old = known.get(prefix + key)
        if old is None:
            store.set_counted(prefix + key, new)
            turn.add(new.model, new, response.timestamp)
            continue
        top = _field_max(old, new)
        if top != old:
            store.set_counted(prefix + key, top)
            turn.add(old.model, _minus(top, old), response.timestamp)
    return turn


def _reconcile(store: StateStore, ev: Event, turn: Turn, cost_state: dict[str, Usage]) -> None:
    """Add what Claude Code's own cumulative totals (cost-state) hold beyond what
    this session's transcripts showed: API calls written to no transcript, such
    as auto-compaction's. Only for sessions read from their first byte and not
    forked (a fork's totals include its parent's), and per field never past
    cost-state, so a session's reported total never exceeds Claude Code's own."""
    if not store.is_tracked(ev.session_id) or store.session_usage(ev.session_id, "inherited"):
        return
    own = store.session_usage(ev.session_id, "own")
    for model, claimed in cost_state.items():
        have = own.get(model) or Usage(model, 0, 0, 0, 0)
        top = _field_max(have, claimed)
        if top != have:
            gap = _minus(top, have)
            turn.add(model, gap, turn.last_timestamp)
            store.add_session_usage(ev.session_id, "own", gap)
            log.activity(f"{ev.name}: {model}: usage in no transcript (e.g. auto-compaction) taken from "
                         f"Claude Code's cost-state: input {gap.input}, output {gap.output}, "
                         f"cache read {gap.cache_read}, cache write {gap.cache_write}")


def _record_totals(store: StateStore, session_id: str, kind: str, models: dict[str, Usage]) -> None:
    for usage in models.values():
        store.add_session_usage(session_id, kind, usage)


def _field_max(a: Usage, b: Usage) -> Usage:
    return Usage(a.model, max(a.input, b.input), max(a.output, b.output),
                 max(a.cache_read, b.cache_read), max(a.cache_write, b.cache_write))


def _minus(a: Usage, b: Usage) -> Usage:
    return Usage(a.model, a.input - b.input, a.output - b.output,
                 a.cache_read - b.cache_read, a.cache_write - b.cache_write)


def _queue_reports(store: StateStore, ev: Event, turn: Turn, first_ts: str | None) -> int:
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


def _cursor_after_reset(path: str, reset_at: float) -> Cursor | None:
    """After state.db was set aside, a transcript that began before the reset is
    skipped to its end: re-reading it could count its usage twice."""
    fd = transcript.open_regular(path)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        head = fh.read(64 << 10)
    began = transcript.first_timestamp(head) or ""
    if not began or began[:19] < time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(reset_at)):
        return Cursor(st.st_dev, st.st_ino, st.st_size)
    return None
