"""The vulnerability register's jobs: a dependency scan every 30 days (Amazon's DPP), and the
daily look at fix deadlines that records governance:vuln:overdue once per finding past its
deadline (the rule `vulnerability-overdue` raises the alarm)."""

from __future__ import annotations

import importlib.util
from datetime import timedelta
from typing import TYPE_CHECKING

from sagevault.governance._vulns import audit_installed
from sagevault.identity import Principal
from sagevault.logs import get_logger

from ._runner import Job, JobResult

if TYPE_CHECKING:
    from sagevault.deployment import Deployment


def _scan(d: Deployment, p: Principal) -> JobResult:
    """Run pip-audit on SageVault's environment and record the findings. A scan that fails (no
    network, pip-audit's error, bad output) fails the job: scheduler:job:fail, the job-failed
    alarm. Without pip-audit installed nothing is scanned (a warning in the log, as the digest job
    does without its key): the DPP report's `amazon-vulnerabilities` item says no scan is recorded,
    and FAIL once the last one is older than 30 days."""
    if importlib.util.find_spec("pip_audit") is None:
        get_logger("sagevault.jobs").warning("pip-audit is not installed: the vulnerability-scan job scans nothing")
        return JobResult({"scanned": 0})
    findings = audit_installed()
    with d.unit_of_work() as conn:
        result = d.governance.vulns.scan(conn, findings, principal=p)
    return JobResult(result.payload())


def _deadlines(d: Deployment, _p: Principal) -> JobResult:
    with d.unit_of_work() as conn:
        noted = d.governance.vulns.note_overdue(conn)
    return JobResult({"overdue": len(noted)})


JOBS: list[Job] = [
    Job(
        "vulnerability-scan",
        "check the installed dependencies against known advisories (pip-audit) and record fix deadlines",
        lambda _d: timedelta(days=30),
        _scan,
    ),
    Job(
        "vulnerability-deadlines",
        "alarm on vulnerabilities open past their fix deadline (critical 7 days, high 30)",
        lambda _d: timedelta(days=1),
        _deadlines,
    ),
]
