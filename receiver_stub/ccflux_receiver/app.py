"""The receiver application.

The three POST endpoints of the protocol are dispatched straight from ASGI to
``Endpoints`` (exact body bytes, no per-request framework machinery: they are
the hot path); everything else (/health, /metrics, /admin, 404/405) is a
FastAPI app. ``AccessLog`` wraps both.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from typing import IO, AsyncIterator, Callable, Optional

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from . import httpio
from .accesslog import AccessLog, ASGIApp, Scope
from .admin import AdminView
from .checkpoint import Checkpointer
from .endpoints import WANTED_HEADERS, Endpoints
from .httpio import Reply
from .metrics import Metrics
from .settings import Settings
from .store import Store

log = logging.getLogger("ccflux_receiver")

DB_UNAVAILABLE = httpio.answer(503, {"error": "database-unavailable"}, (b"retry-after", b"1"))
INTERNAL_ERROR = httpio.answer(500, {"error": "internal"})
NOT_ALLOWED = httpio.answer(405, {"error": "method-not-allowed"}, (b"allow", b"POST"))


def create_app(settings: Settings, store: Optional[Store] = None,
               clock: Callable[[], float] = time.time,
               access_log: Optional[IO[str]] = None) -> AccessLog:
    """Build the ASGI app; opens (and migrates) the database unless ``store`` is given."""
    store = store or Store(settings.database_path)
    metrics = Metrics()
    endpoints = Endpoints(settings, store, metrics, clock)
    api = _fastapi(settings, endpoints, clock)
    return AccessLog(ProtocolRoutes(endpoints, api, settings.body_limit_bytes), metrics, access_log)


class ProtocolRoutes:
    """POST /token, /register-key, /report to ``endpoints``; anything else to ``fallback``."""

    def __init__(self, endpoints: Endpoints, fallback: ASGIApp, body_limit: int) -> None:
        self.endpoints = endpoints
        self.fallback = fallback
        self.body_limit = body_limit
        self.routes = {"/token": endpoints.token, "/register-key": endpoints.register_key,
                       "/report": endpoints.report}

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        handler = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if handler is None:
            await self.fallback(scope, receive, send)
            return
        if scope["method"] != "POST":
            reply = NOT_ALLOWED
        else:
            headers = httpio.pick_headers(scope["headers"], WANTED_HEADERS)
            declared = headers.get("content-length")
            reply = await self._run(handler, headers,
                                    lambda: httpio.read_body(receive, self.body_limit, declared))
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": reply.raw_headers()})
        await send({"type": "http.response.body", "body": reply.body})

    async def _run(self, handler: Callable, headers: dict, read_body: Callable) -> Reply:
        try:
            return await handler(headers, read_body)
        except sqlite3.OperationalError as exc:  # locked/busy/disk: try again later
            log.warning("database unavailable: %s", exc)
            return DB_UNAVAILABLE
        except Exception:  # a bug: log it here, never show it to the client
            log.exception("internal error")
            return INTERNAL_ERROR

    @property
    def store(self) -> Store:
        return self.endpoints.store


def _fastapi(settings: Settings, endpoints: Endpoints, clock: Callable[[], float]) -> FastAPI:
    store, metrics = endpoints.store, endpoints.metrics

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        checkpointer = Checkpointer(store.path)
        store.conn.execute("PRAGMA wal_autocheckpoint = 0")  # the thread does it
        checkpointer.start()
        yield
        checkpointer.stop()
        store.close()

    app = FastAPI(title="ccflux receiver", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)

    # async: runs on the event loop thread, which alone uses the connection.
    @app.get("/health")
    async def health() -> Response:
        try:
            store.ping()
        except sqlite3.Error:
            return httpio.response(httpio.answer(503, {"status": "error", "db": "error"}))
        return httpio.response(httpio.answer(200, {"status": "ok", "db": "ok"}))

    @app.get("/metrics")
    async def prometheus() -> Response:
        text = metrics.render(lambda: store.active_access_tokens(int(clock())))
        return Response(text, media_type="text/plain; version=0.0.4")

    if settings.admin_token:
        app.router.routes.extend(AdminView(settings, store, clock).routes())
    app.add_exception_handler(sqlite3.OperationalError, _database_busy)
    return app


async def _database_busy(request: Request, exc: Exception) -> Response:
    log.warning("database error on %s: %s", request.url.path, exc)
    return httpio.response(DB_UNAVAILABLE)
