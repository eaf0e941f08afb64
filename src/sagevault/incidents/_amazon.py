"""The Amazon clock (DPP 8: inform Amazon within 24 hours of detecting a Security Incident).

It runs from detection whenever Amazon Information is or may be involved. `clocks` (a scheduled
job) records incident:clock:warn at half the window and four hours before its end (12 h and
20 h of 24) and incident:clock:overdue at its end; shipped detection rules raise the alarms on
them. The notification is drafted from structured facts only; recording that it was sent stops
the clock.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, EventName
from sagevault.errors import Conflict, PayloadError
from sagevault.identity import Channel, Principal, Scope

from ._core import SKEW, IncidentCore, aware, reference_text
from ._model import Document, Incident, State, utc
from ._plan import INCIDENTS, Involvement
from ._report import notification
from ._schema import incident_timeline, incidents


class AmazonNotice:
    def __init__(self, core: IncidentCore) -> None:
        self.core = core

    def clocks(self, conn: Connection) -> list[tuple[int, str]]:
        """Move each running clock's stage (first warning, second warning, overdue) and record the
        event of the highest stage newly reached: (incident, event name) for each. Only the
        columns the clock needs are read; the events of one pass are made durable together."""
        now = self.core.clock()
        first, second = self.core.warnings
        window = self.core.window
        moved: list[tuple[int, str]] = []
        events: list[AuditEvent] = []
        entries: list[dict[str, object]] = []
        rows = conn.execute(
            select(incidents.c.id, incidents.c.notify_due, incidents.c.clock_stage).where(
                incidents.c.state != State.CLOSED.value,
                incidents.c.notify_due.is_not(None),
                incidents.c.notified_at.is_(None),
                incidents.c.clock_stage < 3,
            )
        ).all()
        for incident_id, stored_due, current in rows:
            due = utc(stored_due)
            assert due is not None
            elapsed = now - (due - window)
            stage = 3 if now >= due else 2 if elapsed >= second else 1 if elapsed >= first else 0
            if stage <= current:
                continue
            done = conn.execute(
                update(incidents)
                .where(incidents.c.id == incident_id, incidents.c.clock_stage == current)
                .values(clock_stage=stage)
            ).rowcount
            if not done:  # another pass moved it
                continue
            overdue = stage == 3
            hours = int((window if overdue else elapsed).total_seconds() // 3600)
            label = f"{int({1: first, 2: second}.get(stage, window).total_seconds() // 3600)}h"
            detail = json.dumps({"stage": label, "due": due.isoformat()})
            entries.append(
                {"incident_id": incident_id, "at": now, "actor": INCIDENTS.id, "kind": "clock", "detail": detail}
            )
            name = EventName.INCIDENT_CLOCK_OVERDUE if overdue else EventName.INCIDENT_CLOCK_WARN
            events.append(
                AuditEvent(
                    name=name,
                    channel=Channel.SCHEDULER,
                    actor=INCIDENTS.id,
                    operation=f"incident {incident_id} {label}",
                    counts={"incident": int(incident_id), "hours": hours},
                )
            )
            moved.append((int(incident_id), name.value))
        if entries:
            conn.execute(insert(incident_timeline), entries)
            self.core.audit.record_many(events)
        return moved

    def _impoc(self, conn: Connection) -> tuple[str, str]:
        name, email = self.core.plans.in_force(conn).plan.impoc
        if not email:
            raise PayloadError(
                "the plan in force names no IMPOC (Incident Management Point of Contact); name one with "
                "`sagevault irp set-impoc --name NAME --email ADDRESS`"
            )
        return name, email

    def draft(self, conn: Connection, incident_id: int, *, principal: Principal) -> Document:
        """The notification to Amazon (security@amazon.com, from the IMPOC): the facts known so
        far, no personal data. Its SHA-256 goes on the incident and into the security log."""
        self.core.check(conn, principal, Scope.INCIDENTS_MANAGE, "incidents notify-draft")
        incident = self.core.row(conn, incident_id)
        if not incident.amazon_involved and incident.notify_due is None:
            raise PayloadError(
                f"incident {incident_id} does not involve Amazon Information (amazon = no); set amazon to yes or "
                "possible first if it does"
            )
        name, email = self._impoc(conn)
        draft = notification(self.core.case(conn, incident_id), self.core.plans.in_force(conn).plan, self.core.clock())
        if incident.state != State.CLOSED:
            self.core.set(conn, incident_id, draft_sha256=draft.sha256, impoc=f"{name} <{email}>"[:300])
            self.core.log(conn, incident_id, principal, "notification-draft", sha256=draft.sha256)
        self.core.event(EventName.INCIDENT_NOTIFICATION_DRAFT, principal, incident_id, fingerprint=draft.sha256)
        return draft

    def notified(
        self, conn: Connection, incident_id: int, *, at: datetime, reference: str, principal: Principal
    ) -> Incident:
        """Record that the notification was sent to Amazon (when, and Amazon's or our reference):
        the clock stops."""
        self.core.check(conn, principal, Scope.INCIDENTS_MANAGE, "incidents notified")
        incident = self.core.open_row(conn, incident_id)
        name, email = self._impoc(conn)
        sent = aware("at", at)
        if incident.notified_at is not None:
            raise Conflict(
                f"incident {incident_id} was recorded as notified at {incident.notified_at:%Y-%m-%d %H:%M} UTC"
            )
        if sent > self.core.clock() + SKEW:
            raise PayloadError("the notification time is in the future; record it once it is sent")
        if sent < incident.detected_at:
            raise PayloadError("the notification time is before the incident was detected; check the time and offset")
        ref = reference_text("the reference", reference)
        if incident.notify_due is None:  # the clock had not run: Amazon was told anyway, so it is involved
            self.core.set(
                conn, incident_id, amazon=Involvement.POSSIBLE.value, notify_due=incident.detected_at + self.core.window
            )
        self.core.set(
            conn, incident_id, notified_at=sent, notify_reference=ref, impoc=incident.impoc or f"{name} <{email}>"[:300]
        )
        after = self.core.row(conn, incident_id)
        late = after.notify_due is not None and sent > after.notify_due
        self.core.log(conn, incident_id, principal, "notified", at=sent.isoformat(), late=late)
        self.core.event(
            EventName.INCIDENT_NOTIFICATION_RECORD, principal, incident_id, operation="late" if late else "in time"
        )
        return after
