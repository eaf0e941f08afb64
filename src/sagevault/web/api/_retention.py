"""Retention and legal holds: the HTTPS face of `sagevault retention`.

Reading (what goes when, the holds) needs `retention:read`; placing and releasing a hold
`retention:manage` (both the privacy officer's). A hold needs a reason (no personal data) and an
end date with its UTC offset, in the future; placing and releasing one are security events
(retention:hold:add, retention:hold:release). The purge itself is the hourly `retention` job.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from sagevault.deletion import LegalHold, RetentionStatus

from .._deps import API, Authenticated, AuthenticatedRead
from .._pagination import PageQuery
from ._models import Out, PageOf

router = APIRouter(prefix=API)

HoldIdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="The hold's id.")]
Time = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
TenantId = Annotated[str, Field(min_length=1, max_length=64, description="The selling partner (tenant id).")]
OrderId = Annotated[str, Field(min_length=1, max_length=64, description="An order of the tenant.")]


class StatusQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: TenantId | None = None
    order: OrderId | None = Field(None, description="One order of `tenant`: its dates and the holds on it.")


class HoldsQuery(PageQuery):
    tenant: TenantId | None = None
    active: bool = Field(False, description="Only holds in force (not released, not past their end).")


class BucketsOut(Out):
    overdue: int = Field(description="Past their date: the next run takes them.")
    within_7_days: int
    within_30_days: int
    later: int
    undated: int = Field(description="No date (stored before records were dated).")


class HoldOut(Out):
    id: int
    tenant_id: str
    order_id: str | None = Field(description="The order held; null when the whole tenant is.")
    whole_tenant: bool
    reason: str
    until: Time
    state: Literal["active", "ended", "released"]
    created_by: str
    created_at: Time
    released_by: str | None
    released_at: Time | None


class HeldByOut(HoldOut):
    records: int = Field(description="Records of the hold's scope whose PII is still there.")
    overdue: int = Field(description="Of them, past their PII date: kept only by a hold.")


class TenantRetentionOut(Out):
    tenant_id: str
    pii: BucketsOut = Field(description="Records whose PII is still there and no hold covers, by their PII date.")
    records: BucketsOut = Field(description="Records no hold covers, by the date they are deleted whole.")
    pii_purged: int = Field(description="Records kept without their PII.")
    held: int = Field(description="Records whose PII an active legal hold keeps.")
    holds: list[HeldByOut]


class DocumentRetentionOut(Out):
    record_id: int
    document: str
    pii_fields: int
    pii_expires_at: Time | None
    expires_at: Time | None
    pii_purged_at: Time | None


class OrderRetentionOut(Out):
    tenant_id: str
    order_id: str
    state: Literal["purged", "held", "overdue", "kept"]
    pii_expires_at: Time | None
    expires_at: Time | None
    pii_purged_at: Time | None
    documents: list[DocumentRetentionOut]
    held_by: list[HoldOut] = Field(description="The holds that keep its PII, with their reasons.")


class StatusOut(Out):
    now: Time
    tenants: list[TenantRetentionOut]
    order: OrderRetentionOut | None


class HoldBody(Out):
    tenant: TenantId
    order: OrderId | None = Field(None, description="One order; without it, the whole tenant.")
    reason: str = Field(max_length=500, description="The matter, case or authority (no personal data).")
    until: Time = Field(max_length=64, description="When the hold ends, with its UTC offset; in the future.")


def _status(status: RetentionStatus) -> StatusOut:
    return StatusOut.model_validate(status.payload())


def _hold(hold: LegalHold, now: Any) -> HoldOut:
    return HoldOut.model_validate(hold.payload(now))


@router.get("/retention", tags=["retention"])
def retention_status(q: Annotated[StatusQuery, Query()], work: AuthenticatedRead) -> StatusOut:
    """What goes when, per tenant (or `tenant`): records whose PII goes past due, within 7 and 30
    days, later; records deleted whole; the holds in force and what they keep. With `order`: that
    order's dates, whether its PII is gone, and which holds keep it and why. Needs `retention:read`."""
    with work as (d, conn, who):
        return _status(d.retention.status(conn, principal=who, tenant_id=q.tenant, order_id=q.order))


@router.get("/retention/holds", tags=["retention"])
def list_holds(q: Annotated[HoldsQuery, Query()], work: AuthenticatedRead) -> PageOf[HoldOut]:
    """Legal holds by id, a page at a time. Needs `retention:read`."""
    with work as (d, conn, who):
        holds = d.retention.holds(conn, principal=who, tenant_id=q.tenant, active_only=q.active)
        now = d.retention.now()
        return PageOf[HoldOut].model_validate(q.of(holds, lambda h: h.id, lambda h: _hold(h, now)))


@router.post("/retention/holds", status_code=201, tags=["retention"])
def add_hold(body: HoldBody, work: Authenticated) -> HoldOut:
    """Place a legal hold on one order (or the whole tenant): its PII and records are kept past
    their dates until `until`. Needs `retention:manage`."""
    with work as (d, conn, who):
        hold = d.retention.add_hold(
            conn,
            tenant_id=body.tenant,
            order_id=body.order,
            reason=body.reason,
            until=body.until,
            principal=who,
        )
        return _hold(hold, d.retention.now())


@router.post("/retention/holds/{hold_id}/release", tags=["retention"])
def release_hold(hold_id: HoldIdPath, work: Authenticated) -> HoldOut:
    """End a hold now: its records' dates apply again at the next run. Needs `retention:manage`."""
    with work as (d, conn, who):
        return _hold(d.retention.release_hold(conn, hold_id, principal=who), d.retention.now())
