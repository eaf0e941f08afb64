"""Authorisation benchmark: `decide` for a principal holding 1,000 grants, and API-key checks,
each beside the floor of a dictionary lookup in the same run.

    python bench/authz.py [--grants 1000] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Prints one JSON line. `decide` and `check_api_key` work on the in-memory policy; the
`*_with_db` figures add what a request also pays: one read of the policy generation (every
process must see a kill switch or a disabled account at once).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from sqlalchemy import update

from ingest import OPERATOR, database, make_deployment
from sagevault.access import decide
from sagevault.access._schema import grants, principals
from sagevault.catalog import Purpose
from sagevault.errors import AccessDenied
from sagevault.identity import Channel, Principal, Scope

ROUNDS = 5


def rate(fn: Callable[[int], None], n: int) -> float:
    """Median calls per second of `fn(n)` (which makes n calls) over ROUNDS rounds."""
    rates = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        fn(n)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grants", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with database(args.database_url) as (url, tmp):
        d = make_deployment(url, tmp)
        svc = d.access
        tenants = [f"A{n:05d}BENCH" for n in range(args.grants)]
        with d.engine.begin() as conn:
            for t in tenants:
                d.vault.add_tenant(conn, t, ["ATVPDKIKX0DER"], principal=OPERATOR)
            svc.allowlists.add(conn, "10.0.0.0/8", actor=OPERATOR)
            svc.accounts.bootstrap_admin(conn, "bench.admin", "bench@seller-tools.example", actor=OPERATOR)
            enrol = svc.accounts.add_person(
                conn, "bench.packer", "packer@seller-tools.example", manager=None, actor=OPERATOR
            )
            for i, t in enumerate(tenants):  # one grant per tenant, half of them fulfilment
                svc.grants.grant(conn, "bench.packer", "fulfilment" if i % 2 else "viewer", [t], actor=OPERATOR)
            # The second admin's approval is not what is measured.
            conn.execute(update(grants).where(grants.c.status == "pending").values(status="active"))
            svc.accounts.add_service(
                conn, "bench-sync", owner="bench.admin", purpose="benchmark service", actor=OPERATOR
            )
            svc.grants.grant(conn, "bench-sync", "viewer", ["*"], actor=OPERATOR)
            tokens = [
                svc.api_keys.issue(conn, "bench-sync", scopes=["records:read"], actor=OPERATOR).token
                for _ in range(100)
            ]
            # Enrolment (Argon2, TOTP) is not what is measured either.
            conn.execute(update(principals).where(principals.c.id == enrol.principal_id).values(status="active"))
            svc.core.changed(conn)
            policy = svc.core.policy(conn)
            secret = svc.core.ensure_secret(conn)
        packer = Principal(enrol.principal_id, "person", Channel.API, "10.1.2.3")
        rng = random.Random(5)
        asks = [(rng.choice(tenants), rng.choice([Scope.RECORDS_READ, Scope.PII_REVEAL])) for _ in range(4096)]
        assert sum(1 for t, _ in asks if tenants.index(t) % 2) > 0

        def decisions(n: int) -> None:
            for i in range(n):
                tenant, scope = asks[i & 4095]
                try:
                    decide(policy, packer, scope, tenant, purpose=Purpose.FULFILMENT)
                except AccessDenied:  # half the asks are refusals, as in life
                    continue

        table = {
            (packer.id, t): ({"records:read", "pii:reveal"} if i % 2 else {"records:read"})
            for i, t in enumerate(tenants)
        }

        def dict_floor(n: int) -> None:
            for i in range(n):
                tenant, scope = asks[i & 4095]
                _ = scope.value in table[(packer.id, tenant)]

        def keys(n: int) -> None:
            for i in range(n):
                svc.api_keys.check(policy, secret, tokens[i % 100], source="10.9.8.7")

        key_table = {t.split("_")[1]: t for t in tokens}

        def key_floor(n: int) -> None:
            for i in range(n):
                _ = key_table[tokens[i % 100].split("_")[1]]

        with d.engine.connect() as conn:

            def decisions_db(n: int) -> None:
                for i in range(n):
                    tenant, scope = asks[i & 4095]
                    try:
                        decide(svc.core.policy(conn), packer, scope, tenant, purpose=Purpose.FULFILMENT)
                    except AccessDenied:
                        continue

            def keys_db(n: int) -> None:
                for i in range(n):
                    svc.api_keys.verify(conn, tokens[i % 100], source="10.9.8.7")

            calls = args.calls
            result = {
                "backend": url.split(":", 1)[0].split("+")[0],
                "grants": args.grants,
                "decide_per_s": round(rate(decisions, calls)),
                "dict_floor_per_s": round(rate(dict_floor, calls)),
                "api_key_per_s": round(rate(keys, calls)),
                "api_key_floor_per_s": round(rate(key_floor, calls)),
                "decide_with_db_per_s": round(rate(decisions_db, calls // 20)),
                "api_key_with_db_per_s": round(rate(keys_db, calls // 20)),
            }
        result["decide_floor_ratio"] = round(result["dict_floor_per_s"] / result["decide_per_s"], 2)
        result["api_key_floor_ratio"] = round(result["api_key_floor_per_s"] / result["api_key_per_s"], 2)
        print(json.dumps(result))
        d.close()


if __name__ == "__main__":
    main()
