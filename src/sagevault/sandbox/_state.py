"""The stand-in's state: sellers and their orders, LWA grants, access tokens and RDTs, faults to
inject, per-(seller, operation) token buckets, and the key that signs NextTokens (`_paging`).
Thread-safe: the server's event loop and a test's thread share one `Sandbox`.

Every refusal is raised as `SpApiError` (Amazon's `{"errors": [...]}`) or `LwaError` (LWA's
`{"error", "error_description"}`); messages never hold a token, a secret or PII.
"""

from __future__ import annotations

import copy
import hmac
import math
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ._data import generate_orders, iso, make_order, set_status
from ._errors import LwaError, SpApiError, invalid
from ._paging import Query, Sorted, new_query, page_size, read_token, select, sort_orders, write_token

# operation -> (rate per second, burst): Amazon's documented defaults (the models' usage plans).
OPERATIONS: dict[str, tuple[float, int]] = {
    "getOrders": (0.0167, 20),
    "getOrder": (0.5, 30),
    "getOrderAddress": (0.5, 30),
    "getOrderBuyerInfo": (0.5, 30),
    "getOrderItems": (0.5, 30),
    "searchOrders": (0.0056, 20),  # orders_2026-01-01.json's usage plan
    "createRestrictedDataToken": (1.0, 10),
}
LWA_OPERATION = "token"  # POST /auth/o2/token in `calls` and as a fault's `operation`
FAULT_KINDS = ("timeout", "500", "503", "429", "expired-token", "malformed")
PII_ELEMENTS = frozenset({"buyerInfo", "shippingAddress"})
_RESTRICTED_OPERATIONS = frozenset({"getOrderAddress", "getOrderBuyerInfo"})  # an RDT or nothing
_CODE_SECONDS = 300  # an authorisation code's life, as LWA's
DENIED = "Access to requested resource is denied."
EXPIRED = "The access token you provided has expired."


def new_refresh_token() -> str:
    """A random LWA refresh token (`Atzr|...`)."""
    return "Atzr|" + secrets.token_urlsafe(96)


def new_client_id() -> str:
    return "amzn1.application-oa2-client." + secrets.token_hex(16)


def new_client_secret() -> str:
    return "amzn1.oa2-cs.v1." + secrets.token_hex(32)


@dataclass
class SellerSpec:
    """One seller of the stand-in: its id, marketplace, how many orders it starts with, the refresh
    token an app holds for it, and the seed its orders are made from."""

    seller_id: str
    marketplace_id: str = "ATVPDKIKX0DER"
    orders: int = 100
    refresh_token: str = field(default_factory=new_refresh_token)
    seed: int = 0


@dataclass
class SandboxConfig:
    """The app registered with the stand-in (its LWA client) and its sellers (by seller id).
    `rate_scale` multiplies every operation's rate (and its burst when below 1; see `Sandbox.limits`)."""

    client_id: str = field(default_factory=new_client_id)
    client_secret: str = field(default_factory=new_client_secret)
    sellers: dict[str, SellerSpec] = field(default_factory=dict)
    rate_limits: bool = True
    rate_scale: float = 1.0
    page_size: int = 100
    token_seconds: int = 3600
    redirect_uri: str | None = None


@dataclass(frozen=True)
class Resource:
    """A path an RDT was made for (`{orderId}` stands for any order) and the PII elements it unlocks."""

    pattern: re.Pattern[str]
    elements: frozenset[str]


@dataclass(frozen=True)
class Grant:
    """What an access token or an RDT stands for."""

    seller_id: str
    kind: str  # "access" or "rdt"
    expires_at: datetime
    generation: int
    resources: tuple[Resource, ...] = ()

    def elements(self, path: str) -> frozenset[str]:
        """The PII elements this grant unlocks on `path` (none for an LWA access token)."""
        found: set[str] = set()
        for r in self.resources:
            if r.pattern.fullmatch(path):
                found |= r.elements
        return frozenset(found)


@dataclass
class _Seller:
    spec: SellerSpec
    orders: dict[str, dict[str, Any]]
    refresh_token: str
    next_index: int
    generation: int = 0
    revoked: bool = False
    ordered: dict[str, Sorted] = field(default_factory=dict)  # by created/updated; cleared on any change


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class Fault:
    """A fault waiting in `Sandbox.faults`: the next `remaining` calls of `operation` get it."""

    kind: str
    remaining: int
    operation: str | None


_ORDER_SEGMENT = r"(?:\{orderId\}|[A-Za-z0-9][A-Za-z0-9._-]{0,63})"
# path -> (PII elements it may name, whether it must name some)
_RESTRICTED_PATHS: list[tuple[re.Pattern[str], frozenset[str], bool]] = [
    (re.compile(r"/orders/v0/orders"), PII_ELEMENTS, True),
    (re.compile(rf"/orders/v0/orders/{_ORDER_SEGMENT}"), PII_ELEMENTS, True),
    (re.compile(rf"/orders/v0/orders/{_ORDER_SEGMENT}/address"), frozenset(), False),
    (re.compile(rf"/orders/v0/orders/{_ORDER_SEGMENT}/buyerInfo"), frozenset(), False),
    (re.compile(r"/orders/2026-01-01/orders"), PII_ELEMENTS, False),
]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Sandbox:
    """The stand-in's state. `clock` gives the time of orders, token lifetimes and date checks
    (default: the real clock); rate limits refill by the monotonic clock."""

    hang_seconds: float = 30.0  # how long a "timeout" fault holds its answer

    def __init__(self, config: SandboxConfig, clock: Callable[[], datetime] | None = None) -> None:
        if config.page_size < 1 or config.token_seconds < 1 or config.rate_scale <= 0:
            raise ValueError("page_size and token_seconds must be at least 1, rate_scale above 0")
        self.config = config
        self._clock = clock or _utcnow
        self._monotonic = time.monotonic
        self._lock = threading.RLock()
        self.admin_token = secrets.token_urlsafe(32)
        self._page_key = secrets.token_bytes(32)
        self.calls: Counter[str] = Counter()
        self.faults: list[Fault] = []  # pending, in order; a test may clear() it
        self._sellers: dict[str, _Seller] = {}
        self._refresh: dict[str, tuple[str, int]] = {}  # refresh token -> (seller, generation)
        self._grants: dict[str, Grant] = {}  # access token or RDT -> grant
        self._codes: dict[str, tuple[str, datetime]] = {}  # authorisation code -> (seller, expiry)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        now = self.now()
        for seller_id, spec in config.sellers.items():
            if spec.seller_id != seller_id:
                raise ValueError(f"seller {seller_id!r} is keyed under another id than its spec's")
            orders = generate_orders(seller_id, spec.marketplace_id, spec.orders, spec.seed, now)
            self._sellers[seller_id] = _Seller(
                spec, {o["AmazonOrderId"]: o for o in orders}, spec.refresh_token, spec.orders
            )
            self._refresh[spec.refresh_token] = (seller_id, 0)

    # -- what a test drives ------------------------------------------------------------------

    def now(self) -> datetime:
        moment = self._clock()
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    def inject(self, kind: str, count: int = 1, operation: str | None = None) -> None:
        """The next `count` calls of `operation` (any SP-API operation when None; "token" for the
        LWA endpoint, only ever by name) fail as `kind`: "timeout" (held `hang_seconds`, then
        answered), "500", "503", "429", "expired-token" (403), "malformed" (200, not JSON)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if operation is not None and operation not in OPERATIONS and operation != LWA_OPERATION:
            raise ValueError(f"unknown operation {operation!r}; one of {', '.join([*OPERATIONS, LWA_OPERATION])}")
        if kind == "expired-token" and operation == LWA_OPERATION:
            raise ValueError("the LWA endpoint takes no access token to expire")
        with self._lock:
            self.faults.append(Fault(kind, count, operation))

    def take_fault(self, operation: str) -> str | None:
        """The fault this call of `operation` gets, if one is pending (it is used up)."""
        with self._lock:
            for fault in self.faults:
                if fault.operation == operation or (fault.operation is None and operation in OPERATIONS):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self.faults.remove(fault)
                    if fault.kind == "429":
                        self.calls["throttled"] += 1
                    return fault.kind
        return None

    def count(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1

    def revoke(self, seller_id: str) -> None:
        """The seller withdraws the app's authorisation: its refresh token, access tokens and RDTs
        stop working (until it authorises the app again through an authorisation code)."""
        with self._lock:
            seller = self._seller(seller_id)
            seller.revoked = True
            seller.generation += 1

    def issued_tokens(self) -> list[str]:
        """Every access token, RDT and refresh token the stand-in has made or holds: what a test
        looks for in files that must not hold one."""
        with self._lock:
            return [*self._grants, *self._refresh]

    def refresh_token(self, seller_id: str) -> str:
        """The refresh token the app currently holds for the seller."""
        with self._lock:
            return self._seller(seller_id).refresh_token

    def authorization_code(self, seller_id: str) -> str:
        """A one-time code (5 minutes) as the website authorisation flow hands to the redirect URI."""
        with self._lock:
            self._seller(seller_id)
            code = "ANsb" + secrets.token_urlsafe(15)
            self._codes[code] = (seller_id, self.now() + timedelta(seconds=_CODE_SECONDS))
            return code

    def orders_of(self, seller_id: str) -> list[dict[str, Any]]:
        """The seller's current v0 orders (BuyerInfo and ShippingAddress included), sorted as
        getOrders lists them: by (LastUpdateDate, AmazonOrderId)."""
        with self._lock:
            orders = self._seller(seller_id).orders.values()
            return copy.deepcopy(sorted(orders, key=lambda o: (o["LastUpdateDate"], o["AmazonOrderId"])))

    def add_orders(self, seller_id: str, count: int) -> list[str]:
        """`count` new orders, purchased and last updated now. Returns their ids."""
        if count < 0:
            raise ValueError("count must not be negative")
        with self._lock:
            seller, now = self._seller(seller_id), self.now()
            seller.ordered.clear()
            added = []
            for _ in range(count):
                spec = seller.spec
                order = make_order(seller_id, spec.marketplace_id, seller.next_index, spec.seed, now, now)
                seller.next_index += 1
                seller.orders[order["AmazonOrderId"]] = order
                added.append(order["AmazonOrderId"])
            return added

    def update_orders(self, seller_id: str, count: int) -> list[str]:
        """`count` existing orders change (Pending -> Unshipped -> Shipped; the least recently
        updated first, orders not yet shipped before shipped ones) and their LastUpdateDate
        becomes now. Returns their ids."""
        if count < 0:
            raise ValueError("count must not be negative")
        with self._lock:
            seller, stamp = self._seller(seller_id), iso(self.now())
            seller.ordered.clear()
            ranked = sorted(
                seller.orders.values(),
                key=lambda o: (o["OrderStatus"] == "Shipped", o["LastUpdateDate"], o["AmazonOrderId"]),
            )
            nxt = {"Pending": "Unshipped", "Unshipped": "Shipped"}
            for order in ranked[:count]:
                set_status(order, nxt.get(order["OrderStatus"], order["OrderStatus"]))
                order["LastUpdateDate"] = stamp
            return [o["AmazonOrderId"] for o in ranked[:count]]

    def limits(self, operation: str) -> tuple[float, int]:
        """(rate per second, burst) of `operation` here: Amazon's rate times `rate_scale`; the
        burst is Amazon's, scaled down too when `rate_scale` is below 1 (never up, so that a
        fast rate still lets a burst run into 429s)."""
        rate, burst = OPERATIONS[operation]
        scale = self.config.rate_scale
        return rate * scale, max(1, math.ceil(burst * min(scale, 1.0)))

    def rate_header(self, operation: str) -> str:
        text = f"{self.limits(operation)[0]:.10f}".rstrip("0")
        return text + "0" if text.endswith(".") else text

    # -- LWA -----------------------------------------------------------------------------------

    def lwa_token(self, form: Mapping[str, str]) -> dict[str, Any]:
        """POST /auth/o2/token: a refresh-token or authorisation-code grant."""
        grant_type = form.get("grant_type", "")
        if grant_type not in ("refresh_token", "authorization_code"):
            raise LwaError(400, "invalid_request", "grant_type must be refresh_token or authorization_code")
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        if not client_id or not client_secret:
            raise LwaError(400, "invalid_request", "client_id and client_secret are required")
        if not (_same(client_id, self.config.client_id) & _same(client_secret, self.config.client_secret)):
            raise LwaError(401, "invalid_client", "Client authentication failed")
        with self._lock:
            if grant_type == "refresh_token":
                return self._refresh_grant(form)
            return self._code_grant(form)

    def _refresh_grant(self, form: Mapping[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token", "")
        if not token:
            raise LwaError(400, "invalid_request", "refresh_token is required")
        owner = self._refresh.get(token)
        seller = self._sellers.get(owner[0]) if owner else None
        if owner is None or seller is None or seller.revoked or seller.generation != owner[1]:
            raise LwaError(400, "invalid_grant", "The request has an invalid grant parameter : refresh_token")
        return self._access_token(seller)

    def _code_grant(self, form: Mapping[str, str]) -> dict[str, Any]:
        code, redirect_uri = form.get("code", ""), form.get("redirect_uri", "")
        if not code or not redirect_uri:
            raise LwaError(400, "invalid_request", "code and redirect_uri are required")
        issued = self._codes.pop(code, None)  # one use, whatever the outcome
        if issued is None or self.now() >= issued[1]:
            raise LwaError(400, "invalid_grant", "The request has an invalid grant parameter : code")
        if self.config.redirect_uri is not None and not _same(redirect_uri, self.config.redirect_uri):
            raise LwaError(400, "invalid_grant", "The redirect_uri does not match the one registered")
        seller = self._seller(issued[0])
        if seller.revoked:  # authorised again: a new refresh token, the old one stays dead
            seller.revoked = False
            seller.refresh_token = new_refresh_token()
            self._refresh[seller.refresh_token] = (seller.spec.seller_id, seller.generation)
        return {**self._access_token(seller), "refresh_token": seller.refresh_token}

    def _access_token(self, seller: _Seller) -> dict[str, Any]:
        token = "Atza|" + secrets.token_urlsafe(64)
        self._remember(token, Grant(seller.spec.seller_id, "access", self._expiry(), seller.generation))
        return {"access_token": token, "token_type": "bearer", "expires_in": self.config.token_seconds}

    def _expiry(self) -> datetime:
        return self.now() + timedelta(seconds=self.config.token_seconds)

    def _remember(self, token: str, grant: Grant) -> None:
        if len(self._grants) > 50_000:
            now = self.now()
            self._grants = {t: g for t, g in self._grants.items() if g.expires_at > now}
        self._grants[token] = grant

    # -- SP-API: who calls, how often -----------------------------------------------------------

    def authenticate(self, token: str | None, operation: str, path: str) -> Grant:
        """The grant behind `x-amz-access-token`, or 403 Unauthorized: none, unknown, revoked,
        expired, an LWA token on a restricted operation, an RDT off its path."""
        with self._lock:
            grant = self._grants.get(token or "")
            seller = self._sellers.get(grant.seller_id) if grant else None
            if grant is None or seller is None or seller.revoked or grant.generation != seller.generation:
                raise SpApiError(403, "Unauthorized", DENIED)
            if self.now() >= grant.expires_at:
                raise SpApiError(403, "Unauthorized", EXPIRED)
            if grant.kind == "rdt":
                if operation == "createRestrictedDataToken" or not any(
                    r.pattern.fullmatch(path) for r in grant.resources
                ):
                    raise SpApiError(403, "Unauthorized", DENIED)
            elif operation in _RESTRICTED_OPERATIONS:
                raise SpApiError(403, "Unauthorized", DENIED)
            return grant

    def admit(self, seller_id: str, operation: str) -> None:
        """One call of `operation` for the seller from its token bucket, or 429 QuotaExceeded."""
        if not self.config.rate_limits:
            return
        rate, burst = self.limits(operation)
        with self._lock:
            now = self._monotonic()
            bucket = self._buckets.setdefault((seller_id, operation), _Bucket(float(burst), now))
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
            if bucket.tokens < 1.0:
                self.calls["throttled"] += 1
                raise SpApiError(429, "QuotaExceeded", "You exceeded your quota for the requested resource.")
            bucket.tokens -= 1.0

    def create_rdt(self, grant: Grant, body: Any) -> dict[str, Any]:
        """POST /tokens/2021-03-01/restrictedDataToken for the restricted Orders paths."""
        resources = body.get("restrictedResources") if isinstance(body, dict) else None
        if not isinstance(resources, list) or not resources:
            raise invalid("restrictedResources must be a non-empty list")
        made = []
        for resource in resources:
            if not isinstance(resource, dict):
                raise invalid("each restricted resource must be an object with method and path")
            method, path = resource.get("method"), resource.get("path")
            elements = resource.get("dataElements") or []
            if method != "GET" or not isinstance(path, str):
                raise invalid("a restricted resource needs method GET and a path")
            if not isinstance(elements, list) or not all(isinstance(e, str) for e in elements):
                raise invalid("dataElements must be a list of strings")
            made.append(self._resource(path, frozenset(elements)))
        token = "Atz.sprdt|" + secrets.token_urlsafe(64)
        with self._lock:
            self._remember(token, Grant(grant.seller_id, "rdt", self._expiry(), grant.generation, tuple(made)))
        return {"restrictedDataToken": token, "expiresIn": self.config.token_seconds}

    @staticmethod
    def _resource(path: str, elements: frozenset[str]) -> Resource:
        for pattern, allowed, required in _RESTRICTED_PATHS:
            if not pattern.fullmatch(path):
                continue
            if elements - allowed:
                raise invalid(f"unknown dataElements for {path}: {', '.join(sorted(elements - allowed))}")
            if required and not elements:
                raise invalid(f"dataElements are required for {path}")
            matcher = re.compile(re.escape(path).replace(re.escape("{orderId}"), "[^/]+"))
            return Resource(matcher, elements or allowed)
        raise invalid(f"{path} is not a restricted resource")

    # -- SP-API: orders ---------------------------------------------------------------------------

    def _seller(self, seller_id: str) -> _Seller:
        try:
            return self._sellers[seller_id]
        except KeyError:
            raise KeyError(f"unknown seller {seller_id!r}") from None

    def order(self, grant: Grant, order_id: str) -> dict[str, Any]:
        """The seller's order `order_id` (a copy), or 404 NotFound."""
        with self._lock:
            found = self._sellers[grant.seller_id].orders.get(order_id)
            if found is None:
                raise SpApiError(404, "NotFound", f"Order {order_id} was not found.")
            return copy.deepcopy(found)

    def check_marketplaces(self, seller_id: str, given: list[str], *, required: bool) -> None:
        if not given:
            if required:
                raise invalid("MarketplaceIds is required")
            return
        own = self._sellers[seller_id].spec.marketplace_id
        if any(m != own for m in given):
            raise invalid("The seller does not participate in every marketplace in MarketplaceIds")

    def page_size(self, given: str | None) -> int:
        return page_size(given, self.config.page_size)

    def new_query(
        self, seller_id: str, api: str, dates: Mapping[str, str | None], statuses: tuple[str, ...] = (), size: int = 100
    ) -> Query:
        return new_query(seller_id, api, dates, self.now(), statuses, size)

    def select(self, query: Query) -> tuple[list[dict[str, Any]], Query | None]:
        """One page of `query`'s orders and the query of the next page (None: the last)."""
        with self._lock:
            seller = self._sellers[query.seller_id]
            if query.by not in seller.ordered:
                seller.ordered[query.by] = sort_orders(seller.orders.values(), query.by)
            return select(seller.ordered[query.by], query)

    def write_token(self, query: Query) -> str:
        return write_token(self._page_key, query)

    def read_token(self, token: str, seller_id: str, api: str) -> Query:
        return read_token(self._page_key, token, seller_id, api)
