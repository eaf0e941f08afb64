"""Access-review campaigns on the scheduler: reminders while a campaign's items are undecided (a
week, then a day, before its due date), and governance:review:overdue once per occasion (an open
campaign past its due date; no campaign started within the policy's `access_review_days`), which
the rule `access-review-overdue` turns into a high-severity alarm."""

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
        late = d.governance.reviews.note_overdue(conn)
    return JobResult({"reminders": len(reminded), "overdue_noted": int(late is not None)})


JOBS: list[Job] = [
    Job(
        APPLIER,
        "access reviews: remind before a campaign's due date, alarm when one is overdue or none started in time",
        lambda _d: timedelta(days=1),
        _campaigns,
    )
]
