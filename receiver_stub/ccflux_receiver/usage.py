"""Usage totals grouped by any of user, model, day, device, session, turn."""

from __future__ import annotations

import sqlite3
import sys
from typing import Optional, Sequence

# --by key -> (output name, SQL expression)
GROUPS: dict[str, tuple[str, str]] = {
    "user": ("user", "u.email"),
    "model": ("model", "r.model"),
    "day": ("day", "date(r.turn_at, 'unixepoch')"),
    "device": ("device", "d.device_id"),
    "session": ("session_id", "r.session_id"),
    "turn": ("turn_index", "r.turn_index"),
}
COUNTERS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
DEFAULT_BY = ("user", "model")

# A report is one (user, session, turn); length prefix keeps the key unambiguous.
_REPORT_KEY = "r.user_id || ':' || length(r.session_id) || ':' || r.session_id || ':' || r.turn_index"


def parse_by(text: Optional[str]) -> tuple[str, ...]:
    if not text:
        return DEFAULT_BY
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in keys if k not in GROUPS]
    if unknown or not keys:
        raise ValueError(f"--by takes a comma-separated subset of {', '.join(GROUPS)}")
    return tuple(dict.fromkeys(keys))


def totals(conn: sqlite3.Connection, by: Sequence[str], since: Optional[int] = None) -> list[dict]:
    """One dict per group: the grouping keys' output names, then the counters."""
    try:
        return _query(conn, by, since, "SUM")
    except sqlite3.OperationalError as exc:
        if "overflow" not in str(exc):
            raise
        # Counts past 2**63 (only bogus reports get there): approximate, not crash.
        print("ccflux-receiver: usage sums overflow 64 bits; shown approximately", file=sys.stderr)
        return _query(conn, by, since, "TOTAL")


def _query(conn: sqlite3.Connection, by: Sequence[str], since: Optional[int], agg: str) -> list[dict]:
    names = [GROUPS[k][0] for k in by]
    exprs = [GROUPS[k][1] for k in by]
    sums = ", ".join(f"CAST({agg}(r.{c}) AS INTEGER)" for c in COUNTERS)
    sql = (
        f"SELECT {', '.join(exprs)}, {sums}, COUNT(DISTINCT {_REPORT_KEY})"
        " FROM reports r JOIN users u ON u.id = r.user_id"
        " LEFT JOIN devices d ON d.id = r.device"
        " WHERE r.turn_at >= ?"
        f" GROUP BY {', '.join(str(i + 1) for i in range(len(exprs)))}"
        f" ORDER BY {', '.join(str(i + 1) for i in range(len(exprs)))}"
    )
    rows = conn.execute(sql, (since if since is not None else -(2**62),)).fetchall()
    keys = names + list(COUNTERS) + ["reports"]
    return [dict(zip(keys, row)) for row in rows]


def parse_since(text: Optional[str]) -> Optional[int]:
    """``YYYY-MM-DD`` (UTC midnight) or an RFC 3339 time -> epoch seconds."""
    if not text:
        return None
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return int(moment.timestamp())
    except (ValueError, OverflowError):
        raise ValueError(f"--since takes YYYY-MM-DD or an RFC 3339 time, got {text!r}") from None
