"""A token writes only its own user's rows and keys; nobody reaches another's."""

from __future__ import annotations

from ccflux_receiver import usage
from support.receiver_app import report_body, usage as counts


def test_reports_land_under_the_token_user_whatever_the_body_says(harness) -> None:
    a = harness.user("a@example.com")
    harness.user("b@example.com")  # exists: the body names a real other user
    body = report_body(user_email="b@example.com")
    assert harness.report(a, body).status_code == 200
    assert [row[0] for row in harness.rows()] == ["a@example.com"]


def test_a_key_registered_by_one_user_cannot_sign_for_another(harness) -> None:
    a, b = harness.user("a@example.com"), harness.user("b@example.com")
    response = harness.report(b, key=a.key)  # B's token, A's registered key
    assert (response.status_code, response.headers["x-ccflux-error"]) == (403, "key-not-registered")
    assert harness.rows() == []


def test_registering_someone_elses_public_key_neither_steals_nor_blocks_it(harness) -> None:
    a = harness.user("a@example.com")
    b = harness.user("b@example.com", register=False)
    assert harness.register(b.access, a.public_key, "b-device").status_code == 200
    assert harness.report(a).status_code == 200  # A's key still A's
    # B has A's public key on record but not the private key: cannot forge for A.
    forged = harness.report(b, key=b.key)
    assert forged.headers["x-ccflux-error"] == "key-not-registered"
    devices = harness.store.conn.execute(
        "SELECT u.email, d.device_id FROM devices d JOIN users u ON u.id = d.user_id ORDER BY 1").fetchall()
    assert devices == [("a@example.com", "dev-1"), ("b@example.com", "b-device")]


def test_same_session_from_two_users_is_two_reports(harness) -> None:
    a, b = harness.user("a@example.com"), harness.user("b@example.com")
    assert harness.report(a, report_body(models={"m": counts(1, 0, 0, 0)})).json()["status"] == "stored"
    assert harness.report(b, report_body(models={"m": counts(2, 0, 0, 0)})).json()["status"] == "stored"
    rows = usage.totals(harness.store.conn, ("user",))
    assert [(r["user"], r["input_tokens"]) for r in rows] == [("a@example.com", 1), ("b@example.com", 2)]


def test_revoking_a_user_stops_its_tokens_not_others(harness) -> None:
    from ccflux_receiver import accounts

    a, b = harness.user("a@example.com"), harness.user("b@example.com")
    accounts.revoke_user(harness.store.conn, "a@example.com", int(harness.now))
    assert harness.report(a).status_code == 401
    assert harness.exchange(a.refresh).status_code == 401
    assert harness.report(b).status_code == 200
