"""The console's incident pages: the list with the 24-hour Amazon clock and the form to open one, and an
incident worked from open to closed (timeline and notes, the plan's tasks, evidence and its custody,
containment, the notification to Amazon and recording it sent, phase moves, documentation and close).

Each action is the domain call the matching `/api/v1/incidents` route makes, with the same principal:
the domain checks `incidents:manage` (and a containment action's own scope), records the
`incident:*:*` event and refuses what the plan does not allow; the page only hides the forms a person's
scopes do not allow and shows the refusal."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import RedirectResponse, Response

from sagevault.identity import Scope
from sagevault.incidents import ACTIONS, CLOSING_FIELDS, MOVES, NIST_PHASE, Case, Document, Entry, State, parse_time

from ._pages import held, page, run, run_form
from ._render import PREFIX, error_page, render
from ._session import ConsoleWork

router = APIRouter(prefix=PREFIX, include_in_schema=False)

IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1)]
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]
SEVERITIES = ("low", "medium", "high", "critical")
INVOLVED = ("yes", "possible", "no")
TASK_STATES = ("done", "skipped", "open")
CLOSED_SHOWN = 20
_SPLIT = re.compile(r"[\s,]+")


def _back(incident_id: int, where: str = "") -> Response:
    return RedirectResponse(f"{PREFIX}/incidents/{incident_id}{where}", status_code=303)


def _bad(message: str) -> Response:
    return error_page(400, message, signed_in=True)


def _text(form: dict[str, str], name: str) -> str | None:
    """A form field as the API body would carry it: absent or blank is None."""
    value = form.get(name, "")
    return value if value.strip() else None


# --- the list --------------------------------------------------------------------------------------------


def _list_page(work: ConsoleWork) -> Response:
    d, conn, who = work.d, work.conn, work.who
    now = d.incidents.now()
    # The calls of GET /api/v1/incidents?open=true and ?state=closed (incidents:read).
    live = d.incidents.list(conn, principal=who, open_only=True, limit=500)
    closed = d.incidents.list(conn, principal=who, state=State.CLOSED.value, limit=CLOSED_SHOWN)
    scopes, _ = held(work)
    types = d.incidents.plans.in_force(conn).plan.types
    context = page(
        work,
        title="Incidents",
        now=now,
        live=[(i, i.clock(now)) for i in live],
        closed=closed,
        types=list(types.values()),
        severities=SEVERITIES,
        involved=INVOLVED,
        manage=Scope.INCIDENTS_MANAGE in scopes,
    )
    return render("incidents.html", **context)


@router.get("/incidents")
async def incidents(request: Request) -> Response:
    return await run(request, _list_page, read_only=True)


@router.post("/incidents")
async def open_incident(request: Request) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        kind, severity, amazon = form.get("type", ""), form.get("severity", ""), form.get("amazon", "")
        if not (0 < len(kind) <= 64):
            return _bad("Choose the incident type (the plan's types are in the list).")
        if severity and severity not in SEVERITIES:
            return _bad("Severity is low, medium, high or critical (or empty for the type's own).")
        if amazon and amazon not in INVOLVED:
            return _bad("Whether Amazon Information is involved is yes, possible or no (or empty for the type's).")
        tenants = [t for t in _SPLIT.split(form.get("tenants", "")) if t]
        if len(tenants) > 1000:
            return _bad("Name at most 1000 tenants.")
        detected = _text(form, "detected_at")
        # The call of POST /api/v1/incidents (incidents:manage; incident:case:open).
        incident = work.d.incidents.open(
            work.conn,
            type=kind,
            principal=work.who,
            title=_text(form, "title"),
            severity=severity or None,
            detected_at=parse_time("detected at", detected) if detected is not None else None,
            amazon=amazon or None,
            tenants=tenants,
            description=_text(form, "description"),
        )
        return _back(incident.id)

    return await run_form(request, action)


# --- one incident ----------------------------------------------------------------------------------------


def _short(digest: object) -> str:
    return f"{str(digest)[:12]}…"


_SAID: dict[str, Callable[[dict[str, Any]], str]] = {
    "note": lambda d: str(d.get("text", "")),
    "opened": lambda d: (
        f"Opened as {d.get('type')} under plan version {d.get('plan_version')}, with {d.get('tasks')} tasks."
    ),
    "state": lambda d: f"Moved from {d.get('was')} to {d.get('now')}.",
    "evidence": lambda d: f"Evidence item {d.get('evidence')} recorded (SHA-256 {_short(d.get('sha256'))}).",
    "custody": lambda d: f"Evidence item {d.get('evidence')} handed to {d.get('handed_to')}.",
    "notification-draft": lambda d: f"Notification to Amazon drafted (SHA-256 {_short(d.get('sha256'))}).",
    "notified": lambda d: (
        f"Amazon notified at {d.get('at')}" + (", after the deadline." if d.get("late") else ", in time.")
    ),
    "update": lambda d: "Changed: " + ", ".join(str(c).replace("_", " ") for c in d.get("changed", [])) + ".",
    "action": lambda d: f"Containment: {d.get('action')}: {d.get('result')}",
    "closed": lambda d: "Closed; the report was written.",
    "alarm": lambda d: f"Alarm {d.get('alarm')} ({d.get('rule')}, {d.get('events')} events) linked.",
    "clock": lambda d: f"The Amazon clock reached {d.get('stage')} (due {d.get('due')}).",
}


def _said(entry: Entry, positions: dict[int, int]) -> str:
    """A timeline entry as a sentence (its detail holds no personal data: the domain refuses it in free text)."""
    d = entry.detail
    if entry.kind == "task":
        step = positions.get(int(d.get("task", 0)), d.get("task"))
        return f"Task {step} marked {d.get('state')}."
    said = _SAID.get(entry.kind)
    if said is not None:
        return said(d)
    return "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in d.items())


def _case_page(work: ConsoleWork, incident_id: int, *, draft: Document | None = None) -> Response:
    d, conn, who = work.d, work.conn, work.who
    case: Case = d.incidents.get(conn, incident_id, principal=who)  # as GET /api/v1/incidents/{id}
    now = d.incidents.now()
    incident = case.incident
    scopes, _ = held(work)
    closed = incident.state == State.CLOSED.value
    positions = {t.id: t.position for t in case.tasks}
    missing = [f.replace("_", " ") for f in CLOSING_FIELDS if not getattr(incident, f)]
    needs_notice = (incident.notify_due is not None or incident.clock_stage > 0) and incident.notified_at is None
    context = page(
        work,
        title=f"Incident {incident.id}",
        case=case,
        incident=incident,
        clock=incident.clock(now),
        phase=NIST_PHASE[State(incident.state)],
        now_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        timeline=[(e, _said(e, positions)) for e in case.timeline],
        tasks_open=sum(1 for t in case.tasks if t.state == "open"),
        moves=[s.value for s in MOVES[State(incident.state)]],
        actions=ACTIONS,
        missing=missing,
        needs_notice=needs_notice,
        documentation=[(f, f.replace("_", " ").capitalize(), getattr(incident, f) or "") for f in CLOSING_FIELDS],
        draft=draft,
        manage=Scope.INCIDENTS_MANAGE in scopes and not closed,
        closed=closed,
    )
    return render("incident.html", **context)


@router.get("/incidents/{incident_id}")
async def incident(request: Request, incident_id: IncidentId) -> Response:
    return await run(request, lambda work: _case_page(work, incident_id), read_only=True)


@router.post("/incidents/{incident_id}/note")
async def add_note(request: Request, incident_id: IncidentId) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        note = _text(form, "note")
        if note is None:
            return _bad("Write the note first; an empty note is not added.")
        # PATCH /api/v1/incidents/{id} with a note (incident:case:update).
        work.d.incidents.update(work.conn, incident_id, principal=work.who, note=note)
        return _back(incident_id, "#timeline")

    return await run_form(request, action)


@router.post("/incidents/{incident_id}/state")
async def move(request: Request, incident_id: IncidentId) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        target = form.get("state", "")
        if target not in {s.value for s in State}:
            return _bad("Choose the phase to move the incident to.")
        # PATCH /api/v1/incidents/{id} with a state (incident:case:transition); the domain checks the move.
        work.d.incidents.update(work.conn, incident_id, principal=work.who, state=target, note=_text(form, "note"))
        return _back(incident_id)

    return await run_form(request, action)


@router.post("/incidents/{incident_id}/tasks/{task_id}")
async def change_task(request: Request, incident_id: IncidentId, task_id: ItemId) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        state = form.get("state", "")
        if state not in TASK_STATES:
            return _bad("A task can be marked done, skipped (with a note why) or open again.")
        # POST /api/v1/incidents/{id}/tasks/{task} (incident:task:update).
        work.d.incidents.task(work.conn, incident_id, task_id, state, principal=work.who, note=form.get("note", ""))
        return _back(incident_id, "#tasks")

    return await run_form(request, action)


def _size(value: str | None) -> int | None:
    if value is None:
        return None
    if not (value.strip().isascii() and value.strip().isdigit()) or len(value.strip()) > 18:
        raise ValueError
    return int(value.strip())


@router.post("/incidents/{incident_id}/evidence")
async def add_evidence(request: Request, incident_id: IncidentId) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        try:
            size = _size(_text(form, "size"))
        except ValueError:
            return _bad("The size is a whole number of bytes; leave it empty if you do not know it.")
        collected = _text(form, "collected_at")
        # POST /api/v1/incidents/{id}/evidence, without the item itself (incident:evidence:add).
        work.d.incidents.evidence.add(
            work.conn,
            incident_id,
            principal=work.who,
            label=form.get("label", ""),
            sha256=form.get("sha256", ""),
            location=form.get("location", ""),
            collected_by=form.get("collected_by", ""),
            collected_at=parse_time("collected at", collected) if collected is not None else None,
            size=size,
        )
        return _back(incident_id, "#evidence")

    return await run_form(request, action)


@router.post("/incidents/{incident_id}/evidence/{evidence_id}/handover")
async def hand_over(request: Request, incident_id: IncidentId, evidence_id: ItemId) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        at = _text(form, "at")
        # POST /api/v1/incidents/{id}/evidence/{e}/handover (incident:evidence:handover).
        work.d.incidents.evidence.handover(
            work.conn,
            incident_id,
            evidence_id,
            principal=work.who,
            from_party=form.get("from", ""),
            to_party=form.get("to", ""),
            purpose=form.get("purpose", ""),
            at=parse_time("handed over at", at) if at is not None else None,
        )
        return _back(incident_id, "#evidence")

    return await run_form(request, action)


@router.post("/incidents/{incident_id}/actions")
async def contain(request: Request, incident_id: IncidentId) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        kind, target, tenant = form.get("action", ""), form.get("target", "").strip(), _text(form, "tenant")
        if kind not in ACTIONS or not (0 < len(target) <= 128) or (tenant is not None and len(tenant) > 64):
            return _bad("Choose a containment action and its target (a switch name, a login or an API key id).")
        # POST /api/v1/incidents/{id}/actions: incidents:manage and the action's own scope (incident:action:take).
        work.d.incidents.contain(
            work.conn, incident_id, kind, target, principal=work.who, tenant_id=tenant.strip() if tenant else None
        )
        return _back(incident_id, "#actions")

    return await run_form(request, action)


@router.post("/incidents/{incident_id}/notification-draft")
async def notification_draft(request: Request, incident_id: IncidentId) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        # POST /api/v1/incidents/{id}/notification-draft (incident:notification:draft, its SHA-256 kept). The
        # draft is not stored, so it is shown in this answer (no-store), like the API's.
        draft = work.d.incidents.amazon.draft(work.conn, incident_id, principal=work.who)
        return _case_page(work, incident_id, draft=draft)

    return await run_form(request, action)


@router.post("/incidents/{incident_id}/notified")
async def notified(request: Request, incident_id: IncidentId) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        at, reference = _text(form, "at"), form.get("reference", "")
        if at is None:
            return _bad("Give the time the notification was sent, e.g. 2026-12-06T09:30:00Z.")
        # POST /api/v1/incidents/{id}/notified: the clock stops (incident:notification:record).
        sent = parse_time("the notification time", at)
        work.d.incidents.amazon.notified(work.conn, incident_id, at=sent, reference=reference, principal=work.who)
        return _back(incident_id, "#amazon")

    return await run_form(request, action)


def _documentation(form: dict[str, str]) -> dict[str, str | None]:
    return {f: _text(form, f) for f in CLOSING_FIELDS}


@router.post("/incidents/{incident_id}/documentation")
async def document(request: Request, incident_id: IncidentId) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        current = work.d.incidents.get(work.conn, incident_id, principal=work.who).incident
        given = {
            k: v for k, v in _documentation(form).items() if v is not None and v.strip() != (getattr(current, k) or "")
        }
        if not given:
            return _bad("Nothing changed in the documentation; edit a text before saving.")
        # PATCH /api/v1/incidents/{id} with the documentation (incident:case:update).
        work.d.incidents.update(
            work.conn,
            incident_id,
            principal=work.who,
            description=given.get("description"),
            root_cause=given.get("root_cause"),
            remediation=given.get("remediation"),
            corrective_controls=given.get("corrective_controls"),
        )
        return _back(incident_id, "#close")

    return await run_form(request, action)


@router.post("/incidents/{incident_id}/close")
async def close(request: Request, incident_id: IncidentId) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        # POST /api/v1/incidents/{id}/close: the domain checks the phase, the four texts and the
        # notification (incident:case:close, incident:report:write with each report's SHA-256).
        work.d.incidents.close(work.conn, incident_id, principal=work.who, **_documentation(form))
        return _back(incident_id)

    return await run_form(request, action)


@router.get("/incidents/{incident_id}/report")
async def report(request: Request, incident_id: IncidentId) -> Response:
    def action(work: ConsoleWork) -> Response:
        # GET /api/v1/incidents/{id}/report (incidents:read): the Markdown written when it closed.
        _, markdown = work.d.incidents.report(work.conn, incident_id, principal=work.who)
        headers = {
            "Content-Disposition": f'attachment; filename="incident-{incident_id}-report.md"',
            "X-Report-SHA256": markdown.sha256,
        }
        return Response(markdown.text, media_type="text/markdown; charset=utf-8", headers=headers)

    return await run(request, action, read_only=True)
