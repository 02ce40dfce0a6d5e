"""Read what the hook queued in its state dir (the outbox of state.db)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path


def queued_reports(state_dir: Path) -> list[dict]:
    db = state_dir / "state.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT body FROM outbox ORDER BY id").fetchall()
    return [json.loads(body) for (body,) in rows]


def totals(reports: list[dict]) -> dict[tuple[str, str], Counter]:
    out: dict[tuple[str, str], Counter] = {}
    for rep in reports:
        for model, u in rep["models"].items():
            out.setdefault((rep["session_id"], model), Counter()).update(u)
    return out
