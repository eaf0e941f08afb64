"""The SP-API sync of one seller: its status and a run on demand, the HTTPS face of `sagevault
sync`. Reading the status takes `tenants:admin`; a run takes `records:ingest` on the tenant (the
ingest it makes is checked page by page, the `sp-api-sync` kill switch included). Connecting a
seller stays on the command line, where the refresh token is read from a private file or stdin."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from sagevault.connector import SyncStatus
from sagevault.jobs import sync_tenant

from .._deps import API, Authenticated, AuthenticatedRead, TenantPath
from ._models import Out

router = APIRouter(prefix=API)


class SyncStatusOut(Out):
    tenant_id: str
    marketplace_id: str
    state: str = Field(description="active, revoked (the seller must connect again) or disconnected.")
    checkpoint: str = Field(description="Every order updated before this time is stored.")
    in_window: bool = Field(description="A window is being paged through (a NextToken is held).")
    lag_seconds: int
    pages: int
    orders: int
    errors: int
    last_success_at: str | None
    last_attempt_at: str | None
    last_error: str | None = Field(description="The last error's class, never its message.")


class SyncRunBody(Out):
    max_pages: int = Field(
        10, ge=1, le=100, strict=True, description="Stop after this many pages (the job goes on later)."
    )


class SyncRunOut(Out):
    pages: int
    orders: int
    finished: bool = Field(description="Every marketplace's window was read to its end.")
    status: list[SyncStatusOut]


def _out(s: SyncStatus) -> SyncStatusOut:
    return SyncStatusOut(
        tenant_id=s.tenant_id,
        marketplace_id=s.marketplace_id,
        state=s.state,
        checkpoint=s.checkpoint.isoformat(),
        in_window=s.in_window,
        lag_seconds=s.lag_seconds,
        pages=s.pages,
        orders=s.orders,
        errors=s.errors,
        last_success_at=s.last_success_at.isoformat() if s.last_success_at else None,
        last_attempt_at=s.last_attempt_at.isoformat() if s.last_attempt_at else None,
        last_error=s.last_error,
    )


@router.get("/tenants/{tenant_id}/sync", tags=["sync"])
def sync_status(tenant_id: TenantPath, work: AuthenticatedRead) -> list[SyncStatusOut]:
    """The seller's sync per marketplace: state, checkpoint, lag, pages, orders, errors. Needs
    `tenants:admin`."""
    with work as (d, conn, who):
        return [_out(s) for s in d.connector.status(conn, principal=who, tenant_id=tenant_id)]


@router.post("/tenants/{tenant_id}/sync", tags=["sync"])
def sync_run(tenant_id: TenantPath, body: SyncRunBody, work: Authenticated) -> SyncRunOut:
    """Sync the seller now, up to `max_pages` pages, each stored with its checkpoint in its own
    transaction. Needs `records:ingest` on the tenant. 409 when another node is syncing it or
    Amazon revoked the authorisation; 502 when SP-API did not answer usefully."""
    with work as (d, _conn, who):
        pass  # each page is a unit of work of its own: the request's is closed first
    report = sync_tenant(d, tenant_id, who, max_pages=body.max_pages)
    with d.unit_of_work(read_only=True) as conn:
        status = d.connector.status(conn, principal=who, tenant_id=tenant_id)
    return SyncRunOut(
        pages=report.pages, orders=report.orders, finished=report.finished, status=[_out(s) for s in status]
    )
