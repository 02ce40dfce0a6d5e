"""signing.py: the device key (0600, made once even under races), signatures, registration."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import stat

import pytest
from nacl.signing import VerifyKey
from support.sendkit import BASE, FakeReceiver, isolate, secret_forms, state_text

from ccflux import signing, transport, wire
from ccflux.state import StateStore


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, state_dir):
    isolate(monkeypatch)


def seed(state_dir) -> bytes:
    return (state_dir / signing.KEY_FILE).read_bytes()


def test_key_made_once_0600_raw_seed(state_dir):
    old = os.umask(0)  # even a permissive umask must not widen it
    try:
        key = signing.load_or_create_key()
    finally:
        os.umask(old)
    path = state_dir / signing.KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    assert seed(state_dir) == bytes(key) and len(seed(state_dir)) == 32
    assert bytes(signing.load_or_create_key()) == bytes(key)
    assert signing.stored_public_key_b64() == signing.public_key_b64(key)
    assert os.listdir(state_dir) == [signing.KEY_FILE] or all(
        not n.startswith(signing.KEY_FILE + ".") for n in os.listdir(state_dir))


def _make_key(queue) -> None:
    queue.put(signing.public_key_b64(signing.load_or_create_key()))


def test_racing_processes_agree_on_one_key(state_dir):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_make_key, args=(queue,)) for _ in range(8)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    keys = {queue.get(timeout=5) for _ in procs}
    assert len(keys) == 1
    assert keys == {signing.stored_public_key_b64()}
    assert sorted(os.listdir(state_dir)) == [signing.KEY_FILE]  # no temp files left behind


def test_damaged_key_is_set_aside_and_replaced(state_dir):
    state_dir.mkdir(parents=True)
    (state_dir / signing.KEY_FILE).write_bytes(b"short")
    key = signing.load_or_create_key()
    assert len(seed(state_dir)) == 32 and bytes(key) == seed(state_dir)
    assert any(n.startswith(signing.KEY_FILE + ".corrupt.") for n in os.listdir(state_dir))
    assert "set aside" in state_text(state_dir)


def test_signature_covers_body_newline_timestamp():
    key = signing.load_or_create_key()
    body, ts = b'{"schema_version":1}', "2026-05-11T04:32:10Z"
    scheme, sig, pub = signing.sign(key, body, ts).split(" ")
    assert scheme == "ed25519"
    assert base64.b64decode(pub) == bytes(key.verify_key)
    VerifyKey(base64.b64decode(pub)).verify(body + b"\n" + ts.encode(), base64.b64decode(sig))
    assert len(base64.b64decode(sig)) == 64


def register(fake: FakeReceiver, key, base: str = BASE, device: str = "laptop") -> bool:
    with transport.open_client(fake.transport()) as client, StateStore.open() as store:
        return signing.ensure_registered(client, store, key, base, "ccf_at_t", device)


def test_registration_once_per_key_and_base():
    fake = FakeReceiver()
    fake.tokens.add("ccf_at_t")
    key = signing.load_or_create_key()
    assert register(fake, key) is True
    request = fake.requests[0]
    assert request.url.path == "/register-key" and request.headers["authorization"] == "Bearer ccf_at_t"
    assert json.loads(request.content) == {"public_key": signing.public_key_b64(key), "device_id": "laptop"}
    assert wire.SIGNATURE_HEADER.lower() not in request.headers  # registration is unsigned
    assert register(fake, key) is False
    assert register(fake, key, base="https://other.test") is True
    with StateStore.open() as store:
        assert store.get_meta("key_registered") == f"{signing.public_key_b64(key)}@https://other.test"
        signing.forget_registration(store)
    assert register(fake, key, base="https://other.test") is True


def test_409_counts_as_registered():
    fake = FakeReceiver()
    fake.script("/register-key", fake.answer(409))
    key = signing.load_or_create_key()
    assert register(fake, key) is True
    assert register(fake, key) is False


def test_registration_errors_leave_it_unregistered():
    fake = FakeReceiver()
    fake.script("/register-key", fake.answer(401))
    key = signing.load_or_create_key()
    with pytest.raises(transport.UnauthorizedError):
        register(fake, key)
    with StateStore.open() as store:
        assert store.get_meta("key_registered") is None


def test_long_device_names_are_cut_to_the_limit():
    fake = FakeReceiver()
    fake.tokens.add("ccf_at_t")
    register(fake, signing.load_or_create_key(), device="d" * 400)
    assert len(json.loads(fake.requests[0].content)["device_id"]) == wire.MAX_DEVICE_ID


def test_private_key_never_logged(state_dir):
    fake = FakeReceiver()
    fake.tokens.add("ccf_at_t")
    key = signing.load_or_create_key()
    register(fake, key)
    logs = state_text(state_dir)
    assert "registered device key" in logs
    for form in secret_forms(bytes(key)):
        assert form not in logs
