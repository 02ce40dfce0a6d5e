"""transport.py: https only, CA handling, timeouts, no redirects, typed errors."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from email.utils import formatdate

import httpx
import pytest
from support.sendkit import BASE, REFRESH, FakeReceiver, configure_env, enqueue, isolate

from ccflux import sender, transport


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, state_dir):
    isolate(monkeypatch)


class Listener:
    """A plain TCP socket on loopback that records every connection and its bytes."""

    def __init__(self, reply: bytes = b"") -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.received: list[bytes] = []

    def serve_one(self) -> threading.Thread:
        def run() -> None:
            conn, _ = self.sock.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.received.append(data)
                conn.sendall(self.reply)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def nothing_arrived(self) -> bool:
        """True when no client even opened a TCP connection (the kernel would have queued it)."""
        self.sock.settimeout(0.5)
        try:
            conn, _ = self.sock.accept()
        except socket.timeout:
            return True
        conn.close()
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    yield lst
    lst.close()


# -- https only ------------------------------------------------------------------

@pytest.mark.parametrize("url", ["https://rx.example", "HTTPS://rx.example/api", "https://127.0.0.1:8443"])
def test_https_urls_pass(url):
    transport.check_url(url)


@pytest.mark.parametrize("url", ["http://rx.example", "ftp://rx.example", "rx.example", "https://", "file:///etc"])
def test_other_urls_are_refused(url):
    with pytest.raises(transport.ConfigurationError):
        transport.check_url(url)


def test_http_needs_exactly_the_dev_flag(monkeypatch):
    for value in ("true", "yes", "0", ""):
        monkeypatch.setenv("CCFLUX_ALLOW_HTTP", value)
        with pytest.raises(transport.InsecureEndpointError, match="CCFLUX_ALLOW_HTTP=1"):
            transport.check_url("http://rx.example")
    monkeypatch.setenv("CCFLUX_ALLOW_HTTP", "1")
    transport.check_url("http://rx.example")


def test_http_refused_before_any_byte_is_sent(monkeypatch, listener):
    """The refusal happens before a TCP connection is even opened."""
    configure_env(monkeypatch, endpoint=f"http://127.0.0.1:{listener.port}/report")
    enqueue()
    result = sender.drain(budget_s=5)
    assert "refusing plain http" in result.stopped
    assert result.remaining == 1
    with transport.open_client() as client, pytest.raises(transport.InsecureEndpointError):
        transport.post(client, f"http://127.0.0.1:{listener.port}/token", headers=transport.bearer(REFRESH))
    assert listener.nothing_arrived()


def test_http_allowed_with_the_flag_reaches_the_socket(monkeypatch, listener):
    monkeypatch.setenv("CCFLUX_ALLOW_HTTP", "1")
    configure_env(monkeypatch, endpoint=f"http://127.0.0.1:{listener.port}")
    enqueue()
    thread = listener.serve_one()
    result = sender.drain(budget_s=5)
    thread.join(5)
    assert listener.received and listener.received[0].startswith(b"POST /token HTTP/1.1")
    assert result.remaining == 1 and "503" in result.stopped  # kept, backed off


# -- trust store ------------------------------------------------------------------

def test_ca_cert_is_added_to_the_default_store(monkeypatch, test_ca):
    baseline = len(transport.ssl_context().get_ca_certs())
    monkeypatch.setenv("CCFLUX_CA_CERT", test_ca.ca_pem_path)
    ctx = transport.ssl_context()
    assert len(ctx.get_ca_certs()) == baseline + 1 and baseline > 50
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_unreadable_ca_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CCFLUX_CA_CERT", str(tmp_path / "missing.pem"))
    with pytest.raises(transport.ConfigurationError, match="CCFLUX_CA_CERT"):
        transport.ssl_context()


def test_tls_needs_the_test_ca(monkeypatch, receiver):
    with transport.open_client() as client, pytest.raises(transport.TransportError) as info:
        transport.post(client, f"{receiver.base_url}/token", headers=transport.bearer(REFRESH))
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) and REFRESH not in str(info.value)
    monkeypatch.setenv("CCFLUX_CA_CERT", receiver.ca.ca_pem_path)
    with transport.open_client() as client, pytest.raises(transport.UnauthorizedError):
        transport.post(client, f"{receiver.base_url}/token", headers=transport.bearer(REFRESH))


def test_verification_is_never_switched_off():
    source_dir = os.path.dirname(transport.__file__)
    for name in os.listdir(source_dir):
        if name.endswith(".py"):
            with open(os.path.join(source_dir, name)) as fh:
                text = fh.read()
            assert "verify=False" not in text and "CERT_NONE" not in text, name


# -- requests --------------------------------------------------------------------------

def test_timeouts_on_every_request():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200)

    with transport.open_client(httpx.MockTransport(handler)) as client:
        transport.post(client, f"{BASE}/x", headers={})
        import time

        transport.post(client, f"{BASE}/x", headers={}, deadline=time.monotonic() + 1.0)
    assert seen[0] == {"connect": 3.0, "read": 5.0, "write": 5.0, "pool": 5.0}
    assert 0.2 <= seen[1]["read"] <= 1.0 and seen[1]["connect"] <= 1.0


def test_redirects_are_not_followed():
    fake = FakeReceiver()
    fake.script("/token", httpx.Response(307, headers={"Location": "https://evil.example/token"}))
    with transport.open_client(fake.transport()) as client, pytest.raises(transport.HTTPStatusError) as info:
        transport.post(client, f"{BASE}/token", headers=transport.bearer(REFRESH))
    assert info.value.status == 307 and fake.paths() == ["/token"]
    assert REFRESH not in str(info.value)


@pytest.mark.parametrize("status,cls", [
    (400, transport.RejectedError), (413, transport.RejectedError), (401, transport.UnauthorizedError),
    (403, transport.ForbiddenError), (429, transport.RateLimitedError), (500, transport.ServerError),
    (503, transport.ServerError), (404, transport.HTTPStatusError)])
def test_status_codes_map_to_exceptions(status, cls):
    fake = FakeReceiver()
    fake.script("/report", fake.answer(status, {"X-CCFLUX-Error": "key-revoked", "Retry-After": "7"}))
    with transport.open_client(fake.transport()) as client, pytest.raises(cls) as info:
        transport.post(client, f"{BASE}/report", headers={})
    assert type(info.value) is cls and isinstance(info.value, transport.CcfluxError)
    assert info.value.status == status
    assert info.value.code == ("key-revoked" if status == 403 else "")
    assert info.value.retry_after == (7.0 if status in (429, 503) else None)


def test_accepted_statuses_return_a_response():
    fake = FakeReceiver()
    fake.script("/register-key", fake.answer(409))
    with transport.open_client(fake.transport()) as client:
        assert transport.post(client, f"{BASE}/register-key", headers={}, ok=(200, 409)).status == 409


def test_network_errors_are_transport_errors_without_secrets():
    def refuse(request):
        raise httpx.ConnectError(f"cannot connect; header was {request.headers['authorization']}")

    with transport.open_client(httpx.MockTransport(refuse)) as client, \
            pytest.raises(transport.TransportError) as info:
        transport.post(client, f"{BASE}/token", headers=transport.bearer(REFRESH))
    assert REFRESH not in str(info.value) and "ConnectError" in str(info.value)


def test_date_header_gives_the_clock_offset():
    fake = FakeReceiver(skew=1234)
    fake.script("/report", lambda request: fake.forbidden("timestamp-stale"))
    with transport.open_client(fake.transport()) as client, pytest.raises(transport.ForbiddenError) as info:
        transport.post(client, f"{BASE}/report", headers={})
    assert abs(info.value.clock_offset - 1234) <= 2


def test_retry_after_seconds_and_http_date():
    now = 1_800_000_000.0
    assert transport.parse_retry_after("120", now) == 120.0
    assert transport.parse_retry_after(formatdate(now + 90, usegmt=True), now) == pytest.approx(90, abs=1)
    assert transport.parse_retry_after(formatdate(now - 90, usegmt=True), now) == 0.0
    assert transport.parse_retry_after("soon", now) is None
    assert transport.parse_retry_after(None, now) is None
    assert transport.parse_http_date("not a date") is None


def test_an_internal_ca_is_tried_alone_first(monkeypatch, receiver):
    """With CCFLUX_CA_CERT the client first trusts that CA alone (no certifi parsing)."""
    monkeypatch.setenv("CCFLUX_CA_CERT", receiver.ca.ca_pem_path)
    with transport.open_client() as client, pytest.raises(transport.UnauthorizedError):
        transport.post(client, f"{receiver.base_url}/token", headers=transport.bearer(REFRESH))
    assert client.ccflux_narrow_trust is not None
    assert len(client.ccflux_narrow_trust.get_ca_certs()) == 1


def test_the_default_store_is_added_when_the_internal_ca_does_not_verify(monkeypatch, receiver, tmp_path):
    """A server whose chain is in the default store (here: a certifi bundle holding the
    receiver's CA) still verifies when CCFLUX_CA_CERT names some other CA."""
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(open(receiver.ca.ca_pem_path, "rb").read())
    monkeypatch.setattr(transport, "_certifi_bundle", lambda: str(bundle))
    monkeypatch.setenv("CCFLUX_CA_CERT", str(other))
    with transport.open_client() as client, pytest.raises(transport.UnauthorizedError):
        transport.post(client, f"{receiver.base_url}/token", headers=transport.bearer(REFRESH))
    assert client.ccflux_narrow_trust is None  # widened once


def test_widening_never_turns_verification_off(monkeypatch, receiver, tmp_path):
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("CCFLUX_CA_CERT", str(other))
    with transport.open_client() as client, pytest.raises(transport.TransportError) as info:
        transport.post(client, f"{receiver.base_url}/token", headers=transport.bearer(REFRESH))
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
