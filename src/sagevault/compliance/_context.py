"""What every check reads through: the deployment, the caller's unit of work, who asks, the time;
and the guards that turn evidence that cannot be read into ATTENTION, never into a pass."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from sagevault.identity import Principal

if TYPE_CHECKING:
    from sagevault.deployment import Deployment


class Unreadable(Exception):
    """The evidence for a requirement could not be read; the message says why (no PII)."""


@dataclass(frozen=True)
class Context:
    d: Deployment
    conn: Connection
    principal: Principal
    now: datetime

    @property
    def policy(self) -> Any:
        return self.d.settings.policy

    def last_event(self, name: str) -> dict[str, Any] | None:
        """The newest security event called `name`, or None."""
        found = list(self.d.audit.search(name=name, newest_first=True, limit=1))
        return found[0] if found else None

    def first_event(self) -> dict[str, Any] | None:
        found = list(self.d.audit.search(limit=1))
        return found[0] if found else None


def method(owner: Any, name: str) -> Callable[..., Any]:
    """`owner.name`, or Unreadable when this version of the service has no such operation (a part
    still being built): the report says so instead of guessing."""
    fn = getattr(owner, name, None)
    if not callable(fn):
        raise Unreadable(f"{type(owner).__name__}.{name} is not available in this deployment")
    return fn  # type: ignore[no-any-return]


def event_time(event: dict[str, Any]) -> datetime:
    """When a security event happened (the log stores ISO text in UTC)."""
    text = str(event["at"]).replace("Z", "+00:00")
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def paged(fetch: Callable[..., list[Any]], *, limit: int = 100, most: int = 100_000) -> Iterator[Any]:
    """Every row of a newest-first listing that pages by `after_id`."""
    after = 0
    seen = 0
    while seen < most:
        page = fetch(after_id=after, limit=limit)
        yield from page
        seen += len(page)
        if len(page) < limit:
            return
        after = int(page[-1].id)


def day(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None
