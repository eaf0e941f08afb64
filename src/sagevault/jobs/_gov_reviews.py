"""Access-review campaigns on the scheduler: reminders while a campaign's items are undecided (a
week, then a day, before its due date; governance:review:remind, rule `access-review-reminder`,
low); at the due date an open campaign whose default is keep or revoke is closed by the job (the
default applied, never revoking the last admin, the report signed); and governance:review:overdue
once per occasion (an open campaign past its due date: one whose default is none; no campaign
started within the policy's `access_review_days` of the last one's start), which the rule
`access-review-overdue` turns into a high-severity alarm."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sagevault.governance._reviews import APPLIER
from sagevault.identity import Principal

from ._runner import Job, JobResult

if TYPE_CHECKING:
    from sagevault.deployment import Deployment


def _campaigns(d: Deployment, _p: Principal) -> JobResult:
    with d.unit_of_work() as conn:
        reminded = d.governance.reviews.remind(conn)
        closed = d.governance.reviews.close_due(conn)
        late = d.governance.reviews.note_overdue(conn)
    return JobResult({"reminders": len(reminded), "closed": len(closed), "overdue_noted": int(late is not None)})


JOBS: list[Job] = [
    Job(
        APPLIER,
        "access reviews: remind before a campaign's due date, apply its default at the due date, alarm when one is "
        "overdue or none started in time",
        lambda _d: timedelta(days=1),
        _campaigns,
    )
]
