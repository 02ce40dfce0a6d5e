"""Property-based fuzzing of /report, /register-key and /token: whatever the
bodies and headers, the answer is a protocol status, never a 500."""

from __future__ import annotations

import base64
import json
from collections import Counter

import pytest
from ccflux.wire import ErrorCode, format_timestamp, signature_header
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.receiver_app import Harness, report_body

ALLOWED = {200, 400, 401, 403, 413, 429}
CODES = {code.value for code in ErrorCode}
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def rx(tmp_path_factory):
    h = Harness(tmp_path_factory.mktemp("fuzz"), rate_limit_per_minute=0, body_limit_kb=4)
    with h.client:
        h.alice = h.user("a@example.com")
        yield h


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
                      max_size=120).map(lambda s: s.encode("latin-1"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
REPORT_FIELDS = ["schema_version", "session_id", "user_email", "turn_index", "timestamp_utc",
                 "session_start_utc", "models", "plugin_version"]


@st.composite
def mutated_report(draw) -> bytes:
    body = json.loads(report_body(turn=draw(st.integers(0, 10**6))))
    for field in draw(st.lists(st.sampled_from(REPORT_FIELDS), max_size=3)):
        if draw(st.booleans()):
            body[field] = draw(json_values)
        else:
            body.pop(field, None)
    if draw(st.booleans()):
        body["models"] = draw(st.dictionaries(st.text(max_size=140), json_values | st.fixed_dictionaries(
            {"input_tokens": st.integers(-5, 2**60)}), max_size=22))
    return json.dumps(body).encode()


bodies = st.one_of(st.binary(max_size=600), mutated_report(),
                   json_values.map(lambda v: json.dumps(v).encode()),
                   st.integers(1, 8000).map(lambda n: b"[" * n + b"]" * n))


SEEN: Counter = Counter()


def _check(response) -> None:
    SEEN[response.status_code] += 1
    assert response.status_code in ALLOWED, (response.status_code, response.text)
    if response.status_code == 403:
        assert response.headers["x-ccflux-error"] in CODES
    assert "Traceback" not in response.text


@FUZZ
@given(body=bodies, auth=st.sampled_from(["alice", "bogus", "refresh", "junk"]), junk_auth=header_text,
       sig_kind=st.sampled_from(["good", "none", "junk", "wrong-key-b64"]), sig_junk=header_text,
       stamp=st.one_of(st.none(), header_text, st.integers(-400, 400)))
def test_report_never_500(rx, body, auth, junk_auth, sig_kind, sig_junk, stamp) -> None:
    alice = rx.alice
    tokens = {"alice": f"Bearer {alice.access}".encode(), "bogus": b"Bearer ccf_at_" + b"Z" * 43,
              "refresh": f"Bearer {alice.refresh}".encode(), "junk": junk_auth}
    timestamp = (format_timestamp(rx.now + stamp).encode() if isinstance(stamp, int) else stamp)
    headers = {b"authorization": tokens[auth], b"content-type": b"application/json"}
    if timestamp is not None:
        headers[b"x-ccflux-timestamp"] = timestamp
    if sig_kind == "good":
        signed = alice.key.sign(body + b"\n" + (timestamp or b"")).signature  # raw header bytes
        headers[b"x-ccflux-signature"] = signature_header(signed, bytes(alice.key.verify_key)).encode()
    elif sig_kind == "junk":
        headers[b"x-ccflux-signature"] = sig_junk
    elif sig_kind == "wrong-key-b64":
        headers[b"x-ccflux-signature"] = b"ed25519 " + base64.b64encode(sig_junk[:64]) + b" " + \
            alice.public_key.encode()
    _check(rx.client.post("/report", content=body, headers=headers))


@FUZZ
@given(body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                      st.fixed_dictionaries({"public_key": json_values | st.text(max_size=70),
                                             "device_id": json_values | st.text(max_size=300)})
                      .map(lambda v: json.dumps(v).encode())),
       auth=st.sampled_from(["alice", "junk"]), junk_auth=header_text)
def test_register_key_never_500(rx, body, auth, junk_auth) -> None:
    token = f"Bearer {rx.alice.access}".encode() if auth == "alice" else junk_auth
    _check(rx.client.post("/register-key", content=body, headers={b"authorization": token}))


@FUZZ
@given(auth=header_text, body=st.binary(max_size=200))
def test_token_never_500(rx, auth, body) -> None:
    _check(rx.client.post("/token", content=body, headers={b"authorization": auth}))


@FUZZ
@given(name=st.sampled_from([b"authorization", b"x-ccflux-timestamp", b"x-ccflux-signature",
                             b"content-type"]), value=header_text)
def test_any_single_header_value_never_500(rx, name, value) -> None:
    # (Content-Length is framing, owned by the HTTP layer; see the oversized tests.)
    headers = {b"authorization": f"Bearer {rx.alice.access}".encode(), name: value}
    _check(rx.client.post("/report", content=report_body(turn=7), headers=headers))


def test_fuzzing_reached_every_outcome() -> None:
    if not SEEN:
        pytest.skip("run with the fuzz tests above")
    assert {200, 400, 401, 403} <= set(SEEN), SEEN
