"""Refresh token -> access token (POST {base}/token), cached in token_cache.json.

The cache (0600) holds the access token, its expiry, the receiver base and a
*fingerprint* of the refresh token, never the refresh token itself: a changed
refresh token or endpoint makes the cached access token unusable, so a
reconfigured hook never sends one receiver's token to another.

A 401 from /token is remembered in the cache too (fingerprint + base), so the
automatic sends of later hook runs do not knock on the receiver with a token
it already refused; ``ccflux flush`` (retry_rejected=True) asks again, and a
new refresh token (another fingerprint) is tried at once.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Optional

from . import log, paths, transport, wire

if TYPE_CHECKING:
    import httpx

    from .config import Config

CACHE_FILE = "token_cache.json"
REJECTED_MESSAGE = ("the receiver rejected the refresh token: ask IT for a new one, "
                    "then `ccflux configure`")
UNPARSED_EXPIRY_LIFETIME_S = wire.TOKEN_REFRESH_MARGIN_SECS + 60  # odd expires_at: reuse briefly


def fingerprint(refresh_token: str) -> str:
    """A one-way tag of the refresh token (it has high entropy: a plain hash is enough)."""
    return hashlib.sha256(b"ccflux-refresh-token\0" + refresh_token.encode()).hexdigest()[:32]


def cache_path() -> str:
    return paths.in_state(CACHE_FILE)


def read_cache() -> dict:
    """The cache file's object, or {} when absent or unreadable (it is only a cache)."""
    raw = paths.read_small(cache_path(), limit=64 * 1024)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def cached_access_token(cfg: "Config", base: str, now: float) -> Optional[str]:
    """The cached access token when it belongs to this refresh token and base and lives > 5 min."""
    data = read_cache()
    token = data.get("access_token")
    if not isinstance(token, str) or not token or not _matches(data, cfg, base):
        return None
    expires = data.get("expires_epoch")
    if not isinstance(expires, (int, float)) or expires - now <= wire.TOKEN_REFRESH_MARGIN_SECS:
        return None
    return token


def access_token(client: "httpx.Client", cfg: "Config", base: str, *, force: bool = False,
                 retry_rejected: bool = False, clock_offset: float = 0.0,
                 deadline: Optional[float] = None) -> str:
    """A usable access token: the cached one, or a fresh exchange.

    ``force`` exchanges even when the cache looks fine (after a 401 from /report or
    /register-key). Raises AuthError when the refresh token is refused.
    """
    now = time.time() + clock_offset  # the receiver's idea of "now" decides expiry
    if not force:
        token = cached_access_token(cfg, base, now)
        if token:
            return token
    if not retry_rejected and was_rejected(cfg, base):
        raise transport.AuthError(REJECTED_MESSAGE)
    return exchange(client, cfg, base, now=now, deadline=deadline)


def was_rejected(cfg: "Config", base: str) -> bool:
    data = read_cache()
    return bool(data.get("rejected")) and _matches(data, cfg, base)


def exchange(client: "httpx.Client", cfg: "Config", base: str, *, now: float,
             deadline: Optional[float] = None) -> str:
    """POST {base}/token with the refresh token; cache and return the access token."""
    url = f"{base}/token"
    try:
        reply = transport.post(client, url, headers=transport.bearer(cfg.refresh_token), deadline=deadline)
    except transport.UnauthorizedError:
        _write_cache({"rejected": True, "base": base, "refresh_fp": fingerprint(cfg.refresh_token),
                      "rejected_at": time.time()})
        raise transport.AuthError(REJECTED_MESSAGE) from None
    token, expires_text = _parse_token_response(reply.content, url)
    expires = _parse_rfc3339(expires_text)
    if expires is None:
        log.error(f"token: unparsable expires_at {expires_text[:64]!r}; re-exchanging soon")
        expires = now + UNPARSED_EXPIRY_LIFETIME_S
    _write_cache({"access_token": token, "expires_at": expires_text, "expires_epoch": expires,
                  "base": base, "refresh_fp": fingerprint(cfg.refresh_token), "obtained_at": time.time()})
    log.activity(f"token: new access token from {base}, expires {expires_text[:64]}")
    return token


def forget() -> None:
    """Drop the cache (``ccflux configure`` with new credentials)."""
    import os

    try:
        os.unlink(cache_path())
    except FileNotFoundError:
        pass


def _matches(data: dict, cfg: "Config", base: str) -> bool:
    return data.get("base") == base and data.get("refresh_fp") == fingerprint(cfg.refresh_token)


def _parse_token_response(content: bytes, url: str) -> tuple[str, str]:
    # pydantic costs ~95 ms to import; exchanges are rare (8-hour tokens), so it is paid here only.
    from pydantic import ValidationError

    from .protocol import TokenResponse

    try:
        parsed = TokenResponse.model_validate_json(content)
    except ValidationError:
        raise transport.TransportError(f"{url}: answer is not a valid token response") from None
    return parsed.access_token, parsed.expires_at


def _parse_rfc3339(text: str) -> Optional[float]:
    from datetime import datetime, timezone

    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"  # Python 3.10's fromisoformat does not take "Z"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _write_cache(data: dict) -> None:
    paths.ensure_dir(paths.state_dir())
    paths.write_private(cache_path(), json.dumps(data, sort_keys=True).encode())
