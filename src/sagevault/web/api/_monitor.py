"""Alarms and detection rules: the HTTPS face of `sagevault alarms|rules`.

Reading needs `alarms:read`, changing an alarm's state `alarms:manage` (both held by the
security-officer role). Every change is a security event (monitor:alarm:ack, ...:resolve,
...:dismiss) naming who made it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field

from sagevault.monitor import Alarm

from .._deps import API, Authenticated, AuthenticatedRead
from .._pagination import PageQuery
from ._models import Out, PageOf, Timestamp

router = APIRouter(prefix=API)

AlarmIdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="The alarm's id.")]


class AlarmState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"


class AlarmsQuery(PageQuery):
    state: AlarmState | None = Field(None, description="Only alarms in this state.")


class AlarmOut(Out):
    id: int
    rule: str = Field(description="The rule that fired (`GET /api/v1/rules`).")
    rule_version: int
    clause: str = Field(description="The DPP clause the rule serves.")
    severity: str
    title: str
    state: AlarmState
    first_at: Timestamp
    last_at: Timestamp
    count: int = Field(description="How many events the alarm counts (one attack, one alarm).")
    principal: str | None = Field(description="The principal id it is about, if one.")
    tenant: str | None
    evidence: dict[str, Any] = Field(description="Event sequence numbers, counts, the baseline compared with.")
    responses: list[str] = Field(description="What the rule's responses did.")
    changed_by: str | None
    changed_at: Timestamp | None
    note: str | None


class ChangeBody(Out):
    note: str = Field("", max_length=500, description="Why (no personal data).")


class RuleOut(Out):
    id: str
    version: int
    title: str
    clause: str
    severity: str
    kind: str
    enabled: bool
    events: list[str]
    group_by: list[str]
    responses: list[str]
    incident: str | None = Field(description="The incident type open-incident opens, if the rule opens one.")
    source: str = Field(description='"package:<file>" for a shipped rule, else the file in the data dir.')


def _out(alarm: Alarm) -> AlarmOut:
    return AlarmOut.model_validate(
        {**alarm.payload(), "first_at": alarm.first_at, "last_at": alarm.last_at, "changed_at": alarm.changed_at}
    )


@router.get("/alarms", tags=["alarms"])
def list_alarms(q: Annotated[AlarmsQuery, Query()], work: AuthenticatedRead) -> PageOf[AlarmOut]:
    """Alarms, newest first, a page at a time. Needs `alarms:read`."""
    with work as (d, conn, who):
        after = q.position(int)
        state = q.state.value if q.state else None
        found = d.monitor.list_alarms(conn, principal=who, state=state, after_id=after or 0, limit=q.limit + 1)
        return PageOf[AlarmOut].model_validate(q.keyset(found, lambda a: a.id, _out))


@router.get("/alarms/{alarm_id}", tags=["alarms"])
def get_alarm(alarm_id: AlarmIdPath, work: AuthenticatedRead) -> AlarmOut:
    """One alarm with its evidence. Needs `alarms:read`."""
    with work as (d, conn, who):
        return _out(d.monitor.get(conn, alarm_id, principal=who))


def _change(work: Authenticated, alarm_id: int, to: str, body: ChangeBody) -> AlarmOut:
    with work as (d, conn, who):
        return _out(d.monitor.change(conn, alarm_id, to, principal=who, note=body.note))


@router.post("/alarms/{alarm_id}/ack", tags=["alarms"])
def ack_alarm(alarm_id: AlarmIdPath, body: ChangeBody, work: Authenticated) -> AlarmOut:
    """Acknowledge an open alarm. Needs `alarms:manage`."""
    return _change(work, alarm_id, "acknowledged", body)


@router.post("/alarms/{alarm_id}/resolve", tags=["alarms"])
def resolve_alarm(alarm_id: AlarmIdPath, body: ChangeBody, work: Authenticated) -> AlarmOut:
    """Resolve an open or acknowledged alarm. Needs `alarms:manage`."""
    return _change(work, alarm_id, "resolved", body)


@router.post("/alarms/{alarm_id}/false-positive", tags=["alarms"])
def dismiss_alarm(alarm_id: AlarmIdPath, body: ChangeBody, work: Authenticated) -> AlarmOut:
    """Close an open or acknowledged alarm as a false positive. Needs `alarms:manage`."""
    return _change(work, alarm_id, "false_positive", body)


@router.get("/rules", tags=["alarms"])
def list_rules(q: Annotated[PageQuery, Query()], work: AuthenticatedRead) -> PageOf[RuleOut]:
    """The detection rules in force (shipped, replaced or added in the data dir). Needs `alarms:read`."""
    with work as (d, conn, who):
        rules = d.monitor.rules_for(conn, principal=who)
        return PageOf[RuleOut].model_validate(q.of(rules, lambda r: r.id, lambda r: RuleOut(**r.summary())))
