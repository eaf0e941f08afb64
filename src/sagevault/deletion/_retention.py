"""Retention (DPP 1, 9): a record's PII fields are purged at its `pii_expires_at` (30 days after
its order's delivery, dated at ingest), the whole record at its `expires_at` (18 months), unless
a legal hold covers it; `status` says what goes when and what is held by which hold.

A purge is set-based SQL in chunks of `limit` records: the PII blob becomes empty (the vault's
readers see no PII field), every blind-index token NULL, `pii_purged_at` the time of the run.
Each run records one security event per tenant and kind (retention:pii:purge,
retention:record:purge) with counts, never ids of buyers or values. A legal hold is for one order
or a whole tenant ("*"), with a reason (checked for e-mail addresses and phone numbers) and an
end date (with its UTC offset, in the future); adding and releasing one are events too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, delete, exists, func, insert, not_, or_, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, AuditSink, EventName, Gate, outcome_of
from sagevault.errors import (
    AccessDenied,
    Conflict,
    PayloadError,
    RecordNotFound,
    TenantShredded,
    UnknownTenant,
    shown,
)
from sagevault.identity import Principal, Scope, check_tenant_id, event_tenant
from sagevault.vault._schema import BLIND_INDEX_COLUMNS, records, tenants

from ._retention_views import (
    MAX_HOLD_DAYS,
    ORDER_PATTERN,
    WHOLE_TENANT,
    Buckets,
    HeldBy,
    LegalHold,
    OrderRetention,
    RetentionRun,
    RetentionStatus,
    TenantRetention,
    aware,
    hold_reason,
    iso,
    parse_time,
    utc,
)
from ._schema import legal_holds

__all__ = ["LegalHold", "Retention", "RetentionRun", "RetentionStatus", "parse_time"]


def _held(rec: Table | Any, now: datetime) -> ColumnElement[bool]:
    """Whether an active legal hold covers the record row `rec` (its order, or its whole tenant)."""
    h = legal_holds
    return exists().where(
        h.c.tenant_id == rec.c.tenant_id,
        or_(h.c.order_id == rec.c.order_id, h.c.order_id == WHOLE_TENANT),
        h.c.released_at.is_(None),
        h.c.until > now,
    )


_PURGED_PII: dict[str, Any] = {"pii": b"", "pii_fields": 0, "unknown_fields": 0, **dict.fromkeys(BLIND_INDEX_COLUMNS)}


@dataclass
class _Tally:
    records: Counter[str] = field(default_factory=Counter)
    orders: dict[str, set[str]] = field(default_factory=dict)

    def add(self, rows: Sequence[Any]) -> None:
        for tenant_id, order_id in rows:
            self.records[tenant_id] += 1
            self.orders.setdefault(tenant_id, set()).add(order_id)


PURGE_CACHE_KIB = 131_072  # SQLite's page cache while a purge runs (a connection's own is 2 MiB)


@contextmanager
def _page_cache(conn: Connection) -> Iterator[None]:
    """On SQLite, a larger page cache for the purge; the connection's own size back afterwards.

    A purge rewrites every record it touches and deletes its tokens from five blind-index B-trees
    at random places; with the default 2 MiB cache those index pages are read again and again, and
    dirty pages spill to the WAL before the commit (measured: 350k records stored, 50k purged,
    6.0 s at 2 MiB, 3.7 s at 64 MiB). Dirty pages stay in the cache until the commit whatever its
    size, so shrinking it back loses nothing."""
    if conn.dialect.name != "sqlite":
        yield
        return
    before = int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
    conn.exec_driver_sql(f"PRAGMA cache_size = -{PURGE_CACHE_KIB}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {before}")


class Retention:
    """The retention purges, legal holds and the status of what goes when."""

    def __init__(self, *, audit: AuditSink, gate: Gate, clock: Callable[[], datetime] | None = None) -> None:
        self._audit = audit
        self._gate = gate
        self._clock = clock or (lambda: datetime.now(UTC))

    def now(self) -> datetime:
        """The time by the deployment's clock, in UTC (what a hold's state is judged at)."""
        return self._clock().astimezone(UTC)

    # --- the purge --------------------------------------------------------------------------

    def run(self, conn: Connection, *, principal: Principal, limit: int = 50_000) -> RetentionRun:
        """Delete up to `limit` records past their retention date and purge the PII of up to
        `limit` records past their PII date, none under an active legal hold; one event per tenant
        and kind, durable before this returns. The caller commits (and, on SQLite, then calls
        `Deployment.release_deleted_pages` so the old pages leave the WAL)."""
        self._check(conn, principal, Scope.RETENTION_MANAGE, "retention run")
        if limit < 1:
            raise PayloadError("limit must be at least 1")
        now = self.now()
        with _page_cache(conn):
            gone, purged = self._purge(conn, now, limit)
        events = [
            AuditEvent(
                name=name,
                channel=principal.channel,
                actor=principal.id,
                tenant_id=event_tenant(tenant_id),
                counts={"records": n, "orders": len(tally.orders[tenant_id])},
                operation="retention run",
            )
            for name, tally in ((EventName.RETENTION_RECORD_PURGE, gone), (EventName.RETENTION_PII_PURGE, purged))
            for tenant_id, n in sorted(tally.records.items())
        ]
        if events:
            self._audit.record_many(events)
        n_gone, n_purged = sum(gone.records.values()), sum(purged.records.values())
        return RetentionRun(n_purged, n_gone, more=limit in (n_gone, n_purged))

    @staticmethod
    def _purge(conn: Connection, now: datetime, limit: int) -> tuple[_Tally, _Tally]:
        """Records past their date deleted, then PII past its date purged: each one statement over
        the `limit` earliest due (found through the partial indexes on the dates), holds left out."""
        r = records.alias("r")
        gone, purged = _Tally(), _Tally()
        doomed = select(r.c.id).where(r.c.expires_at <= now, not_(_held(r, now))).order_by(r.c.expires_at).limit(limit)
        gone.add(
            conn.execute(
                delete(records)
                .where(records.c.id.in_(doomed.scalar_subquery()))
                .returning(records.c.tenant_id, records.c.order_id)
            ).all()
        )
        due = (
            select(r.c.id)
            .where(r.c.pii_expires_at <= now, r.c.pii_purged_at.is_(None), not_(_held(r, now)))
            .order_by(r.c.pii_expires_at)
            .limit(limit)
        )
        purged.add(
            conn.execute(
                update(records)
                .where(records.c.id.in_(due.scalar_subquery()))
                .values(pii_purged_at=now, **_PURGED_PII)
                .returning(records.c.tenant_id, records.c.order_id)
            ).all()
        )
        return gone, purged

    # --- legal holds ------------------------------------------------------------------------

    def add_hold(
        self,
        conn: Connection,
        *,
        tenant_id: str,
        reason: str | None,
        until: datetime | str | None,
        principal: Principal,
        order_id: str | None = None,
    ) -> LegalHold:
        """Hold one order's records (or, without `order_id`, the whole tenant's) past their
        retention dates until `until` (a time, or ISO 8601 text, with its UTC offset), for `reason`."""
        self._check(conn, principal, Scope.RETENTION_MANAGE, "retention hold add", tenant_id)
        now = self.now()
        check_tenant_id(tenant_id)
        text = hold_reason(reason)
        if until is None:
            raise PayloadError(
                "a legal hold needs an end date (--until), with its UTC offset; extend it later if needed"
            )
        end = (
            parse_time("the hold's end date", until) if isinstance(until, str) else aware("the hold's end date", until)
        )
        if end <= now:
            raise PayloadError("the hold's end date is not in the future; a hold ends after it is placed")
        if end > now + timedelta(days=MAX_HOLD_DAYS):
            raise PayloadError("a hold ends within ten years; place a new one when the matter goes on")
        self._live_tenant(conn, tenant_id)
        ids: list[int] = []
        if order_id is None or order_id == WHOLE_TENANT:
            order_id = WHOLE_TENANT
            held = conn.execute(select(func.count()).where(records.c.tenant_id == tenant_id)).scalar_one()
        else:
            if not ORDER_PATTERN.fullmatch(order_id):
                raise PayloadError("an order id is 1 to 64 letters, digits, '.', '_' or '-' (e.g. 902-1845936-5435065)")
            ids = list(
                conn.execute(
                    select(records.c.id).where(records.c.tenant_id == tenant_id, records.c.order_id == order_id)
                ).scalars()
            )
            if not ids:
                raise RecordNotFound(f"tenant {shown(tenant_id)} holds no order {shown(order_id)}; nothing to hold")
            held = len(ids)
        hold_id = conn.execute(
            insert(legal_holds).values(
                tenant_id=tenant_id,
                order_id=order_id,
                reason=text,
                until=end,
                created_by=principal.id,
                created_at=now,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        self._event(EventName.RETENTION_HOLD_ADD, principal, int(hold_id), tenant_id, ids, {"records": int(held)})
        return self._hold(conn, int(hold_id))

    def release_hold(self, conn: Connection, hold_id: int, *, principal: Principal) -> LegalHold:
        """End a hold now: its records' dates apply again (the next run purges what is past due)."""
        row = conn.execute(select(legal_holds.c.tenant_id).where(legal_holds.c.id == hold_id)).first()
        self._check(conn, principal, Scope.RETENTION_MANAGE, "retention hold release", row.tenant_id if row else None)
        hold = self._hold(conn, hold_id)
        done = conn.execute(
            update(legal_holds)
            .where(legal_holds.c.id == hold_id, legal_holds.c.released_at.is_(None))
            .values(released_at=self.now(), released_by=principal.id)
        ).rowcount
        if not done:
            raise Conflict(f"legal hold {hold_id} was released already")
        self._event(EventName.RETENTION_HOLD_RELEASE, principal, hold_id, hold.tenant_id, [], {})
        return self._hold(conn, hold_id)

    def holds(
        self, conn: Connection, *, principal: Principal, tenant_id: str | None = None, active_only: bool = False
    ) -> list[LegalHold]:
        """Legal holds, newest first (`active_only`: not released and not past their end)."""
        self._check(conn, principal, Scope.RETENTION_READ, "retention hold list", tenant_id)
        return self._holds(conn, tenant_id, self.now() if active_only else None)

    @staticmethod
    def _holds(conn: Connection, tenant_id: str | None, active_at: datetime | None) -> list[LegalHold]:
        query = select(legal_holds).order_by(legal_holds.c.id.desc())
        if tenant_id is not None:
            query = query.where(legal_holds.c.tenant_id == tenant_id)
        if active_at is not None:
            query = query.where(legal_holds.c.released_at.is_(None), legal_holds.c.until > active_at)
        return [LegalHold.of(r) for r in conn.execute(query)]

    def get_hold(self, conn: Connection, hold_id: int, *, principal: Principal) -> LegalHold:
        self._check(conn, principal, Scope.RETENTION_READ, "retention hold show")
        return self._hold(conn, hold_id)

    def _check(
        self, conn: Connection, principal: Principal, scope: Scope, op: str, tenant_id: str | None = None
    ) -> None:
        """Ask access control for `scope` on `tenant_id` (None: every tenant, as a run or a status of
        all tenants needs); a refusal is recorded (access:permission:deny, naming the operation)."""
        try:
            self._gate.check(conn, principal, scope, tenant_id)
        except AccessDenied as exc:
            outcome, reason = outcome_of(exc)
            self._audit.record(
                AuditEvent(
                    name=EventName.ACCESS_PERMISSION_DENY,
                    channel=principal.channel,
                    outcome=outcome,
                    reason=reason,
                    actor=principal.id,
                    tenant_id=event_tenant(tenant_id),
                    operation=op,
                )
            )
            raise

    def _hold(self, conn: Connection, hold_id: int) -> LegalHold:
        row = conn.execute(select(legal_holds).where(legal_holds.c.id == hold_id)).first()
        if row is None:
            raise RecordNotFound(f"no legal hold {hold_id}; `sagevault retention hold list` shows them")
        return LegalHold.of(row)

    def _event(
        self,
        name: EventName,
        principal: Principal,
        hold_id: int,
        tenant_id: str,
        record_ids: list[int],
        counts: dict[str, int],
    ) -> None:
        self._audit.record(
            AuditEvent(
                name=name,
                channel=principal.channel,
                actor=principal.id,
                tenant_id=event_tenant(tenant_id),
                record_ids=record_ids,
                counts={"hold": hold_id, **counts},
                operation=name.value.replace("retention:hold:", "retention hold "),
            )
        )

    def _live_tenant(self, conn: Connection, tenant_id: str) -> None:
        row = conn.execute(select(tenants.c.shredded_at).where(tenants.c.id == tenant_id)).first()
        if row is None:
            raise UnknownTenant(tenant_id)
        if row.shredded_at is not None:
            raise TenantShredded(tenant_id, utc(row.shredded_at))  # type: ignore[arg-type]

    # --- status -----------------------------------------------------------------------------

    def status(
        self, conn: Connection, *, principal: Principal, tenant_id: str | None = None, order_id: str | None = None
    ) -> RetentionStatus:
        """What goes when, per tenant (or one tenant): records whose PII goes past due, within 7
        and 30 days, later; records that go whole; what is held and by which hold. With
        `order_id` (and `tenant_id`): that order's dates, whether its PII is gone, which holds
        keep it and why."""
        self._check(conn, principal, Scope.RETENTION_READ, "retention status", tenant_id)
        if order_id is not None and tenant_id is None:
            raise PayloadError("an order is named within its tenant; give the tenant too (--tenant)")
        now = self.now()
        if tenant_id is not None:
            if conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is None:
                raise UnknownTenant(tenant_id)
            names = [tenant_id]
        else:
            names = list(conn.execute(select(tenants.c.id).order_by(tenants.c.id)).scalars())
        counted = self._counts(conn, now, tenant_id)
        active = self._holds(conn, tenant_id, now)
        held_by: dict[str, list[HeldBy]] = {}
        for hold in sorted(active, key=lambda h: h.id):
            held_by.setdefault(hold.tenant_id, []).append(self._held_by(conn, hold, now))
        empty = (Buckets(), Buckets(), 0, 0)
        tenants_out = [TenantRetention(name, *counted.get(name, empty), holds=held_by.get(name, [])) for name in names]
        order = self._order(conn, tenant_id, order_id, now, active) if order_id is not None else None
        return RetentionStatus(now, tenants_out, order)

    def _counts(
        self, conn: Connection, now: datetime, tenant_id: str | None
    ) -> dict[str, tuple[Buckets, Buckets, int, int]]:
        """Per tenant, in one scan: the PII buckets, the record buckets, PII purged, held."""
        inner = select(
            records.c.tenant_id,
            records.c.pii_expires_at.label("pii_at"),
            records.c.expires_at.label("at"),
            records.c.pii_purged_at.label("purged"),
            _held(records, now).label("held"),
        )
        if tenant_id is not None:
            inner = inner.where(records.c.tenant_id == tenant_id)
        row = inner.subquery()
        week, month = now + timedelta(days=7), now + timedelta(days=30)

        def n(*conditions: ColumnElement[bool]) -> Any:
            return func.coalesce(func.sum(case((and_(*conditions), 1), else_=0)), 0)

        def buckets(at: Any, *where: ColumnElement[bool]) -> list[Any]:
            return [
                n(*where, at <= now),
                n(*where, at > now, at <= week),
                n(*where, at > week, at <= month),
                n(*where, at > month),
                n(*where, at.is_(None)),
            ]

        has_pii, free = row.c.purged.is_(None), not_(row.c.held)
        query = select(
            row.c.tenant_id,
            *buckets(row.c.pii_at, has_pii, free),
            *buckets(row.c.at, free),
            n(row.c.purged.is_not(None)),
            n(has_pii, row.c.held),
        ).group_by(row.c.tenant_id)
        out = {}
        for tenant, *counts in conn.execute(query):
            v = [int(x) for x in counts]
            out[tenant] = (Buckets(*v[0:5]), Buckets(*v[5:10]), v[10], v[11])
        return out

    def _held_by(self, conn: Connection, hold: LegalHold, now: datetime) -> HeldBy:
        where = [records.c.tenant_id == hold.tenant_id, records.c.pii_purged_at.is_(None)]
        if hold.order_id != WHOLE_TENANT:
            where.append(records.c.order_id == hold.order_id)
        covered, overdue = conn.execute(
            select(func.count(), func.coalesce(func.sum(case((records.c.pii_expires_at <= now, 1), else_=0)), 0)).where(
                *where
            )
        ).one()
        return HeldBy(hold, int(covered), int(overdue))

    def _order(
        self, conn: Connection, tenant_id: str | None, order_id: str, now: datetime, active: list[LegalHold]
    ) -> OrderRetention:
        rows = conn.execute(
            select(
                records.c.id,
                records.c.document,
                records.c.pii_expires_at,
                records.c.expires_at,
                records.c.pii_purged_at,
                records.c.pii_fields,
            )
            .where(records.c.tenant_id == tenant_id, records.c.order_id == order_id)
            .order_by(records.c.document)
        ).all()
        if not rows:
            raise RecordNotFound(f"tenant {shown(tenant_id)} holds no order {shown(order_id)}")
        documents = [
            {
                "record_id": int(r.id),
                "document": r.document,
                "pii_fields": int(r.pii_fields),
                "pii_expires_at": iso(utc(r.pii_expires_at)),
                "expires_at": iso(utc(r.expires_at)),
                "pii_purged_at": iso(utc(r.pii_purged_at)),
            }
            for r in rows
        ]
        pii_dates = [d for r in rows if (d := utc(r.pii_expires_at)) is not None]
        dates = [d for r in rows if (d := utc(r.expires_at)) is not None]
        purged_at = [utc(r.pii_purged_at) for r in rows]
        held_by = [h for h in active if h.order_id in (order_id, WHOLE_TENANT)]
        pii_expires_at = min(pii_dates) if pii_dates else None
        if all(p is not None for p in purged_at):
            state = "purged"
        elif held_by:
            state = "held"
        elif pii_expires_at is not None and pii_expires_at <= now:
            state = "overdue"
        else:
            state = "kept"
        return OrderRetention(
            tenant_id or "",
            order_id,
            state,
            pii_expires_at,
            min(dates) if dates else None,
            max(p for p in purged_at if p is not None) if state == "purged" else None,
            documents,
            held_by,
        )
