"""Log-in throttling with the `limits` library: per account, per source address, global, and
spraying (one source failing on many accounts); and API request rates per principal and route.

Counters live in memory for the embedded deployment and in Redis for a distributed one. If the
store cannot be reached, log-ins are refused: an attacker who can knock Redis over must not get
unlimited guesses. Keys are keyed hashes: no login or address is written to the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from sagevault.config import Settings, redis_problem
from sagevault.errors import ConfigError, LimiterUnavailable, LoginThrottled, RateLimited


@dataclass(frozen=True, slots=True)
class Failure:
    account_failures: int  # failures of this account in the lockout window, this one included
    spraying_started: bool  # this failure made its source a sprayer


class LoginThrottle:
    def __init__(self, settings: Settings, *, storage_url: str | None = None, key_prefix: str | None = None) -> None:
        self._storage = _storage(settings, storage_url, key_prefix, "the log-in limiter URL")
        self._limiter = MovingWindowRateLimiter(self._storage)
        self.threshold = settings.policy.lockout_threshold
        self._account = parse(f"{self.threshold} per day")
        self._source = parse(f"{settings.login_ip_failures} per 15 minutes")
        self._spray = parse(f"{settings.login_spray_accounts} per 15 minutes")
        self._seen = parse("1 per 15 minutes")
        self._global = parse(f"{settings.login_global_failures_per_minute} per minute")

    def admit(self, source: str) -> None:
        """Before a password is looked at: refuse a source that sprays or fails too often, and
        everyone while the global failure rate is over its limit."""
        with _fail_closed():
            if not self._limiter.test(self._spray, "spray", source):
                raise LoginThrottled(
                    "log-ins from this address are blocked for 15 minutes: it failed on too many accounts",
                    reason="spraying",
                )
            if not self._limiter.test(self._source, "source", source):
                raise LoginThrottled("too many failed log-ins from this address; try again in 15 minutes")
            if not self._limiter.test(self._global, "global"):
                raise LoginThrottled("log-ins are throttled: too many failures everywhere; try again in a minute")

    def failed(self, account: str, source: str) -> Failure:
        with _fail_closed():
            self._limiter.hit(self._global, "global")
            self._limiter.hit(self._source, "source", source)
            started = False
            if self._limiter.hit(self._seen, "seen", source, account):  # a new account for this source
                started = self._limiter.hit(self._spray, "spray", source) and self._remaining(self._spray, source) == 0
            self._limiter.hit(self._account, "account", account)
            return Failure(self.threshold - self._remaining(self._account, account), started)

    def clear_account(self, account: str) -> None:
        with _fail_closed():
            self._limiter.clear(self._account, "account", account)

    def _remaining(self, item: RateLimitItem, key: str) -> int:
        kind = "spray" if item is self._spray else "account"
        return self._limiter.get_window_stats(item, kind, key).remaining

    def healthy(self) -> bool:
        try:
            return bool(self._storage.check())
        except StorageError:
            return False


@contextmanager
def _fail_closed() -> Iterator[None]:
    try:
        yield
    except (StorageError, ConnectionError, TimeoutError):
        raise LoginThrottled(
            "log-ins are refused: the log-in limiter (rate_limit_storage_url) cannot be reached; "
            "they resume when it is back",
            reason="limiter_unavailable",
        ) from None


class RequestLimiter:
    """API request rates per principal, and per principal on a route (sliding-window counters,
    constant work per request). Counted where the log-in counters are; an unreachable store
    refuses requests rather than letting them through uncounted."""

    def __init__(self, settings: Settings, *, storage_url: str | None = None, key_prefix: str | None = None) -> None:
        self._storage = _storage(settings, storage_url, key_prefix, "the API rate limiter URL")
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._total = parse(settings.api_rate_per_principal)
        self._routes = {route: parse(rate) for route, rate in settings.api_route_rates.items()}
        self._refusals = parse(settings.api_refusals_per_source)

    def admit(self, principal_id: str, route: str) -> None:
        """Count one request of `principal_id` on `route` ("METHOD /path/{template}")."""
        with _limiter_reachable():
            if not self._limiter.hit(self._total, "api", principal_id):
                raise RateLimited(f"too many requests: at most {self._total} for one principal; slow down and retry")
            per_route = self._routes.get(route)
            if per_route is not None and not self._limiter.hit(per_route, "route", route, principal_id):
                raise RateLimited(
                    f"too many requests on this route: at most {per_route} for one principal; slow down and retry"
                )

    def within_budget(self, source_key: str) -> bool:
        """Whether a source (the keyed hash of its address, or of its /64) still has refused
        requests left in its budget; over it, its refusals are no longer recorded one by one,
        so that nobody can grow the security log without bound. Its good credentials still work:
        many clients may share one address (NAT, a proxy not in `trusted_proxies`)."""
        with _limiter_reachable():
            return bool(self._limiter.test(self._refusals, "refused", source_key))

    def refused(self, source_key: str) -> bool:
        """Count a refused request of the source; True when this one used up its budget."""
        with _limiter_reachable():
            self._limiter.hit(self._refusals, "refused", source_key)
            return self._limiter.get_window_stats(self._refusals, "refused", source_key).remaining == 0


@contextmanager
def _limiter_reachable() -> Iterator[None]:
    try:
        yield
    except (StorageError, ConnectionError, TimeoutError):
        raise LimiterUnavailable(
            "requests are refused: the rate limiter (rate_limit_storage_url) cannot be "
            "reached; they resume when it is back"
        ) from None


def _storage(settings: Settings, url: str | None, key_prefix: str | None, what: str) -> Storage:
    url = url or settings.rate_limit_storage_url
    problem = redis_problem(what, url)
    if problem:
        raise ConfigError(problem)
    options: dict[str, float | str | bool] = {"key_prefix": key_prefix or settings.rate_limit_key_prefix}
    if url.startswith("memory://"):
        return _Memory(url, **options)
    options |= {"wrap_exceptions": True, "socket_connect_timeout": 0.5, "socket_timeout": 0.5}
    return storage_from_string(url, **options)  # type: ignore[return-value]


class _Memory(MemoryStorage):
    """`limits`' memory storage, sweeping expired counters at most once a second. The stock one
    starts a new timer thread every 10 ms while requests keep coming (about one thread for every
    four API requests at a few hundred a second, measured with bench/api.py). The sweep only
    frees memory: every read checks its counter's expiry itself, so the limits are the same."""

    # Built directly by `_storage`; "memory://" stays limits' own. (Declared as limits declares it.)
    STORAGE_SCHEME = ["sagevault-memory"]  # noqa: RUF012
    SWEEP_SECONDS = 1.0

    def __init__(self, uri: str | None = None, **options: float | str | bool) -> None:
        self._sweep_lock = threading.Lock()
        self._next_sweep = 0.0
        super().__init__(uri, **options)  # type: ignore[arg-type]

    def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 - replaces the stock one (name-mangled)
        now = time.monotonic()
        if now < self._next_sweep:
            return
        with self._sweep_lock:
            if now < self._next_sweep or self.timer.is_alive():
                return
            self._next_sweep = now + self.SWEEP_SECONDS
            self.timer = threading.Timer(0.01, self._MemoryStorage__expire_events)  # type: ignore[attr-defined]
            self.timer.daemon = True
            self.timer.start()
