"""Queries of the receiver database. One ``Store`` (one connection) per process.

Every write is one explicit transaction, so a request either lands whole or not at
all. SQL is parameterised throughout; secrets arrive here already hashed.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

from ccflux.protocol import ReportBody

from . import schema, security

DAY = 86400
MAX_LIVE_ACCESS_TOKENS = 16  # per refresh token; older ones are dropped on exchange


@dataclass(frozen=True)
class Device:
    id: int
    revoked: bool


@dataclass(frozen=True)
class Credential:
    """Who a bearer token speaks for: the user and the refresh token it derives from;
    for a signed /report also that user's row for the signing key, if any."""

    user_id: int
    refresh_id: int
    device: Optional[Device] = None


class UserError(LookupError):
    """An admin command named a user that is not there (or already is)."""


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Store:
    def __init__(self, path: str) -> None:
        self.path = path
        self.conn = schema.connect(path)
        self.purge_expired(int(time.time()))

    def purge_expired(self, now: int) -> None:
        """Drop expired access tokens (also done on every /token exchange)."""
        with transaction(self.conn) as c:
            _purge(c, now)

    def close(self) -> None:
        self.conn.close()

    def ping(self) -> None:
        self.conn.execute("SELECT 1 FROM users LIMIT 1").fetchall()

    # --- bearer tokens -------------------------------------------------------

    def access_credential(self, digest: bytes, now: int,
                          public_key: Optional[bytes] = None) -> Optional[Credential]:
        """The live access token's credential; with ``public_key``, the token user's
        device row for it comes in the same query (the hot path makes one lookup)."""
        row = self.conn.execute(
            "SELECT a.token_hash, a.user_id, a.refresh_id, d.id, d.revoked_at FROM access_tokens a"
            " LEFT JOIN devices d ON d.user_id = a.user_id AND d.public_key = ?"
            " WHERE a.token_hash = ? AND a.expires_at > ?",
            (public_key, digest, now),
        ).fetchone()
        return _credential(row, digest)

    def refresh_credential(self, digest: bytes, now: int) -> Optional[Credential]:
        row = self.conn.execute(
            "SELECT r.token_hash, r.user_id, r.id FROM refresh_tokens r"
            " JOIN users u ON u.id = r.user_id"
            " WHERE r.token_hash = ? AND r.revoked_at IS NULL AND r.expires_at > ?"
            " AND u.revoked_at IS NULL",
            (digest, now),
        ).fetchone()
        return _credential(row, digest)

    def exchange(self, cred: Credential, now: int, access_secs: int, rolling_days: int) -> tuple[str, int]:
        """Mint an access token for ``cred``; roll the refresh expiry; purge old tokens."""
        token = security.new_token(security.ACCESS_PREFIX)
        expires_at = now + access_secs
        with transaction(self.conn) as c:
            _purge(c, now)
            c.execute(
                "UPDATE refresh_tokens SET expires_at = ? WHERE id = ?",
                (now + rolling_days * DAY, cred.refresh_id),
            )
            c.execute(
                "INSERT INTO access_tokens (token_hash, user_id, refresh_id, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (security.token_hash(token), cred.user_id, cred.refresh_id, now, expires_at),
            )
            c.execute(
                "DELETE FROM access_tokens WHERE refresh_id = ? AND token_hash NOT IN"
                " (SELECT token_hash FROM access_tokens WHERE refresh_id = ?"
                "  ORDER BY created_at DESC LIMIT ?)",
                (cred.refresh_id, cred.refresh_id, MAX_LIVE_ACCESS_TOKENS),
            )
        return token, expires_at

    def active_access_tokens(self, now: int) -> int:
        return self.conn.execute(
            "SELECT COUNT(*) FROM access_tokens WHERE expires_at > ?", (now,)
        ).fetchone()[0]

    # --- device keys ---------------------------------------------------------

    def register_key(self, user_id: int, public_key: bytes, device_id: str, now: int) -> bool:
        """Register ``public_key`` for ``user_id``; False if it already was (kept as is,
        so a revoked key stays revoked)."""
        with transaction(self.conn) as c:
            cur = c.execute(
                "INSERT INTO devices (user_id, public_key, device_id, registered_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, public_key) DO NOTHING",
                (user_id, public_key, device_id, now),
            )
        return cur.rowcount == 1

    # --- reports -------------------------------------------------------------

    def add_report(self, user_id: int, device: Optional[int], body: ReportBody, now: int) -> str:
        """Store one report in its own transaction; see ``add_reports``."""
        return self.add_reports([report_rows(user_id, device, body, now)])[0]

    def add_reports(self, reports: Sequence[list[tuple]]) -> list[str]:
        """Store reports (each a list of ``report_rows``) in ONE transaction.

        Each row is inserted if its key is new: first write wins. A failure rolls
        the whole transaction back, so no report is ever half stored. Per report:
        "stored", "duplicate" (all rows there already with the same numbers) or
        "conflict" (a row there already with other numbers, which are kept)."""
        inserted = []
        with transaction(self.conn) as c:
            for rows in reports:
                before = c.total_changes
                c.executemany(_INSERT_REPORT, rows)
                inserted.append(c.total_changes - before)
        return [
            "stored" if n == len(rows) else "duplicate" if self._same_numbers(rows) else "conflict"
            for n, rows in zip(inserted, reports)
        ]

    def _same_numbers(self, rows: list[tuple]) -> bool:
        for row in rows:
            stored = self.conn.execute(
                "SELECT input_tokens, output_tokens, cache_read_tokens, cache_write_tokens"
                " FROM reports WHERE user_id = ? AND session_id = ? AND turn_index = ?"
                " AND model = ?",
                row[:4],
            ).fetchone()
            if stored is None or tuple(stored) != row[4:8]:
                return False
        return True


_INSERT_REPORT = (
    "INSERT INTO reports (user_id, session_id, turn_index, model, input_tokens, output_tokens,"
    " cache_read_tokens, cache_write_tokens, device, timestamp_utc, turn_at, session_start_utc,"
    " plugin_version, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)


def report_rows(user_id: int, device: Optional[int], body: ReportBody, now: int) -> list[tuple]:
    """The ``reports`` rows of one report body: one per model."""
    turn_at = security.parse_timestamp(body.timestamp_utc)
    return [
        (user_id, body.session_id, body.turn_index, model, u.input_tokens, u.output_tokens,
         u.cache_read_tokens, u.cache_write_tokens, device, body.timestamp_utc,
         int(turn_at) if turn_at is not None else now, body.session_start_utc,
         body.plugin_version, now)
        for model, u in body.models.items()
    ]


def _purge(conn: sqlite3.Connection, now: int) -> None:
    conn.execute("DELETE FROM access_tokens WHERE expires_at <= ?", (now,))


def _credential(row: Optional[tuple], digest: bytes) -> Optional[Credential]:
    if row is None or not security.same_secret(row[0], digest):
        return None
    device = Device(row[3], row[4] is not None) if len(row) > 3 and row[3] is not None else None
    return Credential(user_id=row[1], refresh_id=row[2], device=device)
