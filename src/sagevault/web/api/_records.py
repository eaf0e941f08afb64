"""Sessions, tenants and records: log-in, masked reads, reveal, blind-index search, ingest."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.responses import Response

from sagevault.catalog import Purpose
from sagevault.errors import PayloadError
from sagevault.vault import MAX_BATCH_REVEAL, ORDER_ID, Operation, Tenant

from .._deps import (
    API,
    Authenticated,
    AuthenticatedRead,
    CurrentDeployment,
    OrderPath,
    TenantPath,
    bearer,
    source,
    transaction,
)
from .._onehop import OneHop
from .._pagination import PageQuery
from ._models import (
    BatchRevealOut,
    IngestOut,
    OrderOut,
    OrderSummaryOut,
    PageOf,
    RevealOut,
    SearchOut,
    SessionOut,
    TenantOut,
)

router = APIRouter(prefix=API)


def json_response(content: Any, status_code: int = 200) -> Response:
    """`content` serialised once, here, in the handler's thread (not again by FastAPI)."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    return Response(body, status_code=status_code, media_type="application/json")


class NewTenantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=2, max_length=64, description="The selling partner id.")
    marketplaces: list[str] = Field(min_length=1, max_length=30, description="Marketplace ids of one SP-API region.")


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    login: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256, repr=False)
    code: str = Field(min_length=6, max_length=16, repr=False)


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(min_length=1, max_length=32)
    value: str = Field(min_length=1, max_length=320, repr=False)  # PII: in the body, never the URL
    purpose: Purpose


class RevealBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: list[str] = Field(min_length=1, max_length=50)
    purpose: Purpose


OrderId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ORDER_ID)]


class BatchRevealBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    orders: list[OrderId] = Field(min_length=1, max_length=MAX_BATCH_REVEAL, description="Order ids, 500 at most.")
    fields: list[str] = Field(min_length=1, max_length=50)
    purpose: Purpose


def reveal(tenant_id: TenantPath, order_id: OrderPath, body: RevealBody, work: AuthenticatedRead) -> Response:
    """The named PII fields of one order, in clear, for a purpose the caller's role allows."""
    with work as (d, conn, who):
        fields = d.vault.reveal(conn, tenant_id, order_id, body.fields, body.purpose, principal=who)
    # Serialised here, once (the hot path): `RevealOut` describes it in the OpenAPI document.
    return json_response(
        {
            "fields": [
                {"record_id": f.record_id, "document": f.document.value, "path": f.path, "value": f.value}
                for f in fields
            ]
        }
    )


# The hot path (`OneHop`: in the event loop on SQLite, one worker-thread hop otherwise): same operation and checks.
# The first route of the API, so a reveal is matched by the first route the router tries.
router.add_api_route(
    "/tenants/{tenant_id}/orders/{order_id}/reveal",
    reveal,
    methods=["POST"],
    tags=["records"],
    response_model=RevealOut,
    route_class_override=OneHop,
)


@router.post("/sessions", status_code=201, tags=["sessions"])
def login(body: LoginBody, request: Request, d: CurrentDeployment) -> SessionOut:
    """Password + TOTP → a session token (people only; services use API keys)."""
    where = source(request)
    with transaction(d, read_only=True) as conn:  # Argon2 here, holding no write lock
        checked = d.access.authn.check_password(conn, body.login, body.password, source=where)
    with transaction(d) as conn:  # committed even when refused: counters and locks are state
        attempt = d.access.authn.login(conn, body.login, body.password, body.code, source=where, checked=checked)
    session = attempt.session()
    return SessionOut(token=session.token, principal=session.principal.id, expires_at=session.expires_at)


@router.delete("/sessions", status_code=204, tags=["sessions"])
def logout(request: Request, work: Authenticated) -> Response:
    with work as (d, conn, who):
        d.access.authn.logout(conn, bearer(request), actor=who)
    return Response(status_code=204)


def _tenant(t: Tenant) -> TenantOut:
    return TenantOut(
        id=t.id, region=t.region, marketplaces=t.marketplaces, created_at=t.created_at, shredded_at=t.shredded_at
    )


@router.post("/tenants", status_code=201, tags=["tenants"])
def add_tenant(body: NewTenantBody, response: Response, work: Authenticated) -> TenantOut:
    """Add a tenant (a selling partner, one SP-API region) and create its keys."""
    with work as (d, conn, who):
        tenant = d.vault.add_tenant(conn, body.id, body.marketplaces, principal=who)
    response.headers["Location"] = f"{API}/tenants/{tenant.id}/orders"
    return _tenant(tenant)


@router.get("/tenants", tags=["tenants"])
def tenants(q: Annotated[PageQuery, Query()], work: AuthenticatedRead) -> PageOf[TenantOut]:
    """Tenants by id, a page at a time."""
    with work as (d, conn, who):
        items = d.vault.list_tenants(conn, principal=who, after=q.position(str), limit=q.limit + 1)
    return PageOf[TenantOut].model_validate(q.keyset(items, lambda t: t.id, _tenant))


def _order_summary(o: Any) -> OrderSummaryOut:
    return OrderSummaryOut(
        order_id=o.order_id,
        record_ids=o.record_ids,
        documents=[doc.value for doc in o.documents],
        order_status=o.order_status,
        purchased_at=o.purchased_at,
        retrieved_at=o.retrieved_at,
    )


@router.get("/tenants/{tenant_id}/orders", tags=["records"])
def orders(tenant_id: TenantPath, q: Annotated[PageQuery, Query()], work: AuthenticatedRead) -> PageOf[OrderSummaryOut]:
    """The tenant's orders by order id, a page at a time: ids and clear order state, no PII."""
    with work as (d, conn, who):
        items = d.vault.list_orders(conn, tenant_id, principal=who, after=q.position(str), limit=q.limit + 1)
    return PageOf[OrderSummaryOut].model_validate(q.keyset(items, lambda o: o.order_id, _order_summary))


@router.get("/tenants/{tenant_id}/orders/{order_id}", tags=["records"])
def order(tenant_id: TenantPath, order_id: OrderPath, work: AuthenticatedRead) -> OrderOut:
    """One order's records, PII masked."""
    with work as (d, conn, who):
        view = d.vault.get(conn, tenant_id, order_id, principal=who)
    return OrderOut.model_validate(
        {
            "tenant_id": view.tenant_id,
            "order_id": view.order_id,
            "records": [
                {
                    "record_id": r.record_id,
                    "document": r.document.value,
                    "origin": r.origin,
                    "operation": r.operation,
                    "key_version": r.key_version,
                    "data": r.data,
                }
                for r in view.records
            ],
        }
    )


@router.post("/tenants/{tenant_id}/reveal", tags=["records"], response_model=BatchRevealOut)
def reveal_batch(tenant_id: TenantPath, body: BatchRevealBody, work: AuthenticatedRead) -> Response:
    """The named PII fields of up to 500 orders at once (label printing), for a purpose the
    caller's role allows; each order's reveal is its own security event. Orders the tenant does
    not hold are listed in `missing`."""
    with work as (d, conn, who):
        batch = d.vault.reveal_many(conn, tenant_id, body.orders, body.fields, body.purpose, principal=who)
    return json_response(
        {
            "orders": [
                {
                    "order_id": order_id,
                    "fields": [
                        {"record_id": f.record_id, "document": f.document.value, "path": f.path, "value": f.value}
                        for f in fields
                    ],
                }
                for order_id, fields in batch.orders.items()
            ],
            "missing": batch.missing,
        }
    )


@router.post("/tenants/{tenant_id}/search", tags=["records"])
def search(tenant_id: TenantPath, body: SearchBody, work: AuthenticatedRead) -> SearchOut:
    """Orders whose PII field of `kind` equals `value`, by blind index (the value is never stored)."""
    with work as (d, conn, who):
        hits = d.vault.search(conn, tenant_id, body.kind, body.value, purpose=body.purpose, principal=who)
    return SearchOut.model_validate(
        {"items": [{"order_id": h.order_id, "record_id": h.record_id, "document": h.document.value} for h in hits]}
    )


async def _raw_body(request: Request) -> bytes:
    """The request body, unparsed (its size is already bounded by the headers middleware)."""
    return await request.body()


def _json_payloads(body: bytes) -> list[Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise PayloadError(
            f"the body is not JSON{where}: send an SP-API response as Amazon returns it, or a list of them"
        ) from None
    return payload if isinstance(payload, list) else [payload]


_ANY_JSON = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"title": "Payload"}}}}}


@router.post("/tenants/{tenant_id}/documents", status_code=201, tags=["records"], openapi_extra=_ANY_JSON)
def ingest(
    tenant_id: TenantPath,
    work: AuthenticatedRead,
    body: Annotated[bytes, Depends(_raw_body)],  # read after the credential is checked (`work`)
    operation: str | None = None,
) -> IngestOut:
    """SP-API responses as Amazon returns them (one, or a list): PII encrypted per field."""
    # Allowed first (a refusal recorded as ingest's), then the payload parsed and cut into
    # documents holding no lock, then stored in a write transaction that asks again.
    with work as (d, conn, who):
        d.vault.authorize_ingest(conn, tenant_id, principal=who)
    docs = d.vault.prepare(_json_payloads(body), Operation.parse(operation) if operation else None)
    with transaction(d) as conn:
        result = d.vault.ingest_documents(conn, tenant_id, docs, principal=who)
    return IngestOut(
        records=result.records,
        orders=result.orders,
        replaced=result.replaced,
        pii_fields=result.pii_fields,
        unknown_fields=result.unknown_fields,
        documents=dict(result.documents),
    )
