"""A token bucket shared by every worker thread, with a run-wide pause for 429s.

When one worker is told to slow down, they all are: a 429 pauses every worker until the
server's `Retry-After` (or the backoff) has passed and halves the request rate, which then
climbs back step by step while requests succeed (additive increase, multiplicative decrease).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_RECOVERY_STEPS = 20  # successes needed to climb from half rate back to the configured rate


class RateLimiter:
    """Blocks callers so that together they stay under `rate` requests per second."""

    def __init__(
        self,
        rate: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._max_rate = rate
        self._rate = rate
        self._burst = max(1.0, rate or 1.0)
        self._tokens = self._burst
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    @property
    def current_rate(self) -> float | None:
        """The rate in force now (lower than configured after a 429)."""
        return self._rate

    def acquire(self, cancelled: threading.Event | None = None) -> bool:
        """Wait for a slot; False if `cancelled` was set while waiting."""
        while True:
            with self._lock:
                wait = self._try_take()
            if wait <= 0:
                return True
            if cancelled is not None:
                if cancelled.wait(wait):
                    return False
            else:
                self._sleep(wait)

    def _try_take(self) -> float:
        """Take a token and return 0, or return how long to wait before trying again."""
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        if self._rate is None:
            return 0.0
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._rate

    def slow_down(self, pause_seconds: float) -> None:
        """A 429: pause every worker for `pause_seconds` and halve the rate."""
        with self._lock:
            now = self._clock()
            self._paused_until = max(self._paused_until, now + max(0.0, pause_seconds))
            if self._rate is not None and self._max_rate is not None:
                self._rate = max(self._max_rate / 64, self._rate / 2)
                self._tokens = min(self._tokens, 1.0)

    def record_success(self) -> None:
        """A success: climb back towards the configured rate."""
        if self._rate is None or self._max_rate is None or self._rate >= self._max_rate:
            return
        with self._lock:
            step = self._max_rate / (2 * _RECOVERY_STEPS)
            self._rate = min(self._max_rate, self._rate + step)
