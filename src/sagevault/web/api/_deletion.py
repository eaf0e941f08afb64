"""Deletion and return requests and a buyer's rights: the HTTPS face of `sagevault deletion`.

Reading needs `deletion:read`, recording and carrying out `deletion:manage` (the
privacy-officer's); a return also needs `pii:export` for the legal purpose, and a whole-tenant
deletion `tenants:shred`. Every step is a security event (`deletion:*`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import Field

from sagevault.db import is_sqlite
from sagevault.deletion import DeletionRequest
from sagevault.errors import PayloadError
from sagevault.incidents import parse_time
from sagevault.jobs import carry_out

from .._deps import API, Authenticated, AuthenticatedRead
from .._pagination import PageQuery
from ._models import Out, PageOf

router = APIRouter(prefix=API)

RequestIdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="The request's id.")]
Time = Annotated[str, Field(max_length=64, json_schema_extra={"format": "date-time"})]
State = Literal["received", "scoped", "returning", "deleting", "verifying", "done", "failed", "linked"]
Source = Literal["amazon-notice", "seller-offboarding", "authorisation-revoked", "buyer-request"]


class RequestsQuery(PageQuery):
    state: State | None = Field(None, description="Only requests in this state.")


class RequestSummaryOut(Out):
    id: int
    tenant: str
    scope: Literal["tenant", "orders", "buyer"]
    kind: str
    source: str
    state: State
    received_at: str = Field(json_schema_extra={"format": "date-time"})
    due_at: str = Field(json_schema_extra={"format": "date-time"}, description="72 hours after receipt.")
    done_at: str | None = Field(json_schema_extra={"format": "date-time"})
    linked_to: int | None = Field(description="The first request for the same scope, if this one is linked to it.")


class RequestOut(RequestSummaryOut):
    scope_detail: dict[str, Any] = Field(
        description="Order ids; for a buyer, how they were identified (not the values)."
    )
    reason: str | None
    recipient: str | None
    records: int | None
    counts: dict[str, Any]
    requested_by: str
    performed_by: str | None
    started_at: str | None = Field(json_schema_extra={"format": "date-time"})
    seconds_left: int | None
    overdue: bool
    certificate_sha256: str | None


class Buyer(Out):
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=200)
    postal_code: str | None = Field(None, max_length=32)


class RequestBody(Out):
    tenant: str = Field(max_length=64)
    scope: Literal["tenant", "orders", "buyer"] = Field(description="What is deleted: said, never inferred.")
    orders: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=10_000)
    buyer: Buyer | None = Field(None, description="One buyer by blind index: email, phone, or name and postal code.")
    kind: Literal["delete", "return"] = "delete"
    source: Source = "amazon-notice"
    received_at: Time | None = Field(None, description="When it arrived, with its UTC offset (default now).")
    recipient: str | None = Field(None, max_length=200, description="For a return: the age public key (age1...).")


class RectifyBody(Out):
    tenant: str = Field(max_length=64)
    order: str = Field(max_length=64)
    field: str = Field(max_length=200, description="A PII field of the catalog, e.g. ShippingAddress.Name.")
    value: str = Field(
        min_length=1, max_length=2000, repr=False, description="The corrected value (kept only in the record)."
    )
    source: Source = "buyer-request"


class RestrictBody(Out):
    tenant: str = Field(max_length=64)
    orders: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=10_000)
    buyer: Buyer | None = None
    lift: bool = False
    source: Source = "buyer-request"


def _out(request: DeletionRequest, now: Any) -> RequestOut:
    return RequestOut.model_validate(request.payload(now))


def _buyer(buyer: Buyer | None) -> dict[str, str]:
    return {k: v for k, v in (buyer.model_dump() if buyer else {}).items() if v is not None}


@router.get("/deletion-requests", tags=["deletion"])
def list_requests(q: Annotated[RequestsQuery, Query()], work: AuthenticatedRead) -> PageOf[RequestSummaryOut]:
    """Requests newest first, a page at a time. Needs `deletion:read`."""
    with work as (d, conn, who):
        after = q.position(int)
        found = d.deletion.list_requests(conn, principal=who, state=q.state, after_id=after or 0, limit=q.limit + 1)
        return PageOf[RequestSummaryOut].model_validate(
            q.keyset(found, lambda r: r.id, lambda r: RequestSummaryOut.model_validate(r.summary()))
        )


@router.post("/deletion-requests", status_code=201, tags=["deletion"])
def record_request(body: RequestBody, work: Authenticated) -> RequestOut:
    """Record a request (whole tenant; `orders`; or one `buyer`). Needs `deletion:manage`."""
    buyer = _buyer(body.buyer)
    if (body.scope == "buyer") != (body.buyer is not None) or (body.scope == "orders") != bool(body.orders):
        raise PayloadError("give `orders` with scope orders, `buyer` with scope buyer, neither with scope tenant")
    with work as (d, conn, who):
        request = d.deletion.request(
            conn,
            tenant_id=body.tenant,
            principal=who,
            scope=body.scope,
            orders=body.orders,
            buyer=buyer,
            kind=body.kind,
            source=body.source,
            received_at=parse_time("received_at", body.received_at) if body.received_at else None,
            recipient=body.recipient,
        )
        return _out(request, d.deletion.now())


@router.get("/deletion-requests/{request_id}", tags=["deletion"])
def get_request(request_id: RequestIdPath, work: AuthenticatedRead) -> RequestOut:
    """One request with its counts and deadline. Needs `deletion:read`."""
    with work as (d, conn, who):
        return _out(d.deletion.get(conn, request_id, principal=who), d.deletion.now())


@router.post("/deletion-requests/{request_id}/run", tags=["deletion"])
def run_request(request_id: RequestIdPath, work: Authenticated) -> RequestOut:
    """Carry the request out to its end (each step committed on its own). Needs `deletion:manage`."""
    with work as (d, _conn, who):
        pass  # the steps are units of work of their own: the request's own is closed first
    request = carry_out(d, request_id, who)
    return _out(request, d.deletion.now())


@router.get("/deletion-requests/{request_id}/certificate", tags=["deletion"])
def request_certificate(request_id: RequestIdPath, work: AuthenticatedRead) -> dict[str, Any]:
    """The signed certificate (JSON) of a done request. Needs `deletion:read`."""
    with work as (d, conn, who):
        return d.deletion.certificate(conn, request_id, principal=who)


@router.post("/deletion-requests/rectify", status_code=201, tags=["deletion"])
def rectify(body: RectifyBody, work: Authenticated) -> RequestOut:
    """Correct a buyer's field (done at once, with its certificate). Needs `deletion:manage`."""
    with work as (d, conn, who):
        request = d.deletion.buyers.rectify(
            conn,
            tenant_id=body.tenant,
            order_id=body.order,
            field=body.field,
            value=body.value,
            principal=who,
            source=body.source,
        )
    if is_sqlite(d.engine):
        d.release_deleted_pages()  # after the commit: the old value's page images leave the WAL
    return _out(request, d.deletion.now())


@router.post("/deletion-requests/restrict", status_code=201, tags=["deletion"])
def restrict(body: RestrictBody, work: Authenticated) -> RequestOut:
    """Restrict processing of a buyer's orders, or lift it. Needs `deletion:manage`."""
    with work as (d, conn, who):
        request = d.deletion.buyers.restrict(
            conn,
            tenant_id=body.tenant,
            principal=who,
            orders=body.orders,
            buyer=_buyer(body.buyer),
            lift=body.lift,
            source=body.source,
        )
        return _out(request, d.deletion.now())
