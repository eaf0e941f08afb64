"""The jobs table: when each scheduled job last started and how it ended. Every node reads and
claims it, so a job runs once per interval however many nodes (or `serve` workers) run the
scheduler."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table

from sagevault.db import NAMING_CONVENTION

jobs_metadata = MetaData(naming_convention=NAMING_CONVENTION)

job_runs = Table(
    "job_runs",
    jobs_metadata,
    Column("name", String(64), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),  # the last run's start (its claim)
    Column("finished_at", DateTime(timezone=True), nullable=True),  # NULL while it runs
    Column("outcome", String(12), nullable=True),  # success | failure
    Column("error", String(64), nullable=True),  # the error's type name, never its message
    Column("runs", BigInteger, nullable=False),
)
