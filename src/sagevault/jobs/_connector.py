"""Running a seller's SP-API sync: one leader per tenant across nodes, each page stored with its
checkpoint in a unit of work of its own (a crash loses nothing and repeats nothing), a revoked
authorisation stopping the tenant's sync, raising the alarm (its event) and opening the deletion
request for the seller's data. The CLI, the API and the scheduled job all run `sync_tenant`."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sagevault.connector import Cursor, Page, SyncPlan
from sagevault.errors import AuthorizationRevoked, Conflict, TenantShredded, UpstreamError
from sagevault.identity import Principal, check_tenant_id

from ._runner import Job, JobResult, leader

if TYPE_CHECKING:
    from sagevault.deployment import Deployment

SYNC_JOB = "sp-api-sync"


@dataclass
class SyncReport:
    tenant_id: str
    pages: int = 0
    orders: int = 0
    finished: bool = False  # every marketplace's window read to its end
    deletion_request: int | None = None  # opened because Amazon revoked the authorisation


def sync_tenant(
    d: Deployment,
    tenant_id: str,
    principal: Principal,
    *,
    on_page: Callable[[Page, SyncReport], None] | None = None,
    max_pages: int | None = None,
) -> SyncReport:
    """Sync one tenant until each marketplace's current window is read (or `max_pages`). The
    caller's right to ingest there (and the kill switch) is checked before the tenant's lock is
    even tried, so a caller without it learns nothing of a sync under way."""
    check_tenant_id(tenant_id)
    try:
        _may_ingest(d, tenant_id, principal)
    except TenantShredded:  # nothing left to sync into: the job stops asking
        with d.unit_of_work() as conn:
            d.connector.stop(conn, tenant_id, "shredded")
        raise
    with leader(d.engine, f"{SYNC_JOB}-{tenant_id}") as leads:
        if not leads:
            raise Conflict(f"tenant {tenant_id} is being synced by another process now; try again once it finishes")
        return _sync(d, tenant_id, principal, on_page, max_pages)


def _sync(
    d: Deployment,
    tenant_id: str,
    principal: Principal,
    on_page: Callable[[Page, SyncReport], None] | None,
    max_pages: int | None,
) -> SyncReport:
    report = SyncReport(tenant_id)
    marketplace: str | None = None
    # One page is fetched ahead while the one before it is stored: its NextToken is known as soon
    # as a page arrives. The fetch touches no database; a page is stored only onto the checkpoint
    # it was fetched from, so a store that fails leaves the fetched-ahead page unused, never stored.
    ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sp-api-fetch")
    try:
        with d.unit_of_work() as conn:
            plan = d.connector.plan(conn, tenant_id, principal=principal)
        d.connector.started(tenant_id, principal=principal, marketplaces=len(plan.cursors))
        done = 0
        for first in plan.cursors:
            marketplace, restarts = first.marketplace_id, 0
            pending: Future[Page] | None = ahead.submit(_fetch, d, plan, first, principal)
            while pending is not None and (max_pages is None or report.pages < max_pages):
                page = pending.result()
                pending = None
                if page.empty_window:
                    done += 1
                    break
                restarts += page.restart
                if restarts > 1:  # Amazon refused a NextToken again: not an expiry, a fault of its own
                    raise UpstreamError(
                        f"SP-API refused the next-page token of {marketplace} twice in one run; the checkpoint "
                        "holds, and the next run reads the window again"
                    )
                following = page.next_cursor()  # a window not done (more pages, or read again from its start)
                if following.before is not None and (max_pages is None or report.pages + 1 < max_pages):
                    pending = ahead.submit(_fetch, d, plan, following, principal)
                with d.unit_of_work() as conn:
                    cursor = d.connector.store(conn, page, principal=principal)
                report.pages += 1
                report.orders += page.orders
                if on_page is not None:
                    on_page(page, report)
                if cursor.before is None:
                    done += 1
        report.finished = done == len(plan.cursors)
    except AuthorizationRevoked as exc:
        with d.unit_of_work() as conn:
            d.connector.failed(conn, tenant_id, marketplace, exc, principal=principal)
            if d.connector.revoked(conn, tenant_id, principal=principal):
                request = d.deletion.request(
                    conn,
                    tenant_id=tenant_id,
                    principal=Principal.job(SYNC_JOB),  # the system acts on Amazon's word, whoever ran the sync
                    scope="tenant",
                    source="authorisation-revoked",
                )
                report.deletion_request = request.id
        raise
    except Exception as exc:
        with d.unit_of_work() as conn:
            d.connector.failed(conn, tenant_id, marketplace, exc, principal=principal)
        raise
    finally:  # a page fetched ahead of a failure is dropped; a fetch under way ends (its timeout) first
        ahead.shutdown(wait=True, cancel_futures=True)
    d.connector.finished(tenant_id, principal=principal, pages=report.pages, orders=report.orders)
    return report


def _may_ingest(d: Deployment, tenant_id: str, principal: Principal) -> None:
    """Refuse (and record) a caller that may not ingest into the tenant now: no grant, or the
    `sp-api-sync` kill switch engaged."""
    with d.unit_of_work(read_only=True) as conn:
        d.vault.authorize_ingest(conn, tenant_id, principal=principal)


def _fetch(d: Deployment, plan: SyncPlan, cursor: Cursor, principal: Principal) -> Page:
    """A page fetched, the kill switch asked first: engaged, no further call goes to Amazon."""
    _may_ingest(d, cursor.tenant_id, principal)
    return d.connector.fetch(plan, cursor, principal=principal)


def _sync_all(d: Deployment, p: Principal) -> JobResult:
    """Every connected tenant in turn; one tenant's failure (recorded) does not stop the others."""
    with d.unit_of_work(read_only=True) as conn:
        tenants = d.connector.active_tenants(conn)
    pages = orders = failed = busy = 0
    for tenant_id in tenants:
        try:
            report = sync_tenant(d, tenant_id, p)
        except Conflict:
            busy += 1
            continue
        except Exception:  # recorded as connector:sync:fail by sync_tenant; the next tenant goes on
            failed += 1
            continue
        pages, orders = pages + report.pages, orders + report.orders
    return JobResult({"tenants": len(tenants), "pages": pages, "orders": orders, "failed": failed, "busy": busy})


SYNC = Job(
    SYNC_JOB,
    "pull new and updated orders of every connected seller from SP-API into the vault",
    lambda d: timedelta(minutes=d.settings.sp_api_sync_minutes),
    _sync_all,
)
