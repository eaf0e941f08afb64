"""Staying inside Amazon's usage plans: a token bucket per operation (rate and burst from Amazon's
documented defaults, the rate then taken from each answer's `x-amzn-RateLimit-Limit`), and
exponential backoff with full jitter for 429s, 5xx answers and timeouts."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Amazon's documented default usage plans: (requests per second, burst).
DEFAULT_PLANS: dict[str, tuple[float, int]] = {
    "getOrders": (0.0167, 20),
    "getOrder": (0.5, 30),
    "getOrderAddress": (0.5, 30),
    "getOrderBuyerInfo": (0.5, 30),
    "getOrderItems": (0.5, 30),
    "searchOrders": (0.0056, 20),
    "createRestrictedDataToken": (1.0, 10),
    "lwaToken": (5.0, 10),  # LWA publishes no plan; a modest one keeps a loop from hammering it
}


class TokenBucket:
    """`take()` waits until a request may go. Thread-safe; `sleep`/`clock` injectable for tests."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._at = clock()
        self._lock = threading.Lock()

    def set_rate(self, rate: float) -> None:
        """The rate Amazon says applies (the `x-amzn-RateLimit-Limit` header)."""
        if rate > 0:
            with self._lock:
                self._refill()
                self.rate = rate

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self) -> float:
        """Take one token, waiting for it if need be; the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return waited
                wait = (1 - self._tokens) / self.rate
            self._sleep(wait)
            waited += wait

    def drain(self) -> None:
        """Amazon answered 429: whatever this side counted, it has no token now."""
        with self._lock:
            self._refill()
            self._tokens = min(self._tokens, 0.0)


@dataclass(frozen=True)
class Backoff:
    """Delays between retries: full jitter over base * 2**attempt, capped."""

    base: float = 0.5
    cap: float = 30.0
    attempts: int = 6  # tries in all, the first included

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        return float(rng() * min(self.cap, self.base * 2**attempt))


def header_rate(value: str | None) -> float | None:
    """The rate in an `x-amzn-RateLimit-Limit` header, or None when absent or not a number."""
    if not value:
        return None
    try:
        rate = float(value)
    except ValueError:
        return None
    return rate if 0 < rate < 1e6 else None
