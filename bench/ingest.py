"""Ingest benchmark: the vault against a no-logic floor (and pgcrypto on PostgreSQL), one run.

    python bench/ingest.py --orders 20000                      # SQLite in a temporary directory
    python bench/ingest.py --orders 20000 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

On PostgreSQL a fresh database is created on that server for the run and dropped afterwards.
Prints one JSON line: orders_per_s, floor_orders_per_s, floor_ratio (vault time / floor time),
and on PostgreSQL pgcrypto_orders_per_s and pgcrypto_speedup.
"""

from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import hmac
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import create_engine, text

from sagevault.config import load_settings
from sagevault.crypto import InMemoryKeyProvider
from sagevault.deployment import Deployment, init_deployment, open_deployment
from sagevault.identity import Principal
from sagevault.testing import generate_orders, get_orders_response

OPERATOR = Principal(id="operator:bench", kind="operator")
PII_BLOCKS = ("ShippingAddress", "BuyerInfo")
KEEP_CLEAR = {"CountryCode"}


@contextmanager
def database(url: str | None) -> Iterator[tuple[str, Path]]:
    with tempfile.TemporaryDirectory(prefix="sv-bench-") as tmp:
        if url is None:
            yield f"sqlite:///{tmp}/bench.db", Path(tmp)
            return
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        name = f"sagevault_bench_{secrets.token_hex(4)}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.rsplit("/", 1)[0] + "/" + name, Path(tmp)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def make_deployment(url: str, tmp: Path) -> Deployment:
    settings = load_settings(data_dir=tmp / "var", database_url=url)
    if url.startswith("sqlite"):
        return init_deployment(settings, keys=InMemoryKeyProvider())
    from sagevault.db import create_engine_for
    from sagevault.deployment import migrate_store

    engine = create_engine_for(url)
    migrate_store(engine)
    return open_deployment(settings, keys=InMemoryKeyProvider(), engine=engine)


def run_vault(d: Deployment, tenant: str, batches: list[dict[str, Any]]) -> float:
    with d.engine.begin() as conn:
        d.vault.add_tenant(conn, tenant, ["ATVPDKIKX0DER"], principal=OPERATOR)
    started = time.perf_counter()
    for response in batches:
        with d.engine.begin() as conn:
            d.vault.ingest(conn, tenant, [response], principal=OPERATOR)
    return time.perf_counter() - started


def run_floor(d: Deployment, batches: list[dict[str, Any]]) -> float:
    """The same PII fields under plain AES-GCM, three HMACs (email, phone, postal code), the rest
    as JSON, bulk-inserted one row per order into the same database: no catalog, no vault."""
    aead = AESGCM(os.urandom(32))
    mac_key = os.urandom(32)
    sqlite = d.engine.dialect.name == "sqlite"
    ddl = (
        "CREATE TABLE floor (order_id TEXT PRIMARY KEY, clear TEXT NOT NULL, pii {b} NOT NULL,"
        " h_email {b}, h_phone {b}, h_postal {b})"
    ).format(b="BLOB" if sqlite else "BYTEA")
    with d.engine.begin() as conn:
        conn.exec_driver_sql(ddl)
        for col in ("h_email", "h_phone", "h_postal"):
            conn.exec_driver_sql(f"CREATE INDEX ix_floor_{col} ON floor ({col})")
    sql = (
        "INSERT INTO floor VALUES (?, ?, ?, ?, ?, ?)" if sqlite else "INSERT INTO floor VALUES (%s, %s, %s, %s, %s, %s)"
    )
    started = time.perf_counter()
    for response in batches:
        rows = []
        for order in response["payload"]["Orders"]:
            clear = dict(order)
            parts = []
            for block in PII_BLOCKS:
                values = clear.pop(block)
                for name, value in values.items():
                    if name in KEEP_CLEAR:
                        continue
                    plain = value.encode() if isinstance(value, str) else json.dumps(value).encode()
                    nonce = os.urandom(12)
                    parts.append(nonce + aead.encrypt(nonce, plain, None))
            addr, buyer = order["ShippingAddress"], order["BuyerInfo"]
            rows.append(
                (
                    order["AmazonOrderId"],
                    json.dumps(clear),
                    b"".join(parts),
                    hmac.digest(mac_key, buyer["BuyerEmail"].lower().encode(), hashlib.sha256)[:16],
                    hmac.digest(mac_key, addr["Phone"].encode(), hashlib.sha256)[:16],
                    hmac.digest(mac_key, addr["PostalCode"].encode(), hashlib.sha256)[:16],
                )
            )
        raw = d.engine.raw_connection()
        try:
            cur = raw.cursor()
            if sqlite:
                cur.execute("BEGIN")
            cur.executemany(sql, rows)
            raw.commit() if not sqlite else cur.execute("COMMIT")
        finally:
            raw.close()
    return time.perf_counter() - started


def run_pgcrypto(d: Deployment, batches: list[dict[str, Any]]) -> tuple[float, int]:
    """pgp_sym_encrypt per PII field in SQL, default settings: what many seller tools do today."""
    with d.engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        conn.exec_driver_sql("CREATE TABLE pgc (order_id TEXT PRIMARY KEY, clear TEXT, pii BYTEA[])")
    password = secrets.token_hex(16)
    n = 0
    started = time.perf_counter()
    for response in batches:
        raw = d.engine.raw_connection()
        try:
            cur = raw.cursor()
            for order in response["payload"]["Orders"]:
                clear = dict(order)
                values = [
                    v if isinstance(v, str) else json.dumps(v)
                    for block in PII_BLOCKS
                    for k, v in clear.pop(block).items()
                    if k not in KEEP_CLEAR
                ]
                placeholders = ", ".join(["pgp_sym_encrypt(%s, %s)"] * len(values))
                params: list[Any] = [order["AmazonOrderId"], json.dumps(clear)]
                for v in values:
                    params += [v, password]
                cur.execute(f"INSERT INTO pgc VALUES (%s, %s, ARRAY[{placeholders}])", params)
                n += 1
            raw.commit()
        finally:
            raw.close()
    return time.perf_counter() - started, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument(
        "--batch", type=int, default=5000, help="orders per getOrders response and per transaction (the CLI uses one)"
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--pgcrypto-orders", type=int, default=2000, help="orders for the (slow) pgcrypto run")
    parser.add_argument("--repeat", type=int, default=5, help="runs of vault and floor; medians are reported")
    args = parser.parse_args()

    orders = list(generate_orders(args.orders, seed=42))
    batches = [get_orders_response(orders[i : i + args.batch]) for i in range(0, len(orders), args.batch)]
    pii_per_order = sum(len(b) for b in (orders[0]["ShippingAddress"], orders[0]["BuyerInfo"])) - len(KEEP_CLEAR)
    vault_times, floor_times = [], []
    result: dict[str, Any] = {}
    # Each run gets a new, empty database, so the vault (which keeps its rows) and the floor
    # (whose table is new) always insert into tables of the same size. Runs alternate, so drift
    # on a shared machine hits both.
    for _ in range(args.repeat):
        for timings, run in ((vault_times, "vault"), (floor_times, "floor")):
            with database(args.database_url) as (run_url, tmp):
                d = make_deployment(run_url, tmp)
                try:
                    work = copy.deepcopy(batches)
                    gc.collect()  # neither side pays for collecting the set-up's garbage
                    timings.append(run_vault(d, "A1BENCHSELLER", work) if run == "vault" else run_floor(d, work))
                finally:
                    d.close()
    if args.database_url and args.database_url.startswith("postgresql"):
        few = orders[: args.pgcrypto_orders]
        pg_batches = [get_orders_response(few[i : i + 500]) for i in range(0, len(few), 500)]
        with database(args.database_url) as (pg_url, tmp):
            d = make_deployment(pg_url, tmp)
            try:
                seconds, n = run_pgcrypto(d, pg_batches)
            finally:
                d.close()
        result["pgcrypto_orders_per_s"] = round(n / seconds, 1)
    vault_t, floor_t = statistics.median(vault_times), statistics.median(floor_times)
    result = {
        "backend": "postgresql" if args.database_url else "sqlite",
        "orders": args.orders,
        "pii_fields_per_order": pii_per_order,
        "orders_per_s": round(args.orders / vault_t, 1),
        "floor_orders_per_s": round(args.orders / floor_t, 1),
        "floor_ratio": round(vault_t / floor_t, 3),
        "batch": args.batch,
        "runs": args.repeat,
        **result,
    }
    if "pgcrypto_orders_per_s" in result:
        result["pgcrypto_speedup"] = round(result["orders_per_s"] / result["pgcrypto_orders_per_s"], 1)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
