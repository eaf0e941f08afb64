"""What the parts of incident response share: the plan, access control's gate, the security
log, the timeline, the clock, and the checks every text and time a person gives passes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, AuditSink, EventName, Gate, Outcome, Reason, check_scope
from sagevault.catalog import CATALOG
from sagevault.errors import Conflict, PayloadError, RecordNotFound, looks_like_pii, shown
from sagevault.identity import Principal, Scope, check_tenant_id, event_tenant
from sagevault.monitor import Severity

from ._model import (
    Action,
    Case,
    Entry,
    Evidence,
    Handover,
    Incident,
    State,
    Task,
    utc,
)
from ._plan import Involvement, PlanBook
from ._schema import (
    incident_actions,
    incident_alarms,
    incident_custody,
    incident_evidence,
    incident_tasks,
    incident_timeline,
    incidents,
)

# Dates, times and IPv4 addresses are not personal data, but their digit runs look like phone
# numbers to `looks_like_pii`: they are blanked before the check.
_NOT_PII = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|\b\d{1,2}:\d{2}(?::\d{2})?\b|\b\d{1,3}(?:\.\d{1,3}){3}\b"
)
_MESSAGE_ID = re.compile(r"<[^<>\s@]{1,150}@[^<>\s@]{1,100}>")
_EMAIL_SHAPE = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[A-Za-z]{2,}")
_LETTER = re.compile(r"[A-Za-z]")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
CATEGORIES = frozenset(f.category for f in CATALOG)
SKEW = timedelta(minutes=5)  # how far ahead of the server's clock a given time may be
RANK = {s.value: n for n, s in enumerate(Severity)}


class Containment(Protocol):
    """Carries out a containment action for an incident (the access layer's `IncidentActions`):
    with the acting principal's own permissions, recorded by access control as its own event
    naming the incident. Returns what was done."""

    def take(
        self, conn: Connection, action: str, target: str, *, tenant_id: str | None, actor: Principal, incident: int
    ) -> str: ...


def free_text(where: str, value: str | None, *, limit: int = 4000, required: bool = False) -> str | None:
    """A text people write on an incident: bounded, and refused when it looks like it holds an
    e-mail address or phone number (incident records hold no buyer data)."""
    if value is None or not value.strip():
        if required:
            raise PayloadError(f"{where} is required")
        return None
    if len(value) > limit:
        raise PayloadError(f"{where} is longer than {limit} characters; shorten it")
    if looks_like_pii(_NOT_PII.sub(" ", value)):
        raise PayloadError(
            f"{where} looks like it holds an e-mail address or phone number; incident records carry no personal "
            "data: describe people by role or account id, and keep the data itself in the evidence"
        )
    return value.strip()


def aware(where: str, value: datetime) -> datetime:
    """A time given by a person: it must carry its UTC offset, and it is kept in UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise PayloadError(f"{where} has no UTC offset; give it as e.g. 2026-12-06T09:30:00Z or +01:00")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset that leaves the calendar
        raise PayloadError(f"{where} is outside the calendar SageVault keeps; give a time near today") from None


def reference_text(where: str, value: str) -> str:
    """A reference people copy from elsewhere (a Message-ID, Amazon's case number): a Message-ID
    in angle brackets, or a text with no e-mail address in it whose digit runs come with letters
    (a case number, never a bare phone number)."""
    text = value.strip()
    if not text or len(text) > 200:
        raise PayloadError(f"{where} must be a text of 1 to 200 characters")
    if _MESSAGE_ID.fullmatch(text):
        return text
    if _EMAIL_SHAPE.search(text) or (looks_like_pii(_NOT_PII.sub(" ", text)) and not _LETTER.search(text)):
        raise PayloadError(
            f"{where} looks like an e-mail address or phone number; give the message's Message-ID in angle brackets "
            "(<...@...>) or the case number"
        )
    return text


def parse_time(where: str, text: str) -> datetime:
    """An ISO 8601 time from the command line or a form, with its UTC offset."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PayloadError(f"{where} is not a time; give it as e.g. 2026-12-06T09:30:00Z") from None
    return aware(where, value)


def tenants_of(values: Sequence[str]) -> list[str]:
    return sorted({check_tenant_id(v) for v in values})


def categories_of(values: Sequence[str]) -> list[str]:
    for value in values:
        if not any(c == value or c.startswith(value + ".") for c in CATEGORIES):
            raise PayloadError(
                f"data category {shown(value)} is not one the catalog knows; use one of "
                f"{', '.join(sorted(CATEGORIES))} or a prefix of one such as user.contact"
            )
    return sorted(set(values))


def severity_of(value: str) -> str:
    try:
        return Severity(value).value
    except ValueError:
        raise PayloadError(f"severity must be low, medium, high or critical; not {shown(value)}") from None


def involvement_of(value: str) -> Involvement:
    try:
        return Involvement(value)
    except ValueError:
        raise PayloadError(
            f"amazon must be yes, possible or no (is Amazon Information involved?); not {shown(value)}"
        ) from None


def state_of(value: str) -> State:
    try:
        return State(value.replace("_", "-"))
    except ValueError:
        raise PayloadError(f"state must be one of {', '.join(s.value for s in State)}; not {shown(value)}") from None


class IncidentCore:
    """What the parts of `Incidents` share: the plan, the gate, the log, the clock."""

    def __init__(
        self,
        *,
        audit: AuditSink,
        gate: Gate,
        plans: PlanBook,
        containment: Containment | None = None,
        notify_hours: int = 24,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.plans = plans
        self.audit = audit
        self.gate = gate
        self.containment = containment
        self.window = timedelta(hours=notify_hours)
        self.clock = clock or (lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self.clock()

    @property
    def warnings(self) -> tuple[timedelta, timedelta]:
        """When the clock warns: at half the window and four hours before its end (12 h, 20 h of 24)."""
        half = self.window / 2
        return half, max(half, self.window - timedelta(hours=4))

    def check(self, conn: Connection, principal: Principal, scope: Scope, operation: str) -> None:
        check_scope(self.gate, self.audit, conn, principal, scope, operation)

    def event(
        self,
        name: EventName,
        principal: Principal,
        incident_id: int,
        *,
        operation: str | None = None,
        fingerprint: str | None = None,
        outcome: Outcome = Outcome.SUCCESS,
        reason: Reason = Reason.NONE,
        tenant: str | None = None,
        **counts: int,
    ) -> None:
        self.audit.record(
            AuditEvent(
                name=name,
                channel=principal.channel,
                outcome=outcome,
                reason=reason,
                actor=principal.id,
                tenant_id=event_tenant(tenant),
                operation=operation,
                fingerprint=fingerprint,
                counts={"incident": incident_id, **counts},
            )
        )

    def log(self, conn: Connection, incident_id: int, actor: Principal | str, kind: str, **detail: Any) -> None:
        actor_id = actor.id if isinstance(actor, Principal) else actor
        conn.execute(
            insert(incident_timeline).values(
                incident_id=incident_id, at=self.clock(), actor=actor_id, kind=kind, detail=json.dumps(detail)
            )
        )

    def row(self, conn: Connection, incident_id: int) -> Incident:
        row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).first()
        if row is None:
            raise RecordNotFound(f"no incident {incident_id}; `sagevault incidents list` shows them")
        return Incident.of(row)

    def open_row(self, conn: Connection, incident_id: int) -> Incident:
        incident = self.row(conn, incident_id)
        if incident.state == State.CLOSED:
            raise Conflict(f"incident {incident_id} is closed; its record can no longer change")
        return incident

    def set(self, conn: Connection, incident_id: int, **values: Any) -> None:
        conn.execute(update(incidents).where(incidents.c.id == incident_id).values(updated_at=self.clock(), **values))

    def add_tasks(self, conn: Connection, incident_id: int, steps: Sequence[str]) -> int:
        have = {
            r.text
            for r in conn.execute(select(incident_tasks.c.text).where(incident_tasks.c.incident_id == incident_id))
        }
        start = len(have)
        new = [s for s in steps if s not in have]
        if new:
            conn.execute(
                insert(incident_tasks),
                [
                    {"incident_id": incident_id, "position": start + n, "text": s[:500], "state": "open"}
                    for n, s in enumerate(new, 1)
                ],
            )
        return len(new)

    def case(self, conn: Connection, incident_id: int) -> Case:
        incident = self.row(conn, incident_id)
        timeline = [
            Entry(utc(r.at), r.actor, r.kind, json.loads(r.detail))  # type: ignore[arg-type]
            for r in conn.execute(
                select(incident_timeline)
                .where(incident_timeline.c.incident_id == incident_id)
                .order_by(incident_timeline.c.id)
            )
        ]
        tasks = [
            Task(int(r.id), int(r.position), r.text, r.state, r.changed_by, utc(r.changed_at), r.note)
            for r in conn.execute(
                select(incident_tasks)
                .where(incident_tasks.c.incident_id == incident_id)
                .order_by(incident_tasks.c.position)
            )
        ]
        custody: dict[int, list[Handover]] = {}
        for r in conn.execute(
            select(incident_custody)
            .join(incident_evidence, incident_evidence.c.id == incident_custody.c.evidence_id)
            .where(incident_evidence.c.incident_id == incident_id)
            .order_by(incident_custody.c.id)
        ):
            custody.setdefault(int(r.evidence_id), []).append(
                Handover(r.from_party, r.to_party, utc(r.at), r.purpose, r.recorded_by)  # type: ignore[arg-type]
            )
        evidence = [
            Evidence(
                int(r.id),
                r.label,
                r.sha256,
                r.size,
                r.location,
                r.collected_by,
                utc(r.collected_at),  # type: ignore[arg-type]
                r.recorded_by,
                custody.get(int(r.id), []),
            )
            for r in conn.execute(
                select(incident_evidence)
                .where(incident_evidence.c.incident_id == incident_id)
                .order_by(incident_evidence.c.id)
            )
        ]
        actions = [
            Action(utc(r.at), r.actor, r.action, r.target, r.tenant, r.result)  # type: ignore[arg-type]
            for r in conn.execute(
                select(incident_actions)
                .where(incident_actions.c.incident_id == incident_id)
                .order_by(incident_actions.c.id)
            )
        ]
        alarms = [
            int(a)
            for a in conn.execute(
                select(incident_alarms.c.alarm_id)
                .where(incident_alarms.c.incident_id == incident_id)
                .order_by(incident_alarms.c.alarm_id)
            ).scalars()
        ]
        return Case(incident, timeline, tasks, evidence, actions, alarms)
