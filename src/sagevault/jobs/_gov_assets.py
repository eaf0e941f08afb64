"""The policy register's daily job: each policy version in force that is past its review date
(or unapproved 30 days after it was registered) is recorded once as governance:policy:overdue,
which raises the policy-review-overdue alarm. Assets due for review are counted for the report;
they raise no alarm."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sagevault.identity import Principal

from ._runner import Job, JobResult

if TYPE_CHECKING:
    from sagevault.deployment import Deployment


def _reviews_due(d: Deployment, _p: Principal) -> JobResult:
    with d.unit_of_work() as conn:
        noted = d.governance.policies.note_overdue(conn)
        overdue = d.governance.policies.overdue(conn)
        assets_due = d.governance.assets.due(conn)
    return JobResult({"policies_noted": len(noted), "policies_overdue": len(overdue), "assets_due": len(assets_due)})


JOBS: list[Job] = [
    Job(
        "governance-reviews-due",
        "record each policy past its review (or unapproved after 30 days) once; the alarm follows",
        lambda _d: timedelta(days=1),
        _reviews_due,
    ),
]
