"""The security log and the DPP report in the console: search the log (`GET /console/audit`), verify
it (`POST /console/audit/verify`), read the whole report (`GET /console/report`) and download the
signed evidence pack (`POST /console/report/pack`).

Each is the call the API route makes, with its scope and its event: the search is `AuditLog.read`
(audit:log:read, with how many events were read), the verification `AuditLog.verify`
(audit:log:verify), both after audit:read (`access.core.authorize`) and after the page's unit of
work ended (as the API: no transaction is held open while the log is read); the report is
`evaluate` (compliance:report:create), the pack `build_pack` (compliance:pack:create with its
SHA-256). Query parameters carry ids and times only: the log holds no PII, so none is asked for."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sagevault import errors
from sagevault.access import parse_time
from sagevault.audit import Asker, EventFilters, EventName, Outcome
from sagevault.compliance import evaluate, register_own_assets
from sagevault.errors import looks_like_pii
from sagevault.identity import Scope, is_tenant_id

from .._deps import evidence_pack
from ._dashboard import remember_report
from ._pages import page, run
from ._render import PREFIX, error_page, refusal_page, render
from ._session import ConsoleWork

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE = 50  # events shown per page
SCAN = 200  # events read per page: a name prefix or an outcome is matched among them
EVENT_NAMES = sorted(e.value for e in EventName)
OUTCOMES = [o.value for o in Outcome]
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")  # the log's own id format (as the API's filters)
_NAME = re.compile(r"[a-z:]{1,48}")
FIELDS = ("name", "actor", "tenant", "outcome", "since", "until", "after")


class BadSearch(Exception):
    """A search parameter to fix; the message says how (and never repeats the value)."""


@dataclass(frozen=True)
class Search:
    name: str  # an event name, the start of one, or ""
    actor: str
    tenant: str
    outcome: str
    since: datetime | None
    until: datetime | None
    after: int
    given: dict[str, str]  # the form's values, to show it filled in again

    @property
    def exact(self) -> bool:
        return self.name in EVENT_NAMES

    def filters(self) -> EventFilters:
        """What the log selects by; a name prefix and the outcome are matched here."""
        return EventFilters(
            actor=self.actor or None,
            tenant_id=self.tenant or None,
            name=self.name if self.exact else None,
            since=self.since,
            until=self.until,
        )

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.name and not self.exact and not str(event["name"]).startswith(self.name):
            return False
        return not self.outcome or event["outcome"] == self.outcome

    def link(self, after: int) -> str:
        kept = [(k, v) for k, v in self.given.items() if v and k != "after"]
        return f"{PREFIX}/audit?" + urlencode([*kept, ("after", str(after))])


def read_search(params: Mapping[str, str], now: datetime) -> Search:
    """The search a GET form asked for. Without any parameter: the last 24 hours."""
    unknown = sorted(set(params) - set(FIELDS))
    if unknown:
        raise BadSearch("this search has a parameter the form does not have; start again from the form")
    given = {k: params.get(k, "").strip() for k in FIELDS}
    if not params:
        given["since"] = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    name, actor, tenant, outcome = given["name"], given["actor"], given["tenant"], given["outcome"]
    if name and not (_NAME.fullmatch(name) and any(e.startswith(name) for e in EVENT_NAMES)):
        raise BadSearch(
            "the event name is not one of the log's events nor the start of one; use e.g. vault:field:reveal "
            "or vault: (the list under the field shows them all)"
        )
    if actor and (not _ID.fullmatch(actor) or looks_like_pii(actor)):
        raise BadSearch(
            "the actor must be a principal id (usr_…, svc_…, operator:…); the log holds no e-mail addresses "
            "or phone numbers, so search by the id"
        )
    if tenant and not is_tenant_id(tenant):
        raise BadSearch("the tenant must be a tenant id: upper-case letters and digits, e.g. A2EUQ1WTGCTBG2")
    if outcome and outcome not in OUTCOMES:
        raise BadSearch(f"the outcome is one of {', '.join(OUTCOMES)}, or empty for any")
    since, until = _time(given["since"], "From"), _time(given["until"], "Until")
    if since is not None and until is not None and since >= until:
        raise BadSearch("the time range is empty: 'From' must be earlier than 'Until'; swap them or widen it")
    after = given["after"]
    if after and not (after.isascii() and after.isdigit() and len(after) <= 18):
        raise BadSearch("this page link is broken; start again from the form")
    return Search(name, actor, tenant, outcome, since, until, int(after or 0), given)


def _time(text: str, label: str) -> datetime | None:
    try:
        return parse_time(text or None, label)
    except errors.PayloadError:
        raise BadSearch(f"'{label}' is not a time: use ISO 8601 in UTC, e.g. 2026-11-01 or 2026-11-01T08:00") from None


def _asker(work: ConsoleWork, request: Request) -> Asker:
    """Who reads or verifies the log, as the API's audit routes name them."""
    d = work.d
    return Asker(work.who, request.state.request_id, d.access.core.client_ip_hash(work.conn, work.who.source_ip))


async def _then(
    request: Request,
    prepare: Callable[[ConsoleWork], Response | dict[str, Any]],
    finish: Callable[[dict[str, Any]], Response],
    *,
    posted: bool = False,
) -> Response:
    """`prepare` in the page's unit of work (authenticated, CSRF, scope checked): a page to answer at
    once, or what `finish` needs; `finish` then reads the log once that unit of work has ended."""
    ready: dict[str, Any] = {}

    def action(work: ConsoleWork) -> Response:
        made = prepare(work)
        if isinstance(made, Response):
            return made
        ready.update(made)
        return Response(status_code=204)

    answer = await run(request, action, read_only=True, posted=posted)
    if not ready:
        return answer

    def last() -> Response:
        try:
            return finish(ready)
        except errors.SageVaultError as exc:
            return refusal_page(exc, signed_in=True)

    return await run_in_threadpool(last)


def _context(work: ConsoleWork, request: Request, title: str) -> dict[str, Any]:
    work.d.access.core.authorize(work.conn, work.who, Scope.AUDIT_READ)  # as GET /api/v1/audit/events
    return {
        "context": page(work, title=title, names=EVENT_NAMES, outcomes=OUTCOMES),
        "asker": _asker(work, request),
        "log": work.d.audit,
    }


@router.get("/audit")
async def audit(request: Request) -> Response:
    params = dict(request.query_params)

    def prepare(work: ConsoleWork) -> Response | dict[str, Any]:
        ready = _context(work, request, "Security log")
        try:
            ready["search"] = read_search(params, work.d.now())
        except BadSearch as exc:
            shown = {k: ready["context"][k] for k in ("nav", "csrf")}
            return error_page(400, f"Nothing was searched: {exc}.", signed_in=True, **shown)
        return ready

    def finish(ready: dict[str, Any]) -> Response:
        search: Search = ready["search"]
        scanned = ready["log"].read(ready["asker"], **search.filters(), after_seq=search.after, limit=SCAN)
        shown: list[dict[str, Any]] = []
        stopped = len(scanned)
        for i, event in enumerate(scanned):
            if search.matches(event):
                shown.append(event)
                if len(shown) == PAGE:
                    stopped = i + 1
                    break
        more = stopped < len(scanned) or len(scanned) == SCAN
        last = scanned[stopped - 1]["seq"] if scanned else None
        context = {
            **ready["context"],
            "search": search,
            "events": shown,
            "scanned": stopped,
            "next": search.link(last) if more and last is not None else None,
            "verified": None,
        }
        return render("audit.html", **context)

    return await _then(request, prepare, finish)


@router.post("/audit/verify")
async def verify(request: Request) -> Response:
    def prepare(work: ConsoleWork) -> dict[str, Any]:
        ready = _context(work, request, "Security log")
        ready["search"] = read_search({}, work.d.now())
        return ready

    def finish(ready: dict[str, Any]) -> Response:
        report = ready["log"].verify(ready["asker"], workers=1)  # as POST /api/v1/audit/verify
        if report.unrecorded is not None:  # a check that was not recorded is not answered
            raise report.unrecorded
        problems = list(report.problems)
        if report.unreadable:  # the server's file paths stay on the server
            problems = [
                "the audit signing public key or the digest file cannot be read; run `sagevault audit verify` "
                "on the server, which names the file"
            ]
        verified = {
            "ok": report.ok,
            "events": report.events,
            "digests": report.digests,
            "sealed_through": report.sealed_through,
            "undigested": report.undigested,
            "first_bad_seq": report.first_bad_seq,
            "problems": problems,
        }
        context = {**ready["context"], "search": ready["search"], "events": None, "scanned": 0, "next": None}
        return render("audit.html", **context, verified=verified)

    return await _then(request, prepare, finish, posted=True)


# --- the DPP report and its evidence pack ------------------------------------------------------------


def _fact(value: Any, most: int = 12) -> str:
    """An evidence value as one line (long lists cut, with how many more)."""
    if isinstance(value, list | tuple):
        shown = [_fact(v, most) for v in value[:most]]
        extra = f" … and {len(value) - most} more" if len(value) > most else ""
        return (", ".join(shown) or "-") + extra
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_fact(v, most)}" for k, v in value.items()) or "-"
    if value is None:
        return "-"
    return str(value)


@router.get("/report")
async def report(request: Request) -> Response:
    state = request.app.state

    def action(work: ConsoleWork) -> Response:
        d, conn, who = work.d, work.conn, work.who
        register_own_assets(d, conn, principal=who)  # as GET /api/v1/report
        made = evaluate(d, conn, principal=who)  # governance:read; compliance:report:create
        remember_report(state, who, made)
        items = [(i, [(str(k), _fact(v)) for k, v in i.evidence.items()]) for i in made.items]
        facts = [(str(k), _fact(v)) for k, v in made.deployment.items()]
        context = page(work, title="DPP report", report=made, counts=made.counts, items=items, deployment_facts=facts)
        return render("report.html", **context)

    return await run(request, action)


@router.post("/report/pack")
async def pack(request: Request) -> Response:
    def action(work: ConsoleWork) -> Response:
        try:  # as POST /api/v1/report/pack: governance:read; compliance:pack:create
            return evidence_pack(work.d, work.conn, work.who)
        except errors.AuditUnavailable:
            raise
        except errors.AuditError:
            message = (
                "No evidence pack was made: the audit signing key cannot be read on the server. Restore it "
                "beside the master key (`sagevault report --pack` names the file), then try again."
            )
            return error_page(503, message, signed_in=True)

    return await run(request, action, posted=True)
