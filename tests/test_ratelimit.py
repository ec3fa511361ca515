"""Sliding-window counters: exact with a fake clock, never looser than the limit, atomic under threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sekuire.runtime.ratelimit import HOUR, MINUTE, RateLimiter

KEY = ("ws", "agent", "request")


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def limiter(clock) -> RateLimiter:
    return RateLimiter(clock=clock)


def test_usage_counts_per_key(limiter):
    assert limiter.usage(KEY) == {"minute": 0, "hour": 0}
    limiter.consume(KEY, 3)
    limiter.consume(KEY, 4)
    limiter.consume(("ws", "other", "request"), 100)
    assert limiter.usage(KEY) == {"minute": 7, "hour": 7}


def test_minute_window_slides_and_never_forgets_early(limiter, clock):
    clock.now = 1000.9  # in the bucket [1000, 1001)
    limiter.consume(KEY, 5)
    clock.now = 1060.9  # exactly 60 s later: still within the minute
    assert limiter.usage(KEY)["minute"] == 5
    clock.now = 1060.99  # more than 60 s after 1000.9, but the bucket's end is not yet 60 s old
    assert limiter.usage(KEY)["minute"] == 5, "rounding must make the limiter stricter, never looser"
    clock.now = 1061.0
    assert limiter.usage(KEY) == {"minute": 0, "hour": 5}
    clock.now = 1000 + HOUR
    assert limiter.usage(KEY)["hour"] == 5
    clock.now = 1001 + HOUR
    assert limiter.usage(KEY)["hour"] == 0


def test_any_sixty_second_span_holds_at_most_the_limit(limiter, clock):
    """Admit whatever the window allows at 0.1 s steps for three minutes; no 60 s span exceeds 10."""
    limit, admitted = 10, []
    for step in range(1800):
        clock.now = 1000 + step / 10
        with limiter.reserve(KEY, 1) as reservation:
            if reservation.usage["minute"] + 1 <= limit:
                reservation.commit()
                admitted.append(clock.now)
    assert len(admitted) > 2 * limit
    for i, start in enumerate(admitted):
        assert sum(1 for t in admitted[i:] if t - start <= MINUTE) <= limit


def test_reservation_counts_until_cancelled(limiter):
    first = limiter.reserve(KEY, 10)
    assert first.usage == {"minute": 0, "hour": 0}
    second = limiter.reserve(KEY, 1)
    assert second.usage["minute"] == 10, "a pending reservation is visible to other callers"
    first.cancel()
    first.cancel()  # idempotent
    second.commit()
    second.cancel()  # no effect once committed
    assert limiter.usage(KEY)["minute"] == 1


def test_reservation_left_by_an_exception_is_returned(limiter):
    with pytest.raises(RuntimeError), limiter.reserve(KEY, 5):
        raise RuntimeError("the query failed")
    assert limiter.usage(KEY)["minute"] == 0


def test_cancel_after_the_bucket_expired_changes_nothing(limiter, clock):
    reservation = limiter.reserve(KEY, 5)
    clock.now += HOUR + 2
    limiter.consume(KEY, 1)
    reservation.cancel()
    assert limiter.usage(KEY) == {"minute": 1, "hour": 1}


def test_memory_is_bounded_by_the_hour(limiter, clock):
    for step in range(2 * HOUR):
        clock.now = 1000 + step
        limiter.consume(KEY, 1)
    counter = limiter._counters[KEY]
    assert [len(w.buckets) for w in counter.windows] == [MINUTE + 1, HOUR + 1]
    assert limiter.usage(KEY) == {"minute": MINUTE + 1, "hour": HOUR + 1}


def test_eight_threads_never_exceed_the_limit(limiter):
    limit, attempts = 100, 8 * 50
    start = threading.Barrier(8)

    def hammer(_: int) -> int:
        start.wait()
        admitted = 0
        for _ in range(attempts // 8):
            with limiter.reserve(KEY, 1) as reservation:
                if reservation.usage["minute"] + 1 <= limit:
                    reservation.commit()
                    admitted += 1
        return admitted

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(hammer, range(8))) == limit
    assert limiter.usage(KEY)["minute"] == limit


def test_reset(limiter):
    limiter.consume(KEY, 1)
    limiter.consume(("other",), 1)
    limiter.reset(KEY)
    assert limiter.usage(KEY)["minute"] == 0 and limiter.usage(("other",))["minute"] == 1
    limiter.reset()
    assert limiter.usage(("other",))["minute"] == 0


def test_record_usage_counts_what_was_spent_without_a_decision(vector_keyring):
    from sekuire.compiler import load_policy
    from sekuire.runtime import InvalidActionError, PolicyEnforcer, PolicyViolationError

    from .conftest import VECTOR_POLICY

    with PolicyEnforcer(load_policy(VECTOR_POLICY, keyring=vector_keyring), cache=False) as enforcer:
        enforcer.record_usage("token", 39_999)  # the vector policy allows 40,000 tokens a minute
        enforcer.enforce_rate_limit("token", 1)
        with pytest.raises(PolicyViolationError) as info:
            enforcer.enforce_rate_limit("token", 1)
        assert info.value.rule == "rate_limit.exceeded"
        with pytest.raises(InvalidActionError):
            enforcer.record_usage("token", -5)
