"""SQLite connection set-up and versioned schema migrations (``PRAGMA user_version``)."""

from __future__ import annotations

import os
import sqlite3

# Each entry migrates from version i to i + 1. Never edit a released entry: append.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            created_at INTEGER NOT NULL,
            revoked_at INTEGER)""",
        # Tokens are stored only as SHA-256 digests of the secret.
        """CREATE TABLE refresh_tokens (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            token_hash BLOB NOT NULL UNIQUE,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            revoked_at INTEGER)""",
        """CREATE TABLE access_tokens (
            token_hash BLOB PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            refresh_id INTEGER NOT NULL REFERENCES refresh_tokens(id),
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL) WITHOUT ROWID""",
        "CREATE INDEX access_tokens_expiry ON access_tokens(expires_at)",
        "CREATE INDEX access_tokens_refresh ON access_tokens(refresh_id, created_at)",
        # A key is registered per user: user B registering A's public key gets a row of
        # its own (useless without A's private key) and can neither use nor block A's.
        """CREATE TABLE devices (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            public_key BLOB NOT NULL,
            device_id TEXT NOT NULL,
            registered_at INTEGER NOT NULL,
            revoked_at INTEGER,
            UNIQUE (user_id, public_key))""",
        "CREATE INDEX devices_public_key ON devices(public_key)",
        "CREATE INDEX devices_device_id ON devices(device_id)",
        # One row per (user, session_id, turn_index, model): the idempotency key of
        # PROTOCOL.md, scoped to the token's user so users cannot collide.
        """CREATE TABLE reports (
            user_id INTEGER NOT NULL REFERENCES users(id),
            session_id TEXT NOT NULL,
            turn_index INTEGER NOT NULL,
            model TEXT NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            device INTEGER REFERENCES devices(id),
            timestamp_utc TEXT NOT NULL,
            turn_at INTEGER NOT NULL,
            session_start_utc TEXT,
            plugin_version TEXT NOT NULL,
            received_at INTEGER NOT NULL,
            PRIMARY KEY (user_id, session_id, turn_index, model)) WITHOUT ROWID""",
        "CREATE INDEX reports_turn_at ON reports(turn_at)",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(RuntimeError):
    """The database was written by a newer receiver."""


def connect(path: str) -> sqlite3.Connection:
    """Open (creating 0600 if absent) and migrate the database at ``path``."""
    if path != ":memory:" and not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    # Autocommit mode: every write path opens its own explicit transaction.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # durable across app crashes in WAL
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_size_limit = 67108864")  # shrink a WAL that grew past 64 MB
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the pending migrations in one write transaction; return the new version."""
    conn.execute("BEGIN IMMEDIATE")  # re-read the version under the write lock
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"database schema v{version} is newer than this receiver (v{SCHEMA_VERSION})"
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION
