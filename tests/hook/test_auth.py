"""auth.py: refresh -> access token, the 0600 cache, re-exchange rules, /token 401."""

from __future__ import annotations

import json
import os
import stat
import time

import httpx
import pytest
from support.sendkit import BASE, REFRESH, FakeReceiver, isolate

from ccflux import auth, transport, wire
from ccflux.config import Config


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, state_dir):
    isolate(monkeypatch)


def cfg(token: str = REFRESH) -> Config:
    return Config(f"{BASE}/report", token, "test-device")


def get(fake: FakeReceiver, config: Config = None, base: str = BASE, **kw) -> str:
    with transport.open_client(fake.transport()) as client:
        return auth.access_token(client, config or cfg(), base, **kw)


def test_exchange_sends_only_the_refresh_token_and_caches_privately(state_dir):
    fake = FakeReceiver()
    token = get(fake)
    request = fake.requests[0]
    assert request.url.path == "/token" and request.method == "POST" and request.content == b""
    assert request.headers["authorization"] == f"Bearer {REFRESH}"
    path = state_dir / auth.CACHE_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    raw = path.read_text()
    assert REFRESH not in raw and token in raw
    data = json.loads(raw)
    assert data["base"] == BASE and data["refresh_fp"] == auth.fingerprint(REFRESH)


def test_cached_token_is_reused():
    fake = FakeReceiver()
    first = get(fake)
    assert get(fake) == first and fake.paths() == ["/token"]


@pytest.mark.parametrize("lifetime,exchanges", [(4 * 60, 2), (10 * 60, 1)])
def test_exchanged_again_within_five_minutes_of_expiry(lifetime, exchanges):
    fake = FakeReceiver(lifetime=lifetime)
    get(fake)
    get(fake)
    assert fake.paths().count("/token") == exchanges


def test_clock_offset_counts_for_expiry():
    fake = FakeReceiver(lifetime=10 * 60)
    get(fake)
    get(fake, clock_offset=6 * 60)  # the receiver is 6 min ahead: only 4 min left by its clock
    assert fake.paths().count("/token") == 2


def test_changed_refresh_token_or_endpoint_invalidates_the_cache():
    fake = FakeReceiver()
    get(fake)
    fake.refresh = "ccf_rt_another-token-entirely"
    get(fake, cfg("ccf_rt_another-token-entirely"))
    get(fake, cfg("ccf_rt_another-token-entirely"), base="https://other.test")
    assert fake.paths().count("/token") == 3
    assert fake.requests[2].url.host == "other.test"


def test_force_exchanges_even_with_a_good_cache():
    fake = FakeReceiver()
    first = get(fake)
    second = get(fake, force=True)
    assert first != second and fake.paths() == ["/token", "/token"]


def test_token_401_is_an_auth_error_and_is_remembered():
    fake = FakeReceiver(refresh="ccf_rt_what-the-receiver-knows")
    with pytest.raises(transport.AuthError, match="ask IT for a new one"):
        get(fake)
    with pytest.raises(transport.AuthError):
        get(fake)  # no second knock with a refused token
    assert fake.paths() == ["/token"]
    with pytest.raises(transport.AuthError):
        get(fake, retry_rejected=True)  # `ccflux flush` asks again
    assert fake.paths() == ["/token", "/token"]
    assert auth.was_rejected(cfg(), BASE)


def test_new_refresh_token_is_tried_after_a_rejection():
    fake = FakeReceiver(refresh="ccf_rt_new-one")
    with pytest.raises(transport.AuthError):
        get(fake)
    assert get(fake, cfg("ccf_rt_new-one")).startswith("ccf_at_")


def test_malformed_token_answer_is_not_cached():
    fake = FakeReceiver()
    fake.script("/token", fake.answer(200, body=b'{"nope": 1}'))
    with pytest.raises(transport.TransportError, match="not a valid token response"):
        get(fake)
    assert auth.read_cache() == {}


def test_odd_expiry_is_reused_only_briefly():
    fake = FakeReceiver()
    body = json.dumps({"access_token": "ccf_at_x", "expires_at": "tomorrow-ish", "token_type": "Bearer"})
    fake.script("/token", fake.answer(200, body=body.encode()))
    assert get(fake) == "ccf_at_x"
    expires = auth.read_cache()["expires_epoch"]
    assert time.time() < expires <= time.time() + wire.TOKEN_REFRESH_MARGIN_SECS + 61


@pytest.mark.parametrize("text,epoch", [
    ("2026-05-11T04:32:10Z", 1778473930.0),
    ("2026-05-11T06:32:10+02:00", 1778473930.0),
    ("2026-05-11T04:32:10.500Z", 1778473930.5),
    ("garbage", None)])
def test_rfc3339_parsing(text, epoch):
    assert auth._parse_rfc3339(text) == epoch


def test_server_errors_surface_as_typed_errors():
    fake = FakeReceiver()
    fake.script("/token", fake.answer(503), fake.answer(429, {"Retry-After": "3"}),
                httpx.ConnectError("down"))
    for cls in (transport.ServerError, transport.RateLimitedError, transport.TransportError):
        with pytest.raises(cls):
            get(fake)
    assert not auth.was_rejected(cfg(), BASE)
