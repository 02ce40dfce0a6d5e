"""One turn's report body, exactly the v1 fields (PROTOCOL.md) and nothing else.

Built with ``jsonfast`` rather than pydantic to keep the commit path light;
``tests/hook/test_report.py`` proves every body validates against
``protocol.ReportBody`` (the one definition of the protocol).
"""

from __future__ import annotations

import os
import time

from . import __version__, jsonfast, paths
from .state import StateStore, Usage
from .wire import MAX_MODELS, MAX_TIMESTAMP, MAX_USER_EMAIL, SCHEMA_VERSION, format_timestamp


def body(
    session_id: str,
    turn_index: int,
    user_email: str,
    timestamp_utc: str,
    session_start_utc: str | None,
    models: dict[str, Usage],
) -> bytes:
    if len(models) > MAX_MODELS:
        raise ValueError(f"a report holds at most {MAX_MODELS} models")
    doc = {
        "schema_version": SCHEMA_VERSION,
        "session_id": session_id,
        "user_email": user_email,
        "turn_index": turn_index,
        "timestamp_utc": (timestamp_utc or format_timestamp(time.time()))[:MAX_TIMESTAMP],
        "models": {
            name: {
                "input_tokens": u.input,
                "output_tokens": u.output,
                "cache_read_tokens": u.cache_read,
                "cache_write_tokens": u.cache_write,
            }
            for name, u in models.items()
        },
        "plugin_version": __version__,
    }
    if session_start_utc:
        doc["session_start_utc"] = session_start_utc[:MAX_TIMESTAMP]
    return jsonfast.dumps(doc).encode("ascii")


def split_models(models: dict[str, Usage]) -> list[dict[str, Usage]]:
    """Chunks of at most MAX_MODELS models (one report each)."""
    names = sorted(models)
    return [{n: models[n] for n in names[i : i + MAX_MODELS]} for i in range(0, len(names), MAX_MODELS)] or [{}]


def user_email(store: StateStore) -> str:
    """The Claude account email (``oauthAccount.emailAddress`` in .claude.json), else "".

    .claude.json can be megabytes, so the answer is cached in state.db and the
    file read again only when its size or mtime changes."""
    path = paths.claude_account_file()
    try:
        st = os.stat(path)
    except OSError:
        return ""
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    if store.get_meta("user_email_stamp") == stamp:
        return store.get_meta("user_email") or ""
    email = ""
    try:
        with open(path, "rb") as fh:
            data = jsonfast.loads(fh.read(64 << 20))
        account = data.get("oauthAccount") if isinstance(data, dict) else None
        value = account.get("emailAddress") if isinstance(account, dict) else None
        if isinstance(value, str) and len(value) <= MAX_USER_EMAIL:
            email = value
    except (OSError, ValueError):
        pass
    store.set_meta("user_email_stamp", stamp)
    store.set_meta("user_email", email)
    return email
