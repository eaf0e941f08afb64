"""Scheduled jobs: one node runs each job per interval, a failure is recorded and stops nothing,
the scheduler runs in the background, and the built-in jobs do their work (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from commands import run
from conftest import OPERATOR
from sagevault.audit import AuditEvent, EventName
from sagevault.config import Settings
from sagevault.crypto import InMemoryKeyProvider
from sagevault.deployment import Deployment, init_deployment, open_deployment
from sagevault.identity import Channel, Principal
from sagevault.jobs import Job, JobResult, Jobs, Scheduler, default_jobs, job_runs, leader
from sagevault.testing import ManualClock


def _counting_job(name: str, ran: list[str], every: timedelta = timedelta(hours=1)) -> Job:
    def work(d: Deployment, p: Principal) -> JobResult:
        ran.append(p.id)
        return JobResult({"n": len(ran)})

    return Job(name, "counts its runs", lambda _d: every, work)


def _second_node(d: Deployment) -> Deployment:
    """Another process's view of the same deployment (its own engines, caches and locks)."""
    if d.engine.dialect.name == "sqlite":
        return open_deployment(d.settings, keys=d.keys)
    return open_deployment(d.settings, keys=d.keys, engine=d.engine, audit_engine=d.audit.engine)


def test_a_job_runs_once_per_interval_however_many_nodes_ask(deployment: Deployment) -> None:
    clock = ManualClock(datetime.now(UTC))
    ran: list[str] = []
    jobs = Jobs([_counting_job("count", ran)], clock)
    other = _second_node(deployment)
    try:
        assert [r.ran for r in jobs.run_due(deployment)] == [True]
        assert [r.ran for r in jobs.run_due(other)] == [False]  # ran a moment ago, on the first node
        clock.advance(minutes=59)
        assert [r.ran for r in jobs.run_due(other)] == [False]
        clock.advance(minutes=2)
        assert [r.ran for r in jobs.run_due(other)] == [True]
        assert [r.ran for r in jobs.run_due(deployment)] == [False]
    finally:
        if other.engine is not deployment.engine:
            other.close()
    assert ran == ["job:count", "job:count"]
    with deployment.engine.connect() as conn:
        row = conn.execute(select(job_runs).where(job_runs.c.name == "count")).one()
    assert row.runs == 2 and row.outcome == "success" and row.error is None


def test_while_one_node_leads_a_job_no_other_runs_it(deployment: Deployment) -> None:
    ran: list[str] = []
    jobs = Jobs([_counting_job("count", ran)])
    with leader(deployment.engine, "count") as mine:
        assert mine
        assert not jobs.run(deployment, "count", force=True).ran  # another holder: not even by hand
    assert jobs.run(deployment, "count", force=True).ran
    assert ran == ["job:count"]


def test_a_failing_job_is_recorded_by_type_and_the_other_jobs_still_run(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "maria.silva@marketplace.amazon.com"  # as if a bug put PII in an error message

    def broken(_d: Deployment, _p: Principal) -> JobResult:
        raise RuntimeError(f"could not handle {secret}")

    ran: list[str] = []
    jobs = Jobs([Job("broken", "fails", lambda _d: timedelta(hours=1), broken), _counting_job("count", ran)])
    outcomes = jobs.run_due(deployment)
    assert [(r.name, r.ran, r.error) for r in outcomes] == [("broken", True, "RuntimeError"), ("count", True, None)]
    (event,) = deployment.audit.search(name=EventName.SCHEDULER_JOB_FAIL.value)
    assert (event["actor"], event["channel"], event["operation"], event["reason"]) == (
        "job:broken",
        "scheduler",
        "broken",
        "error",
    )
    assert secret not in str(event) and secret not in caplog.text
    state = {s.name: s for s in jobs.states(deployment)}
    assert state["broken"].outcome == "failure" and state["count"].outcome == "success"


def test_the_scheduler_runs_due_jobs_in_the_background_until_stopped(deployment: Deployment) -> None:
    ran: list[str] = []
    jobs = Jobs([_counting_job("count", ran, every=timedelta(days=1))])
    with Scheduler(deployment, jobs, tick=0.02).running():
        deadline = time.monotonic() + 30
        while not ran and time.monotonic() < deadline:
            time.sleep(0.02)
    assert ran == ["job:count"]  # due once; the next pass found it not due


def test_the_digest_job_signs_the_head_only_when_events_followed_the_last_digest(deployment: Deployment) -> None:
    d = deployment
    jobs = default_jobs()
    d.audit.write_digest()
    assert d.audit.undigested() == 0
    assert jobs.run(d, "audit-digest", force=True).result.counts == {"events": 0}  # type: ignore[union-attr]
    d.audit.record(AuditEvent(name=EventName.CLI_COMMAND_RUN, channel=Channel.CLI, actor=OPERATOR.id))
    assert d.audit.undigested() == 1
    signed = jobs.run(d, "audit-digest", force=True).result
    assert signed is not None and signed.counts["events"] == 1
    assert d.audit.undigested() == 0  # the digest covers its own audit:digest:write event
    (event,) = d.audit.search(name=EventName.AUDIT_DIGEST_WRITE.value)
    assert event["actor"] == "job:audit-digest" and event["channel"] == "scheduler"


# SQLite only: the events are aged by the deployment's clock, which PostgreSQL's purge function
# does not take (it asks the server's); tests/audit/test_audit.py purges on PostgreSQL.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_retention_job_purges_only_months_past_the_retention_period(
    deployment_at: Callable[..., Deployment],
) -> None:
    clock = ManualClock(datetime.now(UTC))
    d = deployment_at(clock=clock)
    for _ in range(3):
        d.audit.record(AuditEvent(name=EventName.CLI_COMMAND_RUN, channel=Channel.CLI, actor=OPERATOR.id))
    old = d.audit.count()
    clock.advance(days=d.settings.policy.security_log_retention_days + 62)  # they are past it now
    d.audit.record(AuditEvent(name=EventName.CLI_COMMAND_RUN, channel=Channel.CLI, actor=OPERATOR.id, at=clock()))
    ran = default_jobs(clock).run(d, "audit-retention", force=True)
    assert ran.result is not None and ran.result.counts["events"] == old
    assert d.audit.count() == 2  # the newer event and the purge's own
    (purge,) = d.audit.search(name=EventName.AUDIT_SEGMENT_PURGE.value)
    assert purge["actor"] == "job:audit-retention" and purge["reason"] == "retention"


def test_the_access_review_job_records_a_review_each_day(deployment: Deployment) -> None:
    ran = default_jobs().run(deployment, "access-review", force=True)
    assert (
        ran.ran
        and ran.result is not None
        and set(ran.result.counts) == {"inactive", "expiring_keys", "expiring_passwords"}
    )
    (review,) = deployment.audit.search(name=EventName.ACCESS_REVIEW_RUN.value)
    assert review["actor"] == "job:access-review" and review["channel"] == "scheduler"


def test_jobs_are_listed_and_run_by_hand_from_the_command_line(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    listed = run(tmp_path, "jobs", "list")
    assert listed.returncode == 0
    assert all(name in listed.stdout for name in ("audit-digest", "audit-retention", "access-review"))
    ran = run(tmp_path, "jobs", "run", "access-review")
    assert ran.returncode == 0 and "access-review ran" in ran.stdout and "inactive=0" in ran.stdout
    assert "success" in run(tmp_path, "jobs", "list").stdout
    unknown = run(tmp_path, "jobs", "run", "everything")
    assert unknown.returncode == 2 and "no job everything" in unknown.stderr and "audit-digest" in unknown.stderr


def test_a_pass_that_finds_nothing_due_takes_no_write_lock(settings: Settings) -> None:
    """The scheduler asks every second; on SQLite an idle pass must not queue for the database's
    write lock (an ingest holding it would stall it, then fail it after the busy timeout)."""
    d = init_deployment(settings, keys=InMemoryKeyProvider())
    try:
        ran: list[str] = []
        jobs = Jobs([_counting_job("count", ran)])
        assert [r.ran for r in jobs.run_due(d)] == [True]
        with d.engine.begin() as writer:  # BEGIN IMMEDIATE: as an ingest under way holds the write lock
            writer.exec_driver_sql("SELECT 1")
            assert [r.ran for r in jobs.run_due(d)] == [False]
            assert [s.name for s in jobs.states(d)] == ["count"]
    finally:
        d.close()
    assert ran == ["job:count"]


def test_an_in_memory_database_leads_its_jobs_in_this_process() -> None:
    from sqlalchemy import create_engine

    engine = create_engine("sqlite://")
    with leader(engine, "count") as first, leader(engine, "count") as second:
        assert first and not second
    with leader(engine, "count") as again:
        assert again
    assert not list(Path.cwd().glob("None-job-*"))
