"""Admin-side account queries: users, their refresh tokens and device keys."""

from __future__ import annotations

import base64
import re
import sqlite3
from typing import Optional

from . import security
from .store import DAY, UserError, transaction

_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")


def valid_email(email: str) -> bool:
    return len(email) <= 320 and _EMAIL.fullmatch(email) is not None


def add_user(conn: sqlite3.Connection, email: str, now: int, rolling_days: int) -> str:
    """Create ``email`` and return its refresh token (the only time it is visible)."""
    if not valid_email(email):
        raise UserError(f"not an email address: {email!r}")
    with transaction(conn) as c:
        try:
            cur = c.execute("INSERT INTO users (email, created_at) VALUES (?, ?)", (email, now))
        except sqlite3.IntegrityError:
            raise UserError(f"user {email} exists (use `users reissue`)") from None
        return _issue(c, cur.lastrowid, now, rolling_days)


def reissue(conn: sqlite3.Connection, email: str, now: int, rolling_days: int) -> str:
    """Revoke the user's tokens, re-enable the user, return a new refresh token."""
    with transaction(conn) as c:
        user_id = _user_id(c, email)
        _revoke_tokens(c, user_id, now)
        c.execute("UPDATE users SET revoked_at = NULL WHERE id = ?", (user_id,))
        return _issue(c, user_id, now, rolling_days)


def revoke_user(conn: sqlite3.Connection, email: str, now: int) -> None:
    with transaction(conn) as c:
        user_id = _user_id(c, email)
        _revoke_tokens(c, user_id, now)
        c.execute("UPDATE users SET revoked_at = ? WHERE id = ?", (now, user_id))


def list_users(conn: sqlite3.Connection) -> list[dict]:
    rows = conn.execute(
        "SELECT u.email, u.created_at, u.revoked_at,"
        " (SELECT MAX(expires_at) FROM refresh_tokens r"
        "   WHERE r.user_id = u.id AND r.revoked_at IS NULL),"
        " (SELECT COUNT(*) FROM devices d WHERE d.user_id = u.id AND d.revoked_at IS NULL)"
        " FROM users u ORDER BY u.email"
    ).fetchall()
    keys = ("email", "created_at", "revoked_at", "refresh_expires_at", "devices")
    return [dict(zip(keys, row)) for row in rows]


def list_devices(conn: sqlite3.Connection) -> list[dict]:
    rows = conn.execute(
        "SELECT u.email, d.device_id, d.public_key, d.registered_at, d.revoked_at,"
        " (SELECT MAX(received_at) FROM reports r WHERE r.device = d.id)"
        " FROM devices d JOIN users u ON u.id = d.user_id ORDER BY u.email, d.registered_at"
    ).fetchall()
    return [
        {"user": email, "device_id": device_id,
         "public_key": base64.b64encode(key).decode("ascii"),
         "registered_at": registered, "revoked_at": revoked, "last_report_at": last}
        for email, device_id, key, registered, revoked, last in rows
    ]


def revoke_device(conn: sqlite3.Connection, key_or_device_id: str, now: int) -> int:
    """Revoke every key equal to the public key, or registered under the device id."""
    key: Optional[bytes] = security.decode_public_key(key_or_device_id)
    with transaction(conn) as c:
        cur = c.execute(
            "UPDATE devices SET revoked_at = ? WHERE revoked_at IS NULL"
            " AND (public_key = ? OR device_id = ?)",
            (now, key, key_or_device_id),
        )
    return cur.rowcount


def _user_id(conn: sqlite3.Connection, email: str) -> int:
    row = conn.execute("SELECT id FROM users WHERE email = ?", (email,)).fetchone()
    if row is None:
        raise UserError(f"no such user: {email}")
    return row[0]


def _revoke_tokens(conn: sqlite3.Connection, user_id: int, now: int) -> None:
    conn.execute("DELETE FROM access_tokens WHERE user_id = ?", (user_id,))
    conn.execute(
        "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
        (now, user_id),
    )


def _issue(conn: sqlite3.Connection, user_id: int, now: int, rolling_days: int) -> str:
    token = security.new_token(security.REFRESH_PREFIX)
    conn.execute(
        "INSERT INTO refresh_tokens (user_id, token_hash, created_at, expires_at)"
        " VALUES (?, ?, ?, ?)",
        (user_id, security.token_hash(token), now, now + rolling_days * DAY),
    )
    return token
