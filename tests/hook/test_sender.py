"""sender.py: every answer of PROTOCOL.md, against an in-process fake (MockTransport)
and against the real receiver over TLS."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest
from support.receiver import ReceiverProcess
from support.sendkit import (REFRESH, FakeReceiver, configure_env, enqueue, isolate, meta,
                             outbox_bodies, secret_forms, set_meta, state_text)

from ccflux import auth, sender, signing, state, wire
from ccflux.state import StateStore


@pytest.fixture
def fake(monkeypatch, state_dir) -> FakeReceiver:
    isolate(monkeypatch)
    configure_env(monkeypatch)
    return FakeReceiver()


def run(fake: FakeReceiver, budget_s: float = 10.0, **kw) -> sender.DrainResult:
    return sender.drain(budget_s=budget_s, http_transport=fake.transport(), **kw)


def marker_time():
    try:
        return os.stat(os.path.join(os.environ["CCFLUX_HOME"], state.PENDING_MARKER)).st_mtime
    except FileNotFoundError:
        return None


def attempts() -> list[int]:
    with StateStore.open() as store:
        return [item.attempts for item in store.outbox_pending(1000)]


# -- the normal path ---------------------------------------------------------------

def test_token_then_registration_then_reports_in_order(fake):
    ids = [enqueue("s1"), enqueue("s1"), enqueue("s2")]
    stored = outbox_bodies()
    result = run(fake)
    assert (result.sent, result.remaining, result.stopped) == (3, 0, "")
    assert fake.paths() == ["/token", "/register-key", "/report", "/report", "/report"]
    assert fake.accepted == stored  # the exact stored bytes, in queue order
    assert len(ids) == 3 and outbox_bodies() == []
    assert marker_time() is None
    assert float(meta("last_success_at")) == pytest.approx(time.time(), abs=30)
    for request in fake.requests[2:]:
        assert request.headers["content-type"] == "application/json"


def test_signed_at_send_time_not_queue_time(fake):
    enqueue(body=json.dumps({"schema_version": 1, "session_id": "old", "turn_index": 0,
                             "timestamp_utc": "2020-01-01T00:00:00Z", "models": {}}).encode())
    run(fake)
    sent = fake.requests[-1].headers[wire.TIMESTAMP_HEADER]
    assert abs(time.mktime(time.strptime(sent, "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())) < 60


def test_nothing_to_do_means_no_request(fake):
    assert run(fake).sent == 0 and fake.requests == []


def test_unconfigured_sends_nothing(fake, monkeypatch):
    enqueue()
    monkeypatch.delenv("CLAUDE_PLUGIN_OPTION_API_TOKEN")
    result = run(fake)
    assert result.stopped == sender.NOT_CONFIGURED and fake.requests == []


def test_reports_committed_during_the_drain_also_go(fake):
    enqueue("s1")
    fake.on_report = lambda request: len(fake.accepted) < 3 and enqueue("s1")
    result = run(fake)
    assert result.sent == 3 and result.remaining == 0 and outbox_bodies() == []


def test_budget_bounds_the_drain(fake):
    for _ in range(6):
        enqueue()
    fake.on_report = lambda request: time.sleep(0.3)
    result = run(fake, budget_s=1.2)
    assert 0 < result.sent < 6 and result.remaining == 6 - result.sent
    assert "budget" in result.stopped
    assert marker_time() is not None and marker_time() <= time.time() + 1  # due at once


def test_reports_wait_for_registration_then_go_signed(fake):
    enqueue()
    fake.script("/register-key", fake.answer(503))
    first = run(fake)
    assert first.remaining == 1 and "/report" not in fake.paths()
    set_meta("rate_limited_until", None)
    result = run(fake)
    assert result.sent == 1 and fake.paths()[-2:] == ["/register-key", "/report"]
    assert wire.SIGNATURE_HEADER.lower() in fake.requests[-1].headers


def test_cached_token_and_registration_reused_across_drains(fake):
    enqueue()
    run(fake)
    enqueue()
    run(fake)
    assert fake.paths() == ["/token", "/register-key", "/report", "/report"]


# -- 400 / 413 -----------------------------------------------------------------------

@pytest.mark.parametrize("status", [400, 413])
def test_malformed_or_large_reports_become_dead_letters(fake, status):
    enqueue("a"), enqueue("b"), enqueue("c")
    fake.script("/report", fake.answer(status))
    result = run(fake)
    assert (result.sent, result.dead, result.remaining) == (2, 1, 0)
    with StateStore.open() as store:
        dead = store.dead_letters()
    assert [(d.session_id, d.status) for d in dead] == [("a", status)]
    assert "dead letter" in meta("last_error")
    run(fake)
    assert fake.paths().count("/report") == 3  # never retried


# -- 401 ---------------------------------------------------------------------------------

def test_401_exchanges_the_token_once_and_resends(fake):
    enqueue()
    fake.script("/report", fake.answer(401))
    result = run(fake)
    assert result.sent == 1
    assert fake.paths() == ["/token", "/register-key", "/report", "/token", "/report"]


def test_401_after_a_fresh_token_stops_and_keeps(fake):
    enqueue(), enqueue()
    fake.script("/report", fake.answer(401), fake.answer(401))
    result = run(fake)
    assert result.sent == 0 and result.remaining == 2
    assert fake.paths().count("/token") == 2 and fake.paths().count("/report") == 2
    assert "401" in meta("last_error") and result.retry_at > time.time()


def test_401_on_registration_exchanges_and_retries(fake):
    enqueue()
    fake.script("/register-key", fake.answer(401))
    assert run(fake).sent == 1
    assert fake.paths() == ["/token", "/register-key", "/token", "/register-key", "/report"]


def test_refused_refresh_token_stops_sending_and_keeps_the_spool(fake):
    enqueue()
    fake.refresh = "ccf_rt_not-ours"
    result = run(fake)
    assert result.stopped == auth.REJECTED_MESSAGE and result.remaining == 1
    assert meta("auth_failed") == "1" and meta("last_error") == auth.REJECTED_MESSAGE
    assert fake.paths() == ["/token"]
    assert marker_time() > time.time() + 600  # idle turns do not even start a sender
    run(fake)  # an automatic send does not knock again
    assert fake.paths() == ["/token"]
    fake.refresh = REFRESH  # IT fixed it on their side; flush asks again
    result = run(fake, force=True)
    assert result.sent == 1 and meta("auth_failed") is None and meta("last_error") is None


# -- 403 --------------------------------------------------------------------------------

def test_stale_timestamp_corrects_the_clock_and_resends(fake):
    fake.skew = 1000.0  # the receiver's clock is 1000 s ahead of ours
    enqueue(), enqueue()
    result = run(fake)
    assert result.sent == 2
    assert fake.paths().count("/report") == 3  # one stale, then both accepted
    assert abs(float(meta("clock_offset_secs")) - 1000) <= 2
    enqueue()
    run(fake)
    assert fake.paths()[-1] == "/report" and fake.paths().count("/report") == 4  # offset remembered


def test_stale_without_a_date_header_keeps_the_report(fake):
    enqueue()
    fake.script("/report", httpx.Response(403, headers={wire.ERROR_HEADER: "timestamp-stale"}))
    result = run(fake)
    assert result.remaining == 1 and "timestamp-stale" in result.stopped
    assert fake.paths().count("/report") == 1 and attempts() == [1]


def test_stale_is_re_signed_only_once(fake):
    enqueue()
    fake.script("/report", fake.forbidden("timestamp-stale"), fake.forbidden("timestamp-stale"))
    result = run(fake)
    assert result.remaining == 1 and fake.paths().count("/report") == 2
    assert "clock could not be corrected" in meta("last_error")


def test_unknown_key_registers_again_then_resends(fake):
    enqueue()
    fake.script("/report", fake.forbidden("key-not-registered"))
    assert run(fake).sent == 1
    assert fake.paths() == ["/token", "/register-key", "/report", "/register-key", "/report"]


def test_revoked_key_stops_sending_until_flush(fake):
    enqueue(), enqueue()
    fake.revoked.add(bytes(signing.load_or_create_key().verify_key))
    result = run(fake)
    assert result.remaining == 2 and result.stopped == sender.KEY_REVOKED_MESSAGE
    assert meta("key_revoked") == "1" and fake.paths().count("/report") == 1
    assert marker_time() > time.time() + 600
    run(fake)
    assert fake.paths().count("/report") == 1  # automatic sends stay quiet
    fake.revoked.clear()  # IT lifted it
    result = run(fake, force=True)
    assert result.sent == 2 and meta("key_revoked") is None


@pytest.mark.parametrize("code", ["signature-invalid", "signature-required", "timestamp-missing", "", "new-code"])
def test_other_403s_keep_the_report_and_stop(fake, code):
    enqueue(), enqueue()
    fake.script("/report", fake.forbidden(code) if code else fake.answer(403))
    result = run(fake)
    assert result.sent == 0 and result.remaining == 2 and fake.paths().count("/report") == 1
    assert attempts() == [1, 0]
    assert marker_time() == pytest.approx(time.time() + sender.BACKOFF_FIRST_S, abs=5)
    assert "reports kept" in meta("last_error")


# -- 429 and failures --------------------------------------------------------------------

def test_429_stops_and_honours_retry_after(fake):
    enqueue(), enqueue()
    fake.script("/report", fake.answer(429, {"Retry-After": "7"}))
    result = run(fake)
    assert result.rate_limited and result.remaining == 2
    assert result.retry_at == pytest.approx(time.time() + 7, abs=2)
    assert marker_time() == pytest.approx(time.time() + 7, abs=2)
    requests = len(fake.requests)
    assert run(fake).rate_limited and len(fake.requests) == requests  # no knock before then
    set_meta(sender.META_RATE_LIMITED_UNTIL, str(time.time() - 1))
    assert run(fake).sent == 2


def test_429_with_an_http_date_or_none(fake):
    from email.utils import formatdate

    enqueue()
    fake.script("/token", fake.answer(429, {"Retry-After": formatdate(time.time() + 100, usegmt=True)}))
    assert run(fake).retry_at == pytest.approx(time.time() + 100, abs=3)
    set_meta(sender.META_RATE_LIMITED_UNTIL, None)
    fake.script("/token", fake.answer(429))
    assert run(fake).retry_at == pytest.approx(time.time() + sender.DEFAULT_RETRY_AFTER_S, abs=3)


def test_server_errors_back_off_exponentially_and_reset(fake):
    enqueue()
    for expected in (30, 60, 120):
        fake.script("/report", fake.answer(500))
        result = run(fake)
        assert result.remaining == 1
        assert result.retry_at == pytest.approx(time.time() + expected, abs=3)
    set_meta(sender.META_FAILURES, "40")
    fake.script("/report", fake.answer(502))
    assert run(fake).retry_at == pytest.approx(time.time() + sender.BACKOFF_MAX_S, abs=3)
    assert attempts() == [4]
    assert run(fake).sent == 1 and meta(sender.META_FAILURES) is None


def test_network_errors_keep_the_spool(fake):
    enqueue()
    fake.script("/token", httpx.ConnectError("connection refused"))
    result = run(fake)
    assert result.remaining == 1 and "ConnectError" in result.stopped and result.retry_at


def test_http_endpoint_refused_without_touching_the_network(fake, monkeypatch):
    monkeypatch.setenv("CLAUDE_PLUGIN_OPTION_API_ENDPOINT", "http://rx.test")
    enqueue()
    result = run(fake)
    assert fake.requests == [] and "refusing plain http" in result.stopped


# -- one sender at a time; detached sending ----------------------------------------------

def _hold_lock(path: str, held, release) -> None:
    from filelock import FileLock

    with FileLock(path):
        held.set()
        release.wait(30)


def test_only_one_sender_at_a_time(fake, state_dir):
    enqueue()
    state_dir.mkdir(exist_ok=True)
    ctx = multiprocessing.get_context("fork")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(state_dir / sender.SEND_LOCK), held, release))
    holder.start()
    try:
        assert held.wait(10)
        result = run(fake, lock_wait_s=0.2)
        assert result.stopped == "another ccflux process is sending" and fake.requests == []
    finally:
        release.set()
        holder.join(10)
    assert run(fake).sent == 1


def test_send_modes(monkeypatch, state_dir):
    isolate(monkeypatch)
    calls = []
    monkeypatch.setattr(sender, "drain", lambda budget_s=0, **kw: calls.append(budget_s))
    monkeypatch.setenv(sender.ENV_SEND_MODE, "none")
    sender.drain_detached()
    assert calls == []
    monkeypatch.setenv(sender.ENV_SEND_MODE, "inline")
    sender.drain_detached()
    assert calls == [sender.INLINE_BUDGET_S]


# -- against the real receiver over TLS -------------------------------------------------------

@pytest.fixture
def live(monkeypatch, state_dir, receiver) -> ReceiverProcess:
    isolate(monkeypatch)
    configure_env(monkeypatch, endpoint=f"{receiver.base_url}/report", token=receiver.add_user("dev@example.com"))
    monkeypatch.setenv("CCFLUX_CA_CERT", receiver.ca.ca_pem_path)
    return receiver


def live_receiver(tmp_path, test_ca, monkeypatch, **env) -> ReceiverProcess:
    rx = ReceiverProcess(tmp_path / "rx-custom", test_ca, env=env).start()
    isolate(monkeypatch)
    configure_env(monkeypatch, endpoint=rx.base_url, token=rx.add_user("dev@example.com"))
    monkeypatch.setenv("CCFLUX_CA_CERT", test_ca.ca_pem_path)
    return rx


def receiver_totals(rx: ReceiverProcess) -> dict:
    out = {}
    for row in rx.usage(by="session,model"):
        key = (row.get("session_id") or row.get("session"), row["model"])
        out[key] = Counter({k: row[k] for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                                  "cache_write_tokens") if k in row})
    return out


def test_live_reports_arrive_exactly_once(live):
    enqueue("s1", tokens=(1, 2, 3, 4)), enqueue("s1", tokens=(10, 20, 30, 40)), enqueue("s2", tokens=(5, 5, 5, 5))
    stored = outbox_bodies()
    result = sender.drain(budget_s=20)
    assert (result.sent, result.remaining) == (3, 0), result
    # A crash between the 200 and the removal means a resend: the receiver keeps one copy.
    for body in stored:
        doc = json.loads(body)
        enqueue(doc["session_id"], turn=doc["turn_index"], body=body)
    assert sender.drain(budget_s=20).sent == 3
    totals = receiver_totals(live)
    assert totals[("s1", "claude-sonnet-4-5")]["output_tokens"] == 22
    assert totals[("s2", "claude-sonnet-4-5")]["input_tokens"] == 5
    public = signing.stored_public_key_b64()
    assert public[:16] in live.cli("devices", "list").stdout


def test_live_signatures_required(tmp_path, test_ca, monkeypatch, state_dir):
    rx = live_receiver(tmp_path, test_ca, monkeypatch, REQUIRE_SIGNATURES="1")
    try:
        enqueue()
        assert sender.drain(budget_s=20).sent == 1
    finally:
        rx.stop()


def test_live_clock_offset_is_corrected(live):
    set_meta("clock_offset_secs", "-1000")  # as if our clock had been 1000 s behind
    enqueue()
    assert sender.drain(budget_s=20).sent == 1
    assert abs(float(meta("clock_offset_secs"))) <= 2


def test_live_forgotten_key_registers_again(live):
    key = signing.load_or_create_key()
    set_meta("key_registered", signing.registration_tag(key, live.base_url))  # we think it is known
    enqueue()
    assert sender.drain(budget_s=20).sent == 1
    assert signing.public_key_b64(key)[:16] in live.cli("devices", "list").stdout


def test_live_revoked_key(live):
    enqueue()
    assert sender.drain(budget_s=20).sent == 1
    live.cli("devices", "revoke", signing.stored_public_key_b64())
    enqueue()
    result = sender.drain(budget_s=20)
    assert result.remaining == 1 and meta("key_revoked") == "1"


def test_live_revoked_user_stops_at_token(live):
    enqueue()
    assert sender.drain(budget_s=20).sent == 1
    live.cli("users", "revoke", "dev@example.com")
    enqueue()
    result = sender.drain(budget_s=20)
    assert result.remaining == 1 and result.stopped == auth.REJECTED_MESSAGE
    assert meta("auth_failed") == "1"


def test_live_rate_limit(tmp_path, test_ca, monkeypatch, state_dir):
    rx = live_receiver(tmp_path, test_ca, monkeypatch, RATE_LIMIT_PER_MINUTE="3")
    try:
        for _ in range(3):
            enqueue()
        result = sender.drain(budget_s=20)  # token, key, one report: then 429
        assert result.sent == 1 and result.rate_limited and result.remaining == 2
        assert result.retry_at > time.time()
    finally:
        rx.stop()


def test_live_dead_letters(tmp_path, test_ca, monkeypatch, state_dir):
    rx = live_receiver(tmp_path, test_ca, monkeypatch, BODY_LIMIT_KB="1")
    try:
        enqueue("bad", body=b'{"schema_version": 1, "session_id": ""}')
        big = {"schema_version": 1, "session_id": "big", "turn_index": 0, "timestamp_utc": "2026-01-01T00:00:00Z",
               "models": {f"m{i}-" + "x" * 100: {"input_tokens": 1} for i in range(20)}}
        enqueue("big", body=json.dumps(big).encode())
        enqueue("good")
        result = sender.drain(budget_s=20)
        assert (result.sent, result.dead, result.remaining) == (1, 2, 0)
        with StateStore.open() as store:
            assert sorted(d.status for d in store.dead_letters()) == [400, 413]
    finally:
        rx.stop()


def test_live_receiver_down_then_back(live):
    enqueue()
    live.stop()
    result = sender.drain(budget_s=10)
    assert result.remaining == 1 and result.retry_at > time.time()
    live.start()
    assert sender.drain(budget_s=20, force=True).sent == 1


def _child_env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def test_live_kill_9_during_send_loses_and_duplicates_nothing(tmp_path, test_ca, monkeypatch, state_dir):
    live = live_receiver(tmp_path, test_ca, monkeypatch, RATE_LIMIT_PER_MINUTE="0")
    for i in range(120):
        enqueue(f"s{i % 3}", tokens=(1, 1, 1, 1))
    script = "from ccflux import sender; sender.drain(budget_s=60)"
    proc = subprocess.Popen([sys.executable, "-c", script], env=_child_env())
    deadline = time.time() + 30
    while len(outbox_bodies()) > 80 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    try:
        assert sender.drain(budget_s=60).remaining == 0
        totals = receiver_totals(live)
        assert sum(t["input_tokens"] for t in totals.values()) == 120
    finally:
        live.stop()


def test_live_detached_sender_survives_the_hook_process_group(live):
    """Claude Code may kill the hook's whole process group; the sender must live on."""
    enqueue(), enqueue()
    env = _child_env()
    env["CCFLUX_SEND_MODE"] = "detached"
    script = ("import os, signal; from ccflux import sender; sender.drain_detached(); "
              "print('parent done', flush=True); os.killpg(0, signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=30,
                          start_new_session=True)
    assert done.returncode == -signal.SIGKILL and done.stdout == b"parent done\n"
    deadline = time.time() + 30
    while outbox_bodies() and time.time() < deadline:
        time.sleep(0.05)
    assert outbox_bodies() == []


def test_detached_parent_never_waits_for_the_network(monkeypatch, state_dir, test_ca):
    """A receiver that never answers: the hook process still ends, its pipes close."""
    isolate(monkeypatch)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    configure_env(monkeypatch, endpoint=f"https://127.0.0.1:{silent.getsockname()[1]}")
    monkeypatch.setenv("CCFLUX_CA_CERT", test_ca.ca_pem_path)
    enqueue()
    env = dict(_child_env(), CCFLUX_SEND_MODE="detached")
    script = "from ccflux import sender; sender.drain_detached(); print('returned')"
    try:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=30)
        assert done.stdout == b"returned\n" and done.stderr == b""
        silent.settimeout(20)
        conn, _ = silent.accept()  # the detached child did try, on its own time
        conn.close()
    finally:
        silent.close()
    deadline = time.time() + 20
    while meta("last_error") is None and time.time() < deadline:
        time.sleep(0.05)
    assert outbox_bodies() != []  # kept for the next run


def test_import_stays_light_and_cached_sends_skip_pydantic(live):
    """The hook imports sender before forking, and a cached-token send must not pay for pydantic."""
    enqueue()
    assert sender.drain(budget_s=20).sent == 1  # exchanges the token (pydantic) and registers
    enqueue()
    script = ("import sys; from ccflux import sender; "
              "light = not {'httpx', 'nacl', 'filelock', 'pydantic'} & set(sys.modules); "
              "sent = sender.drain(budget_s=20).sent; "
              "print(light, sent, 'pydantic' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], env=_child_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["True", "1", "False"], done.stderr


def test_live_no_secrets_in_logs_or_state(live, state_dir):
    enqueue()
    sender.drain(budget_s=20)
    live.cli("users", "revoke", "dev@example.com")
    enqueue()
    sender.drain(budget_s=20, force=True)
    refresh = os.environ["CLAUDE_PLUGIN_OPTION_API_TOKEN"]
    seed = (state_dir / signing.KEY_FILE).read_bytes()
    with StateStore.open() as store:
        meta_dump = repr(store._conn.execute("SELECT * FROM meta").fetchall())
    text = state_text(state_dir) + meta_dump
    assert "rejected the refresh token" in text
    for form in secret_forms(refresh, seed) + ["ccf_at_"]:
        assert form not in text
    cache = (state_dir / auth.CACHE_FILE).read_text()
    assert refresh not in cache


def test_live_file_modes(live, state_dir):
    old = os.umask(0o022)
    try:
        enqueue()
        sender.drain(budget_s=20)
    finally:
        os.umask(old)
    assert oct(os.stat(state_dir).st_mode & 0o777) == "0o700"
    for name in os.listdir(state_dir):
        path = state_dir / name
        if path.is_file():
            assert oct(os.stat(path).st_mode & 0o777) == "0o600", name
