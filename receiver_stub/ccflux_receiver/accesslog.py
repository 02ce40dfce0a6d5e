"""Structured access log as pure ASGI middleware.

One JSON line per request: time, client, method, path, status, duration, the
X-CCFLUX-Error code. Never a header value (Authorization!), a query string or
a body. Unknown paths are logged as "other" so junk cannot flood the log with
attacker-chosen text or the metrics with labels.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Awaitable, Callable, MutableMapping

from ccflux.wire import ERROR_HEADER

from .metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

KNOWN_PATHS = frozenset({"/token", "/register-key", "/report", "/health", "/metrics",
                         "/admin/usage", "/admin/login", "/admin/logout"})
_ERROR_HEADER = ERROR_HEADER.lower().encode("latin-1")

log = logging.getLogger("ccflux_receiver.access")


class AccessLog:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "error": None}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name == _ERROR_HEADER:
                        seen["error"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._record(scope, seen, time.perf_counter() - started)

    def _record(self, scope: Scope, seen: dict, elapsed: float) -> None:
        path = scope.get("path", "")
        label = path if path in KNOWN_PATHS else "other"
        self.metrics.response(label, seen["status"])
        if log.isEnabledFor(logging.INFO):
            client = scope.get("client") or ("-", 0)
            entry = {"ts": round(time.time(), 3), "client": client[0], "method": str(scope.get("method"))[:16],
                     "path": label, "status": seen["status"], "ms": round(elapsed * 1000, 2)}
            if seen["error"]:
                entry["error"] = seen["error"]
            log.info(json.dumps(entry, separators=(",", ":")))
