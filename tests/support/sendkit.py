"""Helpers for the send-stack tests (auth, signing, transport, sender, commands).

``FakeReceiver`` is an in-process receiver for httpx.MockTransport: it follows
PROTOCOL.md closely enough for unit tests (tokens, key registration, signature
and timestamp checks, a Date header from its own, skewable clock) and lets a
test script any answer. The real receiver (support.receiver) backs the
integration tests.
"""

from __future__ import annotations

import base64
import calendar
import json
import os
import time
from email.utils import formatdate
from typing import Callable, Optional, Union

import httpx
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from ccflux import report, wire
from ccflux.state import StateStore, Usage

BASE = "https://rx.test"
REFRESH = "ccf_rt_unit-refresh-token-0123456789"

Scripted = Union[httpx.Response, Callable[[httpx.Request], httpx.Response], Exception]


class FakeReceiver:
    """Answers /token, /register-key and /report like a receiver; ``script`` overrides."""

    def __init__(self, refresh: str = REFRESH, skew: float = 0.0, lifetime: float = 8 * 3600) -> None:
        self.refresh = refresh
        self.skew = skew  # receiver clock minus the real clock
        self.lifetime = lifetime
        self.requests: list[httpx.Request] = []
        self.scripts: dict[str, list[Scripted]] = {}
        self.tokens: set[str] = set()
        self.keys: set[bytes] = set()
        self.revoked: set[bytes] = set()
        self.accepted: list[bytes] = []
        self.on_report: Optional[Callable[[httpx.Request], None]] = None

    # -- test controls --------------------------------------------------------

    def script(self, path: str, *answers: Scripted) -> None:
        self.scripts.setdefault(path, []).extend(answers)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def now(self) -> float:
        return time.time() + self.skew

    def answer(self, status: int, headers: Optional[dict] = None, body: bytes = b"{}") -> httpx.Response:
        hdrs = {"Date": formatdate(self.now(), usegmt=True), "Content-Type": "application/json"}
        hdrs.update(headers or {})
        return httpx.Response(status, headers=hdrs, content=body)

    def forbidden(self, code: str) -> httpx.Response:
        return self.answer(403, {wire.ERROR_HEADER: code})

    # -- the receiver ------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        queue = self.scripts.get(request.url.path)
        if queue:
            scripted = queue.pop(0)
            if isinstance(scripted, Exception):
                raise scripted
            return scripted(request) if callable(scripted) else scripted
        route = {"/token": self._token, "/register-key": self._register, "/report": self._report}
        handler = route.get(request.url.path)
        return handler(request) if handler else self.answer(404)

    def _bearer(self, request: httpx.Request) -> str:
        value = request.headers.get("authorization", "")
        return value[len("Bearer "):] if value.startswith("Bearer ") else ""

    def _token(self, request: httpx.Request) -> httpx.Response:
        if self._bearer(request) != self.refresh:
            return self.answer(401)
        token = f"ccf_at_unit{len(self.tokens)}-{os.urandom(6).hex()}"
        self.tokens.add(token)
        body = {"access_token": token, "expires_at": wire.format_timestamp(self.now() + self.lifetime),
                "token_type": "Bearer"}
        return self.answer(200, body=json.dumps(body).encode())

    def _register(self, request: httpx.Request) -> httpx.Response:
        if self._bearer(request) not in self.tokens:
            return self.answer(401)
        doc = json.loads(request.content)
        self.keys.add(base64.b64decode(doc["public_key"]))
        return self.answer(200)

    def _report(self, request: httpx.Request) -> httpx.Response:
        if self._bearer(request) not in self.tokens:
            return self.answer(401)
        timestamp = request.headers.get(wire.TIMESTAMP_HEADER)
        header = request.headers.get(wire.SIGNATURE_HEADER)
        if header is None:
            return self.forbidden("signature-required")
        if timestamp is None:
            return self.forbidden("timestamp-missing")
        sent = calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))
        if abs(sent - self.now()) > wire.SIGNATURE_WINDOW_SECS:
            return self.forbidden("timestamp-stale")
        scheme, sig, key = header.split(" ")
        public = base64.b64decode(key)
        if public in self.revoked:
            return self.forbidden("key-revoked")
        if public not in self.keys:
            return self.forbidden("key-not-registered")
        try:
            VerifyKey(public).verify(wire.signed_message(request.content, timestamp), base64.b64decode(sig))
        except BadSignatureError:
            return self.forbidden("signature-invalid")
        self.accepted.append(request.content)
        if self.on_report:
            self.on_report(request)
        return self.answer(200)


def enqueue(session: str = "sess-1", turn: Optional[int] = None, model: str = "claude-sonnet-4-5",
            tokens: tuple[int, int, int, int] = (10, 20, 30, 40), body: Optional[bytes] = None) -> int:
    """Queue one report the way the hook does; returns its outbox id."""
    with StateStore.open() as store:
        with store.transaction():
            index = store.next_turn_index(session, None) if turn is None else turn
            data = body if body is not None else report.body(
                session, index, "dev@example.com", wire.format_timestamp(time.time()), None,
                {model: Usage(model, *tokens)})
            return store.enqueue(session, index, data)


def outbox_bodies() -> list[bytes]:
    with StateStore.open() as store:
        return [item.body for item in store.outbox_pending(100_000)]


def meta(key: str) -> Optional[str]:
    with StateStore.open() as store:
        return store.get_meta(key)


def set_meta(key: str, value: Optional[str]) -> None:
    with StateStore.open() as store:
        store.set_meta(key, value)


def configure_env(monkeypatch, endpoint: str = BASE, token: str = REFRESH) -> None:
    """Settings through the plugin's userConfig environment, as Claude Code passes them."""
    monkeypatch.setenv("CLAUDE_PLUGIN_OPTION_API_ENDPOINT", endpoint)
    monkeypatch.setenv("CLAUDE_PLUGIN_OPTION_API_TOKEN", token)
    monkeypatch.setenv("CCFLUX_SEND_MODE", "none")


def isolate(monkeypatch) -> None:
    """No setting from the developer's shell may leak into a test."""
    for name in ("CLAUDE_PLUGIN_OPTION_API_ENDPOINT", "CLAUDE_PLUGIN_OPTION_API_TOKEN", "CCFLUX_CA_CERT",
                 "CCFLUX_ALLOW_HTTP", "CCFLUX_SEND_MODE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                 "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def secret_forms(*secrets: Union[str, bytes]) -> list[str]:
    """Each secret as it could leak: raw, base64, hex."""
    forms: list[str] = []
    for secret in secrets:
        raw = secret.encode() if isinstance(secret, str) else secret
        forms += [raw.decode("latin-1"), base64.b64encode(raw).decode(), raw.hex()]
    return [f for f in forms if len(f) >= 8]


def state_text(state_dir) -> str:
    """Every log in the state dir, as text (for "no secrets in logs" checks)."""
    text = []
    for name in sorted(os.listdir(state_dir)):
        if name.endswith(".log") or ".log." in name:
            with open(os.path.join(state_dir, name), "rb") as fh:
                text.append(fh.read().decode("utf-8", "replace"))
    return "\n".join(text)
