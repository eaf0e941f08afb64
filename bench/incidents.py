"""Incident response benchmark: what opening incidents and the every-minute clock pass cost.

    python bench/incidents.py [--incidents 2000] [--rounds 5]

An embedded deployment (SQLite, WAL) with an approved plan and an IMPOC. Each measurement is
beside a baseline in the same run:

- open: incidents opened by hand, one unit of work each (as a CLI command or API request does:
  the incident row, its 6-7 tasks, a timeline entry and the incident:case:open event, durable
  before the commit), in incidents/s; the baseline is a unit of work that records one security
  event and writes one row (`open_ratio` = time per open / time per baseline);
- clock pass: the `incident-clocks` job's work (every running clock checked, the plan's review
  dates checked, through the job runner with its leader lock and `job_runs` row) over all those
  incidents open with nothing due, median of `--rounds` passes, in ms; the baseline is reading
  the columns the clock reads of the same rows in one unit of work (`clock_pass_ratio`);
- warn pass: the pass at 12 h, when every clock warns at once (one update, one timeline entry and
  one event per incident), in incidents/s.

The last line is JSON with `opens_per_s`, `open_ratio`, `clock_pass_ms`, `clock_pass_ratio`,
`warnings_per_s`.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from sagevault.audit import AuditEvent, EventName
from sagevault.config import load_settings
from sagevault.deployment import Deployment, init_deployment
from sagevault.identity import Channel, Principal
from sagevault.incidents import State
from sagevault.incidents._schema import incidents
from sagevault.jobs import BUILTIN, Jobs
from sagevault.logs import configure_logging
from sagevault.testing import ManualClock, fast_password_hashing

OPERATOR = Principal(id="operator:bench", kind="operator")
TYPES = ["unauthorized-access", "credential-compromise", "lost-device", "malware", "vendor-breach"]


def _baseline_write(d: Deployment, i: int) -> None:
    with d.unit_of_work() as conn:
        d.audit.record(
            AuditEvent(name=EventName.CLI_COMMAND_RUN, channel=Channel.CLI, actor=OPERATOR.id, operation="bench")
        )
        conn.execute(
            incidents.update().where(incidents.c.id == -i).values(title="x")  # one statement, no row
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp) / "var")
        configure_logging(Path(tmp) / "bench.log")
        logging.getLogger("sagevault").setLevel(logging.WARNING)
        clock = ManualClock(datetime(2026, 12, 6, 9, 0, tzinfo=UTC))
        d = init_deployment(settings, hasher=fast_password_hashing(), clock=clock, event_clock=clock)
        with d.unit_of_work() as conn:
            d.incidents.plans.set_impoc(conn, "Dana Smith", "ir-lead@example.com", principal=OPERATOR)
            d.incidents.plans.approve(conn, d.infrastructure(conn), principal=OPERATOR)

        n = args.incidents
        base_times, open_times = [], []
        for i in range(n):  # interleaved, so the machine's drift hits both alike
            start = time.perf_counter()
            _baseline_write(d, i + 1)
            base_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            with d.unit_of_work() as conn:
                d.incidents.open(
                    conn,
                    type=TYPES[i % len(TYPES)],
                    principal=OPERATOR,
                    amazon="possible",
                    detected_at=clock() - timedelta(hours=1),
                )
            open_times.append(time.perf_counter() - start)
        per_open, per_base = statistics.median(open_times), statistics.median(base_times)
        print(
            f"open: {1 / per_open:,.0f} incidents/s (median {per_open * 1e3:.2f} ms); baseline audited write "
            f"{per_base * 1e3:.2f} ms; ratio {per_open / per_base:.2f}"
        )

        jobs = Jobs(BUILTIN, clock)
        jobs.run(d, "incident-clocks", force=True)  # the plan's notices, once
        passes, reads = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            with d.unit_of_work(read_only=True) as conn:
                rows = conn.execute(
                    select(incidents.c.id, incidents.c.notify_due, incidents.c.clock_stage).where(
                        incidents.c.state != State.CLOSED.value, incidents.c.notify_due.is_not(None)
                    )
                ).all()
            reads.append(time.perf_counter() - start)
            start = time.perf_counter()
            ran = jobs.run(d, "incident-clocks", force=True)
            passes.append(time.perf_counter() - start)
            assert ran.ran, ran
            assert ran.error is None, ran
        assert len(rows) == n
        per_pass, per_read = statistics.median(passes), statistics.median(reads)
        print(
            f"clock pass over {n} open incidents, nothing due: median {per_pass * 1e3:.1f} ms; reading the rows "
            f"{per_read * 1e3:.1f} ms; ratio {per_pass / per_read:.2f}"
        )

        clock.advance(hours=11, seconds=1)  # 12 h after detection: every clock warns
        start = time.perf_counter()
        with d.unit_of_work() as conn:
            moved = d.incidents.amazon.clocks(conn)
        warn = time.perf_counter() - start
        assert len(moved) == n
        print(f"warn pass: {n} warnings in {warn:.2f} s ({n / warn:,.0f}/s)")
        d.close()
    print(
        json.dumps(
            {
                "opens_per_s": round(1 / per_open),
                "open_ratio": round(per_open / per_base, 2),
                "clock_pass_ms": round(per_pass * 1e3, 1),
                "clock_pass_ratio": round(per_pass / per_read, 2),
                "warnings_per_s": round(n / warn),
            }
        )
    )


if __name__ == "__main__":
    main()
