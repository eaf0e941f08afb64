"""Shred benchmark: crypto-shred time for tenants of 1k and 100k orders, in one run.

    python bench/shred.py [--small 1000] [--large 100000] [--database-url URL]

The 1k tenants are the baseline; `ratio` is the 100k shred time over the 1k median. Shred
destroys the tenant's keys and writes a tombstone, so its time should not depend on data size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from ingest import OPERATOR, database, make_deployment
from sagevault.deployment import Deployment
from sagevault.testing import generate_orders, get_orders_response


def fill(d: Deployment, tenant: str, n: int, seed: int) -> None:
    with d.engine.begin() as conn:
        d.vault.add_tenant(conn, tenant, ["ATVPDKIKX0DER"], principal=OPERATOR)
    orders = generate_orders(n, seed=seed)
    batch: list[dict] = []
    for order in orders:
        batch.append(order)
        if len(batch) == 2000:
            with d.engine.begin() as conn:
                d.vault.ingest(conn, tenant, [get_orders_response(batch)], principal=OPERATOR)
            batch = []
    if batch:
        with d.engine.begin() as conn:
            d.vault.ingest(conn, tenant, [get_orders_response(batch)], principal=OPERATOR)


def timed_shred(d: Deployment, tenant: str) -> float:
    started = time.perf_counter()
    with d.engine.begin() as conn:
        d.vault.shred(conn, tenant, principal=OPERATOR)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=5, help="tenants of each size")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with database(args.database_url) as (url, tmp):
        d = make_deployment(url, tmp)
        try:
            for i in range(args.tenants):
                fill(d, f"A{i}SMALL", args.small, seed=i)
            fill(d, "A0LARGE", args.large, seed=99)
            small, large = [], []
            for i in range(args.tenants):  # interleave sizes so machine noise hits both
                small.append(timed_shred(d, f"A{i}SMALL"))
                if i == 0:
                    large.append(timed_shred(d, "A0LARGE"))
        finally:
            d.close()
    s, lg = statistics.median(small), statistics.median(large)
    print(
        json.dumps(
            {
                "backend": url.split(":", 1)[0].split("+", 1)[0],
                "small_orders": args.small,
                "large_orders": args.large,
                "shred_ms_small_median": round(s * 1000, 2),
                "shred_ms_large": round(lg * 1000, 2),
                "ratio_large_to_small": round(lg / s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
