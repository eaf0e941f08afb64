"""Deletion benchmark: a whole-tenant request, one buyer among many, and the retention purge.

    python bench/deletion.py [--tenant-orders 100000] [--orders 1000000] [--expired 50000]

An embedded deployment (SQLite, WAL, secure_delete), every figure beside a baseline measured in
the same run:

- tenant: a request for a tenant of `--tenant-orders` orders carried out to its certificate
  (`carry_out`: scope, crypto-shred, purge in batches, the WAL emptied, verification, signed
  certificate). `unreadable_ms`: from the start until the shred step is committed (from then on
  no key can open the data). `tenant_request_s`: start to certificate. Baseline: deleting the
  same number of rows with one plain `DELETE ... WHERE tenant_id` (no keys, no verification).
- buyer: one buyer found by blind index among `--orders` stored orders (of another tenant) and
  erased to its certificate (`buyer_erase_s`). Baseline: the blind-index lookup alone.
- retention: `--expired` orders whose PII is past its date purged by `Retention.run`
  (`retention_orders_per_s`). Baseline: the same rows' PII cleared by one plain UPDATE.

Targets (issue 16): unreadable < 100 ms, tenant request < 60 s, buyer erase < 1 s, retention
>= 10,000 orders/s. The last line is JSON with `unreadable_ms`, `tenant_request_s`,
`buyer_erase_s`, `retention_orders_per_s`.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select, update

from sagevault.config import load_settings
from sagevault.deletion import DeletionRequest
from sagevault.deployment import Deployment, init_deployment
from sagevault.identity import Principal
from sagevault.jobs import carry_out
from sagevault.logs import configure_logging
from sagevault.testing import ManualClock, fast_password_hashing, generate_orders, get_orders_response
from sagevault.vault import Operation
from sagevault.vault._schema import BLIND_INDEX_COLUMNS, records

OPERATOR = Principal(id="operator:bench", kind="operator")
BATCH = 5000


def _fill(d: Deployment, tenant: str, n: int, seed: int, prefix: str) -> list[dict]:
    with d.unit_of_work() as conn:
        d.vault.add_tenant(conn, tenant, ["ATVPDKIKX0DER"], principal=OPERATOR)
    first: list[dict] = []
    batch: list[dict] = []
    for order in generate_orders(n, seed=seed, prefix=prefix):
        batch.append(order)
        if len(first) < 3:
            first.append(order)
        if len(batch) == BATCH:
            with d.unit_of_work() as conn:
                d.vault.ingest(conn, tenant, [get_orders_response(batch)], Operation.GET_ORDERS, principal=OPERATOR)
            batch = []
    if batch:
        with d.unit_of_work() as conn:
            d.vault.ingest(conn, tenant, [get_orders_response(batch)], Operation.GET_ORDERS, principal=OPERATOR)
    return first


def _request(d: Deployment, **facts) -> int:
    with d.unit_of_work() as conn:
        return d.deletion.request(conn, principal=OPERATOR, **facts).id


def tenant_request(d: Deployment, n: int) -> tuple[float, float, float]:
    _fill(d, "A1BENCHTENANT", n, seed=1, prefix="1")
    _fill(d, "A2BASELINE", n, seed=2, prefix="2")
    request_id = _request(d, tenant_id="A1BENCHTENANT")
    start = time.perf_counter()
    unreadable: list[float] = []

    def seen(request: DeletionRequest) -> None:
        if "shredded_at" in request.counts and not unreadable:
            unreadable.append(time.perf_counter() - start)

    done = carry_out(d, request_id, OPERATOR, on_step=seen)
    total = time.perf_counter() - start
    assert done.state == "done", done
    start = time.perf_counter()
    with d.unit_of_work() as conn:
        conn.execute(delete(records).where(records.c.tenant_id == "A2BASELINE"))
    d.release_deleted_pages()
    baseline = time.perf_counter() - start
    return unreadable[0], total, baseline


def buyer_erase(d: Deployment, n: int) -> tuple[float, float]:
    first = _fill(d, "A3MANYORDERS", n, seed=3, prefix="3")
    email = first[1]["BuyerInfo"]["BuyerEmail"]
    start = time.perf_counter()
    with d.unit_of_work(read_only=True) as conn:
        hits = d.vault.search(conn, "A3MANYORDERS", "email", email, purpose="fulfilment", principal=OPERATOR)
    baseline = time.perf_counter() - start
    assert hits
    start = time.perf_counter()
    request_id = _request(d, tenant_id="A3MANYORDERS", scope="buyer", buyer={"email": email})
    done = carry_out(d, request_id, OPERATOR)
    total = time.perf_counter() - start
    assert done.state == "done", done
    assert done.counts["records"] >= 1, done
    return total, baseline


def retention(d: Deployment, clock: ManualClock, n: int) -> tuple[float, float]:
    _fill(d, "A4EXPIRED", n, seed=4, prefix="4")
    _fill(d, "A5BASELINE", n, seed=5, prefix="5")
    with d.unit_of_work() as conn:  # every order of these two tenants past its PII date, no other's
        due = records.c.tenant_id.in_(("A4EXPIRED", "A5BASELINE"))
        conn.execute(update(records).where(due).values(pii_expires_at=clock() - timedelta(days=1)))
        conn.execute(update(records).where(~due).values(pii_expires_at=clock() + timedelta(days=365)))
    start = time.perf_counter()
    with d.unit_of_work() as conn:
        ran = d.retention.run(conn, principal=OPERATOR, limit=n)
    spent = time.perf_counter() - start
    start = time.perf_counter()
    with d.unit_of_work() as conn:
        conn.execute(
            update(records)
            .where(records.c.tenant_id == "A5BASELINE")
            .values(pii=b"", pii_fields=0, pii_purged_at=clock(), **dict.fromkeys(BLIND_INDEX_COLUMNS))
        )
    baseline = time.perf_counter() - start
    with d.unit_of_work(read_only=True) as conn:
        left = conn.execute(
            select(func.count()).where(records.c.tenant_id == "A4EXPIRED", records.c.pii_purged_at.is_(None))
        ).scalar_one()
    assert left == 0, left
    assert ran.pii >= n, ran
    return n / spent, n / baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenant-orders", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--expired", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        configure_logging(Path(tmp) / "bench.log")
        logging.getLogger("sagevault").setLevel(logging.WARNING)
        clock = ManualClock(datetime(2026, 12, 6, tzinfo=UTC))
        d = init_deployment(load_settings(data_dir=Path(tmp) / "var"), hasher=fast_password_hashing(), clock=clock)
        unreadable, total, plain = tenant_request(d, args.tenant_orders)
        print(
            f"tenant of {args.tenant_orders:,} orders: unreadable after {unreadable * 1e3:.0f} ms, request done "
            f"(certificate) in {total:.2f} s; plain DELETE of as many rows {plain:.2f} s; ratio {total / plain:.2f}"
        )
        erase, lookup = buyer_erase(d, args.orders)
        print(
            f"one buyer among {args.orders:,} orders erased to its certificate in {erase * 1e3:.0f} ms; the "
            f"blind-index lookup alone {lookup * 1e3:.1f} ms; ratio {erase / lookup:.1f}"
        )
        rate, base_rate = retention(d, clock, args.expired)
        print(
            f"retention: {rate:,.0f} orders/s purged; a plain UPDATE of as many rows {base_rate:,.0f}/s; "
            f"ratio {base_rate / rate:.2f}"
        )
        d.close()
    print(
        json.dumps(
            {
                "unreadable_ms": round(unreadable * 1e3, 1),
                "tenant_request_s": round(total, 2),
                "buyer_erase_s": round(erase, 3),
                "retention_orders_per_s": round(rate),
            }
        )
    )


if __name__ == "__main__":
    main()
