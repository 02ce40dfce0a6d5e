"""``ccflux-receiver``: serve, users, devices, usage (argument parsing and dispatch)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from . import commands, settings as settings_mod
from .schema import SchemaError


def build_parser(env: settings_mod.Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccflux-receiver", description="ccflux reference receiver")
    sub = parser.add_subparsers(dest="command", required=True)
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=env.database_path,
                    help="SQLite database (default: DATABASE_PATH, else ccflux.db)")

    serve = sub.add_parser("serve", parents=[db], help="run the HTTP(S) receiver")
    serve.add_argument("--listen", help="HOST:PORT (default: LISTEN_ADDR, else 127.0.0.1:8080)")
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS itself")
    serve.add_argument("--tls-key", help="PEM private key for --tls-cert")
    serve.add_argument("--access-token-expiry-secs", type=int)
    serve.add_argument("--refresh-token-rolling-days", type=int)
    serve.add_argument("--rate-limit-per-minute", type=int, help="0 switches the limit off")
    serve.add_argument("--body-limit-kb", type=int)
    serve.add_argument("--require-signatures", action=argparse.BooleanOptionalAction, default=None)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    users = sub.add_parser("users", help="manage users and their refresh tokens")
    users_sub = users.add_subparsers(dest="action", required=True)
    for action, text in (("add", "create a user; print its refresh token alone on stdout"),
                         ("revoke", "revoke a user and all its tokens"),
                         ("reissue", "revoke a user's tokens and print a new refresh token")):
        p = users_sub.add_parser(action, parents=[db], help=text)
        p.add_argument("email")
    users_sub.add_parser("list", parents=[db], help="list users")

    devices = sub.add_parser("devices", help="manage device keys")
    devices_sub = devices.add_subparsers(dest="action", required=True)
    devices_sub.add_parser("list", parents=[db], help="list device keys")
    revoke = devices_sub.add_parser("revoke", parents=[db], help="revoke a key or a device id's keys")
    revoke.add_argument("key_or_device_id")

    usage = sub.add_parser("usage", parents=[db], help="token totals")
    usage.add_argument("--by", default="user,model",
                       help="comma-separated subset of user,model,day,device,session,turn")
    usage.add_argument("--since", help="YYYY-MM-DD or RFC 3339 (time of the turn)")
    usage.add_argument("--json", action="store_true", help="one JSON array of rows")
    return parser


def serve_settings(args: argparse.Namespace, env: settings_mod.Settings) -> settings_mod.Settings:
    """The environment's settings with the flags given on the command line applied."""
    if bool(args.tls_cert) != bool(args.tls_key):
        raise settings_mod.SettingsError("--tls-cert and --tls-key go together")
    settings = env.replace(
        database_path=args.db, listen_addr=args.listen,
        access_token_expiry_secs=args.access_token_expiry_secs,
        refresh_token_rolling_days=args.refresh_token_rolling_days,
        rate_limit_per_minute=args.rate_limit_per_minute, body_limit_kb=args.body_limit_kb,
        require_signatures=args.require_signatures,
    )
    settings.host_port  # validates --listen
    return settings


def serve(args: argparse.Namespace, env: settings_mod.Settings) -> int:
    import uvicorn

    from .app import create_app

    settings = serve_settings(args, env)
    host, port = settings.host_port
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s", stream=sys.stderr)
    if settings.admin_token and len(settings.admin_token) < 16:
        logging.getLogger("ccflux_receiver").warning("ADMIN_TOKEN is short: use 16+ random characters")
    app = create_app(settings, access_log=sys.stderr)
    scheme = "https" if args.tls_cert else "http"
    logging.getLogger("ccflux_receiver").warning(
        "ccflux-receiver listening on %s://%s:%d (db %s, signatures %s)", scheme, host, port,
        settings.database_path, "required" if settings.require_signatures else "optional")
    uvicorn.run(app, host=host, port=port, ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key,
                access_log=False, log_level="warning", server_header=False, proxy_headers=False)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        env = settings_mod.from_env()
        args = build_parser(env).parse_args(argv)
        if args.command == "serve":
            return serve(args, env)
        if args.command == "users":
            args.rolling_days = env.refresh_token_rolling_days
            return commands.users(args)
        if args.command == "devices":
            return commands.devices(args)
        return commands.usage_report(args)
    except (settings_mod.SettingsError, SchemaError) as exc:
        print(f"ccflux-receiver: {exc}", file=sys.stderr)
        return 2
