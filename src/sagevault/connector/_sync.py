"""What one sync step is made of: the checkpoint (`Cursor`), a fetched page (`Page`), and how a
cursor turns into the parameters of getOrders or searchOrders."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sagevault.errors import UpstreamError
from sagevault.vault import Operation

from ._client import ORDERS_2026, ORDERS_V0

API_V0 = "orders-v0"
API_2026 = "orders-2026"
APIS = (API_V0, API_2026)
PAGE_SIZE = 100  # the most getOrders and searchOrders give per page
# getOrders refuses a LastUpdatedBefore less than two minutes before the request; a window ends a
# little earlier still, so that clock skew between here and Amazon never makes it refuse one.
SETTLE = timedelta(minutes=3)


def utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def iso(at: datetime) -> str:
    return utc(at).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Cursor:
    """Where a marketplace's sync stands: the window [after, before) being read and the token of
    its next page (`before` is None between windows). `pages` is the checkpoint's version: a page
    is stored only onto the checkpoint it was fetched from."""

    tenant_id: str
    marketplace_id: str
    after: datetime
    before: datetime | None
    next_token: str | None
    pages: int

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        return utc(self.after), utc(self.before) if self.before else now - SETTLE


@dataclass(frozen=True)
class Page:
    """One fetched page, not stored yet. `restart`: Amazon no longer takes the NextToken (it
    expired), so the window is read again from its start (ingest replaces what it stores twice)."""

    cursor: Cursor
    before: datetime  # the window's end this page belongs to
    body: dict[str, Any] = field(repr=False)  # buyers' PII
    operation: Operation
    next_token: str | None
    orders: int
    restart: bool = False
    empty_window: bool = False  # nothing to ask: the window has not opened yet
    reached: datetime | None = None  # the latest update among the page's orders (progress)
    fetched_at: datetime | None = None  # when Amazon answered: the records' retrieval time

    def next_cursor(self) -> Cursor:
        """The checkpoint once this page is stored (what `Connector.store` returns): a caller may
        fetch the next page from it while this one is being stored."""
        c = self.cursor
        return Cursor(c.tenant_id, c.marketplace_id, *self.advanced(), c.pages + 1)

    def advanced(self) -> tuple[datetime, datetime | None, str | None]:
        """The checkpoint once this page is stored: (after, before, next token)."""
        if self.restart:
            return utc(self.cursor.after), self.before, None
        if self.next_token:
            return utc(self.cursor.after), self.before, self.next_token
        return self.before, None, None  # the window is done: the next one starts where it ended


def request(api: str, cursor: Cursor, after: datetime, before: datetime) -> tuple[str, str, dict[str, str]]:
    """(operation, path, query) of the page `cursor` points at."""
    if api == API_2026:
        query = {
            "marketplaceIds": cursor.marketplace_id,
            "lastUpdatedAfter": iso(after),
            "lastUpdatedBefore": iso(before),
            "maxResultsPerPage": str(PAGE_SIZE),
            "includedData": "BUYER,RECIPIENT,FULFILLMENT",
        }
        if cursor.next_token:
            query["paginationToken"] = cursor.next_token
        return "searchOrders", ORDERS_2026, query
    if cursor.next_token:
        return "getOrders", ORDERS_V0, {"MarketplaceIds": cursor.marketplace_id, "NextToken": cursor.next_token}
    query = {
        "MarketplaceIds": cursor.marketplace_id,
        "LastUpdatedAfter": iso(after),
        "LastUpdatedBefore": iso(before),
        "MaxResultsPerPage": str(PAGE_SIZE),
    }
    return "getOrders", ORDERS_V0, query


def reached(api: str, body: dict[str, Any]) -> datetime | None:
    """The latest update time among a page's orders, for progress only (None if none parses)."""
    key, orders = ("lastUpdatedTime", body.get("orders")) if api == API_2026 else ("LastUpdateDate", None)
    if api != API_2026:
        inner = body.get("payload")
        orders = inner.get("Orders") if isinstance(inner, dict) else None
    latest = None
    for order in orders if isinstance(orders, list) else ():
        value = order.get(key) if isinstance(order, dict) else None
        if isinstance(value, str):
            try:
                at = utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
            except ValueError:
                continue
            latest = at if latest is None or at > latest else latest
    return latest


def _marketplace_of(api: str, order: dict[str, Any]) -> Any:
    if api == API_2026:
        channel = order.get("salesChannel")
        return channel.get("marketplaceId") if isinstance(channel, dict) else None
    return order.get("MarketplaceId")


def read_page(api: str, body: dict[str, Any], marketplace_id: str | None = None) -> tuple[Operation, int, str | None]:
    """(operation, orders, next token) of an answer, or UpstreamError when its shape is not the
    model's: no list of orders, more than a page holds, an order of another marketplace than the one
    asked for, a next-page token that is not one (nothing of it is stored then)."""
    if api == API_2026:
        orders = body.get("orders")
        pagination = body.get("pagination")
        token = pagination.get("nextToken") if isinstance(pagination, dict) else None
        operation = Operation.SEARCH_ORDERS_2026
    else:
        inner = body.get("payload")
        orders = inner.get("Orders") if isinstance(inner, dict) else None
        token = inner.get("NextToken") if isinstance(inner, dict) else None
        operation = Operation.GET_ORDERS
    if not isinstance(orders, list) or not all(isinstance(o, dict) for o in orders):
        raise UpstreamError(f"{operation.value}: the page is malformed (no list of orders); nothing of it was stored")
    if len(orders) > PAGE_SIZE:
        raise UpstreamError(f"{operation.value}: the page holds more than {PAGE_SIZE} orders; nothing of it was stored")
    if marketplace_id is not None and any(
        (found := _marketplace_of(api, o)) is not None and found != marketplace_id for o in orders
    ):
        raise UpstreamError(
            f"{operation.value}: the page holds orders of another marketplace than {marketplace_id}; "
            "nothing of it was stored"
        )
    if token is not None and (not isinstance(token, str) or not token or len(token) > 4096):
        raise UpstreamError(f"{operation.value}: the page's next-page token is malformed; nothing of it was stored")
    return operation, len(orders), token or None
