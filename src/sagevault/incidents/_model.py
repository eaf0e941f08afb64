"""What an incident is: its phases, the facts people record, and how it is shown."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class State(StrEnum):
    NEW = "new"
    TRIAGE = "triage"
    CONTAINMENT = "containment"
    ERADICATION = "eradication"
    RECOVERY = "recovery"
    POST_INCIDENT = "post-incident"
    CLOSED = "closed"


# NIST SP 800-61 (rev. 2) phases: preparation is the plan itself.
NIST_PHASE = {
    State.NEW: "detection and analysis",
    State.TRIAGE: "detection and analysis",
    State.CONTAINMENT: "containment, eradication and recovery",
    State.ERADICATION: "containment, eradication and recovery",
    State.RECOVERY: "containment, eradication and recovery",
    State.POST_INCIDENT: "post-incident activity",
    State.CLOSED: "post-incident activity",
}

# Where an incident may go from each phase: forward one phase, or back into containment or
# triage when analysis finds more (NIST's loop). Closing is its own operation (`close`).
MOVES: dict[State, tuple[State, ...]] = {
    State.NEW: (State.TRIAGE,),
    State.TRIAGE: (State.CONTAINMENT,),
    State.CONTAINMENT: (State.ERADICATION, State.TRIAGE),
    State.ERADICATION: (State.RECOVERY, State.CONTAINMENT, State.TRIAGE),
    State.RECOVERY: (State.POST_INCIDENT, State.CONTAINMENT),
    State.POST_INCIDENT: (State.RECOVERY,),
    State.CLOSED: (),
}

# The documentation an incident cannot close without (DPP 8: description, remediation actions,
# corrective controls; the root cause is what the controls answer).
CLOSING_FIELDS = ("description", "root_cause", "remediation", "corrective_controls")

ACTIONS = ("kill-switch", "lock-account", "revoke-sessions", "revoke-key")


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


@dataclass(frozen=True)
class Incident:
    id: int
    type: str
    severity: str
    state: str
    title: str
    amazon: str
    detected_at: datetime
    opened_at: datetime
    opened_by: str
    plan_version: int
    tenants: list[str]
    categories: list[str]
    records_affected: int | None
    roles: dict[str, str]
    description: str | None
    root_cause: str | None
    remediation: str | None
    corrective_controls: str | None
    notify_due: datetime | None
    clock_stage: int
    notified_at: datetime | None
    notify_reference: str | None
    draft_sha256: str | None
    impoc: str | None  # "Name <address>" of the IMPOC the draft was from (staff contact)
    closed_at: datetime | None
    closed_by: str | None

    @classmethod
    def of(cls, row: Any) -> Incident:
        return cls(
            id=int(row.id),
            type=row.type,
            severity=row.severity,
            state=row.state,
            title=row.title,
            amazon=row.amazon,
            detected_at=utc(row.detected_at),  # type: ignore[arg-type]
            opened_at=utc(row.opened_at),  # type: ignore[arg-type]
            opened_by=row.opened_by,
            plan_version=int(row.plan_version),
            tenants=json.loads(row.tenants),
            categories=json.loads(row.categories),
            records_affected=row.records_affected,
            roles=json.loads(row.roles),
            description=row.description,
            root_cause=row.root_cause,
            remediation=row.remediation,
            corrective_controls=row.corrective_controls,
            notify_due=utc(row.notify_due),
            clock_stage=int(row.clock_stage),
            notified_at=utc(row.notified_at),
            notify_reference=row.notify_reference,
            draft_sha256=row.draft_sha256,
            impoc=row.impoc,
            closed_at=utc(row.closed_at),
            closed_by=row.closed_by,
        )

    @property
    def amazon_involved(self) -> bool:
        return self.amazon != "no"

    def clock(self, now: datetime) -> dict[str, Any]:
        """The Amazon clock as a person reads it: due, left (or overdue by), stopped."""
        if self.notify_due is None:
            return {"running": False, "due": None, "seconds_left": None, "state": "not required"}
        if self.notified_at is not None:
            late = self.notified_at > self.notify_due
            return {
                "running": False,
                "due": iso(self.notify_due),
                "seconds_left": None,
                "state": "notified late" if late else "notified in time",
            }
        left = int((self.notify_due - now).total_seconds())
        return {
            "running": True,
            "due": iso(self.notify_due),
            "seconds_left": left,
            "state": "overdue" if left <= 0 else "running",
        }

    def summary(self) -> dict[str, Any]:
        """What `incidents list --json` gives for each incident."""
        return {
            "id": self.id,
            "type": self.type,
            "severity": self.severity,
            "state": self.state,
            "title": self.title,
            "detected_at": iso(self.detected_at),
            "amazon_involved": self.amazon_involved,
            "amazon": self.amazon,
            "notify_amazon_due": iso(self.notify_due),
            "notified_at": iso(self.notified_at),
        }

    def payload(self, now: datetime) -> dict[str, Any]:
        return {
            **self.summary(),
            "nist_phase": NIST_PHASE[State(self.state)],
            "opened_at": iso(self.opened_at),
            "opened_by": self.opened_by,
            "plan_version": self.plan_version,
            "tenants": self.tenants,
            "data_categories": self.categories,
            "records_affected": self.records_affected,
            "roles": self.roles,
            "description": self.description,
            "root_cause": self.root_cause,
            "remediation": self.remediation,
            "corrective_controls": self.corrective_controls,
            "notify_reference": self.notify_reference,
            "notification_draft_sha256": self.draft_sha256,
            "impoc": self.impoc,
            "clock": self.clock(now),
            "closed_at": iso(self.closed_at),
            "closed_by": self.closed_by,
        }


@dataclass(frozen=True)
class Entry:
    at: datetime
    actor: str
    kind: str
    detail: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return {"at": iso(self.at), "actor": self.actor, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class Task:
    id: int
    position: int
    text: str
    state: str
    changed_by: str | None
    changed_at: datetime | None
    note: str | None

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "position": self.position,
            "text": self.text,
            "state": self.state,
            "changed_by": self.changed_by,
            "changed_at": iso(self.changed_at),
            "note": self.note,
        }


@dataclass(frozen=True)
class Handover:
    from_party: str
    to_party: str
    at: datetime
    purpose: str
    recorded_by: str

    def payload(self) -> dict[str, Any]:
        return {
            "from": self.from_party,
            "to": self.to_party,
            "at": iso(self.at),
            "purpose": self.purpose,
            "recorded_by": self.recorded_by,
        }


@dataclass(frozen=True)
class Evidence:
    id: int
    label: str
    sha256: str
    size: int | None
    location: str
    collected_by: str
    collected_at: datetime
    recorded_by: str
    custody: list[Handover] = field(default_factory=list)

    @property
    def holder(self) -> str:
        return self.custody[-1].to_party if self.custody else self.collected_by

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "sha256": self.sha256,
            "size": self.size,
            "location": self.location,
            "collected_by": self.collected_by,
            "collected_at": iso(self.collected_at),
            "recorded_by": self.recorded_by,
            "held_by": self.holder,
            "custody": [h.payload() for h in self.custody],
        }


@dataclass(frozen=True)
class Action:
    at: datetime
    actor: str
    action: str
    target: str | None
    tenant: str | None
    result: str

    def payload(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "tenant": self.tenant,
            "result": self.result,
        }


@dataclass(frozen=True)
class Case:
    """An incident with everything recorded on it."""

    incident: Incident
    timeline: list[Entry]
    tasks: list[Task]
    evidence: list[Evidence]
    actions: list[Action]
    alarms: list[int]

    def payload(self, now: datetime) -> dict[str, Any]:
        return {
            **self.incident.payload(now),
            "alarms": self.alarms,
            "tasks": [t.payload() for t in self.tasks],
            "evidence": [e.payload() for e in self.evidence],
            "actions": [a.payload() for a in self.actions],
            "timeline": [e.payload() for e in self.timeline],
        }


@dataclass(frozen=True)
class Document:
    """A text SageVault wrote (a notification draft, a report) and its SHA-256."""

    text: str
    sha256: str
    format: str  # markdown | json | text
