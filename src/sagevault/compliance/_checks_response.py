"""Checks of DPP clauses 8 and 9 (incident response; deletion, return and live copies) and of
what only Amazon's current DPP asks (vulnerability management, data attribution)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from sagevault.vault._schema import records

from ._context import Context, day, event_time, method, paged
from ._model import Result, Status, numbers

PASS, FAIL, ATTENTION = Status.PASS, Status.FAIL, Status.ATTENTION
SCAN_EVERY_DAYS = 30  # Amazon: vulnerability scans at least every 30 days


# --- 8. Incident response ------------------------------------------------------------------------


def ir_plan(c: Context) -> Result:
    facts, loose = numbers(c.policy, ("ir_plan_review_days",))
    status = c.d.incidents.plans.status(c.conn, c.d.infrastructure(c.conn))
    current = status.in_force
    evidence: dict[str, Any] = {
        **facts,
        "version_in_force": current.version,
        "approved": current.approved,
        "approved_at": day(current.approved_at),
        "next_review_due": day(current.next_review_due),
        "plan_sha256": current.sha256,
        "draft_waiting": status.draft.version if status.draft else None,
    }
    if loose:
        return Result(FAIL, "the plan is reviewed too rarely: " + "; ".join(loose), evidence, "tighten [policy]")
    if status.due:
        evidence["review_due_because"] = [why for _, why in status.reasons]
        return Result(
            FAIL,
            "the incident response plan is due for review: " + "; ".join(why for _, why in status.reasons),
            evidence,
            "review the plan and approve it: `sagevault irp show`, `sagevault irp approve`",
        )
    return Result(PASS, "the incident response plan is approved and within its six-monthly review", evidence)


def impoc(c: Context) -> Result:
    plan = c.d.incidents.plans.in_force(c.conn).plan
    name, email = plan.impoc
    evidence = {
        "impoc_named": bool(name),
        "impoc_contact_set": bool(email),
        "organisation_set": bool(plan.organisation),
    }
    if not (name and email):
        return Result(
            FAIL,
            "the plan names no incident management point of contact (IMPOC)",
            evidence,
            "set it: `sagevault irp set-impoc --name ... --email ...`, then approve the plan",
        )
    return Result(PASS, "an IMPOC is named in the plan in force (contact withheld from this report)", evidence)


def incidents(c: Context) -> Result:
    facts, loose = numbers(c.policy, ("amazon_notify_hours",))
    listed = list(paged(lambda **kw: c.d.incidents.list(c.conn, principal=c.principal, open_only=True, **kw)))
    late = [i.id for i in listed if i.notify_due is not None and i.notified_at is None and i.notify_due <= c.now]
    evidence = {**facts, "open_incidents": len(listed), "amazon_notification_overdue": late}
    if loose:
        return Result(FAIL, "Amazon would be told too late: " + "; ".join(loose), evidence, "tighten [policy]")
    if late:
        return Result(
            FAIL,
            f"{len(late)} open incidents are past the {facts['amazon_notify_hours']}-hour deadline to notify Amazon",
            evidence,
            "notify Amazon (security@amazon.com) and record it: `sagevault incidents notified ID`",
        )
    if listed:
        return Result(
            ATTENTION,
            f"{len(listed)} incidents are open: investigate, document and close each",
            evidence,
            "`sagevault incidents list`",
        )
    return Result(PASS, "no incident is open; the 24-hour clock is kept for each one", evidence)


# --- 9. Deletion, return and live copies ---------------------------------------------------------


def deletion_sla(c: Context) -> Result:
    facts, loose = numbers(c.policy, ("deletion_sla_hours",))
    listed = list(paged(lambda **kw: c.d.deletion.list_requests(c.conn, principal=c.principal, **kw)))
    unfinished = [r for r in listed if not r.finished]
    past_due = [r.id for r in listed if r.state not in ("done", "linked") and r.due_at <= c.now]
    late_done = [r.id for r in listed if r.done_at is not None and r.done_at > r.due_at]
    failed = [r.id for r in listed if r.state == "failed"]
    evidence = {
        **facts,
        "requests": len(listed),
        "in_progress": len(unfinished),
        "past_deadline_not_done": past_due,
        "failed": failed,
        "done_late": late_done,
        "certificates": sum(1 for r in listed if r.certificate),
    }
    if loose:
        return Result(FAIL, "deletion is allowed too long: " + "; ".join(loose), evidence, "tighten [policy]")
    if past_due:
        return Result(
            FAIL,
            f"{len(past_due)} deletion or return requests are past their deadline and not done",
            evidence,
            "carry them out now: `sagevault deletion run ID` (`--retry` for a failed one)",
        )
    if failed or late_done:
        return Result(
            ATTENTION,
            "a request failed, or one was done after its deadline",
            evidence,
            "retry failed requests (`sagevault deletion run ID --retry`); explain late ones to Amazon if asked",
        )
    return Result(PASS, f"every deletion or return request is within its {facts['deletion_sla_hours']} hours", evidence)


def live_copies(c: Context) -> Result:
    facts, loose = numbers(c.policy, ("live_copies_days",))
    limit = timedelta(days=facts["live_copies_days"])
    copies = c.d.copies.list_copies(c.conn, principal=c.principal, live_only=True)
    expired = [x.id for x in copies if x.expires_at <= c.now]
    too_long = [x.id for x in copies if x.expires_at - x.created_at > limit]
    by_kind: dict[str, int] = {}
    for x in copies:
        by_kind[x.kind] = by_kind.get(x.kind, 0) + 1
    evidence = {
        **facts,
        "live_copies": by_kind,
        "oldest_live_copy": day(min((x.created_at for x in copies), default=None)),
        "past_expiry_not_destroyed": expired,
        "kept_longer_than_allowed": too_long,
    }
    if loose:
        return Result(FAIL, "live copies may be kept too long: " + "; ".join(loose), evidence, "tighten [policy]")
    if expired or too_long:
        return Result(
            FAIL,
            f"{len(set(expired) | set(too_long))} live copies outlive {facts['live_copies_days']} days",
            evidence,
            "destroy them: `sagevault backup destroy ID` (or `--missing-ok` for one destroyed elsewhere)",
        )
    return Result(PASS, f"every backup and live copy is gone within {facts['live_copies_days']} days", evidence)


# --- Amazon's current DPP ------------------------------------------------------------------------


def vulnerabilities(c: Context) -> Result:
    facts, loose = numbers(c.policy, ("critical_vuln_fix_days", "high_vuln_fix_days"))
    register = c.d.governance.vulns
    overdue = method(register, "overdue")(c.conn)
    counts = method(register, "counts")(c.conn)
    last = c.last_event("governance:vuln:scan")
    evidence: dict[str, Any] = {
        **facts,
        "open_by_severity": {k: v for k, v in counts.items() if v},
        "past_deadline": [v.id for v in overdue],
        "last_scan_at": event_time(last).isoformat() if last else None,
    }
    if loose:
        return Result(FAIL, "fix deadlines are looser than Amazon's: " + "; ".join(loose), evidence, "tighten [policy]")
    if overdue:
        worst = sorted({v.severity for v in overdue})
        return Result(
            FAIL,
            f"{len(overdue)} vulnerabilities are open past their fix deadline ({', '.join(worst)})",
            evidence,
            "upgrade the packages (`sagevault vulns list` gives the fixed versions), then `sagevault vulns scan`",
        )
    if last is None:
        return Result(
            ATTENTION,
            "no dependency scan is recorded",
            evidence,
            "run `sagevault vulns scan` (the vulnerability-scan job runs it every 30 days)",
        )
    if last["outcome"] != "success" or c.now - event_time(last) > timedelta(days=SCAN_EVERY_DAYS):
        return Result(
            FAIL,
            f"the last dependency scan is older than {SCAN_EVERY_DAYS} days",
            evidence,
            "run `sagevault vulns scan` and keep the scheduler running the vulnerability-scan job",
        )
    return Result(PASS, "dependencies scanned within 30 days; every open finding within its deadline", evidence)


def data_attribution(c: Context) -> Result:
    rows = c.conn.execute(select(records.c.origin, func.count()).group_by(records.c.origin)).all()
    by_origin = {str(o): int(n) for o, n in rows if o}
    untagged = sum(int(n) for o, n in rows if not o)
    evidence = {"records_by_origin": by_origin, "records_without_origin": untagged}
    if untagged:
        return Result(FAIL, f"{untagged} records carry no Amazon origin", evidence, "re-ingest them through SageVault")
    return Result(PASS, "every stored record carries its Amazon origin", evidence)
