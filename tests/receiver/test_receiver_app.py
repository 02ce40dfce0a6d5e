"""Conformance of every endpoint with PROTOCOL.md: statuses, 403 codes, check order."""

from __future__ import annotations

import json

import pytest
from ccflux.protocol import TokenResponse
from ccflux.wire import format_timestamp
from nacl.signing import SigningKey
from support.receiver_app import report_body, usage


# --- /token ------------------------------------------------------------------

def test_token_exchange_answers_the_protocol_shape(harness) -> None:
    refresh = harness.add_user("a@example.com")
    response = harness.exchange(refresh)
    assert response.status_code == 200
    answer = TokenResponse.model_validate_json(response.content)
    assert answer.token_type == "Bearer" and answer.access_token.startswith("ccf_at_")
    assert answer.expires_at == format_timestamp(harness.now + 28800)
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Basic abc", "Bearer ccf_rt_unknownunknownunknownunknown",
    "Bearer ccf_at_looksrightbutisanaccesstokenxxxxxx", "Bearer " + "x" * 300])
def test_token_refuses_bad_refresh_tokens(harness, authorization) -> None:
    harness.add_user("a@example.com")
    headers = {} if authorization is None else {"Authorization": authorization}
    response = harness.client.post("/token", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_access_token_is_not_a_refresh_token(harness) -> None:
    user = harness.user()
    assert harness.exchange(user.access).status_code == 401


def test_refresh_token_expires_unless_used_and_rolls_when_used(make_harness) -> None:
    h = make_harness(refresh_token_rolling_days=2)
    refresh = h.add_user("a@example.com")
    h.now += 86400 * 1.5
    assert h.exchange(refresh).status_code == 200  # rolls expiry to now + 2 days
    h.now += 86400 * 1.5
    assert h.exchange(refresh).status_code == 200
    h.now += 86400 * 2 + 1
    assert h.exchange(refresh).status_code == 401


def test_access_token_expires(make_harness) -> None:
    h = make_harness(access_token_expiry_secs=600)
    user = h.user()
    assert h.report(user).status_code == 200
    h.now += 601
    assert h.report(user).status_code == 401
    assert h.register(user.access, user.public_key).status_code == 401


def test_token_body_is_bounded(make_harness) -> None:
    h = make_harness(body_limit_kb=1)
    refresh = h.add_user("a@example.com")
    response = h.client.post("/token", headers={"Authorization": f"Bearer {refresh}"}, content=b"x" * 2048)
    assert response.status_code == 413


# --- /register-key -------------------------------------------------------------

def test_register_key_is_idempotent(harness) -> None:
    user = harness.user(register=False)
    first = harness.register(user.access, user.public_key)
    again = harness.register(user.access, user.public_key)
    assert (first.status_code, first.json()) == (200, {"status": "registered"})
    assert (again.status_code, again.json()) == (200, {"status": "already-registered"})


@pytest.mark.parametrize("payload", [
    {"public_key": "not base64!", "device_id": "d"},
    {"public_key": "AAAA", "device_id": "d"},  # base64 of 3 bytes
    {"public_key": "A" * 65, "device_id": "d"},
    {"public_key": "GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE=", "device_id": "d" * 256},
    {"public_key": "GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE=", "device_id": ""},
    {"public_key": "GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE="},
    {"public_key": 5, "device_id": "d"},
    [],
])
def test_register_key_refuses_malformed_bodies(harness, payload) -> None:
    user = harness.user(register=False)
    response = harness.client.post("/register-key", headers={"Authorization": f"Bearer {user.access}"},
                                   json=payload)
    assert response.status_code == 400


def test_register_key_needs_an_access_token(harness) -> None:
    user = harness.user(register=False)
    assert harness.register(user.refresh, user.public_key).status_code == 401
    assert harness.register("ccf_at_" + "A" * 43, user.public_key).status_code == 401


# --- /report: success, idempotency --------------------------------------------

def test_signed_report_is_stored_with_its_device(harness) -> None:
    user = harness.user()
    response = harness.report(user)
    assert (response.status_code, response.json()) == (200, {"status": "stored"})
    device = harness.store.conn.execute(
        "SELECT d.device_id, r.received_at, r.timestamp_utc FROM reports r JOIN devices d ON d.id = r.device"
    ).fetchone()
    assert device == ("dev-1", int(harness.now), "2026-05-11T04:32:00Z")


def test_replayed_report_is_answered_200_and_stored_once(harness) -> None:
    user = harness.user()
    body = report_body(models={"m1": usage(1, 2, 3, 4), "m2": usage(5, 6, 7, 8)})
    assert harness.report(user, body).json() == {"status": "stored"}
    harness.now += 30
    replay = harness.report(user, body)  # re-signed at send time, as clients do
    assert (replay.status_code, replay.json()) == (200, {"status": "duplicate"})
    assert len(harness.rows()) == 2


def test_resend_with_other_numbers_keeps_the_first(harness) -> None:
    user = harness.user()
    harness.report(user, report_body(models={"m": usage(1, 1, 1, 1)}))
    response = harness.report(user, report_body(models={"m": usage(9, 9, 9, 9)}))
    assert (response.status_code, response.json()) == (200, {"status": "conflict"})
    assert harness.rows() == [("a@example.com", "sess-1", 0, "m", 1, 1, 1, 1)]
    assert "ccflux_reports_conflict_total 1" in harness.client.get("/metrics").text


def test_resend_adding_a_model_stores_the_new_row_only(harness) -> None:
    user = harness.user()
    harness.report(user, report_body(models={"a": usage(1, 1, 1, 1)}))
    response = harness.report(user, report_body(models={"a": usage(1, 1, 1, 1), "b": usage(2, 2, 2, 2)}))
    assert response.status_code == 200
    assert [r[3] for r in harness.rows()] == ["a", "b"]


def test_unsigned_report_is_accepted_when_signatures_are_optional(harness) -> None:
    user = harness.user(register=False)
    response = harness.report(user, sign=False)
    assert (response.status_code, response.json()) == (200, {"status": "stored"})


def test_unknown_fields_are_ignored(harness) -> None:
    user = harness.user()
    body = report_body(future_field={"x": [1, 2]})
    assert harness.report(user, body).status_code == 200


# --- /report: 403 codes --------------------------------------------------------

def _code(response) -> tuple[int, str]:
    return response.status_code, response.headers.get("x-ccflux-error", "")


def test_signature_required(make_harness) -> None:
    h = make_harness(require_signatures=True)
    user = h.user()
    assert _code(h.report(user, sign=False)) == (403, "signature-required")
    assert h.report(user).status_code == 200


def test_timestamp_missing(harness) -> None:
    user = harness.user()
    response = harness.report(user, headers={"X-CCFLUX-Timestamp": ""})
    assert _code(response) == (403, "timestamp-missing")
    good = harness.report(user)
    headers = {k: v for k, v in good.request.headers.items() if k.lower() != "x-ccflux-timestamp"}
    response = harness.client.post("/report", content=good.request.content, headers=headers)
    assert _code(response) == (403, "timestamp-missing")


def test_timestamp_unparseable_counts_as_missing(harness) -> None:
    user = harness.user()
    assert _code(harness.report(user, timestamp="yesterday")) == (403, "timestamp-missing")
    assert _code(harness.report(user, timestamp="2026-05-11T04:32:10")) == (403, "timestamp-missing")


@pytest.mark.parametrize("offset, code", [(-301, "timestamp-stale"), (301, "timestamp-stale"),
                                          (-300, ""), (300, "")])
def test_timestamp_window_is_300_seconds_both_ways(harness, offset, code) -> None:
    user = harness.user()
    response = harness.report(user, report_body(turn=offset + 1000),
                              timestamp=format_timestamp(harness.now + offset))
    assert _code(response) == ((403, code) if code else (200, ""))


def test_forged_signature_is_invalid(harness) -> None:
    user = harness.user()
    good = harness.report(user, report_body(turn=1))
    tampered = good.request.content.replace(b'"input_tokens":1', b'"input_tokens":9')
    response = harness.client.post("/report", content=tampered, headers=dict(good.request.headers))
    assert _code(response) == (403, "signature-invalid")


def test_signature_over_another_timestamp_is_invalid(harness) -> None:
    user = harness.user()
    good = harness.report(user, report_body(turn=1))
    headers = dict(good.request.headers)
    headers["x-ccflux-timestamp"] = format_timestamp(harness.now - 1)
    assert _code(harness.client.post("/report", content=good.request.content, headers=headers)) == (
        403, "signature-invalid")


@pytest.mark.parametrize("header", [
    "", "ed25519", "ed25519 abc", "rsa AAAA AAAA", "ed25519  x y",
    "ed25519 " + "A" * 88 + " GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE= extra",
    "ed25519 !!!! GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE=",
    "ed25519 " + "A" * 84 + "== GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE=",  # 63 bytes
])
def test_malformed_signature_header_is_invalid(harness, header) -> None:
    user = harness.user()
    response = harness.report(user, headers={"X-CCFLUX-Signature": header})
    assert _code(response) == (403, "signature-invalid")


def test_key_not_registered(harness) -> None:
    user = harness.user()
    stranger = SigningKey(b"\x07" * 32)
    assert _code(harness.report(user, key=stranger)) == (403, "key-not-registered")


def test_key_revoked(harness) -> None:
    from ccflux_receiver import accounts

    user = harness.user()
    assert accounts.revoke_device(harness.store.conn, user.public_key, int(harness.now)) == 1
    assert _code(harness.report(user)) == (403, "key-revoked")
    # Registering the revoked key again does not bring it back.
    assert harness.register(user.access, user.public_key).status_code == 200
    assert _code(harness.report(user)) == (403, "key-revoked")


# --- /report: 400, 401, 413, check order ----------------------------------------

@pytest.mark.parametrize("body", [
    b"", b"{", b"[]", b"null", b'"x"', b"\xff\xfe",
    report_body(session=""), report_body(session="s" * 65), report_body(turn=-1),
    report_body(models={"m" * 129: usage(1, 1, 1, 1)}),
    report_body(models={f"m{i}": usage(1, 1, 1, 1) for i in range(21)}),
    report_body(models={"m": usage(-1, 0, 0, 0)}),
    report_body(models={"m": {"input_tokens": 1.5}}),
    report_body(models={"m": {"input_tokens": "1"}}),
    report_body(models={"m": usage(2**53, 0, 0, 0)}),
    report_body(schema_version=2), report_body(plugin_version="v" * 65),
    report_body(timestamp_utc="t" * 65), report_body(turn=True),
    b'{"schema_version":1}', b"[" * 5000 + b"]" * 5000,
])
def test_malformed_reports_are_400_before_any_signature_work(harness, body) -> None:
    user = harness.user()
    # Signed with a key nobody registered: a 403 would mean signature work came first.
    response = harness.report(user, body, key=SigningKey(b"\x09" * 32))
    assert response.status_code == 400, response.text


def test_twenty_models_are_fine(harness) -> None:
    user = harness.user()
    body = report_body(models={f"m{i}": usage(i, i, i, i) for i in range(20)})
    assert harness.report(user, body).status_code == 200


def test_oversized_report_is_413_with_or_without_content_length(harness) -> None:
    user = harness.user()
    big = report_body(plugin_version="x" * 64, padding="p" * (64 * 1024))
    assert harness.report(user, big).status_code == 413

    def chunks():
        yield big[:1000]
        yield big[1000:]

    response = harness.client.post("/report", content=chunks(), headers={
        "Authorization": f"Bearer {user.access}", "Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


def test_body_exactly_at_the_limit_is_read(make_harness) -> None:
    h = make_harness(body_limit_kb=1)
    user = h.user()
    body = report_body()
    body = body[:-1] + b',"pad":"' + b"p" * (1024 - len(body) - 9) + b'"}'
    assert len(body) == 1024
    assert h.report(user, body).status_code == 200


def test_unauthenticated_report_is_401_before_reading_the_body(harness) -> None:
    response = harness.client.post("/report", content=b"x" * 100_000)
    assert response.status_code == 401


def test_bogus_access_token_is_401(harness) -> None:
    user = harness.user()
    response = harness.report(user, access="ccf_at_" + "B" * 43)
    assert response.status_code == 401


def test_wrong_methods_and_paths(harness) -> None:
    for path in ("/token", "/register-key", "/report"):
        response = harness.client.get(path)
        assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert harness.client.get("/nope").status_code == 404
    assert harness.client.get("/admin/usage").status_code == 404  # no ADMIN_TOKEN
    assert harness.client.get("/docs").status_code == 404


# --- /health, /metrics ------------------------------------------------------------

def test_health(harness) -> None:
    response = harness.client.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "db": "ok"})


def test_health_is_503_when_the_database_is_gone(harness) -> None:
    harness.store.conn.close()
    response = harness.client.get("/health")
    assert (response.status_code, response.json()) == (503, {"status": "error", "db": "error"})


def test_metrics_has_the_protocol_names(harness) -> None:
    user = harness.user()
    harness.report(user)
    harness.report(user, access="ccf_at_" + "B" * 43)
    harness.report(user, key=SigningKey(b"\x05" * 32))
    text = harness.client.get("/metrics").text
    for line in ("ccflux_reports_accepted_total 1", "ccflux_reports_auth_rejected_total 1",
                 "ccflux_reports_sig_rejected_total 1", "ccflux_reports_rate_limited_total 0",
                 "ccflux_token_exchanges_total 1", "ccflux_key_registrations_total 1",
                 "ccflux_active_access_tokens 1"):
        assert line in text.splitlines(), line
    assert 'ccflux_http_responses_total{path="/report",status="403"} 1' in text


# --- access log ------------------------------------------------------------------

def test_access_log_is_json_lines_without_secrets(harness) -> None:
    user = harness.user()
    harness.report(user)
    harness.report(user, key=SigningKey(b"\x05" * 32))
    harness.client.get("/some/secret-looking/path?token=ccf_rt_x")
    lines = [json.loads(line) for line in harness.log.getvalue().splitlines()]
    assert {(e["path"], e["status"]) for e in lines} >= {("/token", 200), ("/report", 200), ("other", 404)}
    assert any(e.get("error") == "key-not-registered" for e in lines)
    text = harness.log.getvalue()
    assert user.refresh not in text and user.access not in text and "ccf_" not in text


def test_an_internal_error_is_a_bare_500_and_logged(harness, monkeypatch, caplog) -> None:
    user = harness.user()

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(harness.store, "add_reports", explode)
    response = harness.report(user)
    assert (response.status_code, response.json()) == (500, {"error": "internal"})
    assert "secret internals" not in response.text and "secret internals" in caplog.text


def test_a_locked_database_is_503_with_retry_after(harness, monkeypatch) -> None:
    import sqlite3

    user = harness.user()

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(harness.store, "add_reports", locked)
    response = harness.report(user)
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    monkeypatch.undo()
    assert harness.report(user).status_code == 200  # nothing half-written meanwhile
    assert len(harness.rows()) == 1
