"""Token secrets, constant-time helpers and the fixed Ed25519 test vector."""

from __future__ import annotations

import base64
import calendar
import time

from ccflux.wire import ErrorCode, signed_message
from ccflux_receiver import security
from nacl.signing import SigningKey
from support.receiver_app import Harness

# The fixed vector: seed of 32 bytes 0x2A signs BODY + "\n" + TIMESTAMP. The
# expected values were computed once with PyNaCl and are written out here, so
# any change in the signed bytes (on either side) fails this test.
SEED = b"\x2a" * 32
BODY = (b'{"schema_version":1,"session_id":"vector-session","user_email":"","turn_index":0,'
        b'"timestamp_utc":"2026-05-11T04:32:00Z","models":{"claude-sonnet-4-5":{"input_tokens":10,'
        b'"output_tokens":20,"cache_read_tokens":30,"cache_write_tokens":40}},"plugin_version":"0.1.0"}')
TIMESTAMP = "2026-05-11T04:32:10Z"
PUBLIC_KEY_B64 = "GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE="
SIGNATURE_B64 = ("W9IDFi6zUkmQJK1L2E2ldrm8uLpUyl4EtzmTCHHCeOwXr41coWStwXPLr1SOQ154YiU55Ch4"
                 "AJkMEbhbLL4MDg==")


def test_vector_is_what_pynacl_signs() -> None:
    key = SigningKey(SEED)
    assert base64.b64encode(bytes(key.verify_key)).decode() == PUBLIC_KEY_B64
    signature = key.sign(signed_message(BODY, TIMESTAMP)).signature
    assert base64.b64encode(signature).decode() == SIGNATURE_B64


def test_vector_verifies_in_the_receiver_module() -> None:
    parsed = security.parse_signature(f"ed25519 {SIGNATURE_B64} {PUBLIC_KEY_B64}")
    assert parsed is not None
    signature, public_key = parsed
    assert security.verify(public_key, signature, BODY, TIMESTAMP)
    assert not security.verify(public_key, signature, BODY + b" ", TIMESTAMP)
    assert not security.verify(public_key, signature, BODY, "2026-05-11T04:32:11Z")


def test_vector_is_accepted_by_the_receiver_over_http(tmp_path) -> None:
    h = Harness(tmp_path)
    h.now = float(calendar.timegm(time.strptime(TIMESTAMP, "%Y-%m-%dT%H:%M:%SZ")) + 5)
    with h.client:
        refresh = h.add_user("vector@example.com")
        access = h.exchange(refresh).json()["access_token"]
        assert h.register(access, PUBLIC_KEY_B64, "vector-device").status_code == 200
        response = h.client.post("/report", content=BODY, headers={
            "Authorization": f"Bearer {access}", "Content-Type": "application/json",
            "X-CCFLUX-Timestamp": TIMESTAMP,
            "X-CCFLUX-Signature": f"ed25519 {SIGNATURE_B64} {PUBLIC_KEY_B64}"})
        assert response.status_code == 200, response.text
        assert h.rows() == [("vector@example.com", "vector-session", 0, "claude-sonnet-4-5", 10, 20, 30, 40)]


def test_tokens_are_prefixed_random_and_hashed() -> None:
    a, b = security.new_token(security.REFRESH_PREFIX), security.new_token(security.REFRESH_PREFIX)
    assert a.startswith("ccf_rt_") and a != b and len(a) == 7 + 43
    assert security.new_token(security.ACCESS_PREFIX).startswith("ccf_at_")
    assert len(security.token_hash(a)) == 32 and security.token_hash(a) != security.token_hash(b)
    assert security.same_secret(security.token_hash(a), security.token_hash(a))
    assert not security.same_secret(security.token_hash(a), security.token_hash(b))


def test_bearer_token_shape_check() -> None:
    token = security.new_token(security.ACCESS_PREFIX)
    assert security.bearer_token(f"Bearer {token}", security.ACCESS_PREFIX) == token
    assert security.bearer_token(f"bearer  {token} ", security.ACCESS_PREFIX) == token
    for bad in (None, "", token, f"Basic {token}", f"Bearer {token}\x00", f"Bearer {token}é",
                "Bearer ccf_at_short", f"Bearer {token[:-1]}!", "Bearer " + "ccf_at_" + "a" * 300):
        assert security.bearer_token(bad, security.ACCESS_PREFIX) is None, bad
    assert security.bearer_token(f"Bearer {token}", security.REFRESH_PREFIX) is None


def test_timestamp_checks() -> None:
    now = 1_778_473_930.0  # 2026-05-11T04:32:10Z
    assert security.check_timestamp("2026-05-11T04:32:10Z", now) is None
    assert security.check_timestamp("2026-05-11T06:32:10+02:00", now) is None
    assert security.check_timestamp("2026-05-11T04:27:09Z", now) == ErrorCode.TIMESTAMP_STALE
    assert security.check_timestamp(None, now) == ErrorCode.TIMESTAMP_MISSING
    for junk in ("", "now", "2026-05-11T04:32:10", "x" * 100):
        assert security.check_timestamp(junk, now) == ErrorCode.TIMESTAMP_MISSING, junk
    for extreme in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"):
        assert security.check_timestamp(extreme, now) in (ErrorCode.TIMESTAMP_STALE,
                                                          ErrorCode.TIMESTAMP_MISSING), extreme


def test_public_key_decoding() -> None:
    assert security.decode_public_key(PUBLIC_KEY_B64) == bytes(SigningKey(SEED).verify_key)
    for bad in ("", "AAAA", PUBLIC_KEY_B64.rstrip("="), "é" * 44, PUBLIC_KEY_B64 + "AAAA"):
        assert security.decode_public_key(bad) is None, bad
