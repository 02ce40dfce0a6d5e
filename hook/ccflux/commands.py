"""Commands for people: status, flush, configure, preview (and selftest for builds).

``cli.py`` hands every subcommand but ``hook`` to ``main``; argparse and json
are imported here, never on the hook's path. Nothing printed here contains the
refresh token, the access token or the private key: status shows where things
are and when they expire, not what they are.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import NoReturn, Optional

from . import __version__, auth, config, log, paths, sender, signing, state, transport, wire

FLUSH_MAX_WAIT_S = 120.0  # flush waits out a 429 only this long in total
FLUSH_RETRY_PAUSES_S = (2.0, 5.0)  # network errors / 5xx: two more tries, then report it
MAX_TOKEN_CHARS = 4096


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # From a shell there is no $CLAUDE_PLUGIN_DATA: use the state the hook uses.
    os.environ["CCFLUX_HOME"] = paths.command_state_dir()
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args))


class _Parser(argparse.ArgumentParser):
    """argparse that never echoes stray arguments (one may be a pasted token) and takes
    no abbreviations (else `--token SECRET` would be read as --token-file SECRET)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if "unrecognized arguments" in message:
            message = ("unexpected arguments (not shown). The refresh token is never given on the "
                       "command line: pipe it on stdin or use --token-file")
        self.exit(2, f"{self.prog}: error: {log.redact(message)}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ccflux", description="Per-turn Claude Code usage reports for your organisation.")
    parser.add_argument("--version", action="version", version=f"ccflux {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")
    status = sub.add_parser("status", help="configuration, key, token, spool and errors")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    flush = sub.add_parser("flush", help="send the spool now")
    flush.add_argument("--max-wait", type=float, default=FLUSH_MAX_WAIT_S, metavar="SECONDS",
                       help=f"give up after this long, rate limits included (default {FLUSH_MAX_WAIT_S:.0f})")
    flush.set_defaults(func=cmd_flush)
    configure = sub.add_parser("configure", help="set the endpoint and the refresh token (from stdin)")
    configure.add_argument("--endpoint", required=True, metavar="URL", help="the receiver's https:// URL")
    configure.add_argument("--token-file", metavar="FILE", help="read the refresh token from FILE, not stdin")
    configure.set_defaults(func=cmd_configure)
    preview = sub.add_parser("preview", help="print the exact JSON bodies the spool would send")
    preview.set_defaults(func=cmd_preview)
    selftest = sub.add_parser("selftest", help="check that signing, TLS and storage load (frozen builds)")
    selftest.set_defaults(func=cmd_selftest)
    return parser


# -- status ------------------------------------------------------------------

def status_data() -> dict:
    """Everything `ccflux status` shows, as plain data (no secrets)."""
    now = time.time()
    data: dict = {"version": __version__, "state_dir": paths.state_dir(), "configured": False,
                  "config_source": None, "config_error": None, "endpoint": None, "device_name": None,
                  "config_file": config.config_path(), "config_file_exposed": config.file_is_exposed()}
    try:
        cfg = config.load()
    except config.ConfigError as exc:
        cfg, data["config_error"] = None, str(exc)
    base = wire.base_url(cfg.endpoint) if cfg else None
    if cfg:
        data.update(configured=True, config_source=cfg.source, endpoint=_display_url(cfg.endpoint),
                    device_name=cfg.device_name)
    meta = _meta_snapshot()
    data["key"] = _key_status(meta, base)
    data["access_token"] = _token_status(cfg, base, now, meta)
    data["spool"] = meta.pop("_spool")
    data["dead_letters"] = meta.pop("_dead")
    data["next_automatic_send_at"] = _marker_time()
    data["last_success_at"] = _epoch(meta.get("last_success_at"))
    data["last_error"] = meta.get("last_error")
    data["last_error_at"] = _epoch(meta.get("last_error_at"))
    data["clock_offset_secs"] = _epoch(meta.get("clock_offset_secs")) or 0
    return data


def _meta_snapshot() -> dict:
    """Meta values plus spool figures, without creating a state dir that is not there."""
    keys = ("key_registered", "key_revoked", "auth_failed", "last_success_at", "last_error",
            "last_error_at", "clock_offset_secs")
    snap: dict = {"_spool": {"depth": 0, "oldest_age_secs": None}, "_dead": []}
    if not os.path.exists(paths.in_state(state.DB_FILE)):
        return snap
    with state.StateStore.open() as store:
        snap.update({k: store.get_meta(k) for k in keys})
        oldest = store.outbox_oldest_created_at()
        snap["_spool"] = {"depth": store.outbox_count(),
                          "oldest_age_secs": round(time.time() - oldest) if oldest else None}
        snap["_dead"] = [{"id": d.id, "session_id": d.session_id, "turn_index": d.turn_index,
                          "status": d.status, "reason": d.reason, "dead_at": d.dead_at}
                         for d in store.dead_letters()]
    return snap


def _key_status(meta: dict, base: Optional[str]) -> dict:
    public = signing.stored_public_key_b64()
    registered = bool(public and base and meta.get("key_registered") == f"{public}@{base}")
    return {"public_key": public, "registered": registered, "revoked": meta.get("key_revoked") == "1"}


def _token_status(cfg: Optional[config.Config], base: Optional[str], now: float, meta: dict) -> dict:
    info: dict = {"expires_at": None, "valid": False, "refresh_token_rejected": meta.get("auth_failed") == "1"}
    if cfg and base:
        cache = auth.read_cache()
        if cache.get("access_token") and cache.get("base") == base \
                and cache.get("refresh_fp") == auth.fingerprint(cfg.refresh_token):
            expires = cache.get("expires_epoch")
            info["expires_at"] = expires
            info["valid"] = isinstance(expires, (int, float)) and expires > now
        if auth.was_rejected(cfg, base):
            info["refresh_token_rejected"] = True
    return info


def _marker_time() -> Optional[float]:
    try:
        return os.stat(paths.in_state(state.PENDING_MARKER)).st_mtime
    except OSError:
        return None


def cmd_status(args: argparse.Namespace) -> int:
    data = status_data()
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render_status(data, time.time()))
    return 0


def render_status(d: dict, now: float) -> str:
    rows: list[tuple[str, str]] = [("ccflux", d["version"])]
    if d["config_error"]:
        rows.append(("configured", f"no: {d['config_error']}"))
    elif d["configured"]:
        rows.append(("configured", f"yes ({d['config_source']})"))
    else:
        rows.append(("configured", "no: run `ccflux configure --endpoint URL` (token on stdin)"))
    rows += [("endpoint", d["endpoint"] or "-"), ("state dir", d["state_dir"]),
             ("device", d["device_name"] or "-")]
    key = d["key"]
    if key["revoked"]:
        rows.append(("device key", f"REVOKED: {sender.KEY_REVOKED_MESSAGE}"))
    elif not key["public_key"]:
        rows.append(("device key", "none yet (made on the first send)"))
    else:
        state_text = "registered" if key["registered"] else "not registered yet"
        rows.append(("device key", f"{state_text} ({key['public_key']})"))
    rows.append(("access token", _token_text(d["access_token"], now)))
    spool = d["spool"]
    oldest = f", oldest {_age(spool['oldest_age_secs'])} old" if spool["oldest_age_secs"] is not None else ""
    rows.append(("spool", f"{spool['depth']} report(s){oldest}"))
    if spool["depth"]:
        due = d["next_automatic_send_at"]
        rows.append(("next send", "due now" if not due or due <= now else f"not before {_when(due, now)}"))
    rows.append(("dead letters", str(len(d["dead_letters"]))))
    rows += [(f"  #{x['id']}", f"{x['session_id']} turn {x['turn_index']}: {x['status']} {x['reason']} "
                               f"({_when(x['dead_at'], now)})") for x in d["dead_letters"]]
    rows.append(("last success", _when(d["last_success_at"], now) if d["last_success_at"] else "never"))
    if d["last_error"]:
        rows.append(("last error", f"{d['last_error']} ({_when(d['last_error_at'], now)})"))
    if d["clock_offset_secs"]:
        rows.append(("clock offset", f"{d['clock_offset_secs']:+.0f} s (receiver minus this machine)"))
    width = max(len(label) for label, _ in rows)
    lines = [f"{label.ljust(width)}  {value}" for label, value in rows]
    if d["config_file_exposed"]:
        lines.append(f"WARNING: {d['config_file']} is readable by other users; "
                     f"run `chmod 600 {d['config_file']}` and ask IT for a new refresh token")
    return "\n".join(lines)


def _token_text(info: dict, now: float) -> str:
    if info["refresh_token_rejected"]:
        return f"none: {auth.REJECTED_MESSAGE}"
    if not info["expires_at"]:
        return "none cached (exchanged on the next send)"
    if not info["valid"]:
        return f"expired {_when(info['expires_at'], now)} (renewed on the next send)"
    return f"valid until {_when(info['expires_at'], now)}"


def _when(epoch: Optional[float], now: float) -> str:
    if not epoch:
        return "-"
    stamp = wire.format_timestamp(epoch)
    delta = epoch - now
    return f"{stamp}, in {_age(delta)}" if delta > 0 else f"{stamp}, {_age(-delta)} ago"


def _age(secs: float) -> str:
    secs = int(secs)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if secs >= size:
            return f"{secs // size} {unit}"
    return f"{secs} s"


def _epoch(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _display_url(url: str) -> str:
    """The endpoint without any user:password@ part (it would be a credential)."""
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    if "@" in host:
        host = "[redacted]@" + host.rsplit("@", 1)[1]
    return f"{scheme}{sep}{host}{slash}{path}"


# -- flush -------------------------------------------------------------------

def cmd_flush(args: argparse.Namespace) -> int:
    def say(line: str) -> None:
        print(f"ccflux: {line}", file=sys.stderr, flush=True)

    deadline = time.monotonic() + max(args.max_wait, 1.0)
    retries = list(FLUSH_RETRY_PAUSES_S)
    while True:
        left = deadline - time.monotonic()
        result = sender.drain(budget_s=max(left, 1.0), progress=say, force=True, lock_wait_s=max(left, 0.0))
        if result.stopped == sender.NOT_CONFIGURED:
            return _flush_unconfigured(say)
        if not result.stopped and result.remaining == 0:
            say(f"spool empty ({result.sent} sent, {result.dead} dead letter(s))")
            return 0
        pause = _flush_pause(result, retries)
        if pause is None or pause >= deadline - time.monotonic():
            say(f"stopped: {result.stopped}; {result.remaining} report(s) kept in the spool")
            return 1
        if pause > 0:
            why = "rate limited" if result.rate_limited else "receiver unreachable or failing"
            say(f"{why}: trying again in {pause:.0f} s ({result.remaining} report(s) left)")
            time.sleep(pause)


def _flush_pause(result: sender.DrainResult, retries: list[float]) -> Optional[float]:
    """Seconds to wait before draining again, or None to give up now."""
    if not result.stopped:
        return 0.0  # turns committed while we sent: go again
    if result.rate_limited and result.retry_at:
        return max(0.0, result.retry_at - time.time())
    if result.transient and retries:
        return retries.pop(0)  # a person is waiting: a blip should not fail the flush
    return None


def _flush_unconfigured(say) -> int:
    depth = _meta_snapshot()["_spool"]["depth"]
    if depth == 0:
        say("not configured; the spool is empty")
        return 0
    say(f"not configured: {depth} report(s) wait; run `ccflux configure --endpoint URL`")
    return 1


# -- configure -----------------------------------------------------------------

def cmd_configure(args: argparse.Namespace) -> int:
    endpoint = args.endpoint.strip()
    try:
        transport.check_url(wire.base_url(endpoint))
        token = _read_refresh_token(args.token_file)
    except (transport.CcfluxError, OSError, ValueError) as exc:
        print(f"ccflux configure: {log.redact(str(exc))}", file=sys.stderr)
        return 2
    config.save({"api_endpoint": endpoint, "api_token": token})
    auth.forget()  # the cached access token (or refusal) belonged to the old credentials
    _clear_auth_failure()
    print(f"ccflux: configured {_display_url(endpoint)}; refresh token saved (not shown) "
          f"in {config.config_path()} (0600)")
    if os.environ.get(config.ENV_ENDPOINT) or os.environ.get(config.ENV_TOKEN):
        print("ccflux: note: the plugin's settings (CLAUDE_PLUGIN_OPTION_API_*) are set in this "
              "environment and take precedence over config.json", file=sys.stderr)
    return 0


def _read_refresh_token(token_file: Optional[str]) -> str:
    if token_file:
        with open(token_file, "rb") as handle:
            raw = handle.read(MAX_TOKEN_CHARS * 2).decode("utf-8", "replace")
    elif sys.stdin.isatty():
        import getpass  # no echo on a terminal

        raw = getpass.getpass("refresh token (from IT; input hidden): ")
    else:
        raw = sys.stdin.read(MAX_TOKEN_CHARS * 2)
    token = raw.strip()
    if not token:
        raise ValueError("no refresh token given (pipe it on stdin or use --token-file)")
    if len(token) > MAX_TOKEN_CHARS or any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError("that does not look like a refresh token (one line, no spaces expected)")
    return token


def _clear_auth_failure() -> None:
    if not os.path.exists(paths.in_state(state.DB_FILE)):
        return
    with state.StateStore.open() as store:
        if store.get_meta("last_error") == auth.REJECTED_MESSAGE:
            store.set_meta("last_error", None)
        store.set_meta("auth_failed", None)


# -- preview -------------------------------------------------------------------

def cmd_preview(args: argparse.Namespace) -> int:
    """The stored bodies, byte for byte, one per line: exactly what would leave the machine."""
    if not os.path.exists(paths.in_state(state.DB_FILE)):
        return 0
    with state.StateStore.open() as store:
        items = store.outbox_pending(max(store.outbox_count(), 1))
    out = sys.stdout.buffer
    for item in items:
        out.write(item.body + b"\n")
    out.flush()
    return 0


# -- selftest --------------------------------------------------------------------

def cmd_selftest(args: argparse.Namespace) -> int:
    """Load every native and data dependency a frozen build can miss, and use each once."""
    import sqlite3
    import tempfile

    import filelock
    import httpx
    from nacl.signing import SigningKey

    from . import protocol

    key = SigningKey.generate()
    key.verify_key.verify(key.sign(wire.signed_message(b"{}", wire.format_timestamp(time.time()))))
    httpx.Client(verify=transport.ssl_context()).close()
    sqlite3.connect(":memory:").execute("SELECT 1").fetchone()
    with tempfile.TemporaryDirectory() as scratch:
        with filelock.FileLock(os.path.join(scratch, "lock"), mode=paths.FILE_MODE):
            pass
    protocol.ReportBody.model_validate_json(
        b'{"schema_version":1,"session_id":"s","turn_index":0,"timestamp_utc":"2026-01-01T00:00:00Z",'
        b'"models":{"m":{"input_tokens":1}}}')
    print("ok")
    return 0
