"""Log-in throttling with the `limits` library: per account, per source address, global, and
spraying (one source failing on many accounts).

Counters live in memory for the embedded deployment and in Redis for a distributed one. If the
store cannot be reached, log-ins are refused: an attacker who can knock Redis over must not get
unlimited guesses. Keys are keyed hashes: no login or address is written to the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from sagevault.config import Settings, redis_problem
from sagevault.errors import ConfigError, LoginThrottled


@dataclass(frozen=True, slots=True)
class Failure:
    account_failures: int  # failures of this account in the lockout window, this one included
    spraying_started: bool  # this failure made its source a sprayer


class LoginThrottle:
    def __init__(self, settings: Settings, *, storage_url: str | None = None, key_prefix: str | None = None) -> None:
        url = storage_url or settings.rate_limit_storage_url
        problem = redis_problem("the log-in limiter URL", url)
        if problem:
            raise ConfigError(problem)
        options: dict[str, float | str | bool] = {"key_prefix": key_prefix or settings.rate_limit_key_prefix}
        if not url.startswith("memory://"):
            options |= {"wrap_exceptions": True, "socket_connect_timeout": 0.5, "socket_timeout": 0.5}
        self._storage: Storage = storage_from_string(url, **options)  # type: ignore[assignment]
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
            "they resume when it is back", reason="limiter_unavailable",
        ) from None
