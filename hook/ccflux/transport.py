"""The one way ccflux talks to a receiver: an HTTPS-only httpx client and a
POST helper that turns answers into a small exception hierarchy.

Every request of the send stack goes through ``post`` so that the rules of
PROTOCOL.md hold in one place: no plain http (unless ``CCFLUX_ALLOW_HTTP=1``),
certificate verification always on (``CCFLUX_CA_CERT`` only *adds* a CA),
a timeout on every request, and redirects never followed (a redirect to
another host would carry our ``Authorization`` header with it).

Exception messages carry statuses and error codes, never tokens, keys or
request headers; ``log.redact`` runs over anything that came from outside.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Mapping, Optional

from . import log, wire

if TYPE_CHECKING:  # httpx is imported when a client is made, not with this module
    import httpx

ENV_ALLOW_HTTP = "CCFLUX_ALLOW_HTTP"
ENV_CA_CERT = "CCFLUX_CA_CERT"

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 5.0
MIN_TIMEOUT_S = 0.2  # a request squeezed by the budget still gets a real chance


class CcfluxError(Exception):
    """Base of every error the send stack raises: callers catch this one."""


class ConfigurationError(CcfluxError):
    """The local settings cannot work (bad endpoint, unreadable CA file)."""


class InsecureEndpointError(ConfigurationError):
    """An http:// (or other non-https) endpoint, refused before any byte is sent."""


class TransportError(CcfluxError):
    """No usable answer: connection, TLS or timeout failure, or a malformed reply. Retry later."""


class AuthError(CcfluxError):
    """The receiver rejected the refresh token at /token: a person must act."""


class HTTPStatusError(CcfluxError):
    """The receiver answered with a status the caller did not accept."""

    def __init__(self, status: int, url: str, code: str = "", retry_after: Optional[float] = None,
                 server_time: Optional[float] = None, received_at: float = 0.0) -> None:
        self.status = status
        self.url = url
        self.code = code  # X-CCFLUX-Error on a 403, else ""
        self.retry_after = retry_after  # seconds, from Retry-After
        self.server_time = server_time  # epoch from the Date header
        self.received_at = received_at or time.time()
        detail = f" ({code})" if code else ""
        super().__init__(f"{url} answered {status}{detail}")

    @property
    def clock_offset(self) -> Optional[float]:
        """Receiver clock minus ours, from the Date header; None without one."""
        if self.server_time is None:
            return None
        return self.server_time - self.received_at


class UnauthorizedError(HTTPStatusError):
    """401: the bearer token is unknown or expired."""


class ForbiddenError(HTTPStatusError):
    """403: see ``code`` (an ``wire.ErrorCode`` value, or "" if absent)."""


class RejectedError(HTTPStatusError):
    """400/413: this exact request can never succeed; resending is pointless."""


class RateLimitedError(HTTPStatusError):
    """429: stop and come back after ``retry_after``."""


class ServerError(HTTPStatusError):
    """5xx: the receiver is unwell; back off and retry."""


_BY_STATUS = {400: RejectedError, 401: UnauthorizedError, 403: ForbiddenError,
              413: RejectedError, 429: RateLimitedError}


class Response:
    """An accepted answer: status and (small) body."""

    __slots__ = ("status", "content", "headers")

    def __init__(self, status: int, content: bytes, headers: Mapping[str, str]) -> None:
        self.status = status
        self.content = content
        self.headers = headers


def check_url(url: str) -> None:
    """Refuse anything but https (http only with CCFLUX_ALLOW_HTTP=1), before any connection."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or not rest or rest.startswith("/"):
        raise ConfigurationError(f"endpoint {url!r} is not an absolute https:// URL")
    if scheme == "https":
        return
    if scheme == "http":
        if os.environ.get(ENV_ALLOW_HTTP) == "1":
            return
        raise InsecureEndpointError(
            f"refusing plain http endpoint {url}: use https:// "
            f"({ENV_ALLOW_HTTP}=1 allows http for local development only)")
    raise InsecureEndpointError(f"endpoint scheme {scheme!r} is not supported: use https://")


def ssl_context():
    """The default trust store (certifi), plus CCFLUX_CA_CERT when set. Never unverified."""
    import ssl

    ctx = ssl.create_default_context(cafile=_certifi_bundle())
    _add_extra_ca(ctx)
    return ctx


def open_client(http_transport: Optional["httpx.BaseTransport"] = None) -> "httpx.Client":
    """The httpx client for one drain. ``http_transport`` is for tests (MockTransport).

    With CCFLUX_CA_CERT set, the client starts out trusting that CA alone and
    adds the default store only if a server's chain does not verify against it
    (``post`` retries once): the trust is the same union, but the common case —
    an internal CA — skips parsing certifi's ~150 certificates (~25 ms a send).
    """
    import httpx

    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    if http_transport is not None:
        return httpx.Client(transport=http_transport, timeout=timeout, follow_redirects=False)
    narrow = _extra_ca_context()
    # trust_env stays on for corporate HTTPS_PROXY/NO_PROXY; it cannot weaken verify,
    # which is an explicit context here.
    client = httpx.Client(verify=narrow or ssl_context(), timeout=timeout, follow_redirects=False)
    client.ccflux_narrow_trust = narrow  # widened by post() on a failed verification
    return client


def _extra_ca_context():
    """A verifying context trusting only CCFLUX_CA_CERT, or None when it is unset."""
    if not os.environ.get(ENV_CA_CERT):
        return None
    import ssl

    extra = os.environ[ENV_CA_CERT]
    try:  # with a cafile, create_default_context loads that file alone
        return ssl.create_default_context(cafile=extra)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"{ENV_CA_CERT}={extra} cannot be used as a CA file ({exc.__class__.__name__})") from None


def _widen_trust(client: "httpx.Client") -> bool:
    """Add the default store to a client that trusted CCFLUX_CA_CERT alone."""
    ctx = getattr(client, "ccflux_narrow_trust", None)
    if ctx is None:
        return False
    client.ccflux_narrow_trust = None
    ctx.load_verify_locations(cafile=_certifi_bundle())
    return True


def _add_extra_ca(ctx) -> None:
    import ssl

    extra = os.environ.get(ENV_CA_CERT)
    if extra:
        try:
            ctx.load_verify_locations(cafile=extra)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"{ENV_CA_CERT}={extra} cannot be used as a CA file ({exc.__class__.__name__})") from None


def _certifi_bundle() -> str:
    import certifi

    return certifi.where()


def post(client: "httpx.Client", url: str, *, content: bytes = b"", headers: Mapping[str, str],
         ok: tuple[int, ...] = (200,), deadline: Optional[float] = None) -> Response:
    """POST and return the answer when its status is in ``ok``; raise otherwise.

    ``deadline`` (time.monotonic) shrinks the timeouts so a drain never overruns its budget.
    """
    import httpx

    check_url(url)  # also here: no code path may reach the network with http
    try:
        try:
            reply = client.post(url, content=content, headers=dict(headers), timeout=_timeout(deadline))
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" not in str(exc) or not _widen_trust(client):
                raise
            reply = client.post(url, content=content, headers=dict(headers), timeout=_timeout(deadline))
    except httpx.HTTPError as exc:
        raise TransportError(f"{url}: {exc.__class__.__name__}: {_safe(str(exc), headers)}") from None
    if reply.status_code in ok:
        return Response(reply.status_code, reply.content, reply.headers)
    raise _status_error(reply.status_code, url, reply.headers)


def _timeout(deadline: Optional[float]):
    import httpx

    if deadline is None:
        return httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    left = max(deadline - time.monotonic(), MIN_TIMEOUT_S)
    return httpx.Timeout(min(READ_TIMEOUT_S, left), connect=min(CONNECT_TIMEOUT_S, left))


def _status_error(status: int, url: str, headers: Mapping[str, str]) -> HTTPStatusError:
    now = time.time()
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else HTTPStatusError)
    code = headers.get(wire.ERROR_HEADER, "").strip()[:64] if status == 403 else ""
    retry = parse_retry_after(headers.get("Retry-After"), now) if status in (429, 503) else None
    return cls(status, url, code=code, retry_after=retry,
               server_time=parse_http_date(headers.get("Date")), received_at=now)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = parse_http_date(value)
    if when is None:
        return None
    return max(0.0, when - (time.time() if now is None else now))


def parse_http_date(value: Optional[str]) -> Optional[float]:
    """Epoch seconds of an HTTP date (``Date``/``Retry-After``), or None."""
    if not value:
        return None
    from email.utils import parsedate_to_datetime

    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # HTTP dates are GMT by definition
        import datetime

        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _safe(text: str, headers: Mapping[str, str]) -> str:
    """Exception text with any secret we sent masked (httpx rarely echoes, but be sure)."""
    secrets = [v.split(" ", 1)[-1] for k, v in headers.items() if k.lower() == "authorization"]
    return log.redact(text, *secrets)[:300]
