"""The dashboard: what needs a person today, by what their scopes let them read.

Each block is there only for a person whose scopes allow it, and reads through the same domain call
(and scope check) the API route makes. Three small server-rendered SVG plots (no script): alarms
raised per day (14 days, by severity), reveal events per day (7 days, from the security log: the
event holds no purpose, so not per purpose) and the retention backlog. The DPP report's FAIL and
ATTENTION items, the retention figures and the reveal counts are kept per person for a minute
(`Recent`): a refresh does not evaluate the report's 29 checks again, and the scope (governance:read,
retention:read, audit:read) is still checked on every view before anything kept is shown."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import State
from starlette.responses import RedirectResponse, Response

from sagevault.audit import EventName
from sagevault.compliance import Report, evaluate, register_own_assets
from sagevault.compliance._checks_data import VERIFY_EVERY_DAYS
from sagevault.compliance._context import event_time
from sagevault.identity import Principal, Scope

from ._pages import SEVERITY, AlarmId, held, page, run
from ._render import PREFIX, render
from ._session import ConsoleWork

router = APIRouter(prefix=PREFIX, include_in_schema=False)

KEEP = timedelta(seconds=60)  # how long a person's evaluated report (and retention figures) is reused
NEAR = timedelta(days=7)  # a deadline this close is shown
ALARM_DAYS = 14
REVEAL_DAYS = 7
SEVERITY_FILL = {
    "critical": "#a40e26",
    "high": "#d1242f",
    "medium": "#b07c00",
    "low": "#0b5cad",
    "info": "#57606a",
}


# --- what is kept a minute, per person ----------------------------------------------------------------


@dataclass(frozen=True)
class Kept:
    at: datetime  # when it was made (the deployment's clock)
    value: Any


class Recent:
    """Values worth a minute per (person, part) of one app (`app.state.console_recent`): thread-safe,
    expired by the deployment's clock. Whoever reads one checks the scope first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, str], Kept] = {}

    def get(self, who: str, part: str, now: datetime) -> Kept | None:
        with self._lock:
            kept = self._kept.get((who, part))
        if kept is None or not (timedelta(0) <= now - kept.at < KEEP):
            return None
        return kept

    def put(self, who: str, part: str, at: datetime, value: Any) -> Kept:
        kept = Kept(at, value)
        with self._lock:
            self._kept = {k: v for k, v in self._kept.items() if timedelta(0) <= at - v.at < KEEP}
            self._kept[(who, part)] = kept
        return kept


_MAKING = threading.Lock()


def recent(state: State) -> Recent:
    """The app's `Recent` (made once, under a lock)."""
    found = getattr(state, "console_recent", None)
    if found is None:
        with _MAKING:
            found = getattr(state, "console_recent", None)
            if found is None:
                found = state.console_recent = Recent()
    assert isinstance(found, Recent)
    return found


def remember_report(state: State, who: Principal, report: Report) -> Kept:
    """Keep what the dashboard shows of a report just evaluated (the report page does too)."""
    items = [i for i in report.items if i.status.value != "PASS"]
    return recent(state).put(who.id, "report", report.generated_at, items)


def _report(work: ConsoleWork, state: State) -> Kept:
    """The report's FAIL and ATTENTION items: governance:read checked now (refusal recorded), then
    those evaluated for this person within the minute, or a new evaluation (compliance:report:create)."""
    d, conn, who = work.d, work.conn, work.who
    d.access.core.authorize(conn, who, Scope.GOVERNANCE_READ)
    kept = recent(state).get(who.id, "report", d.now())
    if kept is not None:
        return kept
    register_own_assets(d, conn, principal=who)
    return remember_report(state, who, evaluate(d, conn, principal=who))


# --- plots ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    label: str  # what it counts, for the bar's own <title>


@dataclass(frozen=True)
class Plot:
    """A bar chart as inline SVG (stacked when it has several series), with the same numbers in its
    `<desc>` and in a table."""

    id: str
    title: str
    desc: str
    labels: list[str]
    names: list[str]  # the series
    fills: list[str]
    rows: list[tuple[str, list[int], int]]  # label, one value per series, total
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # x, label
    top: int  # the y axis' largest value
    base: float  # the y of the x axis
    width: int = 640
    height: int = 200


def bar_plot(plot_id: str, title: str, labels: Sequence[str], series: Sequence[tuple[str, str, list[int]]]) -> Plot:
    """Lay out a bar chart: one bar per label, its series stacked; the y axis up to the largest total."""
    width, height, left, right, up, down = 640, 200, 36, 8, 12, 28
    inner_w, inner_h = width - left - right, height - up - down
    names = [name for name, _, _ in series]
    rows = [(label, [values[i] for _, _, values in series]) for i, label in enumerate(labels)]
    totals = [sum(values) for _, values in rows]
    top = max([*totals, 1])
    slot = inner_w / max(len(labels), 1)
    bars: list[Bar] = []
    for i, (label, values) in enumerate(rows):
        y = float(up + inner_h)
        for (name, fill, _), value in zip(series, values, strict=True):
            if value > 0:
                h = inner_h * value / top
                y -= h
                x = left + i * slot + slot * 0.15
                bars.append(
                    Bar(round(x, 1), round(y, 1), round(slot * 0.7, 1), round(h, 1), fill, f"{label}: {value} {name}")
                )
    ticks = [(round(left + i * slot + slot / 2, 1), label) for i, label in enumerate(labels)]

    def told(label: str, values: list[int], total: int) -> str:
        if len(names) > 1 and total:
            return f"{label}: {total} (" + ", ".join(f"{v} {n}" for n, v in zip(names, values, strict=True) if v) + ")"
        return f"{label}: {total}"

    desc = f"{title}. " + "; ".join(told(label, v, t) for (label, v), t in zip(rows, totals, strict=True))
    desc += f". Total {sum(totals)}."
    return Plot(
        plot_id,
        title,
        desc,
        list(labels),
        names,
        [fill for _, fill, _ in series],
        [(label, v, t) for (label, v), t in zip(rows, totals, strict=True)],
        bars,
        ticks,
        top,
        float(up + inner_h),
        width,
        height,
    )


def _days(now: datetime, count: int) -> list[datetime]:
    """The UTC midnights of the last `count` days, today last."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return [today - timedelta(days=count - 1 - i) for i in range(count)]


def alarms_plot(alarms: Sequence[Any], now: datetime) -> Plot:
    days = _days(now, ALARM_DAYS)
    index = {day.date(): i for i, day in enumerate(days)}
    by_severity = {s: [0] * len(days) for s in SEVERITY_FILL}
    for alarm in alarms:
        i = index.get(alarm.first_at.astimezone(UTC).date())
        if i is not None:
            by_severity.setdefault(alarm.severity, [0] * len(days))[i] += 1
    series = [(s, SEVERITY_FILL.get(s, "#57606a"), v) for s, v in by_severity.items() if any(v)]
    labels = [day.strftime("%m-%d") for day in days]
    return bar_plot("plot-alarms", f"Alarms raised per day (UTC), the last {ALARM_DAYS} days", labels, series)


def reveals_plot(work: ConsoleWork, state: State, now: datetime) -> Plot:
    """vault:field:reveal events per UTC day (audit:read, checked by the caller): counted in the log,
    no event read out, the counts kept a minute. The event records no purpose, so the plot cannot
    split by purpose."""
    kept = recent(state).get(work.who.id, "reveals", now)
    if kept is None:
        days = _days(now, REVEAL_DAYS)
        name = EventName.VAULT_FIELD_REVEAL.value
        counts = [work.d.audit.count(name=name, since=day, until=day + timedelta(days=1)) for day in days]
        kept = recent(state).put(work.who.id, "reveals", now, ([day.strftime("%m-%d") for day in days], counts))
    labels, counts = kept.value
    title = f"Reveal events per day (UTC), the last {REVEAL_DAYS} days"
    return bar_plot("plot-reveals", title, labels, [("reveal events", "#0b5cad", counts)])


def _retention(work: ConsoleWork, state: State) -> Kept:
    """The retention figures summed over tenants (retention:read checked now; the scan kept a minute)."""
    d, conn, who = work.d, work.conn, work.who
    d.access.core.authorize(conn, who, Scope.RETENTION_READ)
    kept = recent(state).get(who.id, "retention", d.now())
    if kept is not None:
        return kept
    status = d.retention.status(conn, principal=who)
    names = ("overdue", "within_7_days", "within_30_days", "later", "undated")
    pii = {n: sum(getattr(t.pii, n) for t in status.tenants) for n in names}
    whole = {n: sum(getattr(t.records, n) for t in status.tenants) for n in names}
    held_back = sum(t.held for t in status.tenants)
    return recent(state).put(who.id, "retention", d.now(), {"pii": pii, "records": whole, "held": held_back})


def retention_plot(figures: dict[str, Any]) -> Plot:
    labels = ["overdue", "within 7 days", "within 30 days", "later"]
    keys = ("overdue", "within_7_days", "within_30_days", "later")
    series = [
        ("records whose PII goes", "#a40e26", [figures["pii"][k] for k in keys]),
        ("records deleted whole", "#0b5cad", [figures["records"][k] for k in keys]),
    ]
    return bar_plot("plot-retention", "Retention: records by when their PII or the record goes", labels, series)


# --- the blocks ------------------------------------------------------------------------------------------


def _alarms(work: ConsoleWork, who: Principal) -> list[Any]:
    return work.d.monitor.list_alarms(work.conn, principal=who, limit=500)


def _open(alarms: Sequence[Any]) -> list[Any]:
    found = [a for a in alarms if a.state in ("open", "acknowledged")]
    return sorted(found, key=lambda a: (SEVERITY.get(a.severity, 9), a.state != "open", -a.id))


def _backups(work: ConsoleWork, now: datetime) -> dict[str, Any]:
    """The newest backup, live copies past or near their expiry, the newest restore recorded."""
    d, conn, who = work.d, work.conn, work.who
    backups = d.backups.list_backups(conn, principal=who)  # backups:read, newest first
    copies = d.copies.list_copies(conn, principal=who, live_only=True)
    expiring = sorted((c for c in copies if c.expires_at - now <= NEAR), key=lambda c: c.expires_at)
    restores = list(d.audit.search(name=EventName.DELETION_BACKUP_RESTORE.value, newest_first=True, limit=1))
    return {
        "last": backups[0] if backups else None,
        "live": sum(1 for c in copies if c.kind == "backup"),
        "expiring": [(c, int((c.expires_at - now).total_seconds())) for c in expiring],
        "restore": {"at": event_time(restores[0]), "outcome": restores[0]["outcome"]} if restores else None,
    }


def _vulns(work: ConsoleWork, now: datetime) -> dict[str, Any]:
    found = work.d.governance.vulns.list_vulns(work.conn, principal=work.who)  # governance:read, nearest first
    near = [(v, int((v.due_at - now).total_seconds())) for v in found if v.due_at - now <= NEAR]
    return {"open": len(found), "near": near}


def _last_verify(work: ConsoleWork, now: datetime) -> dict[str, Any]:
    found = list(work.d.audit.search(name=EventName.AUDIT_LOG_VERIFY.value, newest_first=True, limit=1))
    if not found:
        return {"at": None, "ok": None, "due": None, "late": True, "events": None}
    at = event_time(found[0])
    due = at + timedelta(days=VERIFY_EVERY_DAYS)
    counts = found[0].get("counts") or {}
    return {
        "at": at,
        "ok": found[0]["outcome"] == "success",
        "due": due,
        "late": due <= now,
        "events": counts.get("events"),
    }


def _dashboard(work: ConsoleWork, state: State) -> Response:
    d, conn, who = work.d, work.conn, work.who
    scopes, _ = held(work)
    now = d.now()
    blocks: dict[str, Any] = {}
    plots: list[Plot] = []
    if Scope.ALARMS_READ in scopes:
        alarms = _alarms(work, who)
        blocks["alarms"] = _open(alarms)
        plots.append(alarms_plot(alarms, now))
    if Scope.INCIDENTS_READ in scopes:
        cases = d.incidents.list(conn, principal=who, state=None, open_only=True, after_id=0, limit=100)
        blocks["incidents"] = [(i, i.clock(now)) for i in cases]
    if Scope.DELETION_READ in scopes:
        requests = d.deletion.list_requests(conn, principal=who, limit=200)
        blocks["deletions"] = [(r, r.payload(now)) for r in requests if not r.finished]
    if Scope.BACKUPS_READ in scopes:
        blocks["backups"] = _backups(work, now)
    if Scope.GOVERNANCE_READ in scopes:
        report = _report(work, state)  # governance:read checked on this request
        blocks["vulns"] = _vulns(work, now)
        overdue = d.governance.reviews.overdue(conn)
        blocks["reviews"] = {
            "overdue": overdue.summary(now) if overdue else None,
            "last_closed": d.governance.reviews.last_closed(conn),
        }
        blocks["report"] = {"items": report.value, "at": report.at, "keep": int(KEEP.total_seconds())}
    if Scope.AUDIT_READ in scopes:
        d.access.core.authorize(conn, who, Scope.AUDIT_READ)  # as the API's audit routes
        blocks["verify"] = _last_verify(work, now)
        plots.append(reveals_plot(work, state, now))
    if Scope.RETENTION_READ in scopes:
        figures = _retention(work, state)
        blocks["retention"] = {**figures.value, "at": figures.at}
        plots.append(retention_plot(figures.value))
    if plots:
        blocks["plots"] = plots
    return render("dashboard.html", **page(work, title="Dashboard", now=now, blocks=blocks))


def with_state(request: Request, action: Callable[[ConsoleWork, State], Response]) -> Callable[[ConsoleWork], Response]:
    state = request.app.state
    return lambda work: action(work, state)


@router.get("")
async def dashboard(request: Request) -> Response:
    return await run(request, with_state(request, _dashboard))


@router.post("/alarms/{alarm_id}/ack")
async def ack_alarm(request: Request, alarm_id: AlarmId) -> Response:
    def action(work: ConsoleWork) -> Response:
        work.d.monitor.change(work.conn, alarm_id, "acknowledged", principal=work.who, note="")  # as the API
        return RedirectResponse(PREFIX, status_code=303)

    return await run(request, action, posted=True)


__all__ = ["Plot", "bar_plot", "remember_report", "router", "with_state"]
