"""Small HTTP helpers shared by the routes: bounded body reading and JSON answers."""

from __future__ import annotations

import json
from typing import Optional

from ccflux.wire import ERROR_HEADER, ErrorCode
from starlette.requests import Request
from starlette.responses import Response

JSON = "application/json"


async def read_body(request: Request, limit: int) -> Optional[bytes]:
    """The whole body, or None once it exceeds ``limit`` bytes.

    Enforced while reading, so a chunked body without Content-Length cannot make
    us buffer more than the limit; a declared length over it is refused unread.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def answer(status: int, payload: dict, headers: Optional[dict] = None) -> Response:
    content = json.dumps(payload, separators=(",", ":")).encode()
    return Response(content, status_code=status, headers=headers, media_type=JSON)


def ok(status: str) -> Response:
    return answer(200, {"status": status})


def bad_request(detail: str) -> Response:
    return answer(400, {"error": "bad-request", "detail": detail})


def too_large() -> Response:
    return answer(413, {"error": "body-too-large"}, {"Connection": "close"})


def unauthorized() -> Response:
    return answer(401, {"error": "unauthorized"}, {"WWW-Authenticate": "Bearer"})


def rate_limited(retry_after: int) -> Response:
    return answer(429, {"error": "rate-limited"}, {"Retry-After": str(retry_after)})


def forbidden(code: ErrorCode) -> Response:
    return answer(403, {"error": code.value}, {ERROR_HEADER: code.value})
