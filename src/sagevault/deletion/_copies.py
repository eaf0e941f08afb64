"""Live copies: backups, exports and return bundles, tracked from the moment they are written
until they are destroyed, at the latest at their expiry (`policy.live_copies_days`, 90). A copy
past its expiry and not destroyed is recorded as deletion:copy:overdue once; the rule
`live-copy-overdue` raises the alarm on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, AuditSink, EventName, Gate, check_scope
from sagevault.errors import Conflict, PayloadError, RecordNotFound
from sagevault.identity import Channel, Principal, Scope, event_tenant

from ._schema import live_copies

KINDS = ("backup", "export", "return-bundle")
DELETION = Principal.job("deletion")


def utc(value: datetime | None) -> datetime | None:
    """A time from the database as UTC (SQLite gives it back without a zone)."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class LiveCopy:
    id: int
    kind: str
    location: str
    sha256: str
    size: int
    tenant_id: str | None
    request_id: int | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    destroyed_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> LiveCopy:
        return cls(
            id=int(row.id),
            kind=row.kind,
            location=row.location,
            sha256=row.sha256,
            size=int(row.size),
            tenant_id=row.tenant_id,
            request_id=row.request_id,
            created_by=row.created_by,
            created_at=utc(row.created_at),  # type: ignore[arg-type]
            expires_at=utc(row.expires_at),  # type: ignore[arg-type]
            destroyed_at=utc(row.destroyed_at),
        )

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "location": self.location,
            "sha256": self.sha256,
            "size": self.size,
            "tenant_id": self.tenant_id,
            "request_id": self.request_id,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "destroyed_at": self.destroyed_at.isoformat() if self.destroyed_at else None,
        }


class LiveCopies:
    """The register of live copies (`live_copies`)."""

    def __init__(
        self, *, audit: AuditSink, gate: Gate, max_days: int = 90, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._audit = audit
        self._gate = gate
        self.max_days = max_days
        self._clock = clock or (lambda: datetime.now(UTC))

    def register(
        self,
        conn: Connection,
        *,
        kind: str,
        location: str,
        sha256: str,
        size: int,
        principal: Principal,
        tenant_id: str | None = None,
        request_id: int | None = None,
        days: int | None = None,
    ) -> LiveCopy:
        """Track a copy just written; it expires in `days` (at most the policy's 90)."""
        if kind not in KINDS:
            raise PayloadError(f"a live copy is one of {', '.join(KINDS)}")
        keep = self.max_days if days is None else days
        if not 0 < keep <= self.max_days:
            raise PayloadError(f"a copy may be kept 1 to {self.max_days} days (the policy's live_copies_days)")
        now = self._clock()
        copy_id = conn.execute(
            insert(live_copies).values(
                kind=kind,
                location=location[:500],
                sha256=sha256,
                size=size,
                tenant_id=tenant_id,
                request_id=request_id,
                created_by=principal.id,
                created_at=now,
                expires_at=now + timedelta(days=keep),
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        self._event(EventName.DELETION_COPY_REGISTER, principal, int(copy_id), kind, tenant_id, fingerprint=sha256)
        return self._get(conn, int(copy_id))

    def _event(
        self,
        name: EventName,
        principal: Principal,
        copy_id: int,
        kind: str,
        tenant_id: str | None,
        fingerprint: str | None = None,
    ) -> None:
        self._audit.record(
            AuditEvent(
                name=name,
                channel=principal.channel,
                actor=principal.id,
                tenant_id=event_tenant(tenant_id),
                operation=f"{kind} {copy_id}",
                counts={"copy": copy_id},
                fingerprint=fingerprint,
            )
        )

    def _get(self, conn: Connection, copy_id: int) -> LiveCopy:
        row = conn.execute(select(live_copies).where(live_copies.c.id == copy_id)).first()
        if row is None:
            raise RecordNotFound(f"no live copy {copy_id}; `sagevault backup list` shows them")
        return LiveCopy.of(row)

    def get(self, conn: Connection, copy_id: int, *, principal: Principal) -> LiveCopy:
        check_scope(self._gate, self._audit, conn, principal, Scope.BACKUPS_READ, "copies show")
        return self._get(conn, copy_id)

    def list_copies(
        self, conn: Connection, *, principal: Principal, kind: str | None = None, live_only: bool = False
    ) -> list[LiveCopy]:
        check_scope(self._gate, self._audit, conn, principal, Scope.BACKUPS_READ, "copies list")
        query = select(live_copies).order_by(live_copies.c.id.desc())
        if kind is not None:
            query = query.where(live_copies.c.kind == kind)
        if live_only:
            query = query.where(live_copies.c.destroyed_at.is_(None))
        return [LiveCopy.of(r) for r in conn.execute(query)]

    def destroyed(self, conn: Connection, copy_id: int, *, principal: Principal) -> LiveCopy:
        """Record that a copy is gone (its file overwritten and deleted, or the medium destroyed)."""
        check_scope(self._gate, self._audit, conn, principal, Scope.BACKUPS_MANAGE, "copies destroy")
        copy = self._get(conn, copy_id)
        done = conn.execute(
            update(live_copies)
            .where(live_copies.c.id == copy_id, live_copies.c.destroyed_at.is_(None))
            .values(destroyed_at=self._clock(), destroyed_by=principal.id)
        ).rowcount
        if not done:
            raise Conflict(f"live copy {copy_id} was recorded as destroyed already")
        self._event(EventName.DELETION_COPY_DESTROY, principal, copy_id, copy.kind, copy.tenant_id, copy.sha256)
        return self._get(conn, copy_id)

    def overdue(self, conn: Connection) -> list[int]:
        """Record deletion:copy:overdue once for each copy past its expiry and not destroyed."""
        now = self._clock()
        rows = conn.execute(
            select(live_copies.c.id, live_copies.c.kind, live_copies.c.tenant_id).where(
                live_copies.c.destroyed_at.is_(None),
                live_copies.c.overdue_at.is_(None),
                live_copies.c.expires_at <= now,
            )
        ).all()
        events = []
        for copy_id, kind, tenant_id in rows:
            conn.execute(update(live_copies).where(live_copies.c.id == copy_id).values(overdue_at=now))
            events.append(
                AuditEvent(
                    name=EventName.DELETION_COPY_OVERDUE,
                    channel=Channel.SCHEDULER,
                    actor=DELETION.id,
                    tenant_id=event_tenant(tenant_id),
                    operation=f"{kind} {copy_id}",
                    counts={"copy": int(copy_id)},
                )
            )
        if events:
            self._audit.record_many(events)
        return [int(r[0]) for r in rows]
