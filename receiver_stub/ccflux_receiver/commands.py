"""Admin commands: users, devices, usage. Secrets go to stdout alone; chatter to stderr."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Optional, Sequence

from . import accounts, schema, usage
from .store import UserError


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _when(epoch: Optional[int]) -> str:
    return "-" if epoch is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def users(args: argparse.Namespace) -> int:
    conn = schema.connect(args.db)
    now = int(time.time())
    try:
        if args.action == "list":
            rows = accounts.list_users(conn)
            print_table([[r["email"], "revoked" if r["revoked_at"] else "active",
                          _when(r["created_at"]), _when(r["refresh_expires_at"]), str(r["devices"])]
                         for r in rows],
                        ["EMAIL", "STATE", "CREATED", "REFRESH EXPIRES", "DEVICES"], numeric=(4,))
        elif args.action == "revoke":
            accounts.revoke_user(conn, args.email, now)
            _say(f"revoked {args.email}: its tokens no longer work")
        else:
            issue = accounts.add_user if args.action == "add" else accounts.reissue
            token = issue(conn, args.email, now, args.rolling_days)
            _say(f"refresh token for {args.email} (shown once; give it to the user):")
            print(token, flush=True)
    except UserError as exc:
        _say(f"ccflux-receiver: {exc}")
        return 1
    finally:
        conn.close()
    return 0


def devices(args: argparse.Namespace) -> int:
    conn = schema.connect(args.db)
    try:
        if args.action == "list":
            rows = accounts.list_devices(conn)
            print_table([[r["user"], r["device_id"], r["public_key"],
                          "revoked" if r["revoked_at"] else "active", _when(r["registered_at"]),
                          _when(r["last_report_at"])] for r in rows],
                        ["USER", "DEVICE ID", "PUBLIC KEY", "STATE", "REGISTERED", "LAST REPORT"])
            return 0
        count = accounts.revoke_device(conn, args.key_or_device_id, int(time.time()))
    finally:
        conn.close()
    if count == 0:
        _say(f"ccflux-receiver: no active key matches {args.key_or_device_id!r}")
        return 1
    _say(f"revoked {count} key(s)")
    return 0


def usage_report(args: argparse.Namespace) -> int:
    try:
        by = usage.parse_by(args.by)
        since = usage.parse_since(args.since)
    except ValueError as exc:
        _say(f"ccflux-receiver: {exc}")
        return 2
    conn = schema.connect(args.db)
    try:
        rows = usage.totals(conn, by, since)
    finally:
        conn.close()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    names = [usage.GROUPS[k][0] for k in by]
    header = names + list(usage.COUNTERS) + ["reports"]
    cells = [["-" if row[k] is None else str(row[k]) for k in header] for row in rows]
    print_table(cells, [h.upper() for h in header], numeric=range(len(names), len(header)))
    return 0


def print_table(rows: list[list[str]], header: list[str], numeric: Sequence[int] = ()) -> None:
    """Plain aligned columns on stdout; numbers right-aligned."""
    table = [header] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for row in table:
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
