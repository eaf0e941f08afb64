"""Sessions, tenants and records: log-in, masked reads, reveal, blind-index search, ingest."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sagevault.catalog import Purpose
from sagevault.deployment import Deployment
from sagevault.vault import Operation, Principal

from ._deps import API, MAX_PAGE, Page, Vault, bearer, deployment, encode_cursor, principal, source, unit_of_work

router = APIRouter(prefix=API)
T = TypeVar("T")


@contextmanager
def committed_work(request: Request) -> Iterator[tuple[Connection, Principal]]:
    """The request's unit of work and its principal (the same checks as `Who`), committed when the
    block ends: before the answer. The shared `Conn` commits only after the answer is sent, so a
    route whose client acts on the answer at once (or that works after the commit) uses this."""
    with deployment(request).engine.begin() as conn:
        yield conn, principal(request, conn)


class Work:
    """A record route's unit of work (`unit_of_work`) and principal (`principal`: allow-list →
    authentication → rate limit), opened in one hop to a worker thread. The handler does its
    domain call and ends the work in its own hop: `with work as (d, conn, who): ...` commits when
    the block ends (before the answer) and rolls back if it raises. `Conn` and `Who` cost the
    request four hops (the unit of work in and out, the principal, the handler); this costs two."""

    def __init__(self, request: Request) -> None:
        self.d: Deployment = deployment(request)
        self._uow: AbstractContextManager[Connection] | None = contextmanager(unit_of_work)(request)
        self.conn = self._uow.__enter__()
        try:
            self.who = principal(request, self.conn)
        except BaseException as exc:
            self.end(type(exc), exc, exc.__traceback__)
            raise

    def end(self, kind: type[BaseException] | None = None, exc: BaseException | None = None,
            tb: TracebackType | None = None) -> None:  # fmt: skip
        """Commit (no exception) or roll back, and give the connection back; once."""
        uow, self._uow = self._uow, None
        if uow is not None:
            uow.__exit__(kind, exc, tb)

    @property
    def open(self) -> bool:
        return self._uow is not None

    def __enter__(self) -> tuple[Deployment, Connection, Principal]:
        return self.d, self.conn, self.who

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.end(kind, exc, tb)


async def authenticated_work(request: Request) -> AsyncIterator[Work]:
    work = await run_in_threadpool(Work, request)
    try:
        yield work
    except BaseException as exc:  # the body was invalid, or the handler raised outside its block
        if work.open:
            await run_in_threadpool(work.end, type(exc), exc, exc.__traceback__)
        raise
    if work.open:  # a handler that did not end its work: committed here, still before the answer
        await run_in_threadpool(work.end)


# scope="function": the work ends before the answer is sent, never after.
Authenticated = Annotated[Work, Depends(authenticated_work, scope="function")]


def json_response(content: Any, status_code: int = 200) -> Response:
    """`content` serialised once, here, in the handler's thread (not again by FastAPI)."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    return Response(body, status_code=status_code, media_type="application/json")


class PageQuery(BaseModel):
    """`?limit=&cursor=`, and no other query parameter: a mistyped filter is refused (422), not
    silently ignored. Routes with filters extend it."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="Items per page.")
    cursor: str | None = Field(None, max_length=512, description="`next_cursor` of the previous page.")

    def page(self) -> Page:
        return Page(self.limit, self.cursor)


def keyset_page(items: Sequence[T], limit: int, key: str, render: Callable[[T], Any]) -> dict[str, Any]:
    """A page from `limit + 1` items fetched after the cursor: the extra one only says there is more."""
    shown, more = items[:limit], len(items) > limit
    return {"items": [render(i) for i in shown],
            "next_cursor": encode_cursor(getattr(shown[-1], key)) if more else None}  # fmt: skip


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


@router.post("/sessions", status_code=201, tags=["sessions"])
def login(body: LoginBody, request: Request, d: Vault) -> dict[str, Any]:
    """Password + TOTP → a session token (people only; services use API keys)."""
    with d.engine.begin() as conn:  # committed even when refused: counters and locks are state
        attempt = d.access.login(conn, body.login, body.password, body.code, source=source(request))
    session = attempt.session()
    return {"token": session.token, "principal": session.principal.id, "expires_at": session.expires_at}


@router.delete("/sessions", status_code=204, tags=["sessions"])
def logout(request: Request, work: Authenticated) -> Response:
    with work as (d, conn, who):
        d.access.logout(conn, bearer(request), actor=who)
    return Response(status_code=204)


def _tenant(t: Any) -> dict[str, Any]:
    return {"id": t.id, "region": t.region, "marketplaces": t.marketplaces, "created_at": t.created_at,
            "shredded_at": t.shredded_at}  # fmt: skip


@router.post("/tenants", status_code=201, tags=["tenants"])
def add_tenant(body: NewTenantBody, request: Request, response: Response, d: Vault) -> dict[str, Any]:
    """Add a tenant (a selling partner, one SP-API region) and create its keys."""
    with committed_work(request) as (conn, who):
        tenant = d.vault.add_tenant(conn, body.id, body.marketplaces, principal=who)
    response.headers["Location"] = f"{API}/tenants/{tenant.id}/orders"
    return _tenant(tenant)


@router.get("/tenants", tags=["tenants"])
def tenants(q: Annotated[PageQuery, Query()], work: Authenticated) -> dict[str, Any]:
    """Tenants by id, a page at a time."""
    with work as (d, conn, who):
        items = d.vault.list_tenants(conn, principal=who, after=q.page().position(str), limit=q.limit + 1)
    return keyset_page(items, q.limit, "id", _tenant)


@router.get("/tenants/{tenant_id}/orders", tags=["records"])
def orders(tenant_id: str, q: Annotated[PageQuery, Query()], work: Authenticated) -> dict[str, Any]:
    """The tenant's orders by order id, a page at a time: ids and clear order state, no PII."""
    with work as (d, conn, who):
        items = d.vault.list_orders(conn, tenant_id, principal=who, after=q.page().position(str), limit=q.limit + 1)
    return keyset_page(items, q.limit, "order_id", lambda o: {
        "order_id": o.order_id, "record_ids": o.record_ids, "documents": [doc.value for doc in o.documents],
        "order_status": o.order_status, "purchased_at": o.purchased_at, "retrieved_at": o.retrieved_at})  # fmt: skip


@router.get("/tenants/{tenant_id}/orders/{order_id}", tags=["records"])
def order(tenant_id: str, order_id: str, work: Authenticated) -> dict[str, Any]:
    """One order's records, PII masked."""
    with work as (d, conn, who):
        view = d.vault.get(conn, tenant_id, order_id, principal=who)
    return {"tenant_id": view.tenant_id, "order_id": view.order_id, "records": [
        {"record_id": r.record_id, "document": r.document.value, "origin": r.origin, "operation": r.operation,
         "key_version": r.key_version, "data": r.data} for r in view.records]}  # fmt: skip


@router.post("/tenants/{tenant_id}/orders/{order_id}/reveal", tags=["records"], response_model=dict[str, Any])
def reveal(tenant_id: str, order_id: str, body: RevealBody, work: Authenticated) -> Response:
    """The named PII fields of one order, in clear, for a purpose the caller's role allows."""
    with work as (d, conn, who):
        fields = d.vault.reveal(conn, tenant_id, order_id, body.fields, body.purpose, principal=who)
    return json_response({"fields": [{"record_id": f.record_id, "document": f.document.value, "path": f.path,
                                      "value": f.value} for f in fields]})  # fmt: skip


@router.post("/tenants/{tenant_id}/search", tags=["records"])
def search(tenant_id: str, body: SearchBody, work: Authenticated) -> dict[str, Any]:
    """Orders whose PII field of `kind` equals `value`, by blind index (the value is never stored)."""
    with work as (d, conn, who):
        hits = d.vault.search(conn, tenant_id, body.kind, body.value, purpose=body.purpose, principal=who)
    return {"items": [{"order_id": h.order_id, "record_id": h.record_id, "document": h.document.value}
                      for h in hits]}  # fmt: skip


@router.post("/tenants/{tenant_id}/documents", status_code=201, tags=["records"])
def ingest(tenant_id: str, payload: Annotated[Any, Body()], work: Authenticated,
           operation: str | None = None) -> dict[str, Any]:  # fmt: skip
    """SP-API responses as Amazon returns them (one, or a list): PII encrypted per field."""
    with work as (d, conn, who):
        op = Operation.parse(operation) if operation else None
        result = d.vault.ingest(conn, tenant_id, payload if isinstance(payload, list) else [payload], op,
                                principal=who)  # fmt: skip
    return {"records": result.records, "orders": result.orders, "replaced": result.replaced,
            "pii_fields": result.pii_fields, "unknown_fields": result.unknown_fields,
            "documents": dict(result.documents)}  # fmt: skip
