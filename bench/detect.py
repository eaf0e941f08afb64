"""Detection benchmark: how fast the shipped rules evaluate the security log, what following the
log costs the appends, and how long from a triggering event's commit to its alarm row.

    python bench/detect.py [--events 100000] [--rate 20000] [--triggers 40]

An embedded deployment (SQLite) with every shipped rule on and canaries registered. The workload
mixes what a busy deployment records: searches, reads and reveals by 50 principals over 5
tenants, refusals, failed log-ins. Three measurements, each beside its baseline in the same run:

- evaluated: `Watch.catch_up()` over events already in the log (read by seq, parsed, every rule,
  alarms, baselines and the cursor committed) in events/s; the detector alone in memory beside it;
- overhead: appending the same events in batches of 100 with the detector following in a thread
  of the same process (`overhead_ratio_same_process`), against the same appends with no detector
  (time ratio, median of runs);
- the same appends with the detector in a process of its own (`sagevault monitor run`, as `serve`
  starts it beside the server): `overhead_ratio`;
- delay: events appended at `--rate` per second with the detector following from its own
  process; now and then one touches a canary (an alarm at once); the time from that append's
  commit to its alarm row.

The last line is JSON with `events_per_s`, `overhead_ratio` and `alarm_delay_p99_s`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from sagevault.audit import AuditEvent, EventName, Outcome, Reason
from sagevault.config import load_settings
from sagevault.deployment import Deployment, init_deployment
from sagevault.identity import Channel
from sagevault.jobs import Watch
from sagevault.logs import configure_logging
from sagevault.monitor import Detector, Seen, alarms, monitor_cursor
from sagevault.testing import fast_password_hashing

TENANTS = [f"A{i}BENCHSELLER" for i in range(5)]
CANARY_BASE = 10**9


def workload(n: int, seed: int = 3) -> list[AuditEvent]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        actor = f"svc-app-{rnd.randrange(50)}"
        tenant = rnd.choice(TENANTS)
        pick = rnd.random()
        if pick < 0.4:
            out.append(
                AuditEvent(
                    name=EventName.VAULT_RECORD_SEARCH,
                    channel=Channel.API,
                    actor=actor,
                    tenant_id=tenant,
                    record_ids=[rnd.randrange(1, 10**6)],
                    counts={"hits": 1},
                )
            )
        elif pick < 0.7:
            out.append(
                AuditEvent(
                    name=EventName.VAULT_FIELD_REVEAL,
                    channel=Channel.API,
                    actor=actor,
                    tenant_id=tenant,
                    record_ids=[rnd.randrange(1, 10**6)],
                    counts={"fields": 2},
                )
            )
        elif pick < 0.9:
            out.append(
                AuditEvent(
                    name=EventName.VAULT_RECORD_READ,
                    channel=Channel.API,
                    actor=actor,
                    tenant_id=tenant,
                    counts={"orders": 50},
                )
            )
        elif pick < 0.97:
            out.append(
                AuditEvent(
                    name=EventName.ACCESS_PERMISSION_DENY,
                    channel=Channel.API,
                    actor=actor,
                    tenant_id=tenant,
                    outcome=Outcome.DENIED,
                    reason=Reason.ACCESS_DENIED,
                )
            )
        else:
            out.append(
                AuditEvent(
                    name=EventName.ACCESS_LOGIN_FAILURE,
                    channel=Channel.API,
                    actor=f"p_{i % 900}",
                    outcome=Outcome.DENIED,
                    reason=Reason.BAD_CREDENTIALS,
                )
            )
    return out


ENV = {"SAGEVAULT_AUDIT_DIGEST_EVERY": "1000000", "SAGEVAULT_AUDIT_DIGEST_SECONDS": "3600"}


def deployment(tmp: Path, name: str) -> Deployment:
    settings = load_settings(data_dir=tmp / name, audit_digest_every=1_000_000, audit_digest_seconds=3600)
    d = init_deployment(settings, hasher=fast_password_hashing())  # a key file: a second process can open it
    with d.unit_of_work() as conn:
        for t in TENANTS:
            d.monitor.canaries.register(conn, t, [CANARY_BASE + k for k in range(20)])
    return d


def append(d: Deployment, events: list[AuditEvent], batch: int = 100) -> float:
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        d.audit.record_many(events[i : i + batch])
    return time.perf_counter() - start


def evaluated(tmp: Path, n: int) -> dict[str, float]:
    d = deployment(tmp, "evaluate")
    events = workload(n)
    append(d, events, 1000)
    watch = Watch(d)
    start = time.perf_counter()
    done = watch.catch_up()
    spent = time.perf_counter() - start
    rows = [Seen.from_row(r) for r in d.audit.follow(0, n + 100)]
    detector = Detector(d.monitor.rules.values(), canaries=d.monitor.canaries.touched, hours="00:00-24:00")
    start = time.perf_counter()
    for row in rows:
        detector.feed(row)
    alone = time.perf_counter() - start
    d.close()
    return {"events": done, "events_per_s": done / spent, "detector_only_events_per_s": len(rows) / alone}


def overhead(tmp: Path, n: int, runs: int) -> dict[str, float]:
    ratios, without, with_ = [], [], []
    events = workload(n, seed=9)
    for run in range(runs):
        plain = deployment(tmp, f"plain-{run}")
        t0 = append(plain, events)
        plain.close()
        followed = deployment(tmp, f"followed-{run}")
        watch = Watch(followed)
        with watch.running():
            while not watch.leading.is_set():
                time.sleep(0.01)
            t1 = append(followed, events)
            while watch.monitor.cursor < followed.audit.head()[0] - 50:  # it keeps up: wait for the tail
                time.sleep(0.01)
        followed.close()
        without.append(n / t0)
        with_.append(n / t1)
        ratios.append(t1 / t0)
    return {
        "append_events_per_s_without_detector": statistics.median(without),
        "append_events_per_s_with_detector": statistics.median(with_),
        "overhead_ratio_same_process": statistics.median(ratios),
    }


def _cursor(d: Deployment) -> int:
    with d.engine.connect() as conn:
        return int(conn.execute(select(monitor_cursor.c.seq)).scalar() or 0)


@contextlib.contextmanager
def detector_process(d: Deployment) -> Iterator[None]:
    """`sagevault monitor run --poll 0.1` on `d`'s data dir, as `serve` starts it; yields once it
    leads and has caught up with the log."""
    env = {**os.environ, **ENV, "SAGEVAULT_DATA_DIR": str(d.settings.resolved_data_dir)}
    cli = Path(sys.executable).with_name("sagevault")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    child = subprocess.Popen([str(cli), "monitor", "run", "--poll", "0.1"], env=env, **quiet)  # type: ignore[call-overload]
    try:
        head = d.audit.head()[0]
        deadline = time.perf_counter() + 30
        while _cursor(d) < head and time.perf_counter() < deadline:
            time.sleep(0.05)
        yield
    finally:
        child.terminate()
        child.wait(30)


def own_process(tmp: Path, n: int, runs: int) -> dict[str, float]:
    """The same appends, with the detector following from a process of its own (`sagevault
    monitor run`), as a deployment can run it beside `serve`."""
    ratios, with_ = [], []
    events = workload(n, seed=9)
    for run in range(runs):
        plain = deployment(tmp, f"plain-own-{run}")
        t0 = append(plain, events)
        plain.close()
        followed = deployment(tmp, f"own-{run}")
        with detector_process(followed):
            t1 = append(followed, events)
            deadline = time.perf_counter() + 120
            while _cursor(followed) < followed.audit.head()[0] - 50 and time.perf_counter() < deadline:
                time.sleep(0.05)
        followed.close()
        with_.append(n / t1)
        ratios.append(t1 / t0)
    return {
        "append_events_per_s_detector_own_process": statistics.median(with_),
        "overhead_ratio": statistics.median(ratios),
    }


def delay(tmp: Path, seconds: float, rate: int, triggers: int) -> dict[str, float]:
    d = deployment(tmp, "delay")
    events = workload(int(seconds * rate), seed=17)
    committed: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()

    def poll() -> None:
        last = 0
        while not stop.is_set():
            with d.engine.connect() as conn:
                for row in conn.execute(alarms.select().where(alarms.c.id > last).order_by(alarms.c.id)):
                    last = row.id
                    if row.rule == "canary-touched" and row.principal:
                        seen.setdefault(row.principal, time.perf_counter())
            time.sleep(0.002)

    poller = threading.Thread(target=poll, daemon=True)
    every = max(1, len(events) // 200 // max(1, triggers))
    with detector_process(d):  # as `serve` runs it
        poller.start()
        start = time.perf_counter()
        for k, i in enumerate(range(0, len(events), 200)):
            batch = events[i : i + 200]
            trigger = None
            if k % every == 0 and len(committed) < triggers:
                trigger = f"svc-trigger-{k}"
                batch = [
                    *batch,
                    AuditEvent(
                        name=EventName.VAULT_RECORD_SEARCH,
                        channel=Channel.API,
                        actor=trigger,
                        tenant_id=TENANTS[0],
                        record_ids=[CANARY_BASE + 1],
                    ),
                ]
            d.audit.record_many(batch)
            if trigger:
                committed[trigger] = time.perf_counter()
            pause = start + (i + 200) / rate - time.perf_counter()  # keep to the rate
            if pause > 0:
                time.sleep(pause)
        achieved = len(events) / (time.perf_counter() - start)
        deadline = time.perf_counter() + 10
        while len(seen) < len(committed) and time.perf_counter() < deadline:
            time.sleep(0.01)
    stop.set()
    poller.join()
    d.close()
    delays = sorted(seen[a] - committed[a] for a in committed if a in seen)
    p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))] if delays else float("inf")
    return {
        "offered_events_per_s": achieved,
        "triggers": len(committed),
        "alarms_seen": len(delays),
        "alarm_delay_median_s": statistics.median(delays) if delays else float("inf"),
        "alarm_delay_p99_s": p99,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--triggers", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    configure_logging(None, logging.ERROR)  # the workload raises alarms: their log lines are not the point
    logging.getLogger("sagevault").setLevel(
        logging.ERROR
    )  # the workload raises alarms; their log lines are not the point
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        result: dict[str, float] = {}
        result |= evaluated(tmp, args.events)
        print(
            f"evaluated: {result['events_per_s']:,.0f} events/s end to end; "
            f"{result['detector_only_events_per_s']:,.0f}/s the detector alone",
            file=sys.stderr,
        )
        result |= overhead(tmp, min(args.events, 50_000), args.runs)
        print(
            f"appends: {result['append_events_per_s_without_detector']:,.0f}/s alone, "
            f"{result['append_events_per_s_with_detector']:,.0f}/s followed in the same process; "
            f"ratio {result['overhead_ratio_same_process']:.2f}",
            file=sys.stderr,
        )
        result |= own_process(tmp, min(args.events, 50_000), args.runs)
        print(
            f"appends with the detector in its own process: ratio {result['overhead_ratio']:.2f}",
            file=sys.stderr,
        )
        result |= delay(tmp, args.seconds, args.rate, args.triggers)
        print(
            f"delay at {result['offered_events_per_s']:,.0f} events/s: median {result['alarm_delay_median_s']:.3f} s, "
            f"p99 {result['alarm_delay_p99_s']:.3f} s ({result['alarms_seen']}/{result['triggers']} alarms)",
            file=sys.stderr,
        )
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
