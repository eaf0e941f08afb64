"""The jobs every deployment runs. The next controls (alarms, retention of Amazon Information,
review reminders) add theirs here."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sagevault.audit import Asker, Reason
from sagevault.db import is_sqlite
from sagevault.identity import Principal
from sagevault.logs import get_logger

from ._runner import Job, JobResult

if TYPE_CHECKING:
    from sagevault.deployment import Deployment


def _audit_digest(d: Deployment, p: Principal) -> JobResult:
    """Sign the chain head when events followed the last signed digest. The digest covers its own
    audit:digest:write event, so an idle log stays idle."""
    if not d.audit.signs:  # `audit verify` says so; failing here every minute would only flood the log
        get_logger("sagevault.jobs").warning("no audit signing key: the audit-digest job signs nothing")
        return JobResult({"events": 0})
    pending = d.audit.undigested()
    if not pending:
        return JobResult({"events": 0})
    digest = d.audit.digest(Asker(p), reason=Reason.INTERVAL)
    return JobResult({"events": pending, "seq": digest.seq})


def _audit_retention(d: Deployment, p: Principal) -> JobResult:
    """Purge whole months of security events older than the policy's retention (at least 365
    days); the chain keeps a signed anchor and still verifies."""
    cutoff = d.now() - timedelta(days=d.settings.policy.security_log_retention_days)
    return JobResult({"events": d.audit.purge_before(cutoff, Asker(p))})


def _access_review(d: Deployment, p: Principal) -> JobResult:
    """The access review (inactive accounts, keys and passwords about to expire), recorded as
    access:review:run, so every day has one whether or not anybody asks."""
    with d.engine.begin() as conn:
        review = d.access.reviews.run(conn, actor=p)
    return JobResult(
        {
            "inactive": len(review.inactive),
            "expiring_keys": len(review.expiring_keys),
            "expiring_passwords": len(review.expiring_passwords),
        }
    )


def _leavers(d: Deployment, p: Principal) -> JobResult:
    """Disable every account whose leaving date has come: sessions end, API keys are revoked
    (each an access:account:disable naming `leaver`). Hourly, so within the policy's 24 hours."""
    with d.unit_of_work() as conn:
        gone = d.access.accounts.disable_leavers(conn, actor=p)
    return JobResult({"disabled": len(gone)})


def _incident_clocks(d: Deployment, _p: Principal) -> JobResult:
    """The 24-hour Amazon clock of every open incident (warnings, overdue) and the plan's review
    dates (six months, major changes): each records its event once; rules raise the alarms."""
    infrastructure = d.infrastructure()
    with d.unit_of_work() as conn:
        moved = d.incidents.amazon.clocks(conn)
        due = d.incidents.plans.notify_due(conn, infrastructure)
    return JobResult({"clocks": len(moved), "plan_notices": len(due)})


def _deletion_clocks(d: Deployment, _p: Principal) -> JobResult:
    """The 72-hour clock of every deletion or return request not done: warnings at 48 h and
    66 h, overdue at 72 h, each recorded once; rules raise the alarms."""
    with d.unit_of_work() as conn:
        moved = d.deletion.clocks(conn)
    return JobResult({"clocks": len(moved)})


def _retention(d: Deployment, p: Principal) -> JobResult:
    """Purge PII past its retention date (30 days after delivery) and records past 18 months,
    except under a legal hold; each purge a security event with its counts."""
    pii = whole = 0
    while True:  # one unit of work per batch: a long backlog never holds the write lock for long
        with d.unit_of_work() as conn:
            ran = d.retention.run(conn, principal=p)
        pii, whole = pii + ran.pii, whole + ran.records
        if not ran.more:
            break
    if (pii or whole) and is_sqlite(d.engine):
        d.release_deleted_pages()  # the purged values' old page images leave the WAL too
    return JobResult({"pii": pii, "records": whole})


def _live_copies(d: Deployment, p: Principal) -> JobResult:
    """Backups and return bundles past their expiry (90 days at most) whose file is on this
    server are overwritten, deleted and recorded destroyed; any other (moved elsewhere) is recorded
    once as deletion:copy:overdue, which raises the live-copy-overdue alarm."""
    destroyed = 0
    with d.unit_of_work() as conn:
        now = d.now()
        for copy in d.copies.list_copies(conn, principal=p, live_only=True):
            if copy.expires_at <= now and copy.kind in ("backup", "return-bundle") and Path(copy.location).is_file():
                d.backups.destroy(conn, copy.id, principal=p)
                destroyed += 1
        overdue = d.copies.overdue(conn)
    return JobResult({"destroyed": destroyed, "overdue": len(overdue)})


BUILTIN: list[Job] = [
    Job(
        "audit-digest",
        "sign the security log's head when events followed the last digest",
        lambda d: timedelta(seconds=max(60.0, d.settings.audit_digest_seconds)),
        _audit_digest,
    ),
    Job(
        "audit-retention",
        "purge security events older than the retention period (whole months)",
        lambda _d: timedelta(days=1),
        _audit_retention,
    ),
    Job(
        "access-review",
        "review accounts, API keys and passwords; recorded as access:review:run",
        lambda _d: timedelta(days=1),
        _access_review,
    ),
    Job(
        "leavers",
        "disable accounts whose leaving date has come (within the policy's 24 hours)",
        lambda _d: timedelta(hours=1),
        _leavers,
    ),
    Job(
        "incident-clocks",
        "warn before the 24-hour deadline to notify Amazon, alarm when it passes; plan review due dates",
        lambda _d: timedelta(minutes=1),
        _incident_clocks,
    ),
    Job(
        "deletion-clocks",
        "warn before a deletion or return request's 72-hour deadline, alarm when it passes",
        lambda _d: timedelta(minutes=1),
        _deletion_clocks,
    ),
    Job(
        "retention",
        "purge PII 30 days after delivery and records after 18 months, except under a legal hold",
        lambda _d: timedelta(hours=1),
        _retention,
    ),
    Job(
        "live-copies",
        "alarm on backups, exports and return bundles past their expiry",
        lambda _d: timedelta(hours=1),
        _live_copies,
    ),
]
