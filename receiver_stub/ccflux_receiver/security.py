"""Secrets and signatures: token minting and hashing, constant-time checks, Ed25519."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import Optional

from ccflux.wire import SIGNATURE_SCHEME, SIGNATURE_WINDOW_SECS, ErrorCode, signed_message
from nacl.bindings import crypto_sign_open  # PyNaCl's verify, minus a wrapper object
from nacl.exceptions import BadSignatureError, CryptoError

REFRESH_PREFIX = "ccf_rt_"
ACCESS_PREFIX = "ccf_at_"
_TOKEN_SHAPE = re.compile(r"ccf_[ar]t_[A-Za-z0-9_-]{20,200}")
MAX_AUTH_HEADER = 256


def new_token(prefix: str) -> str:
    """A fresh bearer secret: recognisable prefix + 256 random bits."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    """What the database stores instead of the token itself."""
    return hashlib.sha256(token.encode("ascii")).digest()


def same_secret(expected_hash: bytes, presented_hash: bytes) -> bool:
    return hmac.compare_digest(expected_hash, presented_hash)


def bearer_token(authorization: Optional[str], prefix: str) -> Optional[str]:
    """The token of ``Authorization: Bearer <token>`` if it has our shape, else None.

    A pure string check (no database, no hashing) so junk is turned away cheaply.
    """
    if not authorization or len(authorization) > MAX_AUTH_HEADER:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(prefix):
        return None
    return token if _TOKEN_SHAPE.fullmatch(token) else None


def decode_public_key(text: str) -> Optional[bytes]:
    """Standard base64 of a 32-byte Ed25519 public key -> the raw bytes, else None."""
    raw = _b64(text)
    return raw if raw is not None and len(raw) == 32 else None


def _b64(text: str) -> Optional[bytes]:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def parse_signature(header: str) -> Optional[tuple[bytes, bytes]]:
    """``ed25519 <b64 sig> <b64 key>`` -> (signature, public key) or None if malformed."""
    parts = header.split(" ")
    if len(parts) != 3 or parts[0] != SIGNATURE_SCHEME:
        return None
    signature, key = _b64(parts[1]), decode_public_key(parts[2])
    if signature is None or len(signature) != 64 or key is None:
        return None
    return signature, key


def parse_timestamp(value: str) -> Optional[float]:
    """RFC 3339 with an explicit offset -> epoch seconds, else None."""
    if not 0 < len(value) <= 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
        return None if moment.tzinfo is None else moment.timestamp()
    except (ValueError, OverflowError):
        return None


def check_timestamp(value: Optional[str], now: float) -> Optional[ErrorCode]:
    """The 403 code for the timestamp header of a signed request, or None if fine."""
    when = parse_timestamp(value) if value else None
    if when is None:
        return ErrorCode.TIMESTAMP_MISSING  # absent or unusable: a client bug either way
    if abs(now - when) > SIGNATURE_WINDOW_SECS:
        return ErrorCode.TIMESTAMP_STALE
    return None


def verify(public_key: bytes, signature: bytes, body: bytes, timestamp: str) -> bool:
    """Ed25519 over body + b"\\n" + timestamp (PROTOCOL.md)."""
    try:
        crypto_sign_open(signature + signed_message(body, timestamp), public_key)
    except (BadSignatureError, CryptoError, ValueError, TypeError, UnicodeEncodeError):
        return False
    return True
