"""Log-in throttling with the `limits` library: per account, per source address, global, and
spraying (one source failing on many accounts); and API request rates per principal and route.

Counters live in memory for the embedded deployment and in Redis for a distributed one. If the
store cannot be reached, log-ins are refused: an attacker who can knock Redis over must not get
unlimited guesses. Keys are keyed hashes: no login or address is written to the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from redis.exceptions import RedisError

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
    refuses requests rather than letting them through uncounted.

    With Redis, a request's counters are taken in one round trip (`_ACQUIRE_ALL`: `limits`' own
    sliding-window acquisition, on the same keys, for each counter in turn, stopping at the first
    refused), and a source found within its refusal budget is believed for `BUDGET_MEMO_SECONDS`
    on this node (until this node counts one of its refusals): the budget only decides whether
    refusals are recorded one by one, never whether a request is admitted."""

    BUDGET_MEMO_SECONDS = 1.0
    _BUDGET_MEMO_MAX = 10_000

    def __init__(self, settings: Settings, *, storage_url: str | None = None, key_prefix: str | None = None) -> None:
        self._storage = _storage(settings, storage_url, key_prefix, "the API rate limiter URL")
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._total = parse(settings.api_rate_per_principal)
        self._routes = {route: parse(rate) for route, rate in settings.api_route_rates.items()}
        self._refusals = parse(settings.api_refusals_per_source)
        self._acquire_all = (
            self._storage.get_connection().register_script(_ACQUIRE_ALL.encode())
            if isinstance(self._storage, RedisStorage)
            else None
        )
        self._windows = _Windows() if isinstance(self._storage, _Memory) else None
        self._budget_ok: dict[str, float] = {}

    def admit(self, principal_id: str, route: str) -> None:
        """Count one request of `principal_id` on `route` ("METHOD /path/{template}")."""
        per_route = self._routes.get(route)
        counters: list[tuple[RateLimitItem, tuple[str, ...]]] = [(self._total, ("api", principal_id))]
        if per_route is not None:
            counters.append((per_route, ("route", route, principal_id)))
        with _limiter_reachable():
            if self._windows is not None:
                hit = self._windows.hit
                refused = next(
                    (i for i, (item, ids) in enumerate(counters, 1) if not hit("/".join(ids), item)),
                    0,
                )
            elif self._acquire_all is not None:
                refused = self._acquire(counters)
            else:
                refused = next((i for i, (item, ids) in enumerate(counters, 1) if not self._limiter.hit(item, *ids)), 0)
        if refused == 1:
            raise RateLimited(f"too many requests: at most {self._total} for one principal; slow down and retry")
        if refused == 2:
            raise RateLimited(
                f"too many requests on this route: at most {per_route} for one principal; slow down and retry"
            )

    def _acquire(self, counters: list[tuple[RateLimitItem, tuple[str, ...]]]) -> int:
        """Take one from each counter in Redis, in one round trip: 0, or the 1-based index of the first
        counter that refused (those after it untouched)."""
        storage, script = self._storage, self._acquire_all
        if not isinstance(storage, RedisStorage) or script is None:
            raise TypeError("counters are taken in one round trip only in Redis")
        keys: list[str] = []
        args: list[int] = []
        for item, identifiers in counters:
            key = item.key_for(*identifiers)
            keys += [storage.prefixed_key(f"{{{key}}}/-1"), storage.prefixed_key(f"{{{key}}}")]  # limits' names
            args += [item.amount, item.get_expiry()]
        return int(script(keys, args))

    def within_budget(self, source_key: str) -> bool:
        """Whether a source (the keyed hash of its address, or of its /64) still has refused
        requests left in its budget; over it, its refusals are no longer recorded one by one,
        so that nobody can grow the security log without bound. Its good credentials still work:
        many clients may share one address (NAT, a proxy not in `trusted_proxies`)."""
        now = time.monotonic()
        if self._budget_ok.get(source_key, 0.0) > now:
            return True
        with _limiter_reachable():
            within = bool(self._limiter.test(self._refusals, "refused", source_key))
        if within:
            if len(self._budget_ok) >= self._BUDGET_MEMO_MAX:
                self._budget_ok.clear()
            self._budget_ok[source_key] = now + self.BUDGET_MEMO_SECONDS
        return within

    def refused(self, source_key: str) -> bool:
        """Count a refused request of the source; True when this one used up its budget."""
        self._budget_ok.pop(source_key, None)
        with _limiter_reachable():
            self._limiter.hit(self._refusals, "refused", source_key)
            return self._limiter.get_window_stats(self._refusals, "refused", source_key).remaining == 0


class _Windows:
    """Sliding-window counters in this process's memory, for the embedded deployment's request rates
    (a few dictionary operations under one lock, where `limits`' memory storage costs several times
    that on every request). The same sliding-window counter as `limits`': windows of the item's
    length, and the previous window's count weighted by how much of it still overlaps the last
    `expiry` seconds; the weighted count is not rounded down, so it admits no more than `limits`
    would. A refused hit counts nothing. Expired counters are swept at most once a second."""

    SWEEP_SECONDS = 1.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int, int, int]] = {}  # key → (window, previous, current, expiry)
        self._next_sweep = 0.0

    def hit(self, key: str, item: RateLimitItem) -> bool:
        """Count one against `item` (its amount per its expiry) for `key`, if it is under its limit."""
        expiry = item.get_expiry()
        now = self._clock()
        window, into = divmod(now, expiry)
        index = int(window)
        key = f"{key}/{item.amount}/{expiry}"
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            state = self._counts.get(key)
            if state is None or state[0] < index - 1:
                previous, current = 0, 0
            elif state[0] == index - 1:
                previous, current = state[2], 0
            else:
                previous, current = state[1], state[2]
            admitted = previous * (1 - into / expiry) + current + 1 <= item.amount
            self._counts[key] = (index, previous, current + admitted, expiry)
            return admitted

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_SECONDS
        for key in [k for k, (window, _, _, expiry) in self._counts.items() if window < now // expiry - 1]:
            del self._counts[key]

    def __len__(self) -> int:
        return len(self._counts)


# `limits`' acquire_sliding_window.lua, for several counters in one call: KEYS are (previous, current)
# pairs, ARGV (limit, expiry seconds) pairs; returns 0, or the 1-based index of the first refused.
_ACQUIRE_ALL = """
for i = 1, #KEYS / 2 do
    local previous, current = KEYS[2 * i - 1], KEYS[2 * i]
    local limit = tonumber(ARGV[2 * i - 1])
    local expiry = tonumber(ARGV[2 * i]) * 1000
    local current_ttl = tonumber(redis.call('pttl', current))
    if current_ttl > 0 and current_ttl < expiry then
        redis.call('rename', current, previous)
        redis.call('set', current, 0, 'PX', current_ttl + expiry)
    end
    local previous_count = tonumber(redis.call('get', previous)) or 0
    local previous_ttl = tonumber(redis.call('pttl', previous)) or 0
    local current_count = tonumber(redis.call('get', current)) or 0
    if previous_ttl <= 0 then previous_ttl = 0 end
    if math.floor(previous_count * previous_ttl / expiry) + current_count + 1 > limit then
        return i
    end
    if redis.call('exists', current) == 1 then
        redis.call('incrby', current, 1)
    else
        redis.call('set', current, 1, 'PX', expiry * 2)
    end
end
return 0
"""


@contextmanager
def _limiter_reachable() -> Iterator[None]:
    try:
        yield
    except (StorageError, ConnectionError, TimeoutError, RedisError):
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
