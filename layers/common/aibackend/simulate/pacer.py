"""A token bucket: `rate` tokens a second, at most `burst` saved up.

Pacing by sleeping a fixed interval after each put drifts: every put's own duration is added
to the interval, so the achieved rate falls below the target as puts slow down. The bucket
refills from the clock instead, so a slow put is made up by the next ones (up to `burst`)."""

from __future__ import annotations

import time
from collections.abc import Callable

#: Rounding slack: a sleep of exactly the deficit can refill a hair short of it.
_EPSILON = 1e-6


class TokenBucket:
    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = 0.0
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, n: int) -> None:
        """Block until `n` tokens are available (`n` at most `burst`), then spend them."""
        if not 1 <= n <= self.burst:
            raise ValueError(f"take between 1 and burst={self.burst} tokens, got {n}")
        self._refill()
        while self._tokens < n - _EPSILON:
            self._sleep((n - self._tokens) / self.rate)
            self._refill()
        self._tokens = max(0.0, self._tokens - n)
