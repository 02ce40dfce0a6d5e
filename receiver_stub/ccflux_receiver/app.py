"""The receiver application: routes wired to their handlers (thin)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from typing import AsyncIterator, Callable, Optional

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from . import httpio
from .accesslog import AccessLog
from .admin import AdminView
from .endpoints import Endpoints
from .metrics import Metrics
from .settings import Settings
from .store import Store

log = logging.getLogger("ccflux_receiver")


def create_app(settings: Settings, store: Optional[Store] = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """Build the app; opens (and migrates) the database unless ``store`` is given."""
    store = store or Store(settings.database_path)
    metrics = Metrics()
    endpoints = Endpoints(settings, store, metrics, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(title="ccflux receiver", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.store, app.state.metrics, app.state.endpoints = store, metrics, endpoints
    app.add_route("/token", endpoints.token, methods=["POST"])
    app.add_route("/register-key", endpoints.register_key, methods=["POST"])
    app.add_route("/report", endpoints.report, methods=["POST"])

    # async: runs on the event loop thread, which alone uses the connection.
    @app.get("/health")
    async def health() -> Response:
        try:
            store.ping()
        except sqlite3.Error:
            return httpio.answer(503, {"status": "error", "db": "error"})
        return httpio.answer(200, {"status": "ok", "db": "ok"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        text = metrics.render(lambda: store.active_access_tokens(int(clock())))
        return Response(text, media_type="text/plain; version=0.0.4")

    if settings.admin_token:
        app.router.routes.extend(AdminView(settings, store, clock).routes())

    app.add_exception_handler(sqlite3.OperationalError, _database_busy)
    app.add_middleware(AccessLog, metrics=metrics)
    return app


async def _database_busy(request: Request, exc: Exception) -> Response:
    log.warning("database error on %s: %s", request.url.path, exc)
    return httpio.answer(503, {"error": "database-unavailable"}, {"Retry-After": "1"})
