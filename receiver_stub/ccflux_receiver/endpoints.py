"""POST /token, /register-key, /report (PROTOCOL.md), free of any web framework.

Each handler gets the few headers it reads and a bounded body reader, and
returns a ``Reply``. The order of checks, cheapest and least trusting first:

  1. Authorization header shape (string check)          -> 401
  2. body read, bounded while reading                   -> 413
  3. body parsed and validated (shared pydantic models) -> 400
  4. bearer token looked up by its SHA-256              -> 401
  5. rate limit of the token's credential               -> 429
  6. signature (/report only)                           -> 403 + X-CCFLUX-Error
     (the signature header is parsed, as a string, before step 4 so that the token
     and the user's row for its key come in one query; the 403 still comes after)
  7. one write transaction (shared by concurrent reports: batching.py) -> 200

So no crypto or database work happens before size and shape checks pass, and
400 is decided before any signature work, as PROTOCOL.md requires.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable, Optional, Union

from ccflux.protocol import RegisterKeyRequest, ReportBody, TokenResponse
from ccflux.wire import SIGNATURE_HEADER, TIMESTAMP_HEADER, ErrorCode, format_timestamp
from pydantic import ValidationError

from . import httpio, security
from .httpio import Headers, Reply
from .metrics import Metrics
from .ratelimit import RateLimiter
from .settings import Settings
from .batching import GroupCommit
from .store import Credential, Device, Store, report_rows

BodyReader = Callable[[], Awaitable[Optional[bytes]]]
WANTED_HEADERS = frozenset({b"authorization", b"content-length", TIMESTAMP_HEADER.lower().encode(),
                            SIGNATURE_HEADER.lower().encode()})
_TIMESTAMP, _SIGNATURE = TIMESTAMP_HEADER.lower(), SIGNATURE_HEADER.lower()
_NO_STORE = (b"cache-control", b"no-store")


class Endpoints:
    def __init__(self, settings: Settings, store: Store, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.writer = GroupCommit(store)
        self.clock = clock

    async def token(self, headers: Headers, read_body: BodyReader) -> Reply:
        token = security.bearer_token(headers.get("authorization"), security.REFRESH_PREFIX)
        if token is None:
            return httpio.UNAUTHORIZED
        if await read_body() is None:
            return httpio.TOO_LARGE  # the body is ignored, but still bounded
        now = int(self.clock())
        cred = self._admit(self.store.refresh_credential, token, now)
        if isinstance(cred, Reply):
            return cred
        access, expires_at = self.store.exchange(
            cred, now, self.settings.access_token_expiry_secs, self.settings.refresh_token_rolling_days
        )
        self.metrics.inc("ccflux_token_exchanges_total")
        answer = TokenResponse(access_token=access, expires_at=format_timestamp(expires_at))
        return Reply(200, answer.model_dump_json().encode(), (_NO_STORE,))

    async def register_key(self, headers: Headers, read_body: BodyReader) -> Reply:
        token = security.bearer_token(headers.get("authorization"), security.ACCESS_PREFIX)
        if token is None:
            return httpio.UNAUTHORIZED
        body = await read_body()
        if body is None:
            return httpio.TOO_LARGE
        try:
            key_request = RegisterKeyRequest.model_validate_json(body)
        except ValidationError:
            return httpio.BAD_JSON
        public_key = security.decode_public_key(key_request.public_key)
        if public_key is None:
            return httpio.bad_request("public_key is not standard base64 of 32 bytes")
        now = int(self.clock())
        cred = self._admit(self.store.access_credential, token, now)
        if isinstance(cred, Reply):
            return cred
        if not self.store.register_key(cred.user_id, public_key, key_request.device_id, now):
            return httpio.ok("already-registered")
        self.metrics.inc("ccflux_key_registrations_total")
        return httpio.ok("registered")

    async def report(self, headers: Headers, read_body: BodyReader) -> Reply:
        token = security.bearer_token(headers.get("authorization"), security.ACCESS_PREFIX)
        if token is None:
            return self._count(httpio.UNAUTHORIZED, "ccflux_reports_auth_rejected_total")
        body = await read_body()
        if body is None:
            return self._count(httpio.TOO_LARGE, "ccflux_reports_invalid_total")
        try:
            report = ReportBody.model_validate_json(body)
        except ValidationError:
            return self._count(httpio.BAD_JSON, "ccflux_reports_invalid_total")
        now = self.clock()
        header = headers.get(_SIGNATURE)
        signature = security.parse_signature(header) if header is not None else None
        public_key = signature[1] if signature else None
        cred = self._admit(lambda d, t: self.store.access_credential(d, t, public_key), token, int(now))
        if isinstance(cred, Reply):
            if cred.status == 401:
                self.metrics.inc("ccflux_reports_auth_rejected_total")
            return cred
        code = self._check_signature(header, signature, cred.device, headers.get(_TIMESTAMP), body, now)
        if code is not None:
            return self._count(httpio.FORBIDDEN[code], "ccflux_reports_sig_rejected_total")
        device_id = cred.device.id if header is not None and cred.device else None
        outcome = await self.writer.submit(report_rows(cred.user_id, device_id, report, int(now)))
        self.metrics.inc("ccflux_reports_accepted_total")
        if outcome != "stored":
            self.metrics.inc(f"ccflux_reports_{outcome}_total")
        return httpio.ok(outcome)

    def _check_signature(self, header: Optional[str], signature: Optional[tuple[bytes, bytes]],
                               device: Optional[Device], timestamp: Optional[str], body: bytes,
                               now: float) -> Optional[ErrorCode]:
        """The 403 code for the request's signature, or None when it may be stored.

        ``signature`` is the parsed header (None: malformed) and ``device`` the token
        user's row for its public key, both fetched before the token check."""
        if header is None:
            return ErrorCode.SIGNATURE_REQUIRED if self.settings.require_signatures else None
        code = security.check_timestamp(timestamp, now)
        if code is not None:
            return code
        if signature is None:
            return ErrorCode.SIGNATURE_INVALID
        if device is None:
            return ErrorCode.KEY_NOT_REGISTERED
        if device.revoked:
            return ErrorCode.KEY_REVOKED
        signed, public_key = signature
        if not security.verify(public_key, signed, body, timestamp or ""):
            return ErrorCode.SIGNATURE_INVALID
        return None

    def _admit(self, lookup: Callable[[bytes, int], Optional[Credential]], token: str,
               now: int) -> Union[Credential, Reply]:
        """The token's credential, or the 401 (unknown) / 429 (over its limit) reply."""
        cred = lookup(security.token_hash(token), now)
        if cred is None:
            return httpio.UNAUTHORIZED
        retry_after = self.limiter.hit(cred.refresh_id)
        if retry_after is None:
            return cred
        return self._count(httpio.rate_limited(retry_after), "ccflux_reports_rate_limited_total")

    def _count(self, reply: Reply, counter: str) -> Reply:
        self.metrics.inc(counter)
        return reply
