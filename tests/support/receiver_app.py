"""The receiver app in-process for tests: the real ASGI app through Starlette's
TestClient, on a temporary database, with a settable clock (``Harness``)."""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass
from typing import Any, Optional

from ccflux.wire import format_timestamp, signature_header, signed_message
from ccflux_receiver import accounts, schema
from ccflux_receiver.app import create_app
from ccflux_receiver.settings import Settings
from nacl.signing import SigningKey
from starlette.testclient import TestClient


def report_body(session: str = "sess-1", turn: int = 0, models: Optional[dict] = None,
                **extra: Any) -> bytes:
    body = {"schema_version": 1, "session_id": session, "user_email": "", "turn_index": turn,
            "timestamp_utc": "2026-05-11T04:32:00Z",
            "models": models if models is not None else {"claude-x": usage(1, 2, 3, 4)},
            "plugin_version": "0.1.0", **extra}
    return json.dumps(body, separators=(",", ":")).encode()


def usage(i: int, o: int, r: int, w: int) -> dict:
    return {"input_tokens": i, "output_tokens": o, "cache_read_tokens": r, "cache_write_tokens": w}


@dataclass
class User:
    email: str
    refresh: str
    access: str
    key: SigningKey

    @property
    def public_key(self) -> str:
        return base64.b64encode(bytes(self.key.verify_key)).decode()


class Harness:
    """One receiver app on a temporary database, with a settable clock."""

    def __init__(self, tmp_path, **settings: Any) -> None:
        self.settings = Settings(database_path=str(tmp_path / "receiver.db"), **settings)
        self.now = float(int(time.time()))
        self.log = io.StringIO()
        self.app = create_app(self.settings, clock=lambda: self.now, access_log=self.log)
        self.client = TestClient(self.app)
        self._keys = 0

    @property
    def store(self):
        return self.app.app.store

    def add_user(self, email: str) -> str:
        conn = schema.connect(self.settings.database_path)
        try:
            return accounts.add_user(conn, email, int(self.now), self.settings.refresh_token_rolling_days)
        finally:
            conn.close()

    def exchange(self, refresh: str):
        return self.client.post("/token", headers={"Authorization": f"Bearer {refresh}"})

    def register(self, access: str, public_key: str, device_id: str = "dev-1"):
        return self.client.post("/register-key", headers={"Authorization": f"Bearer {access}"},
                                json={"public_key": public_key, "device_id": device_id})

    def user(self, email: str = "a@example.com", register: bool = True) -> User:
        refresh = self.add_user(email)
        access = self.exchange(refresh).json()["access_token"]
        self._keys += 1
        user = User(email, refresh, access, SigningKey(bytes([self._keys]) * 32))
        if register:
            assert self.register(access, user.public_key).status_code == 200
        return user

    def report(self, user: User, body: Optional[bytes] = None, *, sign: bool = True,
               timestamp: Optional[str] = None, key: Optional[SigningKey] = None,
               headers: Optional[dict] = None, access: Optional[str] = None):
        body = report_body() if body is None else body
        sent = {"Authorization": f"Bearer {access or user.access}", "Content-Type": "application/json"}
        if sign:
            stamp = timestamp or format_timestamp(self.now)
            signer = key or user.key
            signature = signer.sign(signed_message(body, stamp)).signature
            sent["X-CCFLUX-Timestamp"] = stamp
            sent["X-CCFLUX-Signature"] = signature_header(signature, bytes(signer.verify_key))
        sent.update(headers or {})
        return self.client.post("/report", content=body, headers=sent)

    def rows(self) -> list[tuple]:
        return self.store.conn.execute(
            "SELECT u.email, r.session_id, r.turn_index, r.model, r.input_tokens, r.output_tokens,"
            " r.cache_read_tokens, r.cache_write_tokens FROM reports r JOIN users u ON u.id = r.user_id"
            " ORDER BY 1, 2, 3, 4").fetchall()
