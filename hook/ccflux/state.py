"""The state store: transcript cursors, counted responses, turn counters and the
outbox (the spool), in one SQLite file (``state.db``, WAL, 0600).

Why SQLite: a turn's commit — advance the cursors, remember which API
responses were counted, assign ``turn_index``, queue the report — is ONE
transaction, so a kill -9 at any instant leaves either all of it or none of
it. Concurrent hooks serialise on the database's write lock (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import namedtuple
from collections.abc import Iterable

from . import log, paths

DB_FILE = "state.db"
PENDING_MARKER = "outbox.pending"
SCHEMA_VERSION = 1
MAX_OUTBOX = 10_000  # reports; at the bound no new turn is read (see README: "Spool full")
COUNTED_KEEP_SECS = 60 * 86400  # Claude Code deletes transcripts after 30 days by default
PRUNE_EVERY_SECS = 86400
TURN_INDEX_STRIDE = 1_000  # after a state reset, new turn indices start at reset-time x this

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (
    path TEXT PRIMARY KEY, session_id TEXT NOT NULL,
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counted (
    key TEXT PRIMARY KEY, model TEXT NOT NULL,
    input INTEGER NOT NULL, output INTEGER NOT NULL,
    cache_read INTEGER NOT NULL, cache_write INTEGER NOT NULL,
    counted_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, next_turn INTEGER NOT NULL,
    start_utc TEXT, updated_at INTEGER NOT NULL);
-- Per session and model: usage reported ('own') and usage a fork copied from
-- its parent ('inherited'), to compare with Claude Code's cost-state totals.
CREATE TABLE IF NOT EXISTS session_usage (
    session_id TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL,
    input INTEGER NOT NULL, output INTEGER NOT NULL,
    cache_read INTEGER NOT NULL, cache_write INTEGER NOT NULL,
    PRIMARY KEY (session_id, model, kind));
-- Sessions whose main transcript was read from its first byte: only for them
-- is "reported" the whole transcript, so only they are reconciled.
CREATE TABLE IF NOT EXISTS tracked_sessions (session_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
    turn_index INTEGER NOT NULL, body BLOB NOT NULL, created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, turn_index INTEGER NOT NULL,
    body BLOB NOT NULL, status INTEGER NOT NULL, reason TEXT NOT NULL,
    created_at REAL NOT NULL, dead_at REAL NOT NULL);
"""


# Plain namedtuples, not typing.NamedTuple: typing (and the re it imports)
# would cost ~5 ms on every turn.
OutboxItem = namedtuple("OutboxItem", "id session_id turn_index body created_at attempts")
DeadLetter = namedtuple("DeadLetter", "id session_id turn_index body status reason dead_at")
Cursor = namedtuple("Cursor", "dev ino offset")  # where a transcript was last read up to
Usage = namedtuple("Usage", "model input output cache_read cache_write")  # one response's usage, or a delta


class StateCorrupt(Exception):
    """state.db could not be opened as a database."""


class StateStore:
    """A connection to state.db. Use ``with StateStore.open() as store``."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self.path = path

    # -- opening ---------------------------------------------------------

    @classmethod
    def open(cls, directory: str | None = None, busy_timeout: float = 30.0) -> "StateStore":
        """``busy_timeout``: how long a write waits for another process's transaction."""
        directory = paths.ensure_dir(directory or paths.state_dir())
        path = os.path.join(directory, DB_FILE)
        try:
            return cls(_connect(path, busy_timeout), path)
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            _set_aside(path, exc)
            store = cls(_connect(path, busy_timeout), path)
            store._after_reset()
            return store

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "StateStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> "_Transaction":
        """``with store.transaction():`` — BEGIN IMMEDIATE ... COMMIT (or ROLLBACK)."""
        return _Transaction(self._conn)

    # -- meta ------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._conn.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- cursors and counted responses (used inside a transaction) --------

    def cursor(self, path: str) -> Cursor | None:
        row = self._conn.execute("SELECT dev, ino, offset FROM cursors WHERE path = ?", (path,)).fetchone()
        return Cursor(*row) if row else None

    def session_cursors(self, session_id: str) -> dict[str, Cursor]:
        rows = self._conn.execute(
            "SELECT path, dev, ino, offset FROM cursors WHERE session_id = ?", (session_id,)
        )
        return {path: Cursor(dev, ino, off) for path, dev, ino, off in rows}

    def set_cursor(self, path: str, session_id: str, cursor: Cursor) -> None:
        self._conn.execute(
            "INSERT INTO cursors(path, session_id, dev, ino, offset) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET session_id = excluded.session_id, "
            "dev = excluded.dev, ino = excluded.ino, offset = excluded.offset",
            (path, session_id, cursor.dev, cursor.ino, cursor.offset),
        )

    def counted(self, keys: Iterable[str]) -> dict[str, Usage]:
        """What was already counted for these response keys (any session)."""
        found: dict[str, Usage] = {}
        batch = list(keys)
        for start in range(0, len(batch), 500):
            chunk = batch[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT key, model, input, output, cache_read, cache_write FROM counted WHERE key IN ({marks})",
                chunk,
            )
            for key, *usage in rows:
                found[key] = Usage(*usage)
        return found

    def set_counted(self, key: str, usage: Usage) -> None:
        self._conn.execute(
            "INSERT INTO counted(key, model, input, output, cache_read, cache_write, counted_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET model = excluded.model, "
            "input = excluded.input, output = excluded.output, cache_read = excluded.cache_read, "
            "cache_write = excluded.cache_write",
            (key, *usage, int(time.time())),
        )

    def prune_if_due(self, now: float) -> int | None:
        """Forget counted-response keys older than COUNTED_KEEP_SECS, once a day;
        the number forgotten, or None when it was not due.

        They are what stops a re-read from counting twice, and one is kept per API
        response, so without this state.db grows forever. Cursors stay (one small
        row per transcript file), so an old session that resumes is still read from
        where it was left, and its old lines are never read again."""
        last = float(self.get_meta("pruned_at") or 0)
        if now - last < PRUNE_EVERY_SECS:
            return None
        cur = self._conn.execute("DELETE FROM counted WHERE counted_at < ?", (int(now - COUNTED_KEEP_SECS),))
        self.set_meta("pruned_at", str(now))
        return cur.rowcount

    # -- per-session totals (cost-state reconciliation) --------------------

    def session_usage(self, session_id: str, kind: str) -> dict[str, Usage]:
        rows = self._conn.execute(
            "SELECT model, input, output, cache_read, cache_write FROM session_usage "
            "WHERE session_id = ? AND kind = ?",
            (session_id, kind),
        )
        return {row[0]: Usage(*row) for row in rows}

    def add_session_usage(self, session_id: str, kind: str, usage: Usage) -> None:
        self._conn.execute(
            "INSERT INTO session_usage(session_id, model, kind, input, output, cache_read, cache_write) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id, model, kind) DO UPDATE SET "
            "input = input + excluded.input, output = output + excluded.output, "
            "cache_read = cache_read + excluded.cache_read, cache_write = cache_write + excluded.cache_write",
            (session_id, usage.model, kind, usage.input, usage.output, usage.cache_read, usage.cache_write),
        )

    def is_tracked(self, session_id: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM tracked_sessions WHERE session_id = ?", (session_id,)).fetchone()
        return row is not None

    def set_tracked(self, session_id: str) -> None:
        self._conn.execute("INSERT OR IGNORE INTO tracked_sessions(session_id) VALUES (?)", (session_id,))

    # -- sessions and the outbox ------------------------------------------

    def session_start(self, session_id: str) -> str | None:
        row = self._conn.execute("SELECT start_utc FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        return row[0] if row else None

    def next_turn_index(self, session_id: str, start_utc: str | None) -> int:
        """Assign the session's next turn index (inside the commit transaction)."""
        row = self._conn.execute("SELECT next_turn FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        if row is None:
            turn = int(self.get_meta("turn_index_base") or 0)
            self._conn.execute(
                "INSERT INTO sessions(session_id, next_turn, start_utc, updated_at) VALUES (?, ?, ?, ?)",
                (session_id, turn + 1, start_utc, int(time.time())),
            )
            return turn
        turn = row[0]
        self._conn.execute(
            "UPDATE sessions SET next_turn = ?, updated_at = ?, start_utc = COALESCE(start_utc, ?) "
            "WHERE session_id = ?",
            (turn + 1, int(time.time()), start_utc, session_id),
        )
        return turn

    def enqueue(self, session_id: str, turn_index: int, body: bytes) -> int:
        cur = self._conn.execute(
            "INSERT INTO outbox(session_id, turn_index, body, created_at) VALUES (?, ?, ?, ?)",
            (session_id, turn_index, body, time.time()),
        )
        return int(cur.lastrowid)

    def outbox_pending(self, limit: int = 100) -> list[OutboxItem]:
        rows = self._conn.execute(
            "SELECT id, session_id, turn_index, body, created_at, attempts FROM outbox ORDER BY id LIMIT ?",
            (limit,),
        )
        return [OutboxItem(i, s, t, bytes(b), c, a) for i, s, t, b, c, a in rows]

    def outbox_count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def outbox_oldest_created_at(self) -> float | None:
        return self._conn.execute("SELECT MIN(created_at) FROM outbox").fetchone()[0]

    def remove_outbox(self, item_id: int) -> None:
        self._conn.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def note_attempt(self, item_id: int, error: str) -> None:
        self._conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?", (error[:500], item_id)
        )

    def move_to_dead(self, item_id: int, status: int, reason: str) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO dead_letters(id, session_id, turn_index, body, status, reason, created_at, dead_at) "
                "SELECT id, session_id, turn_index, body, ?, ?, created_at, ? FROM outbox WHERE id = ?",
                (status, reason[:500], time.time(), item_id),
            )
            self._conn.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._conn.execute(
            "SELECT id, session_id, turn_index, body, status, reason, dead_at FROM dead_letters ORDER BY id"
        )
        return [DeadLetter(i, s, t, bytes(b), st, r, d) for i, s, t, b, st, r, d in rows]

    # -- recovery ------------------------------------------------------------

    def _after_reset(self) -> None:
        """A fresh store replacing a corrupt one: never reuse old turn indices,
        and never re-read transcripts from the start (that would count twice)."""
        self.set_meta("turn_index_base", str(int(time.time()) * TURN_INDEX_STRIDE))
        self.set_meta("reset_at", str(time.time()))


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")


def schedule_next_attempt(epoch: float) -> None:
    """No automatic send before ``epoch`` (the marker's mtime); the outbox is non-empty."""
    try:
        path = os.path.join(paths.ensure_dir(paths.state_dir()), PENDING_MARKER)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, paths.FILE_MODE))
        os.utime(path, (epoch, epoch))
    except OSError as exc:
        log.error(f"state: cannot write {PENDING_MARKER}: {exc.strerror}")


def clear_pending_marker() -> None:
    try:
        os.unlink(paths.in_state(PENDING_MARKER))
    except FileNotFoundError:
        pass


def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    # Create the file 0600 ourselves so it is never, even briefly, wider (the
    # WAL and shm files inherit its mode).
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, paths.FILE_MODE))
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"state.db schema {version} is newer than this ccflux ({SCHEMA_VERSION})")
    except BaseException:
        conn.close()
        raise
    return conn


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "newer than this" in text


def _set_aside(path: str, exc: Exception) -> None:
    aside = f"{path}.corrupt-{int(time.time())}"
    for suffix in ("", "-wal", "-shm"):
        try:
            os.replace(path + suffix, aside + suffix)
        except FileNotFoundError:
            pass
    log.error(
        f"state: {os.path.basename(path)} is unreadable ({exc}); moved to {os.path.basename(aside)} "
        "and started afresh: usage not yet reported before this point may be missing, none is counted twice"
    )
