"""The connector end to end, as an operator runs it: `sagevault connect` a seller against the
local SP-API stand-in (TLS on 127.0.0.1), a 5,000-order backfill through `sagevault sync run` as a
real process, killed in the middle with SIGKILL, run again: exactly the 5,000 orders, none twice,
none missing; 429s slow it down and lose nothing; no token and no PII in any byte of the data
dir, the logs or the security events; a revoked authorisation stops the tenant's sync."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from standin_support import app_file

from commands import SV, run
from pii_scan import leaked
from processes import process_env
from sagevault.sandbox import Sandbox, SandboxConfig, SellerSpec, new_refresh_token, pii_values, serve

SELLER = "A1BACKFILL0001"
_TAG = re.compile(rb"(?i)SBX[0-9A-F]{4}[0-9]{6}")
_POSTAL = re.compile(rb"[0-9]{5}-[0-9]{4}")
ORDERS = 5000


@pytest.fixture
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, str, str]]:
    spec = SellerSpec(seller_id=SELLER, orders=ORDERS, refresh_token=new_refresh_token())
    # getOrders at 300x Amazon's rate: 5 pages a second after the burst of 20, so that a run of
    # 50 pages takes a few seconds and can be killed in the middle.
    sandbox = Sandbox(SandboxConfig(sellers={SELLER: spec}, rate_scale=300.0))
    with serve(sandbox, tls_dir=tmp_path_factory.mktemp("standin")) as server:
        yield sandbox, server.url, str(server.ca_file)


def _stored_orders(tmp: Path) -> list[str]:
    db = sqlite3.connect(f"file:{tmp / 'var' / 'sagevault.db'}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT order_id FROM records WHERE tenant_id = ?", (SELLER,))]
    finally:
        db.close()


def _pages(tmp: Path) -> int:
    db = sqlite3.connect(f"file:{tmp / 'var' / 'sagevault.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT pages FROM sp_sync WHERE tenant_id = ?", (SELLER,)).fetchone()
        return int(row[0]) if row else 0
    finally:
        db.close()


def _every_byte(tmp: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (tmp / "var").rglob("*") if p.is_file())


def test_a_backfill_killed_in_the_middle_ends_with_every_order_once_and_nothing_in_clear(
    tmp_path: Path, standin: tuple[Sandbox, str, str]
) -> None:
    sandbox, url, ca_file = standin
    spec = sandbox.config.sellers[SELLER]
    assert run(tmp_path, "init").returncode == 0
    app = app_file(tmp_path, sandbox, url, ca_file)
    told = run(tmp_path, "connect", "app", "--from", str(app))
    assert told.returncode == 0, told.stderr
    app.unlink()  # from here on the secret is only in the deployment's file, wrapped
    told = run(
        tmp_path,
        "connect",
        "seller",
        SELLER,
        "--marketplace",
        "ATVPDKIKX0DER",
        "--since",
        "2020-01-01",
        stdin=spec.refresh_token + "\n",
    )
    assert told.returncode == 0, told.stderr
    assert "connected seller A1BACKFILL0001" in told.stdout

    proc = subprocess.Popen(
        [*SV, "sync", "run", "--tenant", SELLER],
        cwd=tmp_path,
        env=process_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while _pages(tmp_path) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    # Amazon's 429s, once the client knows the rate from a first answer (before it, a getOrders
    # client must assume Amazon's default plan: one request a minute after a 429).
    sandbox.inject("429", 4, "getOrders")
    while _pages(tmp_path) < 22 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the sync ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    halfway = _stored_orders(tmp_path)
    assert 0 < len(halfway) < ORDERS and len(halfway) == len(set(halfway)) and len(halfway) % 100 == 0

    told = run(tmp_path, "sync", "run", "--tenant", SELLER)
    assert told.returncode == 0, told.stderr
    stored = _stored_orders(tmp_path)
    assert len(stored) == ORDERS and set(stored) == {o["AmazonOrderId"] for o in sandbox.orders_of(SELLER)}
    assert sandbox.calls["throttled"] >= 4  # Amazon's 429s were met, and nothing was lost to them
    status = json.loads(run(tmp_path, "sync", "status", "--json").stdout)
    assert [(s["state"], s["orders"], s["in_window"]) for s in status] == [("active", ORDERS, False)]

    events = run(tmp_path, "audit", "search", "--limit", "100000").stdout
    secrets = {spec.refresh_token, sandbox.config.client_secret, *sandbox.issued_tokens()}
    written = _every_byte(tmp_path) + events.encode()
    assert leaked(secrets, written) == []
    # Every PII string of the stand-in carries its order's tag (SBX<seller><index>): one scan for
    # the tags finds any of the 5,000 orders' names, e-mails, addresses or phones in clear.
    # Postal codes cannot carry a tag: they are looked for by their shape, then compared.
    values = [v.encode() for o in sandbox.orders_of(SELLER) for v in pii_values(o)]
    postal = {v for v in values if _POSTAL.fullmatch(v)}
    assert len(postal) == ORDERS and all(_TAG.search(v) for v in values if v not in postal)
    assert _TAG.findall(written) == [] and set(_POSTAL.findall(written)) & postal == set()

    sandbox.revoke(SELLER)
    told = run(tmp_path, "sync", "run", "--tenant", SELLER)
    assert told.returncode == 2 and "authorise the application again" in told.stderr
    status = json.loads(run(tmp_path, "sync", "status", "--json").stdout)
    assert status[0]["state"] == "revoked"
    requests = json.loads(run(tmp_path, "deletion", "list", "--json").stdout)
    assert [(r["tenant"], r["source"]) for r in requests] == [(SELLER, "authorisation-revoked")]
