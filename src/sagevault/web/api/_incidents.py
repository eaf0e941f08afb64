"""Incidents and the incident response plan: the HTTPS face of `sagevault incidents|irp`.

Reading needs `incidents:read`, every change `incidents:manage` (both held by the
security-officer role); a containment action also needs the scope of the action itself
(`killswitch:operate`, `users:admin`). Every change is a security event (`incident:*:*`).
Times in bodies are ISO 8601 with their UTC offset; one without is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import Field

from sagevault.errors import PayloadError
from sagevault.incidents import Case, Document, Incident, State, parse_time

from .._deps import API, Authenticated, AuthenticatedRead
from .._pagination import PageQuery
from ._models import Out, PageOf

router = APIRouter(prefix=API)

IncidentIdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="The incident's id.")]
ItemIdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]
Time = Annotated[str, Field(max_length=64, json_schema_extra={"format": "date-time"})]
Text = Annotated[str, Field(max_length=4000)]
Involved = Literal["yes", "possible", "no"]
Severity = Literal["low", "medium", "high", "critical"]


class IncidentsQuery(PageQuery):
    state: State | None = Field(None, description="Only incidents in this state.")
    open: bool = Field(False, description="Only incidents not closed.")


class IncidentSummaryOut(Out):
    id: int
    type: str
    severity: str
    state: State
    title: str
    detected_at: str = Field(json_schema_extra={"format": "date-time"})
    amazon_involved: bool = Field(description="Whether Amazon Information is or may be involved.")
    amazon: Involved
    notify_amazon_due: str | None = Field(
        json_schema_extra={"format": "date-time"}, description="24 hours after detection when Amazon is involved."
    )
    notified_at: str | None = Field(json_schema_extra={"format": "date-time"})


class CaseOut(IncidentSummaryOut):
    nist_phase: str = Field(description="The NIST SP 800-61 phase of the state.")
    opened_at: str = Field(json_schema_extra={"format": "date-time"})
    opened_by: str
    plan_version: int
    tenants: list[str]
    data_categories: list[str]
    records_affected: int | None
    roles: dict[str, str]
    description: str | None
    root_cause: str | None
    remediation: str | None
    corrective_controls: str | None
    notify_reference: str | None
    notification_draft_sha256: str | None
    impoc: str | None = Field(description="The IMPOC the notification was from (staff contact).")
    clock: dict[str, Any] = Field(description="running, due, seconds_left, state of the Amazon clock.")
    closed_at: str | None = Field(json_schema_extra={"format": "date-time"})
    closed_by: str | None
    alarms: list[int]
    tasks: list[dict[str, Any]]
    evidence: list[dict[str, Any]] = Field(description="Items by SHA-256, with their chain of custody.")
    actions: list[dict[str, Any]] = Field(description="Containment actions taken.")
    timeline: list[dict[str, Any]]


class OpenBody(Out):
    type: str = Field(max_length=64, description="An incident type of the plan (`GET /api/v1/irp`).")
    title: str | None = Field(None, max_length=200)
    severity: Severity | None = None
    detected_at: Time | None = Field(None, description="When it was detected (default: now), with its UTC offset.")
    amazon: Involved | None = Field(None, description="Default: the type's.")
    tenants: list[str] = Field(default_factory=list, max_length=1000)
    data_categories: list[str] = Field(default_factory=list, max_length=100)
    records_affected: int | None = Field(None, ge=0, le=2**62)
    description: Text | None = None


class UpdateBody(Out):
    state: State | None = Field(None, description="Move to this phase; closing is POST .../close.")
    type: str | None = Field(None, max_length=64)
    title: str | None = Field(None, max_length=200)
    severity: Severity | None = None
    amazon: Involved | None = None
    tenants: list[str] | None = Field(None, max_length=1000)
    data_categories: list[str] | None = Field(None, max_length=100)
    records_affected: int | None = Field(None, ge=0, le=2**62)
    roles: dict[str, Annotated[str, Field(max_length=120)]] | None = Field(None, max_length=20)
    description: Text | None = None
    root_cause: Text | None = None
    remediation: Text | None = None
    corrective_controls: Text | None = None
    note: str | None = Field(None, max_length=2000, description="A note on the timeline.")


class TaskBody(Out):
    state: Literal["done", "skipped", "open"]
    note: str = Field("", max_length=500, description="Why (required to skip).")


class EvidenceBody(Out):
    label: str = Field(max_length=200)
    sha256: str = Field(max_length=64, description="The item's SHA-256, as the collector recorded it.")
    location: str = Field(max_length=500, description="Where the item is kept (SageVault keeps only its hash).")
    collected_by: str = Field(max_length=120)
    collected_at: Time | None = None
    size: int | None = Field(None, ge=0, le=2**62)
    content_base64: str | None = Field(
        None, max_length=8_000_000, description="The item itself, to check its hash here; it is not stored."
    )


class HandoverBody(Out):
    from_party: str = Field(max_length=120, alias="from")
    to_party: str = Field(max_length=120, alias="to")
    purpose: str = Field(max_length=500)
    at: Time | None = None


class ActionBody(Out):
    action: Literal["kill-switch", "lock-account", "revoke-sessions", "revoke-key"]
    target: str = Field(max_length=128, description="The switch name, login or API key id.")
    tenant: str | None = Field(None, max_length=64, description="For a kill switch: the tenant (default: all).")


class NotifiedBody(Out):
    at: Time = Field(description="When the notification was sent, with its UTC offset.")
    reference: str = Field(max_length=200, description="The message id or Amazon's case reference.")


class CloseBody(Out):
    description: Text | None = None
    root_cause: Text | None = None
    remediation: Text | None = None
    corrective_controls: Text | None = None


class DraftOut(Out):
    to: str
    text: str = Field(description="The notification, from the IMPOC; no personal data.")
    sha256: str


class ReportOut(Out):
    report: dict[str, Any] = Field(description="The report as JSON (its text hashes to sha256_json).")
    markdown: str
    sha256_json: str
    sha256_markdown: str


class PlanOut(Out):
    version: int
    sha256: str
    author: str
    created_at: str | None
    note: str | None
    approved_by: str | None
    approved_at: str | None
    next_review_due: str | None
    impoc: dict[str, str]
    review_due: bool
    review_reasons: list[str]
    plan: dict[str, Any]


def _time(where: str, value: str | None) -> Any:
    return parse_time(where, value) if value is not None else None


def _case(case: Case, work_now: Any) -> CaseOut:
    return CaseOut.model_validate(case.payload(work_now))


@router.get("/incidents", tags=["incidents"])
def list_incidents(q: Annotated[IncidentsQuery, Query()], work: AuthenticatedRead) -> PageOf[IncidentSummaryOut]:
    """Incidents, newest first, a page at a time. Needs `incidents:read`."""
    with work as (d, conn, who):
        after = q.position(int)
        state = q.state.value if q.state else None
        found = d.incidents.list(
            conn, principal=who, state=state, open_only=q.open, after_id=after or 0, limit=q.limit + 1
        )
        return PageOf[IncidentSummaryOut].model_validate(q.keyset(found, lambda i: i.id, _summary))


def _summary(incident: Incident) -> IncidentSummaryOut:
    return IncidentSummaryOut.model_validate(incident.summary())


@router.post("/incidents", status_code=201, tags=["incidents"])
def open_incident(body: OpenBody, work: Authenticated) -> CaseOut:
    """Open an incident by hand. Needs `incidents:manage`."""
    with work as (d, conn, who):
        incident = d.incidents.open(
            conn,
            type=body.type,
            principal=who,
            title=body.title,
            severity=body.severity,
            detected_at=_time("detected_at", body.detected_at),
            amazon=body.amazon,
            tenants=body.tenants,
            categories=body.data_categories,
            records=body.records_affected,
            description=body.description,
        )
        return _case(d.incidents.get(conn, incident.id, principal=who), d.incidents.now())


@router.get("/incidents/{incident_id}", tags=["incidents"])
def get_incident(incident_id: IncidentIdPath, work: AuthenticatedRead) -> CaseOut:
    """One incident with its clock, tasks, evidence, actions and timeline. Needs `incidents:read`."""
    with work as (d, conn, who):
        return _case(d.incidents.get(conn, incident_id, principal=who), d.incidents.now())


@router.patch("/incidents/{incident_id}", tags=["incidents"])
def update_incident(incident_id: IncidentIdPath, body: UpdateBody, work: Authenticated) -> CaseOut:
    """Change an open incident's facts, roles or documentation, add a note, or move it to
    another phase. Needs `incidents:manage`."""
    with work as (d, conn, who):
        d.incidents.update(
            conn,
            incident_id,
            principal=who,
            state=body.state.value if body.state else None,
            type=body.type,
            title=body.title,
            severity=body.severity,
            amazon=body.amazon,
            tenants=body.tenants,
            categories=body.data_categories,
            records=body.records_affected,
            roles=body.roles,
            note=body.note,
            description=body.description,
            root_cause=body.root_cause,
            remediation=body.remediation,
            corrective_controls=body.corrective_controls,
        )
        return _case(d.incidents.get(conn, incident_id, principal=who), d.incidents.now())


@router.post("/incidents/{incident_id}/tasks/{task_id}", tags=["incidents"])
def change_task(incident_id: IncidentIdPath, task_id: ItemIdPath, body: TaskBody, work: Authenticated) -> CaseOut:
    """Mark a task of the incident's procedure done, skipped or open. Needs `incidents:manage`."""
    with work as (d, conn, who):
        d.incidents.task(conn, incident_id, task_id, body.state, principal=who, note=body.note)
        return _case(d.incidents.get(conn, incident_id, principal=who), d.incidents.now())


@router.post("/incidents/{incident_id}/evidence", tags=["incidents"])
def add_evidence(incident_id: IncidentIdPath, body: EvidenceBody, work: Authenticated) -> CaseOut:
    """Record an evidence item by its SHA-256; with `content_base64` the hash is checked here.
    Needs `incidents:manage`."""
    computed = None
    if body.content_base64 is not None:
        try:
            computed = hashlib.sha256(base64.b64decode(body.content_base64, validate=True)).hexdigest()
        except (binascii.Error, ValueError):
            raise PayloadError("content_base64 is not base64; encode the item's bytes") from None
    with work as (d, conn, who):
        d.incidents.evidence.add(
            conn,
            incident_id,
            principal=who,
            label=body.label,
            sha256=body.sha256,
            location=body.location,
            collected_by=body.collected_by,
            collected_at=_time("collected_at", body.collected_at),
            size=body.size,
            computed=computed,
        )
        return _case(d.incidents.get(conn, incident_id, principal=who), d.incidents.now())


@router.post("/incidents/{incident_id}/evidence/{evidence_id}/handover", tags=["incidents"])
def hand_over(incident_id: IncidentIdPath, evidence_id: ItemIdPath, body: HandoverBody, work: Authenticated) -> CaseOut:
    """Record a change of hands in an item's chain of custody. Needs `incidents:manage`."""
    with work as (d, conn, who):
        d.incidents.evidence.handover(
            conn,
            incident_id,
            evidence_id,
            principal=who,
            from_party=body.from_party,
            to_party=body.to_party,
            purpose=body.purpose,
            at=_time("at", body.at),
        )
        return _case(d.incidents.get(conn, incident_id, principal=who), d.incidents.now())


@router.post("/incidents/{incident_id}/actions", tags=["incidents"])
def contain(incident_id: IncidentIdPath, body: ActionBody, work: Authenticated) -> CaseOut:
    """Take a containment action for the incident with your own permissions. Needs
    `incidents:manage` and the action's own scope."""
    with work as (d, conn, who):
        d.incidents.contain(conn, incident_id, body.action, body.target, principal=who, tenant_id=body.tenant)
        return _case(d.incidents.get(conn, incident_id, principal=who), d.incidents.now())


@router.post("/incidents/{incident_id}/notification-draft", tags=["incidents"])
def notification_draft(incident_id: IncidentIdPath, work: Authenticated) -> DraftOut:
    """The notification to Amazon (security@amazon.com, from the IMPOC): facts known so far, no
    personal data. Needs `incidents:manage`."""
    with work as (d, conn, who):
        draft = d.incidents.amazon.draft(conn, incident_id, principal=who)
        return DraftOut(to="security@amazon.com", text=draft.text, sha256=draft.sha256)


@router.post("/incidents/{incident_id}/notified", tags=["incidents"])
def notified(incident_id: IncidentIdPath, body: NotifiedBody, work: Authenticated) -> CaseOut:
    """Record that the notification was sent: the clock stops. Needs `incidents:manage`."""
    with work as (d, conn, who):
        at = parse_time("at", body.at)
        d.incidents.amazon.notified(conn, incident_id, at=at, reference=body.reference, principal=who)
        return _case(d.incidents.get(conn, incident_id, principal=who), d.incidents.now())


def _report(documents: tuple[Document, Document]) -> ReportOut:
    as_json, as_markdown = documents
    return ReportOut(
        report=json.loads(as_json.text),
        markdown=as_markdown.text,
        sha256_json=as_json.sha256,
        sha256_markdown=as_markdown.sha256,
    )


@router.post("/incidents/{incident_id}/close", tags=["incidents"])
def close_incident(incident_id: IncidentIdPath, body: CloseBody, work: Authenticated) -> ReportOut:
    """Close an incident in post-incident with its documentation; answers the report. Needs
    `incidents:manage`."""
    with work as (d, conn, who):
        return _report(d.incidents.close(conn, incident_id, principal=who, **body.model_dump()))


@router.get("/incidents/{incident_id}/report", tags=["incidents"])
def incident_report(incident_id: IncidentIdPath, work: AuthenticatedRead) -> ReportOut:
    """A closed incident's report, as written when it closed. Needs `incidents:read`."""
    with work as (d, conn, who):
        return _report(d.incidents.report(conn, incident_id, principal=who))


@router.get("/irp", tags=["incidents"])
def incident_response_plan(work: AuthenticatedRead) -> PlanOut:
    """The incident response plan in force, its review status and IMPOC. Needs `incidents:read`."""
    with work as (d, conn, who):
        plan = d.incidents.plans.version(conn, None, principal=who)
        status = d.incidents.plans.status(conn, d.infrastructure(conn))
        return PlanOut(
            **plan.summary(), review_due=status.due, review_reasons=[r for _, r in status.reasons], plan=plan.plan.data
        )
