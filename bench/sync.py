"""SP-API sync benchmark: orders per second from page fetch to committed vault rows, beside plain
ingest of the same pages, in one run.

    python bench/sync.py [--orders 20000] [--rounds 3] [--profile]

The SP-API stand-in (`sagevault sandbox serve --no-rate-limits`) runs as a process of its own on
127.0.0.1 (TLS, the local CA), so its CPU does not compete with the measured client for the GIL.
Each measured run gets a fresh embedded deployment (SQLite in a temporary directory, the local
master key file, the connector's client with rate limits lifted):

- sync: a seller of `--orders` orders (pages of 100, Restricted Data Token on: PII in every
  order, as users run it) connected, then `sync_tenant` timed from its start to the last
  committed page: `orders_per_s`. The sync's time is split, by wrapping the calls from here
  (nothing in src/ changes), into fetch (`Connector.fetch`: TLS, HTTP, JSON parse; the JSON
  parse alone is shown too) and store (the page's unit of work: ingest, checkpoint, events,
  commit); the rest is the loop, the plan and the run's events.
- fetch only: the same pages fetched with the same client, following NextToken, nothing stored
  (the first such pass records the page bodies for the baseline).
- plain ingest: exactly those page bodies ingested into a fresh tenant with `Vault.ingest`, one
  unit of work per page (the sync's transaction granularity): `ingest_orders_per_s`.

Runs alternate (sync, fetch only, ingest) for `--rounds` rounds, so drift on a shared machine hits
each; medians are reported. CPU time of this process per order (`time.process_time`) is shown for
sync and ingest, and the stand-in's CPU per page (from /proc) for the sync.

The stand-in keeps its orders sorted and finds a page by binary search (about 5 ms of its CPU a
page, whatever `--orders`); "fetch only" shows how fast it hands out pages at all, and "the
stand-in's CPU per page" how much of the fetch is its own work. The sync fetches one page ahead
while the one before it is stored (`jobs/_connector.py`), so the fetch's wall time mostly overlaps
the store's: the shares above can add up to more than 100 %.

Target (issue): `ingest_ratio` = orders_per_s / ingest_orders_per_s >= 0.8. `--profile` runs one
more sync under cProfile (not counted) and prints its top costs. The last line is JSON with
`orders`, `orders_per_s`, `ingest_orders_per_s`, `ingest_ratio`, `fetch_share`, `store_share`,
`rounds`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import gc
import json
import logging
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select

import sagevault.connector._client as client_module
from sagevault.config import load_settings
from sagevault.connector import AppCredentials, Cursor, SpApiClient
from sagevault.deployment import Deployment, init_deployment
from sagevault.identity import Principal
from sagevault.jobs import sync_tenant
from sagevault.logs import configure_logging
from sagevault.testing import fast_password_hashing
from sagevault.vault import Operation
from sagevault.vault._schema import records

OPERATOR = Principal(id="operator:bench", kind="operator")
SELLER = "A1BENCHSYNC001"  # the stand-in's seller
MARKETPLACE = "ATVPDKIKX0DER"
SINCE = "2000-01-01T00:00:00+00:00"  # one window holds every order of the stand-in
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


# --- the stand-in, a process of its own -------------------------------------------------------


@dataclass
class StandIn:
    proc: subprocess.Popen[bytes]
    app: AppCredentials
    refresh_token: str

    def cpu(self) -> float:
        """The stand-in process's CPU seconds so far: its threads' time on a CPU (schedstat, in ns;
        its threads live as long as it does), else user + system time in clock ticks."""
        tasks = Path(f"/proc/{self.proc.pid}/task")
        try:
            return sum(int((t / "schedstat").read_text().split()[0]) for t in tasks.iterdir()) / 1e9
        except (OSError, ValueError, IndexError):
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


@contextlib.contextmanager
def stand_in(home: Path, orders: int, page_size: int) -> Iterator[StandIn]:
    """`sagevault sandbox serve` in a subprocess (any free port, no rate limits), until the block ends."""
    command = [sys.executable, "-c", "from sagevault.cli import main; main()", "--data-dir", str(home / "var")]
    command += ["sandbox", "serve", "--dir", str(home / "standin"), "--port", "0", "--seller", SELLER]
    command += ["--orders", str(orders), "--page-size", str(page_size), "--no-rate-limits"]
    with open(home / "standin.out", "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=home)
    try:
        app_toml, token_file = home / "standin" / "app.toml", home / "standin" / f"seller-{SELLER}.token"
        deadline = time.monotonic() + 300
        while not (app_toml.exists() and token_file.exists()):  # written once it serves
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stand-in did not start: {(home / 'standin.out').read_text()[-2000:]}")
            time.sleep(0.05)
        settings = tomllib.loads(app_toml.read_text())
        where = urlsplit(settings["endpoint"])
        assert where.hostname == "127.0.0.1", where  # loopback only
        while True:  # its port answers
            try:
                socket.create_connection((where.hostname, where.port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        app = AppCredentials(
            settings["client_id"],
            settings["client_secret"],
            settings["endpoint"],
            settings["token_url"],
            Path(settings["ca_file"]),
        )
        yield StandIn(proc, app, token_file.read_text().strip())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- deployments --------------------------------------------------------------------------------


@contextlib.contextmanager
def deployment(tmp: Path, name: str, standin: StandIn) -> Iterator[Deployment]:
    """A fresh embedded deployment (SQLite, local key file) talking to the stand-in without rate limits."""
    d = init_deployment(load_settings(data_dir=tmp / name), hasher=fast_password_hashing())
    try:
        d.connector.use(SpApiClient(standin.app, rate_limits=False))
        yield d
    finally:
        d.close()


def add_tenant(d: Deployment, tenant: str) -> None:
    with d.unit_of_work() as conn:
        d.vault.add_tenant(conn, tenant, [MARKETPLACE], principal=OPERATOR)


def connect(d: Deployment, tenant: str, standin: StandIn) -> None:
    """The tenant added and connected to the stand-in's seller (restricted data on), tokens fetched."""
    add_tenant(d, tenant)
    with d.unit_of_work() as conn:
        d.connector.connect(
            conn,
            tenant,
            standin.refresh_token,
            principal=OPERATOR,
            restricted_data=True,
            since=datetime.fromisoformat(SINCE),
        )


def stored(d: Deployment, tenant: str) -> int:
    with d.engine.connect() as conn:  # not d.unit_of_work: that one is timed
        return int(conn.execute(select(func.count()).where(records.c.tenant_id == tenant)).scalar_one())


# --- timing -----------------------------------------------------------------------------------


@dataclass
class Split:
    """Seconds (wall) and CPU seconds of this process spent in each part of a run."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    def add(self, part: str, wall: float, cpu: float) -> None:
        self.wall[part] = self.wall.get(part, 0.0) + wall
        self.cpu[part] = self.cpu.get(part, 0.0) + cpu


def timed(split: Split, part: str, call: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return call(*args, **kwargs)
        finally:
            split.add(part, time.perf_counter() - wall, time.process_time() - cpu)

    return wrapper


def timed_units(d: Deployment, split: Split) -> None:
    """Every unit of work of `d` timed whole (begin, work, commit) as `unit`."""
    original = d.unit_of_work

    @contextlib.contextmanager
    def unit_of_work(**kw: Any) -> Iterator[Any]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            with original(**kw) as conn:
                yield conn
        finally:
            split.add("unit", time.perf_counter() - wall, time.process_time() - cpu)

    d.unit_of_work = unit_of_work  # type: ignore[method-assign]


@contextlib.contextmanager
def timed_json(split: Split) -> Iterator[None]:
    """The client's JSON parse of every answer timed as `json` (the client module's `_json`)."""
    original = client_module._json
    client_module._json = timed(split, "json", original)
    try:
        yield
    finally:
        client_module._json = original


@dataclass
class Run:
    orders: int
    pages: int
    seconds: float
    cpu: float
    split: Split
    standin_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.orders / self.seconds


def run_sync(tmp: Path, name: str, standin: StandIn, n: int, profile: cProfile.Profile | None = None) -> Run:
    with deployment(tmp, name, standin) as d:
        tenant = f"A1SYNC{name.upper()}"
        connect(d, tenant, standin)
        split = Split()
        d.connector.fetch = timed(split, "fetch", d.connector.fetch)  # type: ignore[method-assign]
        d.connector.store = timed(split, "store", d.connector.store)  # type: ignore[method-assign]
        timed_units(d, split)
        gc.collect()
        with timed_json(split):
            server = standin.cpu()
            wall, cpu = time.perf_counter(), time.process_time()
            if profile is not None:
                profile.enable()
            report = sync_tenant(d, tenant, OPERATOR)
            if profile is not None:
                profile.disable()
            seconds, spent = time.perf_counter() - wall, time.process_time() - cpu
            server = standin.cpu() - server
        assert report.finished, report
        assert report.orders == n, report
        assert stored(d, tenant) == n
        return Run(report.orders, report.pages, seconds, spent, split, server)


def run_fetch(tmp: Path, name: str, standin: StandIn, n: int) -> tuple[Run, list[dict[str, Any]]]:
    """Every page of the seller fetched with the sync's client (following NextToken), none stored."""
    with deployment(tmp, name, standin) as d:
        tenant = f"A1FETCH{name.upper()}"
        connect(d, tenant, standin)
        with d.unit_of_work() as conn:
            plan = d.connector.plan(conn, tenant, principal=OPERATOR)
        [cursor] = plan.cursors
        bodies: list[dict[str, Any]] = []
        split = Split()
        gc.collect()
        with timed_json(split):
            server = standin.cpu()
            wall, cpu = time.perf_counter(), time.process_time()
            while True:
                page = d.connector.fetch(plan, cursor, principal=OPERATOR)
                if page.orders:
                    bodies.append(page.body)
                after, before, token = page.advanced()
                cursor = Cursor(tenant, cursor.marketplace_id, after, before, token, cursor.pages + 1)
                if before is None:
                    break
            seconds, spent = time.perf_counter() - wall, time.process_time() - cpu
            server = standin.cpu() - server
        orders = sum(len(b["payload"]["Orders"]) for b in bodies)
        assert orders == n, orders
        every = [o for b in bodies for o in b["payload"]["Orders"]]
        assert all("BuyerInfo" in o and "ShippingAddress" in o for o in every), "no PII: the RDT was not used"
        return Run(orders, len(bodies), seconds, spent, split, server), bodies


def run_ingest(tmp: Path, name: str, standin: StandIn, bodies: list[dict[str, Any]]) -> Run:
    """The recorded page bodies into a fresh tenant, one unit of work per page."""
    with deployment(tmp, name, standin) as d:
        tenant = f"A1INGEST{name.upper()}"
        add_tenant(d, tenant)
        work = copy.deepcopy(bodies)  # fresh objects, as the sync's pages are
        split = Split()
        d.vault.ingest = timed(split, "ingest", d.vault.ingest)  # type: ignore[method-assign]
        timed_units(d, split)
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        for body in work:
            with d.unit_of_work() as conn:
                d.vault.ingest(conn, tenant, [body], Operation.GET_ORDERS, principal=OPERATOR)
        seconds, spent = time.perf_counter() - wall, time.process_time() - cpu
        n = sum(len(b["payload"]["Orders"]) for b in bodies)
        assert stored(d, tenant) == n
        return Run(n, len(bodies), seconds, spent, split)


# --- report -----------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def show_profile(profile: cProfile.Profile, out: Path, top: int) -> None:
    profile.dump_stats(out)
    for order in ("cumulative", "tottime"):
        print(f"\n--- profile of one sync, top {top} by {order} (saved to {out}) ---")
        pstats.Stats(profile).strip_dirs().sort_stats(order).print_stats(top)


def report(n: int, syncs: list[Run], fetches: list[Run], ingests: list[Run]) -> None:
    """The figures (medians over the rounds), then the JSON line."""
    sync_s, ingest_s, fetch_s = (med([r.seconds for r in runs]) for runs in (syncs, ingests, fetches))
    rate, ingest_rate, fetch_rate = n / sync_s, n / ingest_s, n / fetch_s
    ratio = rate / ingest_rate
    round_ratio = med([s.rate / i.rate for s, i in zip(syncs, ingests, strict=True)])

    def share(runs: list[Run], part: str) -> float:
        return med([r.split.wall.get(part, 0.0) / r.seconds for r in runs])

    def per_page_ms(runs: list[Run], part: str, cpu: bool = False) -> float:
        return med([(r.split.cpu if cpu else r.split.wall).get(part, 0.0) / r.pages * 1e3 for r in runs])

    def line(runs: list[Run], label: str, part: str) -> None:
        wall, cpu = per_page_ms(runs, part), per_page_ms(runs, part, cpu=True)
        print(f"  {label:<56} {share(runs, part) * 100:5.1f} %  {wall:6.2f} / {cpu:6.2f} ms")

    fetch_share, unit_share = share(syncs, "fetch"), share(syncs, "unit")
    print(f"\n{n:,} orders in {syncs[0].pages} pages, medians of {len(syncs)} rounds")
    print(f"  sync (fetch -> committed rows): {rate:,.0f} orders/s ({sync_s:.2f} s)")
    print(f"  plain ingest of the same pages: {ingest_rate:,.0f} orders/s ({ingest_s:.2f} s)")
    print(f"  ingest_ratio (sync / ingest):   {ratio:.3f} (target >= 0.8; median of each round's: {round_ratio:.3f})")
    print(f"  fetch only, nothing stored:     {fetch_rate:,.0f} orders/s ({fetch_s:.2f} s)")
    serial = 1 / (1 / fetch_rate + 1 / ingest_rate)
    print(
        f"  fetch then ingest, one after the other, would give {serial:,.0f}/s (ratio {serial / ingest_rate:.2f}); "
        f"overlapped, at most min(fetch, ingest) = {min(fetch_rate, ingest_rate):,.0f}/s"
    )
    print("\nsync time split (share of the run's wall time; per page: wall ms / this process's CPU ms)")
    line(syncs, "fetch (Connector.fetch: TLS, HTTP, JSON)", "fetch")
    line(syncs, "  of which the JSON parse of the answer", "json")
    line(syncs, "store: the page's unit of work (begin .. commit)", "unit")
    line(syncs, "  of which Connector.store (ingest, checkpoint, events)", "store")
    waiting = med([1 - r.split.wall.get("unit", 0) / r.seconds for r in syncs])
    print(f"  {'outside the units of work (waiting for a page, the loop)':<56} {waiting * 100:5.1f} %")
    standin = med([r.standin_cpu / r.pages * 1e3 for r in syncs])
    standin_fetch = med([r.standin_cpu / r.pages * 1e3 for r in fetches])
    print(f"  the stand-in's CPU per page: {standin:.2f} ms during the sync, {standin_fetch:.2f} ms during fetch only")
    print("\nplain ingest split (share of its wall time; per page: wall ms / CPU ms)")
    line(ingests, "Vault.ingest", "ingest")
    line(ingests, "the page's unit of work (begin .. commit)", "unit")
    sync_cpu, ingest_cpu, fetch_cpu = (med([r.cpu / r.orders * 1e6 for r in rs]) for rs in (syncs, ingests, fetches))
    print(
        f"\nCPU of this process per order: sync {sync_cpu:.0f} us, plain ingest {ingest_cpu:.0f} us, "
        f"fetch only {fetch_cpu:.0f} us (sync - ingest: {sync_cpu - ingest_cpu:.0f} us)"
    )
    busy = [med([r.cpu / r.seconds for r in runs]) * 100 for runs in (syncs, ingests, fetches)]
    print(f"CPU use of this process: sync {busy[0]:.0f} %, ingest {busy[1]:.0f} %, fetch only {busy[2]:.0f} %")
    print(
        json.dumps(
            {
                "orders": n,
                "orders_per_s": round(rate, 1),
                "ingest_orders_per_s": round(ingest_rate, 1),
                "ingest_ratio": round(ratio, 3),
                "fetch_share": round(fetch_share, 3),
                "store_share": round(unit_share, 3),
                "fetch_only_orders_per_s": round(fetch_rate, 1),
                "sync_cpu_us_per_order": round(sync_cpu, 1),
                "ingest_cpu_us_per_order": round(ingest_cpu, 1),
                "rounds": len(syncs),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20_000, help="orders of the stand-in's seller")
    parser.add_argument("--page-size", type=int, default=100, help="orders per getOrders page (Amazon's most: 100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of sync, fetch only and ingest; medians shown")
    parser.add_argument("--profile", action="store_true", help="one more sync under cProfile, its top costs printed")
    parser.add_argument("--profile-out", type=Path, default=Path(tempfile.gettempdir()) / "sync.prof")
    parser.add_argument("--profile-top", type=int, default=30)
    args = parser.parse_args()

    syncs: list[Run] = []
    fetches: list[Run] = []
    ingests: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="sv-bench-sync-") as tmp_name:
        tmp = Path(tmp_name)
        configure_logging(tmp / "bench.log")
        logging.getLogger("sagevault").setLevel(logging.WARNING)
        started = time.perf_counter()
        with stand_in(tmp, args.orders, args.page_size) as standin:
            up = time.perf_counter() - started
            print(f"stand-in (pid {standin.proc.pid}) serving {standin.app.endpoint} after {up:.1f} s, no rate limits")
            bodies: list[dict[str, Any]] = []
            for r in range(1, args.rounds + 1):
                syncs.append(run_sync(tmp, f"s{r}", standin, args.orders))
                fetched, recorded = run_fetch(tmp, f"f{r}", standin, args.orders)
                fetches.append(fetched)
                bodies = bodies or recorded
                ingests.append(run_ingest(tmp, f"i{r}", standin, bodies))
                s, f, i = syncs[-1], fetches[-1], ingests[-1]
                print(
                    f"round {r}: sync {s.rate:,.0f} orders/s ({s.seconds:.2f} s, {s.pages} pages); fetch only "
                    f"{f.rate:,.0f}/s; plain ingest {i.rate:,.0f}/s ({i.seconds:.2f} s); ratio {s.rate / i.rate:.3f}"
                )
            profile = None
            if args.profile:
                profile = cProfile.Profile()
                run_sync(tmp, "p", standin, args.orders, profile)

    if profile is not None:
        show_profile(profile, args.profile_out, args.profile_top)
    report(args.orders, syncs, fetches, ingests)  # its JSON line last
    sys.stdout.flush()


if __name__ == "__main__":
    main()
