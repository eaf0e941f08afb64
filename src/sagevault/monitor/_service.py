"""The monitor: security events in, alarms out.

`Monitor.evaluate` runs a batch of events (in seq order) through the detectors and, in the
caller's unit of work, raises new alarms (with their outbox rows and responses), adds the
events of an attack under way to its open alarm instead of raising another, saves what the
baselines learned and moves the cursor past the batch: a restart neither skips nor repeats an
event. Alarms are changed by people (`change`: acknowledged, resolved, false positive) with a
scope of their own, and each change is a security event.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, AuditSink, EventName, Gate, Outcome, Reason, check_scope
from sagevault.errors import AccessDenied, Conflict, PayloadError, RecordNotFound, looks_like_pii
from sagevault.identity import Channel, Principal, Scope, event_tenant
from sagevault.logs import get_logger

from ._canary import CanaryRegistry
from ._detect import EVIDENCE_SEQS, Detector, Firing, Seen
from ._rules import Response, Rule
from ._schema import alarm_outbox, alarms, monitor_baselines, monitor_cursor

MONITOR = Principal.job("monitor")
_log = get_logger("sagevault.monitor")


class State(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"


_LIVE = (State.OPEN.value, State.ACKNOWLEDGED.value)
_CHANGE_EVENTS = {
    State.ACKNOWLEDGED: EventName.MONITOR_ALARM_ACK,
    State.RESOLVED: EventName.MONITOR_ALARM_RESOLVE,
    State.FALSE_POSITIVE: EventName.MONITOR_ALARM_DISMISS,
}
_CHANGES = {  # from which states each change may be made
    State.ACKNOWLEDGED: (State.OPEN,),
    State.RESOLVED: (State.OPEN, State.ACKNOWLEDGED),
    State.FALSE_POSITIVE: (State.OPEN, State.ACKNOWLEDGED),
}


class CanaryStore(Protocol):
    """Where canary orders are stored: the vault (its normal ingest path)."""

    def ingest(self, conn: Connection, tenant_id: str, payloads: Any, *, principal: Principal) -> Any: ...

    def record_ids_of(
        self, conn: Connection, tenant_id: str, order_ids: Sequence[str], *, principal: Principal
    ) -> list[int]: ...


class IncidentOpener(Protocol):
    """Opens an incident from an alarm (`sagevault.incidents.Incidents`), in the same unit of
    work; returns what it did ("incident 4 opened")."""

    def open_from_alarm(self, conn: Connection, alarm: Alarm, type_id: str) -> str: ...


class Responder(Protocol):
    """Carries out a rule's responses (the access layer's `AlarmResponses`); returns what it did."""

    def respond(
        self, conn: Connection, response: Response, *, principal_id: str | None, tenant_id: str | None
    ) -> str: ...


@dataclass(frozen=True)
class Alarm:
    id: int
    rule: str
    rule_version: int
    clause: str
    severity: str
    title: str
    state: str
    first_at: datetime
    last_at: datetime
    count: int
    principal: str | None
    tenant: str | None
    evidence: dict[str, Any]
    responses: list[str]
    changed_by: str | None
    changed_at: datetime | None
    note: str | None

    @classmethod
    def of(cls, row: Any) -> Alarm:
        return cls(
            id=int(row.id),
            rule=row.rule,
            rule_version=int(row.rule_version),
            clause=row.clause,
            severity=row.severity,
            title=row.title,
            state=row.state,
            first_at=_utc(row.first_at),
            last_at=_utc(row.last_at),
            count=int(row.count),
            principal=row.principal,
            tenant=row.tenant,
            evidence=json.loads(row.evidence),
            responses=json.loads(row.responses),
            changed_by=row.changed_by,
            changed_at=_utc(row.changed_at) if row.changed_at is not None else None,
            note=row.note,
        )

    def payload(self) -> dict[str, Any]:
        """What the sinks carry and `--json` prints: ids, counts and evidence; never PII."""
        return {
            "id": self.id,
            "rule": self.rule,
            "rule_version": self.rule_version,
            "clause": self.clause,
            "severity": self.severity,
            "title": self.title,
            "state": self.state,
            "first_at": self.first_at.isoformat(),
            "last_at": self.last_at.isoformat(),
            "count": self.count,
            "principal": self.principal,
            "tenant": self.tenant,
            "evidence": self.evidence,
            "responses": self.responses,
            "changed_by": self.changed_by,
            "changed_at": self.changed_at.isoformat() if self.changed_at else None,
            "note": self.note,
        }


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass
class _Open:
    alarm_id: int
    last_at: float
    seqs: list[int]


@dataclass
class Evaluated:
    raised: list[Alarm]
    added: int  # events added to alarms already open
    seq: int  # the cursor after the batch


class Monitor:
    """Rules, detectors and alarms of one deployment (see the module's docstring)."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        audit: AuditSink,
        gate: Gate,
        canaries: CanaryRegistry,
        sinks: Sequence[str] = (),
        responder: Responder | None = None,
        hours: str = "00:00-24:00",
        zone: str = "UTC",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.rules = {r.id: r for r in rules}
        self.canaries = canaries
        self.sinks = tuple(sinks)
        self._audit = audit
        self._gate = gate
        self._responder = responder
        self.incidents: IncidentOpener | None = None  # wired by the deployment
        self._clock = clock or (lambda: datetime.now(UTC))
        self._hours, self._zone = hours, zone
        self.detector = self._detector()
        self._open: dict[tuple[str, str], _Open] = {}
        self.cursor = -1  # not resumed yet
        self._saved = -1  # the cursor as the database holds it

    def rule_fingerprints(self) -> dict[str, str]:
        """`rule.<id>` -> a digest of the rule as in force: what a configuration change event counts
        when a rule file is added, changed or turned off."""
        return {f"rule.{r.id}"[:56]: r.fingerprint() for r in self.rules.values()}

    # --- the detector's side -------------------------------------------------------------

    def _detector(self) -> Detector:
        return Detector(self.rules.values(), canaries=self.canaries.touched, hours=self._hours, zone=self._zone)

    def resume(self, conn: Connection) -> int:
        """Load where the detector stopped, what it learned and the alarms still open."""
        self.detector = Detector(
            self.rules.values(), canaries=self.canaries.touched, hours=self._hours, zone=self._zone
        )
        self.canaries.refresh_from(conn)
        seq = conn.execute(select(monitor_cursor.c.seq).where(monitor_cursor.c.id == 1)).scalar()
        if seq is None:
            conn.execute(insert(monitor_cursor).values(id=1, seq=0))
            seq = 0
        for row in conn.execute(select(monitor_baselines)):
            self.detector.restore(row.rule, row.group_key, json.loads(row.state))
        self._open = {}
        query = select(alarms.c.id, alarms.c.rule, alarms.c.group_key, alarms.c.last_at, alarms.c.evidence)
        for row in conn.execute(query.where(alarms.c.state.in_(_LIVE)).order_by(alarms.c.id)):
            seqs = json.loads(row.evidence).get("seqs", [])
            self._open[(row.rule, row.group_key)] = _Open(int(row.id), _utc(row.last_at).timestamp(), seqs)
        self.cursor = self._saved = int(seq)
        return self.cursor

    def warm(self, rows: Sequence[Seen]) -> None:
        """Refill the detectors' windows with events already evaluated (up to the cursor), after a
        restart: what they raise is not raised again (it was, before the restart)."""
        self.detector.refill(e for e in rows if e.seq <= self.cursor)

    def evaluate(self, conn: Connection, rows: Sequence[Seen]) -> Evaluated:
        """Run `rows` (events after the cursor, in seq order) through the rules; see the module."""
        if self.cursor < 0:
            self.resume(conn)
        raised: list[Alarm] = []
        growing: dict[int, tuple[int, Firing, _Open]] = {}  # alarm id -> (events added, latest firing)
        for event in rows:
            if event.seq <= self.cursor:
                continue
            for firing in self.detector.feed(event):
                key = (firing.rule.id, firing.group_key)
                live = self._open.get(key)
                if live is not None and firing.at - live.last_at <= firing.rule.suppress_seconds:
                    added = growing.get(live.alarm_id, (0, firing, live))[0] + 1
                    growing[live.alarm_id] = (added, firing, live)
                    live.last_at = firing.at
                    if len(live.seqs) < EVIDENCE_SEQS:
                        live.seqs.append(event.seq)
                    continue
                alarm = self._raise(conn, firing)
                self._open[key] = _Open(alarm.id, firing.at, list(alarm.evidence["seqs"]))
                raised.append(alarm)
            self.cursor = event.seq
        for alarm_id, (added, firing, live) in growing.items():
            evidence = {**firing.evidence, "seqs": live.seqs, "last_seq": firing.last_seq}
            done = conn.execute(
                update(alarms)
                .where(alarms.c.id == alarm_id, alarms.c.state.in_(_LIVE))
                .values(count=alarms.c.count + added, last_at=_when(firing.at), evidence=json.dumps(evidence))
            ).rowcount
            if not done:  # closed by a person meanwhile: the attack goes on, so a new alarm
                self._open.pop((firing.rule.id, firing.group_key), None)
                alarm = self._raise(conn, firing)
                self._open[(firing.rule.id, firing.group_key)] = _Open(alarm.id, firing.at, list(firing.seqs))
                raised.append(alarm)
        self._save(conn)
        if raised:
            self._audit.record_many([self._raise_event(a) for a in raised])
        return Evaluated(raised, sum(a for a, _, _ in growing.values()), self.cursor)

    def _save(self, conn: Connection) -> None:
        now = self._clock()
        for rule_id, key, state in self.detector.learned():
            text = json.dumps(state)
            done = conn.execute(
                update(monitor_baselines)
                .where(monitor_baselines.c.rule == rule_id, monitor_baselines.c.group_key == key)
                .values(state=text, updated_at=now)
            ).rowcount
            if not done:
                conn.execute(insert(monitor_baselines).values(rule=rule_id, group_key=key, state=text, updated_at=now))
        moved = conn.execute(
            update(monitor_cursor)
            .where(monitor_cursor.c.id == 1, monitor_cursor.c.seq == self._saved)
            .values(seq=self.cursor)
        ).rowcount
        if not moved:  # another detector moved it: this pass is rolled back, and this one reloads
            self.cursor = -1
            raise Conflict("another detector evaluated these events (the cursor moved); this pass is dropped")
        self._saved = self.cursor

    def _raise(self, conn: Connection, firing: Firing) -> Alarm:
        rule = firing.rule
        # Only a rule that counts per principal names one (and acts on it): in a per-source rule the
        # last event's actor may be the account an attacker targets.
        principal = firing.actor if "actor" in rule.group_by else None
        responses = [
            self._respond(conn, r, principal, firing.tenant) for r in rule.responses if r is not Response.OPEN_INCIDENT
        ]
        evidence = {**firing.evidence, "seqs": firing.seqs[:EVIDENCE_SEQS], "last_seq": firing.last_seq}
        at = _when(firing.at)
        alarm_id = conn.execute(
            insert(alarms).values(
                rule=rule.id,
                rule_version=rule.version,
                clause=rule.clause,
                severity=rule.severity.value,
                title=rule.title,
                state=State.OPEN.value,
                group_key=firing.group_key[:200],
                principal=principal,
                tenant=firing.tenant,
                first_at=at,
                last_at=at,
                count=firing.events,
                evidence=json.dumps(evidence),
                responses=json.dumps(responses),
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        now = self._clock()
        if self.sinks:
            conn.execute(
                insert(alarm_outbox),
                [{"alarm_id": alarm_id, "sink": s, "attempts": 0, "next_at": now} for s in self.sinks],
            )
        alarm = self._get(conn, int(alarm_id))
        if Response.OPEN_INCIDENT in rule.responses:
            opened = self._open_incident(conn, alarm, rule.incident or "unauthorized-access")
            conn.execute(
                update(alarms).where(alarms.c.id == alarm.id).values(responses=json.dumps([*responses, opened]))
            )
            alarm = self._get(conn, alarm.id)
        return alarm

    def _open_incident(self, conn: Connection, alarm: Alarm, type_id: str) -> str:
        if self.incidents is None:
            return "open-incident: not available in this deployment"
        try:
            with conn.begin_nested():
                return f"open-incident: {self.incidents.open_from_alarm(conn, alarm, type_id)}"
        except Exception as exc:  # the alarm stands whatever happens to the incident
            _log.error("open-incident failed", alarm=alarm.id, rule=alarm.rule, error=type(exc).__name__)
            return f"open-incident: failed ({type(exc).__name__})"

    def _respond(self, conn: Connection, response: Response, principal: str | None, tenant: str | None) -> str:
        if self._responder is None:
            return f"{response.value}: not available in this deployment"
        try:
            with conn.begin_nested():
                done = self._responder.respond(conn, response, principal_id=principal, tenant_id=tenant)
        except Exception as exc:  # a response that fails must not lose the alarm
            return f"{response.value}: failed ({type(exc).__name__})"
        return f"{response.value}: {done}"

    @staticmethod
    def _raise_event(alarm: Alarm) -> AuditEvent:
        return AuditEvent(
            name=EventName.MONITOR_ALARM_RAISE,
            channel=Channel.SCHEDULER,
            actor=MONITOR.id,
            tenant_id=event_tenant(alarm.tenant),
            operation=alarm.rule,
            counts={"alarm": alarm.id, "events": alarm.count, "rule_version": alarm.rule_version},
        )

    # --- people's side ---------------------------------------------------------------------

    def _get(self, conn: Connection, alarm_id: int) -> Alarm:
        row = conn.execute(select(alarms).where(alarms.c.id == alarm_id)).first()
        if row is None:
            raise RecordNotFound(f"no alarm {alarm_id}; `sagevault alarms list` shows them")
        return Alarm.of(row)

    def _check(self, conn: Connection, principal: Principal, scope: Scope, operation: str) -> None:
        check_scope(self._gate, self._audit, conn, principal, scope, operation)

    def list_alarms(
        self, conn: Connection, *, principal: Principal, state: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[Alarm]:
        """Alarms newest first (ids below `after_id` when it is given), optionally in one state."""
        self._check(conn, principal, Scope.ALARMS_READ, "alarms list")
        query = select(alarms).order_by(alarms.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(alarms.c.state == _state(state).value)
        if after_id:
            query = query.where(alarms.c.id < after_id)
        return [Alarm.of(r) for r in conn.execute(query)]

    def get(self, conn: Connection, alarm_id: int, *, principal: Principal) -> Alarm:
        self._check(conn, principal, Scope.ALARMS_READ, "alarms show")
        return self._get(conn, alarm_id)

    def change(self, conn: Connection, alarm_id: int, to: str, *, principal: Principal, note: str = "") -> Alarm:
        """Acknowledge, resolve or close as a false positive, with who, when and a note."""
        self._check(conn, principal, Scope.ALARMS_MANAGE, "alarms change")
        target = _state(to)
        if target not in _CHANGES:
            raise PayloadError(f"an alarm can be made {', '.join(_CHANGES)}; not {target.value}")
        if len(note) > 500:
            raise PayloadError("the note is longer than 500 characters; shorten it")
        if looks_like_pii(note):
            raise PayloadError(
                "the note looks like it holds an e-mail address or phone number; notes carry no personal data"
            )
        alarm = self._get(conn, alarm_id)
        allowed = [s.value for s in _CHANGES[target]]
        if alarm.principal == principal.id and target is not State.ACKNOWLEDGED:
            raise AccessDenied(f"alarm {alarm_id} is about you: somebody else resolves or dismisses it")
        done = conn.execute(
            update(alarms)
            .where(alarms.c.id == alarm_id, alarms.c.state.in_(allowed))  # a concurrent change does not go back
            .values(state=target.value, changed_by=principal.id, changed_at=self._clock(), note=note or None)
        ).rowcount
        if not done:
            raise Conflict(f"alarm {alarm_id} is {alarm.state}; only an alarm that is {' or '.join(allowed)} can be")
        self._audit.record(
            AuditEvent(
                name=_CHANGE_EVENTS[target],
                channel=principal.channel,
                actor=principal.id,
                tenant_id=event_tenant(alarm.tenant),
                operation=alarm.rule,
                counts={"alarm": alarm_id},
            )
        )
        return self._get(conn, alarm_id)

    def plant(
        self,
        conn: Connection,
        store: CanaryStore,
        tenant_id: str,
        orders: Sequence[dict[str, Any]],
        *,
        principal: Principal,
    ) -> int:
        """Store `orders` (fake, `fake_orders`) through the normal ingest path and register their
        records as canaries; recorded as monitor:canary:seed with how many."""
        store.ingest(conn, tenant_id, orders, principal=principal)
        ids = store.record_ids_of(conn, tenant_id, [str(o["AmazonOrderId"]) for o in orders], principal=principal)
        planted = self.canaries.register(conn, tenant_id, ids)
        self._audit.record(
            AuditEvent(
                name=EventName.MONITOR_CANARY_SEED,
                channel=principal.channel,
                actor=principal.id,
                tenant_id=event_tenant(tenant_id),
                counts={"records": planted},
            )
        )
        return planted

    def rules_for(self, conn: Connection, *, principal: Principal) -> list[Rule]:
        self._check(conn, principal, Scope.ALARMS_READ, "rules list")
        return sorted(self.rules.values(), key=lambda r: r.id)

    # --- the outbox --------------------------------------------------------------------------

    def due(self, conn: Connection, *, limit: int = 50) -> list[tuple[int, str, int, Alarm]]:
        """Deliveries due now: (outbox id, sink, attempts so far, the alarm as it is now)."""
        rows = conn.execute(
            select(alarm_outbox)
            .where(alarm_outbox.c.delivered_at.is_(None), alarm_outbox.c.next_at <= self._clock())
            .order_by(alarm_outbox.c.id)
            .limit(limit)
        ).all()
        return [(int(r.id), r.sink, int(r.attempts), self._get(conn, int(r.alarm_id))) for r in rows]

    def delivered(self, conn: Connection, outbox_id: int) -> None:
        conn.execute(update(alarm_outbox).where(alarm_outbox.c.id == outbox_id).values(delivered_at=self._clock()))

    def failed(self, conn: Connection, outbox_id: int, sink: str, attempts: int, error: str) -> datetime:
        """A delivery failed: try again after a backoff (1 s doubling, at most 5 minutes), and
        record monitor:sink:fail, which the sink-down rule counts. Returns when it is retried."""
        retry = self._clock() + timedelta(seconds=min(300, 2**attempts))
        conn.execute(
            update(alarm_outbox)
            .where(alarm_outbox.c.id == outbox_id)
            .values(attempts=attempts + 1, next_at=retry, last_error=error[:200])
        )
        self._audit.record(
            AuditEvent(
                name=EventName.MONITOR_SINK_FAIL,
                channel=Channel.SCHEDULER,
                outcome=Outcome.FAILURE,
                reason=Reason.SINK_UNAVAILABLE,
                actor=MONITOR.id,
                operation=f"sink {sink}",
                counts={"attempts": attempts + 1, "outbox": outbox_id},
            )
        )
        return retry

    def pending(self, conn: Connection) -> int:
        """Deliveries not made yet."""
        return int(conn.execute(select(func.count()).where(alarm_outbox.c.delivered_at.is_(None))).scalar_one())


def _state(text: str) -> State:
    try:
        return State(text.replace("-", "_"))
    except ValueError:
        raise PayloadError(f"alarm state must be one of {', '.join(s.value for s in State)}; not {text!r}") from None
