"""The stand-in's HTTP face (Starlette): LWA's token endpoint, the Tokens API's
createRestrictedDataToken, the Orders v0 and 2026-01-01 reads, and the `/_sandbox/*` control
endpoints a test drives a stand-in in another process with.

Every answer carries `x-amzn-RequestId`; SP-API answers carry `x-amzn-RateLimit-Limit`. Nothing
here logs: a request's tokens, secrets and the orders' PII never reach a log line.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._data import FULFILLMENT_STATUSES_2026, iso, order_2026, order_items, parse_iso
from ._errors import LwaError, SpApiError, invalid
from ._state import EXPIRED, FAULT_KINDS, LWA_OPERATION, Grant, Sandbox

_V0_STATUSES = frozenset(
    {"PendingAvailability", "Pending", "Unshipped", "PartiallyShipped", "Shipped", "InvoiceUnconfirmed", "Canceled"}
    | {"Unfulfillable"}
)
_V0_OF_2026 = {
    "PENDING_AVAILABILITY": "PendingAvailability",
    "PENDING": "Pending",
    "UNSHIPPED": "Unshipped",
    "PARTIALLY_SHIPPED": "PartiallyShipped",
    "SHIPPED": "Shipped",
    "CANCELLED": "Canceled",
    "UNFULFILLABLE": "Unfulfillable",
}
_INCLUDED_DATA = frozenset(
    {"BUYER", "RECIPIENT", "PROCEEDS", "EXPENSE", "PROMOTION", "CANCELLATION", "FULFILLMENT", "PACKAGES", "TAX"}
    | {"PAYMENT", "FULFILLMENT_ORDERS"}
)
_MALFORMED = b'{"payload": {"Orders": [{"AmazonOrderId": "'  # a 200 cut short: not JSON
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_Query = dict[str, list[str]]


class _RequestId:
    """Every answer, whoever made it (a route, a 404, a fault), carries a fresh x-amzn-RequestId."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4()).encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-amzn-RequestId", request_id)]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(SpApiError(status, code, message).body(), status_code=status, headers=headers)


def _query(request: Request) -> _Query:
    """Query parameters by name; a list parameter may be repeated or comma-separated."""
    found: _Query = {}
    for name, value in request.query_params.multi_items():
        found.setdefault(name, []).extend(v.strip() for v in value.split(",") if v.strip())
    return found


def _one(query: _Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _without_pii(order: dict[str, Any], elements: frozenset[str]) -> dict[str, Any]:
    if "buyerInfo" not in elements:
        order.pop("BuyerInfo", None)
    if "shippingAddress" not in elements:
        order.pop("ShippingAddress", None)
    return order


class _Handlers:
    """The endpoints of one app over one `Sandbox`."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.stopping = threading.Event()  # set when the server stops: held answers end at once

    async def hang(self, request: Request) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sandbox.hang_seconds
        while not self.stopping.is_set() and (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(0.05, left))
            if await request.is_disconnected():
                return

    async def sp_api(self, request: Request, operation: str, work: Callable[[Grant], dict[str, Any]]) -> Response:
        sandbox = self.sandbox
        headers = {"x-amzn-RateLimit-Limit": sandbox.rate_header(operation)}
        sandbox.count(operation)
        fault = sandbox.take_fault(operation)
        if fault == "timeout":
            await self.hang(request)
            fault = None
        if fault is not None:
            return _sp_fault(fault, headers)
        try:
            grant = sandbox.authenticate(request.headers.get("x-amz-access-token"), operation, request.url.path)
            sandbox.admit(grant.seller_id, operation)
            return JSONResponse(work(grant), headers=headers)
        except SpApiError as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
        except Exception:  # a bug here: Amazon's 500, and no traceback with values in a log
            return _error(500, "InternalFailure", "We encountered an internal error. Please try again.", headers)

    async def token(self, request: Request) -> Response:
        self.sandbox.count(LWA_OPERATION)
        fault = self.sandbox.take_fault(LWA_OPERATION)
        if fault == "timeout":
            await self.hang(request)
            fault = None
        if fault is not None:
            return _lwa_fault(fault)
        form = _form(await request.body(), request.headers.get("content-type", ""))
        try:
            if form is None:
                raise LwaError(400, "invalid_request", "the body must be form-encoded parameters")
            return JSONResponse(self.sandbox.lwa_token(form), headers=_NO_STORE)
        except LwaError as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers=_NO_STORE)

    async def restricted_data_token(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        return await self.sp_api(request, "createRestrictedDataToken", lambda g: self.sandbox.create_rdt(g, body))

    async def get_orders(self, request: Request) -> Response:
        return await self.sp_api(request, "getOrders", lambda g: _get_orders(self.sandbox, g, _query(request)))

    async def search_orders(self, request: Request) -> Response:
        return await self.sp_api(request, "searchOrders", lambda g: _search_orders(self.sandbox, g, _query(request)))

    async def get_order(self, request: Request) -> Response:
        def work(grant: Grant) -> dict[str, Any]:
            order = self.sandbox.order(grant, request.path_params["orderId"])
            return {"payload": _without_pii(order, grant.elements(request.url.path))}

        return await self.sp_api(request, "getOrder", work)

    async def get_order_address(self, request: Request) -> Response:
        def work(grant: Grant) -> dict[str, Any]:
            order = self.sandbox.order(grant, request.path_params["orderId"])
            return {"payload": {"AmazonOrderId": order["AmazonOrderId"], "ShippingAddress": order["ShippingAddress"]}}

        return await self.sp_api(request, "getOrderAddress", work)

    async def get_order_buyer_info(self, request: Request) -> Response:
        def work(grant: Grant) -> dict[str, Any]:
            order = self.sandbox.order(grant, request.path_params["orderId"])
            return {"payload": {"AmazonOrderId": order["AmazonOrderId"], **order["BuyerInfo"]}}

        return await self.sp_api(request, "getOrderBuyerInfo", work)

    async def get_order_items(self, request: Request) -> Response:
        def work(grant: Grant) -> dict[str, Any]:
            order = self.sandbox.order(grant, request.path_params["orderId"])
            return {"payload": {"AmazonOrderId": order["AmazonOrderId"], "OrderItems": order_items(order)}}

        return await self.sp_api(request, "getOrderItems", work)

    async def control(self, request: Request) -> Response:
        given = request.headers.get("x-sandbox-admin", "")
        if not hmac.compare_digest(given.encode(), self.sandbox.admin_token.encode()):
            return _error(403, "Unauthorized", "The x-sandbox-admin header is missing or wrong.")
        try:
            body = json.loads(await request.body() or b"{}") if request.method == "POST" else {}
            if not isinstance(body, dict):
                raise TypeError("the body must be a JSON object")
            return JSONResponse(_CONTROLS[request.url.path.rsplit("/", 1)[1]](self.sandbox, body))
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, "InvalidInput", str(exc).strip("'\""))


async def _not_found(_request: Request, _exc: Exception) -> Response:
    return _error(404, "NotFound", "The requested resource was not found.")


async def _not_allowed(_request: Request, _exc: Exception) -> Response:
    return _error(405, "InvalidInput", "The method is not allowed on this resource.")


def create_app(sandbox: Sandbox) -> Starlette:
    """The ASGI app of `sandbox`. Setting `app.state.stopping` (a threading.Event) ends held answers."""
    h = _Handlers(sandbox)
    order = "/orders/v0/orders/{orderId}"
    routes = [
        Route("/auth/o2/token", h.token, methods=["POST"]),
        Route("/tokens/2021-03-01/restrictedDataToken", h.restricted_data_token, methods=["POST"]),
        Route("/orders/v0/orders", h.get_orders, methods=["GET"]),
        Route(order, h.get_order, methods=["GET"]),
        Route(f"{order}/address", h.get_order_address, methods=["GET"]),
        Route(f"{order}/buyerInfo", h.get_order_buyer_info, methods=["GET"]),
        Route(f"{order}/orderItems", h.get_order_items, methods=["GET"]),
        Route("/orders/2026-01-01/orders", h.search_orders, methods=["GET"]),
        *(Route(f"/_sandbox/{name}", h.control, methods=["POST"]) for name in _CONTROLS if name != "calls"),
        Route("/_sandbox/calls", h.control, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_RequestId)],
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    app.state.sandbox = sandbox
    app.state.stopping = h.stopping
    return app


def _form(body: bytes, content_type: str) -> dict[str, str] | None:
    """The token request's parameters (form-encoded; JSON accepted too), or None if unreadable."""
    try:
        if content_type.startswith("application/json"):
            parsed = json.loads(body)
            if not isinstance(parsed, dict):
                return None
            return {str(k): str(v) for k, v in parsed.items()}
        return dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body)))
    except ValueError:
        return None


def _sp_fault(kind: str, headers: dict[str, str]) -> Response:
    if kind == "malformed":
        return Response(_MALFORMED, media_type="application/json", headers=headers)
    status, code, message = {
        "500": (500, "InternalFailure", "We encountered an internal error. Please try again."),
        "503": (503, "ServiceUnavailable", "Service temporarily unavailable. Please try again."),
        "429": (429, "QuotaExceeded", "You exceeded your quota for the requested resource."),
        "expired-token": (403, "Unauthorized", EXPIRED),
    }[kind]
    return _error(status, code, message, headers)


def _lwa_fault(kind: str) -> Response:
    if kind == "malformed":
        return Response(b'{"access_token": "Atza|', media_type="application/json")
    status, error = {"500": (500, "server_error"), "503": (503, "temporarily_unavailable"), "429": (429, "slow_down")}[
        kind
    ]
    return JSONResponse({"error": error, "error_description": "Please try again later."}, status_code=status)


def _get_orders(sandbox: Sandbox, grant: Grant, query: _Query) -> dict[str, Any]:
    """getOrders: a page of the seller's orders; BuyerInfo/ShippingAddress only as an RDT unlocks them."""
    elements = grant.elements("/orders/v0/orders")
    size = _one(query, "MaxResultsPerPage")
    next_token = _one(query, "NextToken")
    sandbox.check_marketplaces(grant.seller_id, query.get("MarketplaceIds", []), required=next_token is None)
    if next_token is not None:
        listing = sandbox.read_token(next_token, grant.seller_id, "v0")
        listing = listing if size is None else replace(listing, size=sandbox.page_size(size))
    else:
        statuses = tuple(query.get("OrderStatuses", []))
        if set(statuses) - _V0_STATUSES:
            raise invalid("OrderStatuses holds an unknown status")
        dates = {
            "createdAfter": _one(query, "CreatedAfter"),
            "createdBefore": _one(query, "CreatedBefore"),
            "lastUpdatedAfter": _one(query, "LastUpdatedAfter"),
            "lastUpdatedBefore": _one(query, "LastUpdatedBefore"),
        }
        listing = sandbox.new_query(grant.seller_id, "v0", dates, statuses, sandbox.page_size(size))
    orders, following = sandbox.select(listing)
    payload: dict[str, Any] = {"Orders": [_without_pii(o, elements) for o in orders]}
    if following is not None:
        payload["NextToken"] = sandbox.write_token(following)
    payload["LastUpdatedBefore" if listing.by == "updated" else "CreatedBefore"] = iso(parse_iso(listing.before))
    return {"payload": payload}


def _search_orders(sandbox: Sandbox, grant: Grant, query: _Query) -> dict[str, Any]:
    """searchOrders (2026-01-01): the same orders in the new shape; the buyer and the recipient
    only when `includedData` asks for them and an RDT for the path unlocks them."""
    elements = grant.elements("/orders/2026-01-01/orders")
    included = set(query.get("includedData", []))
    if included - _INCLUDED_DATA:
        raise invalid("includedData holds an unknown dataset")
    size = _one(query, "maxResultsPerPage")
    next_token = _one(query, "paginationToken")
    sandbox.check_marketplaces(grant.seller_id, query.get("marketplaceIds", []), required=False)
    if next_token is not None:
        listing = sandbox.read_token(next_token, grant.seller_id, "2026")
        listing = listing if size is None else replace(listing, size=sandbox.page_size(size))
    else:
        wanted = query.get("fulfillmentStatuses", [])
        if set(wanted) - FULFILLMENT_STATUSES_2026:
            raise invalid("fulfillmentStatuses holds an unknown status")
        names = ("createdAfter", "createdBefore", "lastUpdatedAfter", "lastUpdatedBefore")
        dates = {name: _one(query, name) for name in names}
        statuses = tuple(_V0_OF_2026[s] for s in wanted)
        listing = sandbox.new_query(grant.seller_id, "2026", dates, statuses, sandbox.page_size(size))
    orders, following = sandbox.select(listing)
    buyer = "BUYER" in included and "buyerInfo" in elements
    recipient = "RECIPIENT" in included and "shippingAddress" in elements
    answer: dict[str, Any] = {"orders": [order_2026(o, buyer=buyer, recipient=recipient) for o in orders]}
    if following is not None:
        answer["pagination"] = {"nextToken": sandbox.write_token(following)}
    answer["lastUpdatedBefore" if listing.by == "updated" else "createdBefore"] = iso(parse_iso(listing.before))
    return answer


def _count(body: dict[str, Any], name: str, default: int = 0) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a whole number, 0 or more")
    return value


def _seller_id(body: dict[str, Any]) -> str:
    seller_id = body.get("seller_id")
    if not isinstance(seller_id, str):
        raise TypeError("seller_id is required")
    return seller_id


def _faults(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    kind, operation = body.get("kind"), body.get("operation")
    if not isinstance(kind, str) or not (operation is None or isinstance(operation, str)):
        raise ValueError(f"kind (one of {', '.join(FAULT_KINDS)}) is required; operation is a name or null")
    if "hang_seconds" in body:
        hang = body["hang_seconds"]
        if not isinstance(hang, int | float) or isinstance(hang, bool) or hang < 0:
            raise ValueError("hang_seconds must be a number, 0 or more")
        sandbox.hang_seconds = float(hang)
    sandbox.inject(kind, _count(body, "count", 1), operation)
    return {"injected": kind, "count": _count(body, "count", 1), "operation": operation}


def _orders(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    seller_id = _seller_id(body)
    added = sandbox.add_orders(seller_id, _count(body, "add"))
    return {"added": added, "updated": sandbox.update_orders(seller_id, _count(body, "update"))}


def _revoke(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    sandbox.revoke(_seller_id(body))
    return {"revoked": _seller_id(body)}


_CONTROLS: dict[str, Callable[[Sandbox, dict[str, Any]], dict[str, Any]]] = {
    "faults": _faults,
    "revoke": _revoke,
    "orders": _orders,
    "authorization-code": lambda sandbox, body: {"code": sandbox.authorization_code(_seller_id(body))},
    "calls": lambda sandbox, _body: {"calls": dict(sandbox.calls)},
}
