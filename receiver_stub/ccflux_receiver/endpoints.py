"""POST /token, /register-key, /report (PROTOCOL.md).

Plain Starlette request handlers (no dependency injection) because each needs
the exact body bytes and a fixed order of checks, cheapest and least trusting
first:

  1. Authorization header shape (string check)          -> 401
  2. body read, bounded while reading                   -> 413
  3. body parsed and validated (shared pydantic models) -> 400
  4. bearer token looked up by its SHA-256              -> 401
  5. rate limit of the token's credential               -> 429
  6. signature (/report only)                           -> 403 + X-CCFLUX-Error
  7. one write transaction                              -> 200

So no crypto or database work happens before size and shape checks pass, and
400 is decided before any signature work, as PROTOCOL.md requires.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Union

from ccflux.protocol import RegisterKeyRequest, ReportBody, TokenResponse
from ccflux.wire import SIGNATURE_HEADER, TIMESTAMP_HEADER, ErrorCode, format_timestamp
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from . import httpio, security
from .metrics import Metrics
from .ratelimit import RateLimiter
from .settings import Settings
from .store import Credential, Store


class Endpoints:
    def __init__(self, settings: Settings, store: Store, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.clock = clock

    async def token(self, request: Request) -> Response:
        token = security.bearer_token(request.headers.get("authorization"), security.REFRESH_PREFIX)
        if token is None:
            return httpio.unauthorized()
        if await httpio.read_body(request, self.settings.body_limit_bytes) is None:
            return httpio.too_large()  # the body is ignored, but still bounded
        now = int(self.clock())
        cred = self._admit(self.store.refresh_credential, token, now)
        if isinstance(cred, Response):
            return cred
        access, expires_at = self.store.exchange(
            cred, now, self.settings.access_token_expiry_secs, self.settings.refresh_token_rolling_days
        )
        self.metrics.inc("ccflux_token_exchanges_total")
        answer = TokenResponse(access_token=access, expires_at=format_timestamp(expires_at))
        return Response(answer.model_dump_json(), media_type=httpio.JSON,
                        headers={"Cache-Control": "no-store"})

    async def register_key(self, request: Request) -> Response:
        token = security.bearer_token(request.headers.get("authorization"), security.ACCESS_PREFIX)
        if token is None:
            return httpio.unauthorized()
        body = await httpio.read_body(request, self.settings.body_limit_bytes)
        if body is None:
            return httpio.too_large()
        try:
            key_request = RegisterKeyRequest.model_validate_json(body)
        except ValidationError:
            return httpio.bad_request("body does not match RegisterKeyRequest")
        public_key = security.decode_public_key(key_request.public_key)
        if public_key is None:
            return httpio.bad_request("public_key is not base64 of 32 bytes")
        now = int(self.clock())
        cred = self._admit(self.store.access_credential, token, now)
        if isinstance(cred, Response):
            return cred
        if not self.store.register_key(cred.user_id, public_key, key_request.device_id, now):
            return httpio.ok("already-registered")
        self.metrics.inc("ccflux_key_registrations_total")
        return httpio.ok("registered")

    async def report(self, request: Request) -> Response:
        token = security.bearer_token(request.headers.get("authorization"), security.ACCESS_PREFIX)
        if token is None:
            return self._count(httpio.unauthorized(), "ccflux_reports_auth_rejected_total")
        body = await httpio.read_body(request, self.settings.body_limit_bytes)
        if body is None:
            return self._count(httpio.too_large(), "ccflux_reports_invalid_total")
        try:
            report = ReportBody.model_validate_json(body)
        except ValidationError:
            return self._count(httpio.bad_request("body does not match ReportBody"),
                               "ccflux_reports_invalid_total")
        now = self.clock()
        cred = self._admit(self.store.access_credential, token, int(now))
        if isinstance(cred, Response):
            if cred.status_code == 401:
                self.metrics.inc("ccflux_reports_auth_rejected_total")
            return cred
        device, code = self._signer(request.headers, body, cred.user_id, now)
        if code is not None:
            return self._count(httpio.forbidden(code), "ccflux_reports_sig_rejected_total")
        outcome = self.store.add_report(cred.user_id, device, report, int(now))
        self.metrics.inc("ccflux_reports_accepted_total")
        if outcome != "stored":
            self.metrics.inc(f"ccflux_reports_{outcome}_total")
        return httpio.ok(outcome)

    def _signer(self, headers: Headers, body: bytes, user_id: int,
                now: float) -> tuple[Optional[int], Optional[ErrorCode]]:
        """(device row id or None if unsigned, 403 code or None)."""
        header = headers.get(SIGNATURE_HEADER)
        if header is None:
            return None, ErrorCode.SIGNATURE_REQUIRED if self.settings.require_signatures else None
        timestamp = headers.get(TIMESTAMP_HEADER)
        code = security.check_timestamp(timestamp, now)
        if code is not None:
            return None, code
        parsed = security.parse_signature(header)
        if parsed is None:
            return None, ErrorCode.SIGNATURE_INVALID
        signature, public_key = parsed
        device = self.store.device(user_id, public_key)
        if device is None:
            return None, ErrorCode.KEY_NOT_REGISTERED
        if device.revoked:
            return None, ErrorCode.KEY_REVOKED
        if not security.verify(public_key, signature, body, timestamp or ""):
            return None, ErrorCode.SIGNATURE_INVALID
        return device.id, None

    def _admit(self, lookup: Callable[[bytes, int], Optional[Credential]], token: str,
               now: int) -> Union[Credential, Response]:
        """The token's credential, or the 401 (unknown) / 429 (over its limit) answer."""
        cred = lookup(security.token_hash(token), now)
        if cred is None:
            return httpio.unauthorized()
        retry_after = self.limiter.hit(cred.refresh_id)
        if retry_after is None:
            return cred
        return self._count(httpio.rate_limited(retry_after), "ccflux_reports_rate_limited_total")

    def _count(self, response: Response, counter: str) -> Response:
        self.metrics.inc(counter)
        return response
