"""Activity and error logs in the state dir: one line per event, size-capped.

Stdlib ``os``/``time`` only (it is used on the hot path). Callers pass
messages that never contain secrets; ``redact`` is a second line of defence
for text that came from elsewhere (exception messages, server answers).
"""

from __future__ import annotations

import os
import time

from .paths import FILE_MODE, ensure_dir, state_dir

MAX_LOG_BYTES = 1 << 20  # each log is rotated to <name>.1 past 1 MiB: at most 2 MiB per log
ACTIVITY = "activity.log"
ERRORS = "error.log"

_SECRET_PREFIXES = ("ccf_rt_", "ccf_at_", "Bearer ")


def activity(message: str) -> None:
    _append(ACTIVITY, message)


def error(message: str) -> None:
    _append(ERRORS, message)


def redact(text: str, *secrets: str) -> str:
    """``text`` with every given secret and anything token-shaped masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    for prefix in _SECRET_PREFIXES:
        start = text.find(prefix)
        while start != -1:
            end = start + len(prefix)
            while end < len(text) and (text[end].isalnum() or text[end] in "-_.~+/="):
                end += 1
            text = text[:start] + prefix + "[redacted]" + text[end:]
            start = text.find(prefix, start + len(prefix) + 10)
    return text


def _append(name: str, message: str) -> None:
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} pid={os.getpid()} {_one_line(message)}\n"
    try:
        directory = ensure_dir(state_dir())
        path = os.path.join(directory, name)
        _rotate_if_full(path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            os.write(fd, line.encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        pass  # logging must never break the hook


def _rotate_if_full(path: str) -> None:
    try:
        if os.stat(path).st_size >= MAX_LOG_BYTES:
            os.replace(path, path + ".1")
    except OSError:
        pass


def _one_line(message: str) -> str:
    text = message.replace("\r", " ").replace("\n", " | ")
    return text if len(text) <= 2000 else text[:2000] + "...[truncated]"
