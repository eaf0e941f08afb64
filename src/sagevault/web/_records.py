"""Sessions, tenants and records: log-in, masked reads, reveal, blind-index search, ingest."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from sagevault.catalog import Purpose
from sagevault.vault import Operation

from ._deps import API, Conn, Vault, Who, bearer, source

router = APIRouter(prefix=API)


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


@router.post("/sessions", status_code=201, tags=["sessions"])
def login(body: LoginBody, request: Request, d: Vault) -> dict[str, Any]:
    """Password + TOTP → a session token (people only; services use API keys)."""
    with d.engine.begin() as conn:  # committed even when refused: counters and locks are state
        attempt = d.access.login(conn, body.login, body.password, body.code, source=source(request))
    session = attempt.session()
    return {"token": session.token, "principal": session.principal.id, "expires_at": session.expires_at}


@router.delete("/sessions", status_code=204, tags=["sessions"])
def logout(request: Request, d: Vault, conn: Conn, who: Who) -> Response:
    d.access.logout(conn, bearer(request))
    return Response(status_code=204)


@router.get("/tenants", tags=["tenants"])
def tenants(d: Vault, conn: Conn, who: Who) -> dict[str, Any]:
    items = d.vault.list_tenants(conn, principal=who)
    return {"items": [{"id": t.id, "region": t.region, "marketplaces": t.marketplaces,
                       "shredded_at": t.shredded_at} for t in items]}  # fmt: skip


@router.get("/tenants/{tenant_id}/orders/{order_id}", tags=["records"])
def order(tenant_id: str, order_id: str, d: Vault, conn: Conn, who: Who) -> dict[str, Any]:
    """One order's records, PII masked."""
    view = d.vault.get(conn, tenant_id, order_id, principal=who)
    return {"tenant_id": view.tenant_id, "order_id": view.order_id, "records": [
        {"record_id": r.record_id, "document": r.document.value, "origin": r.origin, "operation": r.operation,
         "key_version": r.key_version, "data": r.data} for r in view.records]}  # fmt: skip


@router.post("/tenants/{tenant_id}/orders/{order_id}/reveal", tags=["records"])
def reveal(tenant_id: str, order_id: str, body: RevealBody, d: Vault, conn: Conn, who: Who) -> dict[str, Any]:
    """The named PII fields of one order, in clear, for a purpose the caller's role allows."""
    fields = d.vault.reveal(conn, tenant_id, order_id, body.fields, body.purpose, principal=who)
    return {"fields": [{"record_id": f.record_id, "document": f.document.value, "path": f.path,
                        "value": f.value} for f in fields]}  # fmt: skip


@router.post("/tenants/{tenant_id}/search", tags=["records"])
def search(tenant_id: str, body: SearchBody, d: Vault, conn: Conn, who: Who) -> dict[str, Any]:
    """Orders whose PII field of `kind` equals `value`, by blind index (the value is never stored)."""
    hits = d.vault.search(conn, tenant_id, body.kind, body.value, purpose=body.purpose, principal=who)
    return {"items": [{"order_id": h.order_id, "record_id": h.record_id, "document": h.document.value}
                      for h in hits]}  # fmt: skip


@router.post("/tenants/{tenant_id}/documents", status_code=201, tags=["records"])
def ingest(tenant_id: str, payload: Annotated[Any, Body()], d: Vault, conn: Conn, who: Who,
           operation: str | None = None) -> dict[str, Any]:  # fmt: skip
    """SP-API responses as Amazon returns them (one, or a list): PII encrypted per field."""
    op = Operation.parse(operation) if operation else None
    result = d.vault.ingest(conn, tenant_id, payload if isinstance(payload, list) else [payload], op,
                            principal=who)  # fmt: skip
    return {"records": result.records, "orders": result.orders, "replaced": result.replaced,
            "pii_fields": result.pii_fields, "unknown_fields": result.unknown_fields,
            "documents": dict(result.documents)}  # fmt: skip
