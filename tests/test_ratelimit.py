"""The shared token bucket, on a fake clock: rate, burst, run-wide pause and recovery."""

from __future__ import annotations

import threading

from connector.http.ratelimit import RateLimiter


class FakeClock:
    """A clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_unlimited_never_waits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        limiter.acquire()
    assert clock.slept == []


def test_rate_is_enforced_after_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4, clock=clock, sleep=clock.sleep)
    for _ in range(12):
        limiter.acquire()
    # a burst of 4, then one slot every 0.25 s: 8 more slots take 2 s
    assert clock.now - 100.0 == 2.0


def test_slow_down_pauses_everyone_and_halves_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.slow_down(3.0)
    assert limiter.current_rate == 5.0
    limiter.acquire()  # any caller, not only the one that saw the 429
    assert clock.now >= 103.0


def test_slow_down_without_a_rate_still_pauses() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    limiter.slow_down(1.5)
    limiter.acquire()
    assert clock.now == 101.5
    assert limiter.current_rate is None


def test_pauses_do_not_shorten_each_other() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    limiter.slow_down(5)
    limiter.slow_down(1)
    limiter.acquire()
    assert clock.now == 105.0


def test_rate_recovers_step_by_step_after_successes() -> None:
    limiter = RateLimiter(10)
    limiter.slow_down(0)
    limiter.slow_down(0)
    assert limiter.current_rate == 2.5
    for _ in range(100):
        limiter.record_success()
    assert limiter.current_rate == 10


def test_rate_never_drops_below_a_floor() -> None:
    limiter = RateLimiter(64)
    for _ in range(50):
        limiter.slow_down(0)
    assert limiter.current_rate == 1.0


def test_cancelled_wait_returns_false() -> None:
    limiter = RateLimiter(None)
    limiter.slow_down(60)
    cancelled = threading.Event()
    cancelled.set()
    assert limiter.acquire(cancelled) is False
