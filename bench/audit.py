"""Audit log benchmark: durable, chained appends (one writer batching, 8 concurrent writers with
group commit) and verification, beside plain INSERTs of the same rows, in one run.

    python bench/audit.py [--events 50000] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Prints one JSON line: append rates, the plain-insert floor, their ratios, and verify events/s.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from ingest import database
from sagevault.audit import (
    AuditEvent,
    AuditLog,
    DigestFile,
    EventName,
    Signer,
    create_signing_key,
    load_public_key,
    migrate_audit,
    public_path,
    verify,
)
from sagevault.db import create_engine_for
from sagevault.identity import Channel


def events(n: int, offset: int = 0) -> list[AuditEvent]:
    return [
        AuditEvent(
            name=EventName.VAULT_FIELD_REVEAL,
            channel=Channel.API,
            actor=f"svc:app-{i % 7}",
            tenant_id="A1BENCHSELLER",
            record_ids=[offset + i],
            counts={"fields": 2},
            operation="reveal",
            request_id=f"req-{offset + i:08d}",
        )
        for i in range(n)
    ]


def fresh_log(url: str, tmp: Path) -> AuditLog:
    engine = create_engine_for(url)
    migrate_audit(engine)
    key = tmp / "keys" / "audit-signing.key"
    if not key.exists():
        create_signing_key(key)
    return AuditLog(engine, signer=Signer(key), digests=DigestFile(tmp / "digests.jsonl"), digest_every=10_000)


def one_writer(log: AuditLog, evs: list[AuditEvent], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(evs), batch):
        log.record_many(evs[i : i + batch])
    return time.perf_counter() - started


def timed_threads(threads: list[threading.Thread]) -> float:
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def many_writers(log: AuditLog, evs: list[AuditEvent], writers: int) -> float:
    parts = [evs[i::writers] for i in range(writers)]
    return timed_threads([threading.Thread(target=lambda p=p: [log.record(e) for e in p]) for p in parts])


def floor(log: AuditLog, evs: list[AuditEvent], batch: int) -> float:
    """The same rows, plain INSERTs into the same table in transactions of `batch`: no chain,
    no validation, no head lock, no seal."""
    rows = []
    for seq, e in enumerate(evs, 1):
        rows.append((*e.values(seq), b"\0" * 32, b"\1" * 32, None))
    mark = "?" if log.engine.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO audit_events VALUES ({', '.join([mark] * 17)})"
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        with log.engine.begin() as conn:
            conn.exec_driver_sql(sql, rows[i : i + batch])
    return time.perf_counter() - started


def floor_writers(log: AuditLog, evs: list[AuditEvent], writers: int) -> float:
    """The same rows, plain single-row INSERT transactions from `writers` threads at once: what
    concurrent durable writers cost without a chain and without group commit."""
    rows = [(*e.values(seq), b"\0" * 32, b"\1" * 32, None) for seq, e in enumerate(evs, 1)]
    mark = "?" if log.engine.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO audit_events VALUES ({', '.join([mark] * 17)})"

    def insert(part: list[tuple[object, ...]]) -> None:
        for row in part:
            with log.engine.begin() as conn:
                conn.exec_driver_sql(sql, row)

    return timed_threads([threading.Thread(target=insert, args=(rows[i::writers],)) for i in range(writers)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500, help="events per transaction for the single writer")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    evs = events(args.events)
    results: dict[str, list[float]] = {"one": [], "many": [], "floor": [], "floor_many": [], "verify": []}
    for _ in range(args.repeat):
        for kind in ("one", "floor", "many", "floor_many"):
            with database(args.database_url) as (url, tmp):
                log = fresh_log(url, tmp)
                gc.collect()
                if kind == "one":
                    results["one"].append(one_writer(log, evs, args.batch))
                    log.write_digest()
                    key = load_public_key(public_path(tmp / "keys" / "audit-signing.key"))
                    digests = DigestFile(tmp / "digests.jsonl").read()
                    started = time.perf_counter()
                    report = verify(log.engine, key, digests)
                    results["verify"].append(time.perf_counter() - started)
                    assert report.ok, report.problems
                    assert report.events == args.events
                elif kind == "many":
                    results["many"].append(many_writers(log, evs, args.writers))
                    assert log.head()[0] == args.events
                elif kind == "floor_many":
                    results["floor_many"].append(floor_writers(log, evs, args.writers))
                else:
                    results["floor"].append(floor(log, evs, args.batch))
                log.close()
    med = {k: statistics.median(v) for k, v in results.items()}
    n = args.events
    print(
        json.dumps(
            {
                "backend": "postgresql" if args.database_url else "sqlite",
                "events": n,
                "append_one_writer_per_s": round(n / med["one"]),
                f"append_{args.writers}_writers_per_s": round(n / med["many"]),
                "floor_inserts_per_s": round(n / med["floor"]),
                "one_writer_floor_ratio": round(med["one"] / med["floor"], 2),
                f"floor_{args.writers}_writers_single_row_per_s": round(n / med["floor_many"]),
                f"{args.writers}_writers_ratio_to_single_row_floor": round(med["many"] / med["floor_many"], 2),
                "verify_per_s": round(n / med["verify"]),
                "runs": args.repeat,
            }
        )
    )


if __name__ == "__main__":
    main()
