"""The read-only admin view: 404 without ADMIN_TOKEN; bearer or cookie login."""

from __future__ import annotations

import pytest
from support.receiver_app import report_body, usage

ADMIN = "admin-secret-0123456789"


@pytest.fixture
def admin(make_harness):
    h = make_harness(admin_token=ADMIN)
    user = h.user()
    h.report(user, report_body(models={"opus": usage(1, 2, 3, 4)}))
    return h


def test_usage_with_the_bearer_token(admin) -> None:
    response = admin.client.get("/admin/usage", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    assert response.json() == [{"user": "a@example.com", "model": "opus", "input_tokens": 1,
                                "output_tokens": 2, "cache_read_tokens": 3, "cache_write_tokens": 4,
                                "reports": 1}]
    by_day = admin.client.get("/admin/usage?by=day&since=2026-05-01",
                              headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert [r["day"] for r in by_day] == ["2026-05-11"]
    bad = admin.client.get("/admin/usage?by=colour", headers={"Authorization": f"Bearer {ADMIN}"})
    assert bad.status_code == 400


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN},
                                     {"Cookie": "ccflux_admin=99999999999.deadbeef"}])
def test_usage_refuses_without_credentials(admin, headers) -> None:
    admin.client.cookies.clear()
    assert admin.client.get("/admin/usage", headers=headers).status_code == 401


def test_login_sets_a_strict_httponly_cookie_that_is_not_the_token(admin) -> None:
    assert admin.client.post("/admin/login", json={"token": "wrong"}).status_code == 401
    response = admin.client.post("/admin/login", json={"token": ADMIN})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie and ADMIN not in cookie
    assert admin.client.get("/admin/usage").status_code == 200
    admin.client.post("/admin/logout")
    assert admin.client.get("/admin/usage").status_code == 401


def test_form_login_and_secure_cookie(make_harness) -> None:
    h = make_harness(admin_token=ADMIN, cookie_secure=True)
    response = h.client.post("/admin/login", content=f"token={ADMIN}".encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and "Secure" in response.headers["set-cookie"]


def test_session_cookie_expires(admin) -> None:
    admin.client.post("/admin/login", json={"token": ADMIN})
    admin.now += 8 * 3600 + 1
    assert admin.client.get("/admin/usage").status_code == 401


def test_guessing_is_rate_limited(admin) -> None:
    statuses = [admin.client.post("/admin/login", json={"token": f"guess{i}"}).status_code for i in range(40)]
    assert statuses[:30] == [401] * 30 and set(statuses[30:]) == {429}


@pytest.mark.parametrize("body", [b"", b"{", b"[" * 3000, b"\xff", b'{"token": 5}', b"token=", b"x" * 5000])
def test_junk_login_bodies_are_refused_cleanly(admin, body) -> None:
    assert admin.client.post("/admin/login", content=body).status_code in (401, 413)


def test_admin_token_never_in_the_access_log(admin) -> None:
    admin.client.get("/admin/usage", headers={"Authorization": f"Bearer {ADMIN}"})
    admin.client.post("/admin/login", json={"token": ADMIN})
    assert ADMIN not in admin.log.getvalue()
