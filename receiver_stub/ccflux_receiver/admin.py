"""Minimal read-only admin view, on only when ADMIN_TOKEN is set (else 404).

GET /admin/usage?by=user,model&since=YYYY-MM-DD answers the same rows as
`ccflux-receiver usage --json`. Authenticate with `Authorization: Bearer
<ADMIN_TOKEN>`, or POST /admin/login (JSON {"token": ...} or a form field
`token`) which sets an HttpOnly, SameSite=Strict session cookie (Secure when
COOKIE_SECURE=1) holding an HMAC of its expiry under a per-process key, never
the token. Credential attempts share one bucket (30/min) against guessing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Callable, Optional
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import httpio, usage
from .ratelimit import RateLimiter
from .settings import Settings
from .store import Store

COOKIE = "ccflux_admin"
SESSION_SECS = 8 * 3600


class AdminView:
    def __init__(self, settings: Settings, store: Store, clock: Callable[[], float] = time.time) -> None:
        assert settings.admin_token
        self.settings = settings
        self.store = store
        self.clock = clock
        self._token_hash = hashlib.sha256(settings.admin_token.encode()).digest()
        self._key = secrets.token_bytes(32)
        self.attempts = RateLimiter(30)

    def routes(self) -> list[Route]:
        return [Route("/admin/usage", self.usage, methods=["GET"]),
                Route("/admin/login", self.login, methods=["POST"]),
                Route("/admin/logout", self.logout, methods=["POST"])]

    async def usage(self, request: Request) -> Response:
        denied = self._authorize(request)
        if denied is not None:
            return denied
        try:
            by = usage.parse_by(request.query_params.get("by"))
            since = usage.parse_since(request.query_params.get("since"))
        except ValueError as exc:
            return httpio.response(httpio.bad_request(str(exc)))
        rows = usage.totals(self.store.conn, by, since)
        return Response(json.dumps(rows), media_type="application/json", headers={"Cache-Control": "no-store"})

    async def login(self, request: Request) -> Response:
        body = await httpio.read_body(request.receive, 4096, request.headers.get("content-length"))
        if body is None:
            return httpio.response(httpio.TOO_LARGE)
        retry = self.attempts.hit("admin")
        if retry is not None:
            return httpio.response(httpio.rate_limited(retry))
        if not self._is_admin_token(_login_token(body)):
            return httpio.response(httpio.UNAUTHORIZED)
        expires = int(self.clock()) + SESSION_SECS
        response = httpio.response(httpio.ok("logged-in"))
        response.set_cookie(COOKIE, f"{expires}.{self._mac(expires)}", max_age=SESSION_SECS,
                            path="/admin", secure=self.settings.cookie_secure,
                            httponly=True, samesite="strict")
        return response

    async def logout(self, request: Request) -> Response:
        response = httpio.response(httpio.ok("logged-out"))
        response.delete_cookie(COOKIE, path="/admin", secure=self.settings.cookie_secure,
                               httponly=True, samesite="strict")
        return response

    def _authorize(self, request: Request) -> Optional[Response]:
        if self._valid_session(request.cookies.get(COOKIE, "")):
            return None
        retry = self.attempts.hit("admin")
        if retry is not None:
            return httpio.response(httpio.rate_limited(retry))
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self._is_admin_token(token.strip()):
            return None
        return httpio.response(httpio.UNAUTHORIZED)

    def _is_admin_token(self, token: Optional[str]) -> bool:
        if not token:
            return False
        presented = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        return hmac.compare_digest(presented, self._token_hash)

    def _mac(self, expires: int) -> str:
        return hmac.new(self._key, str(expires).encode(), hashlib.sha256).hexdigest()

    def _valid_session(self, cookie: str) -> bool:
        expires, _, mac = cookie.partition(".")
        if not expires.isdigit() or len(expires) > 12 or int(expires) <= self.clock():
            return False
        return hmac.compare_digest(mac.encode(), self._mac(int(expires)).encode())


def _login_token(body: bytes) -> Optional[str]:
    """The token from a JSON {"token": ...} or a form-encoded token=... body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        value = json.loads(text).get("token")
    except (ValueError, AttributeError, RecursionError):
        value = (parse_qs(text).get("token") or [None])[0]
    return value if isinstance(value, str) else None
