"""Incidents: opened by hand or from an alarm, worked through their phases, documented, closed.

Every change is a security event (`incident:*:*`) and a timeline entry, in the caller's unit of
work. Evidence and its chain of custody are in `EvidenceLog`, the Amazon clock and the
notification in `AmazonNotice`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import EventName
from sagevault.errors import PayloadError, RecordNotFound, shown
from sagevault.identity import Principal, Scope
from sagevault.monitor import Alarm

from ._amazon import AmazonNotice
from ._core import (
    RANK,
    SKEW,
    IncidentCore,
    aware,
    categories_of,
    free_text,
    involvement_of,
    severity_of,
    state_of,
    tenants_of,
)
from ._evidence import EvidenceLog
from ._model import (
    ACTIONS,
    CLOSING_FIELDS,
    MOVES,
    Action,
    Case,
    Document,
    Incident,
    State,
    Task,
)
from ._plan import INCIDENTS, Involvement, Plan
from ._report import report_data, report_json, report_markdown
from ._schema import (
    incident_actions,
    incident_alarms,
    incident_reports,
    incident_tasks,
    incidents,
)

LEGAL_REQUEST = "legal-request"


def _always_clocked(type_id: str, involved: Involvement) -> None:
    """A legal or government request for Amazon Information involves Amazon Information: its
    24-hour clock cannot be switched off."""
    if type_id == LEGAL_REQUEST and involved is Involvement.NO:
        raise PayloadError(
            "a legal or government request for Amazon Information always involves it: Amazon is notified within "
            "24 hours (amazon must be yes or possible)"
        )


def _may_stop_clock(incident: Incident, note: str | None) -> None:
    """Amazon Information was thought involved and now is not: only with a note why, and only
    while the clock has neither warned nor led to a draft or a notification."""
    if incident.clock_stage > 0 or incident.draft_sha256 is not None or incident.notified_at is not None:
        raise PayloadError(
            f"incident {incident.id}'s clock to notify Amazon has run (warned, drafted or notified); it cannot be "
            "set to amazon = no now: record the notification (`sagevault incidents notified`)"
        )
    if not (note or "").strip():
        raise PayloadError("say why Amazon Information is not involved after all (--note)")


class Incidents:
    """The incidents of one deployment: opened, read, worked and closed here; their evidence in
    `evidence`, the notification to Amazon and its clock in `amazon`; the plan in `plans`."""

    def __init__(self, core: IncidentCore) -> None:
        self.core = core
        self.plans = core.plans
        self.evidence = EvidenceLog(core)
        self.amazon = AmazonNotice(core)

    def now(self) -> datetime:
        return self.core.now()

    # --- opening ------------------------------------------------------------------------------

    def open(
        self,
        conn: Connection,
        *,
        type: str,
        principal: Principal,
        title: str | None = None,
        severity: str | None = None,
        detected_at: datetime | None = None,
        amazon: str | None = None,
        tenants: Sequence[str] = (),
        categories: Sequence[str] = (),
        records: int | None = None,
        description: str | None = None,
    ) -> Incident:
        """Open an incident of a plan type: its procedure becomes its tasks, and the Amazon clock
        starts at `detected_at` (default now) when Amazon Information is or may be involved."""
        self.core.check(conn, principal, Scope.INCIDENTS_MANAGE, "incidents open")
        return self._open(
            conn,
            principal,
            type,
            title=title,
            severity=severity,
            detected_at=aware("detected_at", detected_at) if detected_at is not None else None,
            amazon=amazon,
            tenants=tenants,
            categories=categories,
            records=records,
            description=description,
        )

    def _open(
        self,
        conn: Connection,
        principal: Principal,
        type_id: str,
        *,
        title: str | None,
        severity: str | None,
        detected_at: datetime | None,
        amazon: str | None,
        tenants: Sequence[str],
        categories: Sequence[str],
        records: int | None,
        description: str | None,
        alarm_title: str | None = None,
    ) -> Incident:
        plan = self.core.plans.in_force(conn)
        kind = plan.plan.type(type_id)
        now = self.core.clock()
        detected = detected_at or now
        if detected > now + SKEW:
            raise PayloadError("detected_at is in the future; give the time the incident was detected")
        involved = involvement_of(amazon) if amazon is not None else kind.amazon
        _always_clocked(kind.id, involved)
        if records is not None and records < 0:
            raise PayloadError("records affected must be a whole number >= 0")
        values = {
            "type": kind.id,
            "severity": severity_of(severity) if severity else kind.severity.value,
            "state": State.NEW.value,
            "title": alarm_title or free_text("the title", title or kind.title, limit=200, required=True),
            "amazon": involved.value,
            "detected_at": detected,
            "opened_at": now,
            "opened_by": principal.id,
            "plan_version": plan.version,
            "tenants": json.dumps(tenants_of(tenants)),
            "categories": json.dumps(categories_of(categories)),
            "records_affected": records,
            "roles": json.dumps({}),
            "description": free_text("the description", description),
            "notify_due": detected + self.core.window if involved is not Involvement.NO else None,
            "clock_stage": 0,
            "updated_at": now,
        }
        incident_id = int(conn.execute(insert(incidents).values(**values)).inserted_primary_key[0])  # type: ignore[index]
        tasks = self.core.add_tasks(conn, incident_id, kind.procedure)
        self.core.log(conn, incident_id, principal, "opened", type=kind.id, plan_version=plan.version, tasks=tasks)
        named = tenants_of(tenants)
        self.core.event(
            EventName.INCIDENT_CASE_OPEN,
            principal,
            incident_id,
            operation=kind.id,
            tenant=named[0] if len(named) == 1 else None,
            tasks=tasks,
        )
        return self.core.row(conn, incident_id)

    def open_from_alarm(self, conn: Connection, alarm: Alarm, type_id: str) -> str:
        """`sagevault.monitor.IncidentOpener`: the alarm opens an incident of `type_id` (detected
        at the alarm's first event), or joins the live incident another alarm of the same rule,
        principal and tenant opened. The alarm's responses are its first containment actions."""
        live = conn.execute(
            select(incident_alarms.c.incident_id)
            .join(incidents, incidents.c.id == incident_alarms.c.incident_id)
            .where(
                incident_alarms.c.rule == alarm.rule,
                incident_alarms.c.principal.is_(None)
                if alarm.principal is None
                else incident_alarms.c.principal == alarm.principal,
                incident_alarms.c.tenant.is_(None)
                if alarm.tenant is None
                else incident_alarms.c.tenant == alarm.tenant,
                incidents.c.state != State.CLOSED.value,
            )
            .order_by(incident_alarms.c.incident_id.desc())
            .limit(1)
        ).scalar()
        now = self.core.clock()
        if live is not None:
            incident_id = int(live)
            done = f"joined incident {incident_id}"
            self.core.event(
                EventName.INCIDENT_CASE_UPDATE, INCIDENTS, incident_id, operation="alarm joined", alarm=alarm.id
            )
        else:
            types = self.core.plans.in_force(conn).plan.types
            chosen = type_id if type_id in types else "unauthorized-access"
            incident = self._open(
                conn,
                INCIDENTS,
                chosen,
                title=None,
                alarm_title=f"Alarm {alarm.id}: {alarm.title}"[:200],
                severity=alarm.severity if RANK[alarm.severity] > RANK[types[chosen].severity.value] else None,
                detected_at=min(alarm.first_at, now),
                amazon=None,
                tenants=[alarm.tenant] if alarm.tenant else [],
                categories=(),
                records=None,
                description=None,
            )
            incident_id = incident.id
            if chosen != type_id:
                self.core.log(
                    conn, incident_id, INCIDENTS, "note", text=f"the plan has no type {type_id}; opened as {chosen}"
                )
            done = f"incident {incident_id} opened"
        conn.execute(
            insert(incident_alarms).values(
                incident_id=incident_id,
                alarm_id=alarm.id,
                rule=alarm.rule,
                principal=alarm.principal,
                tenant=alarm.tenant,
                linked_at=now,
            )
        )
        self.core.log(conn, incident_id, INCIDENTS, "alarm", alarm=alarm.id, rule=alarm.rule, events=alarm.count)
        for response in alarm.responses:
            action, _, result = response.partition(": ")
            conn.execute(
                insert(incident_actions).values(
                    incident_id=incident_id,
                    at=alarm.first_at,
                    actor="job:monitor",
                    action=action[:32],
                    target=alarm.principal if action != "kill-switch" else "pii-access",
                    tenant=alarm.tenant,
                    result=f"taken by the rule of alarm {alarm.id}: {result}"[:500],
                )
            )
        return done

    # --- reading ------------------------------------------------------------------------------

    def list(
        self,
        conn: Connection,
        *,
        principal: Principal,
        state: str | None = None,
        open_only: bool = False,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[Incident]:
        """Incidents newest first (ids below `after_id` when it is given)."""
        self.core.check(conn, principal, Scope.INCIDENTS_READ, "incidents list")
        query = select(incidents).order_by(incidents.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(incidents.c.state == state_of(state).value)
        if open_only:
            query = query.where(incidents.c.state != State.CLOSED.value)
        if after_id:
            query = query.where(incidents.c.id < after_id)
        return [Incident.of(r) for r in conn.execute(query)]

    def get(self, conn: Connection, incident_id: int, *, principal: Principal) -> Case:
        self.core.check(conn, principal, Scope.INCIDENTS_READ, "incidents show")
        return self.core.case(conn, incident_id)

    # --- working an incident ------------------------------------------------------------------

    def update(
        self,
        conn: Connection,
        incident_id: int,
        *,
        principal: Principal,
        state: str | None = None,
        type: str | None = None,
        title: str | None = None,
        severity: str | None = None,
        amazon: str | None = None,
        tenants: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        records: int | None = None,
        roles: Mapping[str, str] | None = None,
        note: str | None = None,
        **documentation: str | None,
    ) -> Incident:
        """Change the facts of an open incident and/or move it to another phase. Every change is
        on the timeline and in one incident:case:update (and :transition) event."""
        self.core.check(conn, principal, Scope.INCIDENTS_MANAGE, "incidents update")
        incident = self.core.open_row(conn, incident_id)
        unknown = sorted(set(documentation) - set(CLOSING_FIELDS))
        if unknown:
            raise PayloadError(f"{unknown[0]} is not a fact of an incident")
        plan = self.core.plans.in_force(conn).plan
        values = self._changes(
            incident, plan, type, title, severity, amazon, tenants, categories, records, roles, documentation, note
        )
        written_note = free_text("the note", note, limit=2000)
        target = state_of(state) if state is not None else None
        if target is not None and target.value != incident.state:
            self._move(incident, target)
        if not values and written_note is None and (target is None or target.value == incident.state):
            raise PayloadError("nothing to change: give a new state, fact, role, documentation or a note")
        if values:
            self.core.set(conn, incident_id, **values)
            changed = sorted(values)
            self.core.log(conn, incident_id, principal, "update", changed=changed)
            if "type" in values:
                added = self.core.add_tasks(conn, incident_id, plan.type(values["type"]).procedure)
                self.core.log(conn, incident_id, principal, "tasks", type=values["type"], added=added)
            self.core.event(EventName.INCIDENT_CASE_UPDATE, principal, incident_id, operation=" ".join(changed)[:64])
        if written_note is not None:
            self.core.log(conn, incident_id, principal, "note", text=written_note)
            if not values:
                self.core.event(EventName.INCIDENT_CASE_UPDATE, principal, incident_id, operation="note")
        if target is not None and target.value != incident.state:
            self.core.set(conn, incident_id, state=target.value)
            self.core.log(conn, incident_id, principal, "state", was=incident.state, now=target.value)
            self.core.event(EventName.INCIDENT_CASE_TRANSITION, principal, incident_id, operation=target.value)
        return self.core.row(conn, incident_id)

    def _changes(  # noqa: PLR0912 (one branch per fact)
        self,
        incident: Incident,
        plan: Plan,
        type_id: str | None,
        title: str | None,
        severity: str | None,
        amazon: str | None,
        tenants: Sequence[str] | None,
        categories: Sequence[str] | None,
        records: int | None,
        roles: Mapping[str, str] | None,
        documentation: Mapping[str, str | None],
        note: str | None,
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if type_id is not None and type_id != incident.type:
            values["type"] = plan.type(type_id).id
        if title is not None:
            values["title"] = free_text("the title", title, limit=200, required=True)
        if severity is not None:
            values["severity"] = severity_of(severity)
        involved = involvement_of(amazon) if amazon is not None else Involvement(incident.amazon)
        _always_clocked(values.get("type", incident.type), involved)
        if involved is Involvement.NO and incident.amazon != Involvement.NO.value:
            _may_stop_clock(incident, note)
        if amazon is not None:
            values["amazon"] = involved.value
            if incident.notified_at is None:
                values["notify_due"] = (
                    incident.detected_at + self.core.window if involved is not Involvement.NO else None
                )
        if tenants is not None:
            values["tenants"] = json.dumps(tenants_of(tenants))
        if categories is not None:
            values["categories"] = json.dumps(categories_of(categories))
        if records is not None:
            if records < 0:
                raise PayloadError("records affected must be a whole number >= 0")
            values["records_affected"] = records
        if roles:
            unknown_roles = sorted(set(roles) - set(plan.roles))
            if unknown_roles:
                raise PayloadError(f"role {shown(unknown_roles[0])} is not in the plan; roles: {', '.join(plan.roles)}")
            merged = {**incident.roles}
            for role, who in roles.items():
                name = free_text(f"the {role} assignee", who, limit=120)
                if name is None:
                    merged.pop(role, None)
                else:
                    merged[role] = name
            values["roles"] = json.dumps(merged, sort_keys=True)
        for key, text in documentation.items():
            if text is not None:
                values[key] = free_text(key.replace("_", " "), text)
        return values

    @staticmethod
    def _move(incident: Incident, target: State) -> None:
        if target is State.CLOSED:
            raise PayloadError(
                f"incident {incident.id} is closed with `sagevault incidents close` (from post-incident), which checks "
                "its documentation"
            )
        allowed = MOVES[State(incident.state)]
        if target not in allowed:
            raise PayloadError(
                f"incident {incident.id} is in {incident.state}; from there it can move to "
                f"{' or '.join(s.value for s in allowed)}, not {target.value}"
            )

    def task(
        self, conn: Connection, incident_id: int, task_id: int, state: str, *, principal: Principal, note: str = ""
    ) -> Task:
        """Mark a task of the incident's procedure done or skipped (a skip needs a note why), or open again."""
        self.core.check(conn, principal, Scope.INCIDENTS_MANAGE, "incidents task")
        self.core.open_row(conn, incident_id)
        if state not in ("done", "skipped", "open"):
            raise PayloadError(f"a task can be made done, skipped or open; not {shown(state)}")
        why = free_text("the note", note, limit=500)
        if state == "skipped" and why is None:
            raise PayloadError("say why the task is skipped (--note)")
        row = conn.execute(
            select(incident_tasks).where(incident_tasks.c.id == task_id, incident_tasks.c.incident_id == incident_id)
        ).first()
        if row is None:
            raise RecordNotFound(
                f"incident {incident_id} has no task {task_id}; `sagevault incidents show {incident_id}`"
            )
        now = self.core.clock()
        conn.execute(
            update(incident_tasks)
            .where(incident_tasks.c.id == task_id)
            .values(state=state, changed_by=principal.id, changed_at=now, note=why)
        )
        self.core.set(conn, incident_id)
        self.core.log(conn, incident_id, principal, "task", task=task_id, state=state)
        self.core.event(EventName.INCIDENT_TASK_UPDATE, principal, incident_id, operation=f"task {state}", task=task_id)
        return Task(task_id, int(row.position), row.text, state, principal.id, now, why)

    # --- containment --------------------------------------------------------------------------

    def contain(
        self,
        conn: Connection,
        incident_id: int,
        action: str,
        target: str,
        *,
        principal: Principal,
        tenant_id: str | None = None,
    ) -> Action:
        """Take a containment action from the incident: engage a kill switch, disable an account,
        end its sessions or revoke an API key. Access control checks the principal's own scope
        for it and records it as its own event naming the incident; the incident records it too."""
        self.core.check(conn, principal, Scope.INCIDENTS_MANAGE, "incidents contain")
        self.core.open_row(conn, incident_id)
        if action not in ACTIONS:
            raise PayloadError(f"a containment action is one of {', '.join(ACTIONS)}; not {shown(action)}")
        if self.core.containment is None:
            raise PayloadError("this deployment has no containment actions wired")
        result = self.core.containment.take(
            conn, action, target, tenant_id=tenant_id, actor=principal, incident=incident_id
        )
        now = self.core.clock()
        conn.execute(
            insert(incident_actions).values(
                incident_id=incident_id,
                at=now,
                actor=principal.id,
                action=action,
                target=target[:128],
                tenant=tenant_id,
                result=result[:500],
            )
        )
        self.core.set(conn, incident_id)
        self.core.log(conn, incident_id, principal, "action", action=action, result=result[:200])
        self.core.event(EventName.INCIDENT_ACTION_TAKE, principal, incident_id, operation=action, tenant=tenant_id)
        return Action(now, principal.id, action, target, tenant_id, result)

    # --- closing ------------------------------------------------------------------------------

    def close(
        self, conn: Connection, incident_id: int, *, principal: Principal, **documentation: str | None
    ) -> tuple[Document, Document]:
        """Close an incident in post-incident: it needs its description, root cause, remediation
        actions and corrective controls (given here or before), and Amazon notified when Amazon
        Information is or may be involved. Returns the report (JSON, Markdown), whose SHA-256s
        are recorded in the security log."""
        self.core.check(conn, principal, Scope.INCIDENTS_MANAGE, "incidents close")
        incident = self.core.open_row(conn, incident_id)
        if incident.state != State.POST_INCIDENT:
            raise PayloadError(
                f"incident {incident_id} is in {incident.state}; it closes from post-incident (move it through "
                "containment, eradication and recovery first)"
            )
        unknown = sorted(set(documentation) - set(CLOSING_FIELDS))
        if unknown:
            raise PayloadError(f"{unknown[0]} is not part of an incident's documentation")
        given = {k: free_text(k.replace("_", " "), v) for k, v in documentation.items() if v is not None}
        missing = [k for k in CLOSING_FIELDS if not (given.get(k) or getattr(incident, k))]
        if missing:
            raise PayloadError(
                f"incident {incident_id} cannot close without {', '.join(m.replace('_', ' ') for m in missing)}; "
                "give them (--description, --root-cause, --remediation, --corrective-controls)"
            )
        if (incident.notify_due is not None or incident.clock_stage > 0) and incident.notified_at is None:
            raise PayloadError(
                f"Amazon has not been notified of incident {incident_id}; send the notification "
                f"(`sagevault incidents notify-draft {incident_id}`) and record it (`incidents notified`) first"
            )
        now = self.core.clock()
        self.core.set(
            conn,
            incident_id,
            **{k: v for k, v in given.items() if v},
            state=State.CLOSED.value,
            closed_at=now,
            closed_by=principal.id,
        )
        self.core.log(conn, incident_id, principal, "closed", documented=sorted(given))
        data = report_data(self.core.case(conn, incident_id), self.core.plans.in_force(conn).plan, now)
        documents = (report_json(data), report_markdown(data))
        for document in documents:
            conn.execute(
                insert(incident_reports).values(
                    incident_id=incident_id,
                    format=document.format,
                    body=document.text,
                    sha256=document.sha256,
                    written_at=now,
                )
            )
        self.core.event(EventName.INCIDENT_CASE_CLOSE, principal, incident_id, operation=incident.type)
        for document in documents:
            self.core.event(
                EventName.INCIDENT_REPORT_WRITE,
                principal,
                incident_id,
                operation=f"report {document.format}",
                fingerprint=document.sha256,
            )
        return documents

    def report(self, conn: Connection, incident_id: int, *, principal: Principal) -> tuple[Document, Document]:
        """A closed incident's report as written when it closed (JSON, Markdown)."""
        self.core.check(conn, principal, Scope.INCIDENTS_READ, "incidents report")
        rows = {
            r.format: Document(r.body, r.sha256, r.format)
            for r in conn.execute(select(incident_reports).where(incident_reports.c.incident_id == incident_id))
        }
        if not rows:
            self.core.row(conn, incident_id)
            raise RecordNotFound(f"incident {incident_id} is not closed, so it has no report yet")
        return rows["json"], rows["markdown"]
