"""HTTP pieces of the hot routes, free of framework machinery: header picking,
bounded body reading straight from ASGI ``receive``, and prebuilt JSON replies
(``response()`` turns one into a Starlette response for the FastAPI routes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Optional

from ccflux.wire import ERROR_HEADER, ErrorCode
from starlette.responses import Response

JSON = b"application/json"
Headers = dict[str, str]


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"content-type", JSON), (b"content-length", str(len(self.body)).encode()),
                *self.headers]


def pick_headers(raw: Iterable[tuple[bytes, bytes]], wanted: frozenset[bytes]) -> Headers:
    """The first value of each wanted (lower-case) header, decoded latin-1 as HTTP says."""
    found: Headers = {}
    for name, value in raw:
        if name in wanted and name not in found:
            found[name.decode("latin-1")] = value.decode("latin-1")
    return found


async def read_body(receive: Callable[[], Awaitable[dict[str, Any]]], limit: int,
                    declared: Optional[str]) -> Optional[bytes]:
    """The whole body, or None once it exceeds ``limit`` bytes.

    A declared Content-Length over the limit is refused unread; otherwise the
    limit is enforced while reading, so a chunked body cannot make us buffer more.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b""  # client went away; nothing will be answered anyway
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def answer(status: int, payload: dict, *headers: tuple[bytes, bytes]) -> Reply:
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode(), headers)


def ok(status: str) -> Reply:
    return _OK.get(status) or answer(200, {"status": status})


_OK = {s: answer(200, {"status": s}) for s in
       ("stored", "duplicate", "conflict", "registered", "already-registered")}
BAD_JSON = answer(400, {"error": "bad-request", "detail": "body does not match the protocol"})
TOO_LARGE = answer(413, {"error": "body-too-large"}, (b"connection", b"close"))
UNAUTHORIZED = answer(401, {"error": "unauthorized"}, (b"www-authenticate", b"Bearer"))


def bad_request(detail: str) -> Reply:
    return answer(400, {"error": "bad-request", "detail": detail})


def rate_limited(retry_after: int) -> Reply:
    return answer(429, {"error": "rate-limited"}, (b"retry-after", str(retry_after).encode()))


FORBIDDEN = {code: answer(403, {"error": code.value}, (ERROR_HEADER.lower().encode(), code.value.encode()))
             for code in ErrorCode}


def response(reply: Reply) -> Response:
    return Response(reply.body, status_code=reply.status, media_type=JSON.decode(),
                    headers={k.decode(): v.decode() for k, v in reply.headers})
