"""Running scheduled jobs: once per interval however many nodes run the scheduler.

A run is claimed before it starts: under the job's leader lock (a PostgreSQL advisory lock held
for the whole run; on SQLite an exclusive lock on a file beside the database), the job's row in
`job_runs` is checked and stamped in one transaction. A node that cannot take the lock, or finds
the job ran less than an interval ago, leaves it. Each job owns its units of work, as a request
or a command does; a run that fails is recorded as scheduler:job:fail (its name and the error's
type, nothing else) and the scheduler goes on.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, EventName, outcome_of
from sagevault.db import is_sqlite, reading
from sagevault.errors import PayloadError, shown
from sagevault.identity import Principal
from sagevault.logs import get_logger

from ._schema import job_runs

if TYPE_CHECKING:
    from sagevault.deployment import Deployment


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a run did, for `sagevault jobs run` to show. A job's work is recorded by the domain
    calls it makes (their events name the job as actor, on the scheduler channel)."""

    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    description: str
    every: Callable[[Deployment], timedelta]  # from the deployment's settings
    run: Callable[[Deployment, Principal], JobResult]


@dataclass(frozen=True, slots=True)
class JobState:
    """A job as `sagevault jobs list` shows it."""

    name: str
    description: str
    every: timedelta
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str | None
    runs: int

    @property
    def next_due(self) -> datetime | None:
        return None if self.started_at is None else self.started_at + self.every


@dataclass(frozen=True, slots=True)
class Ran:
    """The outcome of `run_job`: `ran` False when another node had the job or it was not due."""

    name: str
    ran: bool
    result: JobResult | None = None
    error: str | None = None  # the error's type name


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(b"sagevault-job\0" + name.encode()).digest()[:8], "big", signed=True)


_IN_PROCESS: dict[str, threading.Lock] = {}  # leaders of a database no other process can open


@contextlib.contextmanager
def leader(engine: Engine, name: str) -> Iterator[bool]:
    """Whether this process leads job `name` for the block: one node at a time, never waiting.
    PostgreSQL: a session advisory lock, held across the run's own transactions. SQLite: an
    exclusive lock on a file beside the database (an in-memory database: a lock of this process)."""
    if is_sqlite(engine):
        database = engine.url.database
        if not database or database == ":memory:":
            lock = _IN_PROCESS.setdefault(name, threading.Lock())
            got = lock.acquire(blocking=False)
            try:
                yield got
            finally:
                if got:
                    lock.release()
            return
        fd = os.open(f"{database}-job-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return
    with engine.connect() as conn:
        key = _lock_key(name)
        got = bool(conn.exec_driver_sql("SELECT pg_try_advisory_lock(%(k)s)", {"k": key}).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                try:
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(%(k)s)", {"k": key})
                    conn.commit()
                except Exception:
                    # A session that may still hold the lock must not go back to the pool:
                    # closing it releases the lock for the other nodes.
                    conn.invalidate()
                    raise


def _last_start(conn: Connection, name: str) -> datetime | None:
    return _aware(conn.execute(select(job_runs.c.started_at).where(job_runs.c.name == name)).scalar_one_or_none())


def _claim(conn: Connection, name: str, every: timedelta, now: datetime, force: bool) -> bool:
    """Stamp the job's start if it is due (or forced); whether it was."""
    row = conn.execute(select(job_runs).where(job_runs.c.name == name)).first()
    if row is None:
        conn.execute(insert(job_runs).values(name=name, started_at=now, runs=1))
        return True
    started = _aware(row.started_at)
    if not force and started is not None and now < started + every:
        return False
    conn.execute(
        update(job_runs)
        .where(job_runs.c.name == name)
        .values(started_at=now, finished_at=None, outcome=None, error=None, runs=job_runs.c.runs + 1)
    )
    return True


class Jobs:
    """The deployment's jobs, by name, and how to run them."""

    def __init__(self, jobs: list[Job], clock: Callable[[], datetime] | None = None) -> None:
        self._jobs = {j.name: j for j in jobs}
        self._clock = clock or (lambda: datetime.now(UTC))

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    def now(self) -> datetime:
        return self._clock()

    def get(self, name: str) -> Job:
        job = self._jobs.get(name)
        if job is None:
            raise PayloadError(f"no job {shown(name)}; jobs: {', '.join(self._jobs)} (see `sagevault jobs list`)")
        return job

    def states(self, d: Deployment) -> list[JobState]:
        with d.engine.connect() as conn:
            reading(conn)  # a snapshot: listing takes no write lock
            rows = {r.name: r for r in conn.execute(select(job_runs))}
        out = []
        for job in self:
            r = rows.get(job.name)
            out.append(
                JobState(
                    job.name,
                    job.description,
                    job.every(d),
                    _aware(r.started_at) if r else None,
                    _aware(r.finished_at) if r else None,
                    r.outcome if r else None,
                    int(r.runs) if r else 0,
                )
            )
        return out

    def run(self, d: Deployment, name: str, *, force: bool = False) -> Ran:
        """Run job `name` if this node leads it and it is due (`force`: due or not). A failure is
        recorded and reported in the answer, not raised: one job must not stop the others."""
        job = self.get(name)
        principal = Principal.job(name)
        if not force and not self._due(d, job):  # most passes end here, without the write lock
            return Ran(name, ran=False)
        with leader(d.engine, name) as leads:
            if not leads:
                return Ran(name, ran=False)
            with d.engine.begin() as conn:
                if not _claim(conn, name, job.every(d), self._clock(), force):
                    return Ran(name, ran=False)
            try:
                result = job.run(d, principal)
            except Exception as exc:  # recorded by type; the message may hold anything
                self._finish(d, name, "failure", type(exc).__name__)
                get_logger("sagevault.jobs").error("job failed", job=name, error=type(exc).__name__)
                outcome, reason = outcome_of(exc)
                d.audit.record(
                    AuditEvent(
                        name=EventName.SCHEDULER_JOB_FAIL,
                        channel=principal.channel,
                        actor=principal.id,
                        outcome=outcome,
                        reason=reason,
                        operation=name,
                    )
                )
                return Ran(name, ran=True, error=type(exc).__name__)
            self._finish(d, name, "success", None)
            return Ran(name, ran=True, result=result)

    def next_due(self, d: Deployment, name: str) -> datetime:
        """When job `name` is next due, read in a snapshot (now, if it never ran)."""
        with d.engine.connect() as conn:
            reading(conn)
            started = _last_start(conn, name)
        return self._clock() if started is None else started + self.get(name).every(d)

    def _due(self, d: Deployment, job: Job) -> bool:
        return self.next_due(d, job.name) <= self._clock()

    def _finish(self, d: Deployment, name: str, outcome: str, error: str | None) -> None:
        with d.engine.begin() as conn:
            conn.execute(
                update(job_runs)
                .where(job_runs.c.name == name)
                .values(finished_at=self._clock(), outcome=outcome, error=error)
            )

    def run_due(self, d: Deployment) -> list[Ran]:
        """One pass: every job this node leads and that is due."""
        return [self.run(d, job.name) for job in self]


class Scheduler:
    """Runs a deployment's jobs in a thread of this process, checking every `tick` seconds.
    `serve` starts one in every process; the claim lets one node run each job per interval."""

    def __init__(self, d: Deployment, jobs: Jobs, *, tick: float = 1.0) -> None:
        self._d = d
        self._jobs = jobs
        self._tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sagevault-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        due: dict[str, datetime] = {}  # when each job is next due, as last read: no read per tick
        while not self._stop.wait(self._tick):
            self._d.audit.digest_if_stale()  # no event this process appended waits long for a signed digest
            for job in self._jobs:
                if job.name in due and due[job.name] > self._jobs.now():
                    continue
                try:
                    self._jobs.run(self._d, job.name)
                    due[job.name] = self._jobs.next_due(self._d, job.name)
                except Exception as exc:  # the database is away: try again at the next tick
                    due.pop(job.name, None)
                    get_logger("sagevault.jobs").error("scheduler pass failed", job=job.name, error=type(exc).__name__)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    @contextlib.contextmanager
    def running(self) -> Iterator[Scheduler]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
