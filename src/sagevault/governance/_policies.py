"""Governance: the policy register: company documents, versions, owners, approval, review dates.

One row per version of a document (this Data Protection Policy, the IR plan, others), named by
its SHA-256, so the register proves which text was approved. A version is approved by a person
(recorded with the time), and is due for review `review_days` later (365 by default); approving
it again is that review. The newest version of each document is the one in force; older ones
are superseded. `overdue` lists the versions in force that need a person: approved ones past
their review date, and unapproved ones registered more than 30 days ago; the daily job records
each occasion once (governance:policy:overdue), which raises the policy-review-overdue alarm.

The IR plan's own versions and reviews are kept by `incidents` (`sagevault incidents plan`); a
company that wants the plan in this register too registers its document here like any other."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, AuditSink, EventName, Gate, check_scope
from sagevault.errors import Conflict, NotFound, PayloadError
from sagevault.identity import Channel, Principal, Scope

from ._assets import text_field, utc
from ._schema import policies

PENDING_DAYS = 30  # an unapproved version older than this is overdue
_SHA256 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,39}")
REGISTER = Principal.job("governance-reviews-due")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Policy:
    id: int
    name: str
    version: str
    owner: str
    sha256: str
    created_at: datetime
    created_by: str
    approved_at: datetime | None
    approved_by: str | None
    next_review_at: datetime | None
    current: bool  # the newest version of its document

    @classmethod
    def of(cls, row: Any, current: bool) -> Policy:
        return cls(
            id=int(row.id),
            name=row.name,
            version=row.version,
            owner=row.owner,
            sha256=row.sha256,
            created_at=utc(row.created_at),  # type: ignore[arg-type]
            created_by=row.created_by,
            approved_at=utc(row.approved_at),
            approved_by=row.approved_by,
            next_review_at=utc(row.next_review_at),
            current=current,
        )

    def state(self, now: datetime) -> str:
        """superseded, overdue, approved or pending."""
        if not self.current:
            return "superseded"
        if self.is_overdue(now):
            return "overdue"
        return "approved" if self.approved_at is not None else "pending"

    def is_overdue(self, now: datetime) -> bool:
        if not self.current:
            return False
        if self.approved_at is None:
            return self.created_at + timedelta(days=PENDING_DAYS) <= now
        return self.next_review_at is not None and self.next_review_at <= now

    def payload(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "owner": self.owner,
            "sha256": self.sha256,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "approved_at": _iso(self.approved_at),
            "approved_by": self.approved_by,
            "next_review_at": _iso(self.next_review_at),
            "current": self.current,
            "state": self.state(now),
        }


def file_sha256(content: bytes) -> str:
    """The SHA-256 a document's version is registered under."""
    return hashlib.sha256(content).hexdigest()


class Policies:
    """The policy register (`policies`)."""

    def __init__(self, *, audit: AuditSink, gate: Gate, clock: Callable[[], datetime] | None = None) -> None:
        self._audit = audit
        self._gate = gate
        self._clock = clock or (lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self._clock()

    def _event(
        self, name: EventName, principal: Principal, policy_id: int, operation: str, sha256: str | None = None
    ) -> None:
        self._audit.record(
            AuditEvent(
                name=name,
                channel=principal.channel,
                actor=principal.id,
                operation=f"{operation} {policy_id}",
                counts={"policy": policy_id},
                fingerprint=sha256,
            )
        )

    def _rows(self, conn: Connection, *where: Any) -> list[Policy]:
        query = select(policies.c.name, func.max(policies.c.id)).group_by(policies.c.name)
        newest: dict[str, int] = {row[0]: row[1] for row in conn.execute(query)}
        rows = conn.execute(select(policies).where(*where).order_by(policies.c.name, policies.c.id)).all()
        return [Policy.of(r, newest.get(r.name) == r.id) for r in rows]

    def _get(self, conn: Connection, policy_id: int) -> Policy:
        found = self._rows(conn, policies.c.id == policy_id)
        if not found:
            raise NotFound(f"no policy version {policy_id}; `sagevault policies list` shows the register")
        return found[0]

    def add(
        self,
        conn: Connection,
        *,
        name: str,
        version: str,
        owner: str | None,
        principal: Principal,
        sha256: str | None = None,
        content: bytes | None = None,
    ) -> Policy:
        """Register a version of a document by its SHA-256 (given, or of `content`)."""
        check_scope(self._gate, self._audit, conn, principal, Scope.GOVERNANCE_MANAGE, "policies add")
        checked_name = text_field("name", name, 120)
        checked_owner = text_field("owner", owner, 120)
        version = (version or "").strip()
        if not _VERSION.fullmatch(version):
            raise PayloadError("version must be 1 to 40 letters, digits, dots, dashes or pluses, e.g. 2.1")
        if (sha256 is None) == (content is None):
            raise PayloadError("give the document's file or its SHA-256 (one of them)")
        digest = file_sha256(content) if content is not None else (sha256 or "").strip().lower()
        if not _SHA256.fullmatch(digest):
            raise PayloadError("the SHA-256 must be 64 hexadecimal digits (`sha256sum FILE` prints it)")
        taken = conn.execute(
            select(policies.c.id).where(policies.c.name == checked_name, policies.c.version == version)
        ).first()
        if taken is not None:
            raise Conflict(
                f"{checked_name!r} version {version} is registered already (id {taken[0]}); give a new version"
            )
        policy_id = conn.execute(
            insert(policies).values(
                name=checked_name,
                version=version,
                owner=checked_owner,
                sha256=digest,
                created_at=self._clock(),
                created_by=principal.id,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        self._event(EventName.GOVERNANCE_POLICY_ADD, principal, int(policy_id), "policy add", digest)
        return self._get(conn, int(policy_id))

    def approve(self, conn: Connection, policy_id: int, *, principal: Principal, review_days: int = 365) -> Policy:
        """Approve a version in force (again, as its periodic review); next review in `review_days`."""
        check_scope(self._gate, self._audit, conn, principal, Scope.GOVERNANCE_MANAGE, "policies approve")
        if not 1 <= review_days <= 365:
            raise PayloadError("review_days must be 1 to 365: a policy is reviewed at least once a year")
        policy = self._get(conn, policy_id)
        if not policy.current:
            raise Conflict(
                f"policy version {policy_id} ({policy.name!r} {policy.version}) is superseded by a newer version; "
                "approve that one"
            )
        now = self._clock()
        conn.execute(
            update(policies)
            .where(policies.c.id == policy_id)
            .values(
                approved_at=now,
                approved_by=principal.id,
                next_review_at=now + timedelta(days=review_days),
                overdue_noted_at=None,
            )
        )
        self._event(EventName.GOVERNANCE_POLICY_APPROVE, principal, policy_id, "policy approve", policy.sha256)
        return self._get(conn, policy_id)

    def list_policies(self, conn: Connection, *, principal: Principal) -> list[Policy]:
        """Every version, by document and version order (the newest of each is `current`)."""
        check_scope(self._gate, self._audit, conn, principal, Scope.GOVERNANCE_READ, "policies list")
        return self._rows(conn)

    def overdue(self, conn: Connection) -> list[Policy]:
        """The versions in force that need a person: approved and past their review date, or not
        approved within 30 days of being registered."""
        now = self._clock()
        return [p for p in self._rows(conn) if p.is_overdue(now)]

    def note_overdue(self, conn: Connection) -> list[Policy]:
        """Record governance:policy:overdue once for each overdue version not yet noted (until it
        is approved again); returns those noted now."""
        now = self._clock()
        noted = set(conn.execute(select(policies.c.id).where(policies.c.overdue_noted_at.is_not(None))).scalars())
        fresh = [p for p in self.overdue(conn) if p.id not in noted]
        events = []
        for p in fresh:
            conn.execute(update(policies).where(policies.c.id == p.id).values(overdue_noted_at=now))
            events.append(
                AuditEvent(
                    name=EventName.GOVERNANCE_POLICY_OVERDUE,
                    channel=Channel.SCHEDULER,
                    actor=REGISTER.id,
                    operation=f"policy {'review' if p.approved_at else 'approval'} {p.id}",
                    counts={"policy": p.id},
                    fingerprint=p.sha256,
                )
            )
        if events:
            self._audit.record_many(events)
        return fresh
