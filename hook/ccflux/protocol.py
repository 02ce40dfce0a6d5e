"""The ccflux protocol v1 as pydantic models: ONE definition shared by the hook
and the receiver (PROTOCOL.md). Limits and header names live in ``wire.py``.

The receiver validates every request with these models before any crypto or
database work. The hook builds report bodies without pydantic (start-up cost);
``tests/test_protocol.py`` proves what it builds validates here.
"""

from __future__ import annotations

from typing import Annotated, Dict, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from .wire import (
    MAX_DEVICE_ID,
    MAX_MODEL_NAME,
    MAX_MODELS,
    MAX_PLUGIN_VERSION,
    MAX_PUBLIC_KEY,
    MAX_SESSION_ID,
    MAX_TIMESTAMP,
    MAX_TOKEN_COUNT,
    MAX_USER_EMAIL,
    SCHEMA_VERSION,
    ErrorCode,
)

__all__ = [
    "ErrorCode",
    "ModelUsage",
    "RegisterKeyRequest",
    "ReportBody",
    "TokenResponse",
]

TokenCount = Annotated[StrictInt, Field(ge=0, le=MAX_TOKEN_COUNT)]
ModelName = Annotated[StrictStr, Field(min_length=1, max_length=MAX_MODEL_NAME)]


class _Wire(BaseModel):
    # Receivers ignore unknown fields (PROTOCOL.md): a newer client may add some.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ModelUsage(_Wire):
    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    cache_read_tokens: TokenCount = 0
    cache_write_tokens: TokenCount = 0


class ReportBody(_Wire):
    """One turn's usage: POST {base}/report."""

    schema_version: Literal[1] = SCHEMA_VERSION
    session_id: Annotated[StrictStr, Field(min_length=1, max_length=MAX_SESSION_ID)]
    user_email: Annotated[StrictStr, Field(max_length=MAX_USER_EMAIL)] = ""
    turn_index: Annotated[StrictInt, Field(ge=0, le=MAX_TOKEN_COUNT)]
    timestamp_utc: Annotated[StrictStr, Field(max_length=MAX_TIMESTAMP)]
    session_start_utc: Optional[Annotated[StrictStr, Field(max_length=MAX_TIMESTAMP)]] = None
    models: Annotated[Dict[ModelName, ModelUsage], Field(max_length=MAX_MODELS)]
    plugin_version: Annotated[StrictStr, Field(max_length=MAX_PLUGIN_VERSION)] = ""


class TokenResponse(_Wire):
    """200 answer of POST {base}/token."""

    access_token: Annotated[StrictStr, Field(min_length=1, max_length=512)]
    expires_at: Annotated[StrictStr, Field(max_length=MAX_TIMESTAMP)]
    token_type: StrictStr = "Bearer"


class RegisterKeyRequest(_Wire):
    """Body of POST {base}/register-key."""

    public_key: Annotated[StrictStr, Field(min_length=1, max_length=MAX_PUBLIC_KEY)]
    device_id: Annotated[StrictStr, Field(min_length=1, max_length=MAX_DEVICE_ID)]
