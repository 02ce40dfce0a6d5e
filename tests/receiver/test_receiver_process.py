"""The real `serve` process over TLS, driven through the tests/support fixture."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from ccflux.wire import format_timestamp, signature_header, signed_message
from nacl.signing import SigningKey
from support.receiver import ReceiverProcess


def _client(rx: ReceiverProcess) -> httpx.Client:
    return httpx.Client(base_url=rx.base_url, verify=rx.ca.ssl_context(), timeout=10)


def _report(session: str = "s1", turn: int = 0) -> bytes:
    return json.dumps({"schema_version": 1, "session_id": session, "user_email": "",
                       "turn_index": turn, "timestamp_utc": "2026-05-11T04:32:10Z",
                       "models": {"claude-x": {"input_tokens": 3, "output_tokens": 5,
                                               "cache_read_tokens": 7, "cache_write_tokens": 11}},
                       "plugin_version": "0.1.0"}).encode()


def _signed_post(client: httpx.Client, access: str, key: SigningKey, body: bytes) -> httpx.Response:
    stamp = format_timestamp(time.time())
    sig = key.sign(signed_message(body, stamp)).signature
    return client.post("/report", content=body, headers={
        "Authorization": f"Bearer {access}", "Content-Type": "application/json",
        "X-CCFLUX-Timestamp": stamp,
        "X-CCFLUX-Signature": signature_header(sig, bytes(key.verify_key))})


def test_full_flow_over_tls_survives_restart(receiver: ReceiverProcess) -> None:
    refresh = receiver.add_user("a@example.com")
    assert refresh.startswith("ccf_rt_") and "\n" not in refresh
    key = SigningKey(b"\x2a" * 32)
    with _client(receiver) as client:
        assert client.get("/health").json() == {"status": "ok", "db": "ok"}
        access = client.post("/token", headers={"Authorization": f"Bearer {refresh}"}).json()["access_token"]
        registered = client.post("/register-key", headers={"Authorization": f"Bearer {access}"}, json={
            "public_key": base64.b64encode(bytes(key.verify_key)).decode(), "device_id": "laptop"})
        assert registered.status_code == 200
        assert _signed_post(client, access, key, _report()).status_code == 200
    receiver.restart()
    with _client(receiver) as client:
        assert _signed_post(client, access, key, _report()).status_code == 200  # resend: stored once
        assert _signed_post(client, access, key, _report(turn=1)).status_code == 200
    rows = receiver.usage(by="user,session,model")
    assert rows == [{"user": "a@example.com", "session_id": "s1", "model": "claude-x",
                     "input_tokens": 6, "output_tokens": 10, "cache_read_tokens": 14,
                     "cache_write_tokens": 22, "reports": 2}]
    assert "a@example.com" in receiver.usage(as_json=False)


def test_log_has_no_secrets(receiver: ReceiverProcess) -> None:
    refresh = receiver.add_user("b@example.com")
    with _client(receiver) as client:
        access = client.post("/token", headers={"Authorization": f"Bearer {refresh}"}).json()["access_token"]
        client.post("/report", content=b"{}", headers={"Authorization": f"Bearer {access}"})
    receiver.stop()
    log = receiver.logs()
    assert '"path":"/token"' in log and '"status":400' in log
    assert refresh not in log and access not in log and "ccf_" not in log


def test_kill_and_start_again_keeps_the_database(receiver: ReceiverProcess) -> None:
    refresh = receiver.add_user("c@example.com")
    receiver.kill()
    receiver.start()
    with _client(receiver) as client:
        assert client.post("/token", headers={"Authorization": f"Bearer {refresh}"}).status_code == 200


def test_plain_http_is_not_served(receiver: ReceiverProcess) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(receiver.base_url.replace("https", "http") + "/health", timeout=5)


def test_settings_from_the_environment_reach_serve(tmp_path, test_ca) -> None:
    with ReceiverProcess(tmp_path / "rx", test_ca, env={"REQUIRE_SIGNATURES": "1", "BODY_LIMIT_KB": "1"}) as rx:
        refresh = rx.add_user("d@example.com")
        with _client(rx) as client:
            access = client.post("/token", headers={"Authorization": f"Bearer {refresh}"}).json()["access_token"]
            auth = {"Authorization": f"Bearer {access}", "Content-Type": "application/json"}
            unsigned = client.post("/report", content=_report(), headers=auth)
            assert (unsigned.status_code, unsigned.headers["x-ccflux-error"]) == (403, "signature-required")
            assert "date" in unsigned.headers  # clients correct their clock from it

            def chunked():
                for _ in range(3):
                    yield b"x" * 1000

            assert client.post("/report", content=chunked(), headers=auth).status_code == 413
            assert client.get("/health").status_code == 200  # still serving


def test_bad_settings_stop_serve_with_a_message(tmp_path, test_ca) -> None:
    rx = ReceiverProcess(tmp_path / "rx", test_ca, env={"ACCESS_TOKEN_EXPIRY_SECS": "soon"})
    with pytest.raises(RuntimeError, match="ACCESS_TOKEN_EXPIRY_SECS"):
        rx.start()
