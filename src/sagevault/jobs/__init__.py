"""The scheduler edge: scheduled work, each job owning its units of work as a request or a
command does, one node running each job per interval (see `_runner`).

`sagevault jobs list|run NAME` runs them by hand; `sagevault serve` starts a `Scheduler` in each
process. `MIGRATIONS` is where the jobs table is created.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from . import _gov_assets, _gov_reviews, _gov_vulns
from ._builtin import BUILTIN
from ._connector import SYNC, SYNC_JOB, SyncReport, sync_tenant
from ._deletion import carry_out
from ._runner import Job, JobResult, Jobs, JobState, Ran, Scheduler, leader
from ._schema import job_runs, jobs_metadata
from ._watch import Watch

MIGRATIONS = Path(__file__).with_name("migrations")


def default_jobs(clock: Callable[[], datetime] | None = None) -> Jobs:
    """Every job a deployment runs."""
    return Jobs([*BUILTIN, SYNC, *_gov_assets.JOBS, *_gov_reviews.JOBS, *_gov_vulns.JOBS], clock)


__all__ = [
    "MIGRATIONS",
    "SYNC_JOB",
    "Job",
    "JobResult",
    "JobState",
    "Jobs",
    "Ran",
    "Scheduler",
    "SyncReport",
    "Watch",
    "carry_out",
    "default_jobs",
    "job_runs",
    "jobs_metadata",
    "leader",
    "sync_tenant",
]
