"""The dashboard: what needs a person today, by what their scopes let them read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from sagevault.compliance import evaluate, register_own_assets
from sagevault.identity import Principal, Scope

from ._pages import SEVERITY, AlarmId, held, page, run
from ._render import PREFIX, render
from ._session import ConsoleWork

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _alarms(work: ConsoleWork, who: Principal) -> list[Any]:
    found = [
        a
        for a in work.d.monitor.list_alarms(work.conn, principal=who, limit=500)
        if a.state in ("open", "acknowledged")
    ]
    return sorted(found, key=lambda a: (SEVERITY.get(a.severity, 9), a.state != "open", -a.id))


def _dashboard(work: ConsoleWork) -> Response:
    d, conn, who = work.d, work.conn, work.who
    scopes, _ = held(work)
    now = d.now()
    blocks: dict[str, Any] = {}
    if Scope.ALARMS_READ in scopes:
        blocks["alarms"] = _alarms(work, who)
    if Scope.INCIDENTS_READ in scopes:
        cases = d.incidents.list(conn, principal=who, state=None, open_only=True, after_id=0, limit=100)
        blocks["incidents"] = [(i, i.clock(now)) for i in cases]
    if Scope.DELETION_READ in scopes:
        requests = d.deletion.list_requests(conn, principal=who, limit=200)
        blocks["deletions"] = [(r, r.payload(now)) for r in requests if not r.finished]
    if Scope.GOVERNANCE_READ in scopes:
        register_own_assets(d, conn, principal=who)
        report = evaluate(d, conn, principal=who)  # checks governance:read (recorded as the API's report)
        overdue = d.governance.reviews.overdue(conn)
        blocks["reviews"] = {
            "overdue": overdue.summary(now) if overdue else None,
            "last_closed": d.governance.reviews.last_closed(conn),
        }
        blocks["report"] = [i for i in report.items if i.status.value != "PASS"]
    return render("dashboard.html", **page(work, title="Dashboard", now=now, blocks=blocks))


@router.get("")
async def dashboard(request: Request) -> Response:
    return await run(request, _dashboard)


@router.post("/alarms/{alarm_id}/ack")
async def ack_alarm(request: Request, alarm_id: AlarmId) -> Response:
    def action(work: ConsoleWork) -> Response:
        work.d.monitor.change(work.conn, alarm_id, "acknowledged", principal=work.who, note="")  # as the API
        return RedirectResponse(PREFIX, status_code=303)

    return await run(request, action, posted=True)
