"""SP-API operations SageVault ingests, and how their responses become stored documents."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from sagevault.catalog import Document
from sagevault.errors import PayloadError, shown


class Operation(StrEnum):
    """An SP-API operation, qualified by API version (`getOrder` exists in both)."""

    GET_ORDERS = "orders-v0.getOrders"
    GET_ORDER = "orders-v0.getOrder"
    GET_ORDER_BUYER_INFO = "orders-v0.getOrderBuyerInfo"
    GET_ORDER_ADDRESS = "orders-v0.getOrderAddress"
    GET_ORDER_ITEMS = "orders-v0.getOrderItems"
    GET_ORDER_ITEMS_BUYER_INFO = "orders-v0.getOrderItemsBuyerInfo"
    GET_ORDER_REGULATED_INFO = "orders-v0.getOrderRegulatedInfo"
    SEARCH_ORDERS_2026 = "orders-2026-01-01.searchOrders"
    GET_ORDER_2026 = "orders-2026-01-01.getOrder"

    @classmethod
    def parse(cls, name: str) -> Operation:
        """Accept the qualified name or an unambiguous bare one (`getOrderAddress`)."""
        try:
            return cls(name)
        except ValueError:
            pass
        matches = [op for op in cls if op.value.split(".", 1)[1] == name]
        if len(matches) == 1:
            return matches[0]
        choices = ", ".join(op.value for op in cls)
        if matches:
            raise PayloadError(f"operation {shown(name)} exists in two API versions; use one of: {choices}")
        raise PayloadError(f"unknown operation {shown(name)}; use one of: {choices}")


@dataclass(slots=True)
class SourceDocument:
    """One document of one order, cut out of an SP-API response, not yet stored."""

    document: Document
    operation: Operation
    order_id: str
    marketplace_id: str | None
    purchased_at: str | None
    order_status: str | None
    body: dict[str, Any]
    # Retention (DPP 1): when the order was delivered, as far as the payload says (an order document
    # only), and the end of the promised delivery window. `DocumentStore` dates the record from them.
    delivered_at: str | None = None
    deliver_by: str | None = None


# An order id as SP-API gives them (e.g. 902-1845936-5435065), at most 64 characters. The one
# definition: ingest refuses any other (a NUL, a space or a quote could be stored but never addressed),
# and the API's order paths take exactly these.
ORDER_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_ORDER_ID = re.compile(ORDER_ID)

_ITEM_ONLY_KEYS = frozenset({"ASIN", "SellerSKU", "Title", "QuantityOrdered", "ItemPrice"})
_ADDRESS_KEYS = frozenset({"ShippingAddress", "DeliveryPreferences", "BuyerCompanyName"})
_ORDER_KEYS = frozenset({"PurchaseDate", "OrderStatus", "LastUpdateDate", "FulfillmentChannel"})
_REGULATED_KEYS = frozenset({"RegulatedInformation", "RegulatedOrderVerificationStatus", "RequiresDosageLabel"})


def _require_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def recognise(payload: Any) -> Operation:
    """The operation whose response (or order object) `payload` is, from its shape alone."""
    body = _require_dict(payload, "an SP-API response")
    if "errors" in body and "payload" not in body:
        raise PayloadError("this is an SP-API error response, not data; fetch the orders again")
    if "payload" in body:
        inner = _require_dict(body["payload"], "the response's payload")
        if "Orders" in inner:
            return Operation.GET_ORDERS
        if "OrderItems" in inner:
            items = inner["OrderItems"] if isinstance(inner["OrderItems"], list) else []
            if any(isinstance(i, dict) and _ITEM_ONLY_KEYS & i.keys() for i in items) or not items:
                return Operation.GET_ORDER_ITEMS
            return Operation.GET_ORDER_ITEMS_BUYER_INFO
        return _recognise_v0_object(inner)
    if "orders" in body:
        return Operation.SEARCH_ORDERS_2026
    if "order" in body:
        return Operation.GET_ORDER_2026
    if "orderId" in body:
        return Operation.GET_ORDER_2026
    return _recognise_v0_object(body)


def _recognise_v0_object(obj: dict[str, Any]) -> Operation:
    keys = obj.keys()
    if _REGULATED_KEYS & keys:
        return Operation.GET_ORDER_REGULATED_INFO
    if _ORDER_KEYS & keys:
        return Operation.GET_ORDER
    if _ADDRESS_KEYS & keys:
        return Operation.GET_ORDER_ADDRESS
    if "AmazonOrderId" in keys:
        return Operation.GET_ORDER_BUYER_INFO
    raise PayloadError(
        "cannot tell which SP-API operation this payload comes from (no AmazonOrderId, orderId, "
        "payload, orders or order key); pass the operation explicitly (--operation)"
    )


def _order_id(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not _ORDER_ID.fullmatch(value):  # never echoed: it is not known to be an id
        raise PayloadError(
            f"{what} has no {key} of the form SP-API gives: 1 to 64 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (e.g. 902-1845936-5435065)"
        )
    return value


def _opt_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value[:40] if isinstance(value, str) else None


# The documents that carry an order's dates; the others (address, buyer info, items, regulated
# information) take the dates of their order's document.
ORDER_DOCUMENTS = (Document.V0_ORDER, Document.ORDER_2026)


class OrderDates(NamedTuple):
    """The dates of an order as its document gives them (ISO 8601 text, as SP-API writes it)."""

    purchased: str | None  # PurchaseDate / createdTime
    delivered: str | None  # when a delivered order was last updated: the delivery is no later
    deliver_by: str | None  # the end of the promised delivery window


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _text(value: Any) -> str | None:
    return value[:40] if isinstance(value, str) else None


# No order is older than Amazon's first (July 1995): an earlier time in a payload is a placeholder
# (Amazon's sandbox answers with 1970 dates), not an order's date.
_FIRST_ORDER = datetime(1995, 7, 16, tzinfo=UTC)


def when(text: str | None) -> datetime | None:
    """An SP-API time (ISO 8601) in UTC; one without an offset is UTC (as Amazon's are); None when
    absent, not a time, or before Amazon's first order."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    try:
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset that leaves the calendar
        return None
    return at if at >= _FIRST_ORDER else None


def order_dates(document: Document, body: dict[str, Any]) -> OrderDates:
    """The retention dates an order document gives (also read from a stored record's clear part:
    every field used here is non-PII).

    Neither Orders API has a "delivered at" time. A delivered order (v0: `EasyShipShipmentStatus`
    Delivered; 2026-01-01: every package not cancelled has status DELIVERED) was delivered at the
    latest when it was last updated (`LastUpdateDate` / `lastUpdatedTime`). The promised window's
    end is `LatestDeliveryDate` (v0) or `fulfillment.deliverByWindow.latestDateTime`, else the
    latest of the items' `scheduledDeliveryWindow` (2026-01-01).
    """
    if document is Document.V0_ORDER:
        delivered = body.get("EasyShipShipmentStatus") == "Delivered"
        return OrderDates(
            _text(body.get("PurchaseDate")),
            _text(body.get("LastUpdateDate")) if delivered else None,
            _text(body.get("LatestDeliveryDate")),
        )
    if document is Document.ORDER_2026:
        packages = body.get("packages")
        states = [_dig(p, "packageStatus", "status") for p in packages] if isinstance(packages, list) else []
        states = [s for s in states if s != "CANCELLED"]
        delivered = bool(states) and all(s == "DELIVERED" for s in states)
        deliver_by = _text(_dig(body, "fulfillment", "deliverByWindow", "latestDateTime"))
        if deliver_by is None and isinstance(items := body.get("orderItems"), list):
            ends = [
                end
                for item in items
                if isinstance(
                    end := _dig(item, "fulfillment", "shipping", "scheduledDeliveryWindow", "latestDateTime"), str
                )
            ]
            latest = max(((at, end) for end in ends if (at := when(end)) is not None), default=None)
            deliver_by = _text(latest[1]) if latest else None
        return OrderDates(
            _text(body.get("createdTime")), _text(body.get("lastUpdatedTime")) if delivered else None, deliver_by
        )
    return OrderDates(None, None, None)


def _v0_order(obj: Any, op: Operation, what: str) -> SourceDocument:
    body = _require_dict(obj, what)
    dates = order_dates(Document.V0_ORDER, body)
    return SourceDocument(
        Document.V0_ORDER,
        op,
        _order_id(body, "AmazonOrderId", what),
        _opt_str(body, "MarketplaceId"),
        dates.purchased,
        _opt_str(body, "OrderStatus"),
        body,
        dates.delivered,
        dates.deliver_by,
    )


def _v0_part(document: Document) -> Callable[[Any, Operation, str], SourceDocument]:
    def extract(obj: Any, op: Operation, what: str) -> SourceDocument:
        body = _require_dict(obj, what)
        if document in (Document.V0_ORDER_ITEMS, Document.V0_ORDER_ITEMS_BUYER_INFO) and not isinstance(
            body.get("OrderItems"), list
        ):
            raise PayloadError(f"{what} has no OrderItems list")
        return SourceDocument(document, op, _order_id(body, "AmazonOrderId", what), None, None, None, body)

    return extract


def _order_2026(obj: Any, op: Operation, what: str) -> SourceDocument:
    body = _require_dict(obj, what)
    channel = body.get("salesChannel")
    marketplace = _opt_str(channel, "marketplaceId") if isinstance(channel, dict) else None
    fulfillment = body.get("fulfillment")
    status = _opt_str(fulfillment, "fulfillmentStatus") if isinstance(fulfillment, dict) else None
    dates = order_dates(Document.ORDER_2026, body)
    return SourceDocument(
        Document.ORDER_2026,
        op,
        _order_id(body, "orderId", what),
        marketplace,
        dates.purchased,
        status,
        body,
        dates.delivered,
        dates.deliver_by,
    )


_SINGLE: dict[Operation, Callable[[Any, Operation, str], SourceDocument]] = {
    Operation.GET_ORDER: _v0_order,
    Operation.GET_ORDER_BUYER_INFO: _v0_part(Document.V0_BUYER_INFO),
    Operation.GET_ORDER_ADDRESS: _v0_part(Document.V0_ADDRESS),
    Operation.GET_ORDER_ITEMS: _v0_part(Document.V0_ORDER_ITEMS),
    Operation.GET_ORDER_ITEMS_BUYER_INFO: _v0_part(Document.V0_ORDER_ITEMS_BUYER_INFO),
    Operation.GET_ORDER_REGULATED_INFO: _v0_part(Document.V0_REGULATED_INFO),
    Operation.GET_ORDER_2026: _order_2026,
}


def extract(payload: Any, operation: Operation, where: str = "payload") -> list[SourceDocument]:
    """The documents in one response (or one bare order object) of `operation`."""
    body = _require_dict(payload, where)
    if operation is Operation.GET_ORDERS:
        inner = _require_dict(body.get("payload", body), f"{where}: payload")
        orders = inner.get("Orders")
        if not isinstance(orders, list):
            raise PayloadError(f"{where}: a getOrders response needs payload.Orders to be a list")
        return [_v0_order(o, operation, f"{where}: payload.Orders[{i}]") for i, o in enumerate(orders)]
    if operation is Operation.SEARCH_ORDERS_2026:
        orders = body.get("orders")
        if not isinstance(orders, list):
            raise PayloadError(f"{where}: a searchOrders response needs an orders list")
        return [_order_2026(o, operation, f"{where}: orders[{i}]") for i, o in enumerate(orders)]
    if operation is Operation.GET_ORDER_2026:
        obj = body.get("order", body)
        return [_order_2026(obj, operation, f"{where}: order")]
    obj = body.get("payload", body)
    return [_SINGLE[operation](obj, operation, f"{where}: payload")]
