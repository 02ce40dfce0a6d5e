"""Wire constants of the ccflux protocol v1 (see PROTOCOL.md), stdlib only.

The pydantic models in ``protocol.py`` are built from these limits and names;
the hook's send path uses them directly so that it never pays for importing
pydantic (about 95 ms here) on every turn.
"""

from __future__ import annotations

import time
from enum import Enum

SCHEMA_VERSION = 1

TIMESTAMP_HEADER = "X-CCFLUX-Timestamp"
SIGNATURE_HEADER = "X-CCFLUX-Signature"
ERROR_HEADER = "X-CCFLUX-Error"
SIGNATURE_SCHEME = "ed25519"

# Limits of the report body (PROTOCOL.md); the receiver answers 400 past them.
MAX_SESSION_ID = 64
MAX_TIMESTAMP = 64
MAX_MODEL_NAME = 128
MAX_MODELS = 20
MAX_PLUGIN_VERSION = 64
MAX_USER_EMAIL = 320
MAX_TOKEN_COUNT = 2**53 - 1  # JSON-safe integer; no real turn comes near it
MAX_PUBLIC_KEY = 64
MAX_DEVICE_ID = 255

# Field names of one model's usage in a report body, in wire order.
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")

SIGNATURE_WINDOW_SECS = 300
TOKEN_REFRESH_MARGIN_SECS = 300  # exchange again within 5 minutes of expiry


class ErrorCode(str, Enum):
    """Values of the ``X-CCFLUX-Error`` header on a 403."""

    TIMESTAMP_MISSING = "timestamp-missing"
    TIMESTAMP_STALE = "timestamp-stale"
    SIGNATURE_INVALID = "signature-invalid"
    KEY_NOT_REGISTERED = "key-not-registered"
    KEY_REVOKED = "key-revoked"
    SIGNATURE_REQUIRED = "signature-required"


def base_url(endpoint: str) -> str:
    """The receiver base for a configured endpoint: ``https://h/report`` -> ``https://h``."""
    url = endpoint.strip().rstrip("/")
    if url.endswith("/report"):
        url = url[: -len("/report")]
    return url


def format_timestamp(epoch: float) -> str:
    """RFC 3339, UTC, whole seconds: the ``X-CCFLUX-Timestamp`` form."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))


def signed_message(body: bytes, timestamp: str) -> bytes:
    """The bytes an Ed25519 report signature covers: body, one newline, timestamp."""
    return body + b"\n" + timestamp.encode("ascii")


def signature_header(signature: bytes, public_key: bytes) -> str:
    import base64

    sig = base64.b64encode(signature).decode("ascii")
    key = base64.b64encode(public_key).decode("ascii")
    return f"{SIGNATURE_SCHEME} {sig} {key}"
