"""Per-credential rate limit: 429 + Retry-After, shared by the three POST
endpoints, bounded memory whatever tokens a flood carries."""

from __future__ import annotations

from ccflux_receiver.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_limit_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(30, clock=clock)
    assert all(limiter.hit("k") is None for _ in range(30))
    assert limiter.hit("k") == 2  # one token refills every 2 s
    clock.now += 2
    assert limiter.hit("k") is None
    assert limiter.hit("k") is not None
    clock.now += 60
    assert all(limiter.hit("k") is None for _ in range(30))


def test_keys_are_independent_and_zero_switches_it_off() -> None:
    limiter = RateLimiter(1, clock=Clock())
    assert limiter.hit("a") is None and limiter.hit("b") is None
    assert limiter.hit("a") == 60
    off = RateLimiter(0)
    assert all(off.hit("a") is None for _ in range(1000)) and len(off) == 0


def test_memory_is_bounded_by_max_keys() -> None:
    limiter = RateLimiter(5, max_keys=100, clock=Clock())
    for i in range(10_000):
        limiter.hit(i)
    assert len(limiter) == 100


def test_limit_is_shared_across_token_register_key_and_report(make_harness) -> None:
    h = make_harness(rate_limit_per_minute=5)
    user = h.user()  # 1 /token + 1 /register-key
    assert h.report(user).status_code == 200
    assert h.exchange(user.refresh).status_code == 200
    assert h.register(user.access, user.public_key).status_code == 200
    limited = h.report(user)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert h.exchange(user.refresh).status_code == 429
    assert "ccflux_reports_rate_limited_total 2" in h.client.get("/metrics").text


def test_one_user_being_limited_does_not_limit_another(make_harness) -> None:
    h = make_harness(rate_limit_per_minute=3)
    a, b = h.user("a@example.com"), h.user("b@example.com")
    assert h.report(a).status_code == 200
    assert h.report(a).status_code == 429
    assert h.report(b).status_code == 200


def test_limit_refills_with_time(make_harness) -> None:
    h = make_harness(rate_limit_per_minute=2)
    user = h.user()
    assert h.report(user).status_code == 429
    h.app.app.endpoints.limiter.clock = lambda: 10**9  # a long while later
    assert h.report(user).status_code == 200


def test_bogus_tokens_allocate_no_limiter_state(make_harness) -> None:
    h = make_harness(rate_limit_per_minute=5)
    user = h.user()
    limiter = h.app.app.endpoints.limiter
    before = len(limiter)
    for i in range(300):
        assert h.report(user, access=f"ccf_at_{i:043d}").status_code == 401
        assert h.exchange(f"ccf_rt_{i:043d}").status_code == 401
    assert len(limiter) == before == 1
