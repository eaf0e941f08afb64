"""Listing orders page by page (getOrders, searchOrders): Amazon's date checks, the order of a
listing (by date, then order id), and NextTokens that carry the listing, opaque and signed (HMAC),
so a token altered, or given by another seller or to the other API, is refused."""

from __future__ import annotations

import base64
import bisect
import copy
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ._data import parse_iso
from ._errors import invalid


@dataclass(frozen=True)
class Query:
    """One listing of orders (getOrders or searchOrders), carried from page to page in the NextToken."""

    seller_id: str
    api: str  # "v0" or "2026"
    by: str  # "updated" (LastUpdateDate) or "created" (PurchaseDate)
    after: str
    before: str
    inclusive: bool  # `before` is now (<=), not a caller's bound (<)
    statuses: tuple[str, ...] = ()
    cursor: tuple[str, str] | None = None
    size: int = 100  # orders a page holds (a later page's request may change it)


def page_size(given: str | None, cap: int) -> int:
    """MaxResultsPerPage (1..100; default and most: `cap`), or 400 InvalidInput."""
    if given is None:
        return cap
    try:
        size = int(given)
    except ValueError:
        raise invalid("MaxResultsPerPage must be a whole number from 1 to 100") from None
    if not 1 <= size <= 100:
        raise invalid("MaxResultsPerPage must be a whole number from 1 to 100")
    return min(size, cap)


def new_query(
    seller_id: str,
    api: str,
    dates: Mapping[str, str | None],
    now: datetime,
    statuses: tuple[str, ...] = (),
    size: int = 100,
) -> Query:
    """A first page's query from `dates` (createdAfter, createdBefore, lastUpdatedAfter,
    lastUpdatedBefore; the v0 names map onto these) with Amazon's checks."""
    created_after, created_before = dates.get("createdAfter"), dates.get("createdBefore")
    updated_after, updated_before = dates.get("lastUpdatedAfter"), dates.get("lastUpdatedBefore")
    if (created_after is None) == (updated_after is None):
        raise invalid("Exactly one of CreatedAfter and LastUpdatedAfter is required")
    if created_after is not None and updated_before is not None:
        raise invalid("LastUpdatedBefore cannot be set when CreatedAfter is set")
    if updated_after is not None and created_before is not None:
        raise invalid("CreatedBefore cannot be set when LastUpdatedAfter is set")
    by = "created" if created_after is not None else "updated"
    after_text = created_after if by == "created" else updated_after
    before_text = created_before if by == "created" else updated_before
    name = "CreatedBefore" if by == "created" else "LastUpdatedBefore"
    try:
        after = parse_iso(after_text or "")
        before = parse_iso(before_text) if before_text is not None else None
    except ValueError:
        raise invalid("Dates must be in ISO 8601 format") from None
    if before is None:  # up to now, inclusive
        return Query(seller_id, api, by, after.isoformat(), now.isoformat(), True, statuses, size=size)
    if before > now - timedelta(minutes=2):
        raise invalid(f"{name} must be at least 2 minutes before the time of the request")
    if before < after:
        raise invalid(f"{name} must be equal to or after the matching After date")
    return Query(seller_id, api, by, after.isoformat(), before.isoformat(), False, statuses, size=size)


FIELDS = {"created": "PurchaseDate", "updated": "LastUpdateDate"}
Sorted = tuple[list[tuple[datetime, str]], list[dict[str, Any]]]  # keys (date, order id) and orders, in order


def sort_orders(orders: Iterable[dict[str, Any]], by: str) -> Sorted:
    """`orders` by (date, order id) for `by` (created or updated): what `select` pages through. A
    caller keeps it until an order changes, so a page costs a binary search, not a sort."""
    field_name = FIELDS[by]
    pairs = sorted(((parse_iso(o[field_name]), o["AmazonOrderId"]), o) for o in orders)
    return [k for k, _ in pairs], [o for _, o in pairs]


def select(ordered: Sorted, query: Query) -> tuple[list[dict[str, Any]], Query | None]:
    """One page of `query` over `ordered` (from `sort_orders` by `query.by`; copies) and the query
    of the next page (None: the last)."""
    keys, orders = ordered
    after, before = parse_iso(query.after), parse_iso(query.before)
    start = bisect.bisect_left(keys, (after, ""))
    if query.cursor is not None:
        start = max(start, bisect.bisect_right(keys, (parse_iso(query.cursor[0]), query.cursor[1])))
    matching: list[dict[str, Any]] = []
    for i in range(start, len(keys)):
        moment = keys[i][0]
        if moment > before or (moment == before and not query.inclusive):
            break
        if not query.statuses or orders[i]["OrderStatus"] in query.statuses:
            matching.append(orders[i])
            if len(matching) > query.size:
                break
    page = copy.deepcopy(matching[: query.size])
    if len(matching) <= query.size:
        return page, None
    last = page[-1]
    field_name = FIELDS[query.by]
    return page, replace(query, cursor=(last[field_name], last["AmazonOrderId"]))


def _mac(key: bytes, data: bytes) -> bytes:
    return base64.urlsafe_b64encode(hmac.new(key, data, hashlib.sha256).digest()[:18])


def write_token(key: bytes, query: Query) -> str:
    """`query` as an opaque, tamper-evident NextToken."""
    data = base64.urlsafe_b64encode(json.dumps(asdict(query), separators=(",", ":")).encode())
    return data.decode().rstrip("=") + "." + _mac(key, data).decode()


def read_token(key: bytes, token: str, seller_id: str, api: str) -> Query:
    """The query a NextToken carries, or 400 InvalidInput (altered, another seller's, another API's)."""
    data, _, mac = token.partition(".")
    padded = (data + "=" * (-len(data) % 4)).encode()
    if not mac or not hmac.compare_digest(mac.encode(), _mac(key, padded)):
        raise invalid("Invalid NextToken")
    fields = json.loads(base64.urlsafe_b64decode(padded))
    cursor = fields.get("cursor")
    query = Query(**{**fields, "statuses": tuple(fields["statuses"]), "cursor": tuple(cursor) if cursor else None})
    if query.seller_id != seller_id or query.api != api:
        raise invalid("Invalid NextToken")
    return query
