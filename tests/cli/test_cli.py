"""The `sagevault` command as an operator runs it, on a real data dir (in this process, through
Typer's runner; tests/cli/test_entry_point.py runs the installed command)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from commands import run
from conftest import MODELS, sandbox_examples
from sagevault.testing import generate_orders, get_orders_response

ADDRESS = sandbox_examples("ordersV0.json", "/orders/v0/orders/{orderId}/address")[0]


@pytest.fixture
def ready(tmp_path: Path) -> Path:
    assert run(tmp_path, "init").returncode == 0
    assert run(tmp_path, "tenants", "add", "A1CLISELLER", "--marketplace", "ATVPDKIKX0DER").returncode == 0
    return tmp_path


def test_init_ingest_show_and_list(ready: Path) -> None:
    key = ready / "var" / "keys" / "master.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    (ready / "address.json").write_text(json.dumps(ADDRESS))
    lines = ready / "orders.jsonl"
    lines.write_text("\n".join(json.dumps(o) for o in generate_orders(3, seed=1)) + "\n")
    res = run(ready, "ingest", "--tenant", "A1CLISELLER", "address.json", "orders.jsonl")
    assert res.returncode == 0, res.stderr
    assert "stored 4 records of 4 orders" in res.stdout
    shown = run(ready, "show", "--tenant", "A1CLISELLER", "--order", "902-1845936-5435065")
    assert shown.returncode == 0
    assert "[PII user.name]" in shown.stdout and "WESTLAKE" not in shown.stdout
    assert "origin amazon" in shown.stdout and "orders-v0.getOrderAddress" in shown.stdout
    listed = run(ready, "tenants", "list")
    assert "A1CLISELLER" in listed.stdout and "active" in listed.stdout


def test_rotate_and_shred_from_the_command_line(ready: Path) -> None:
    (ready / "orders.jsonl").write_text("\n".join(json.dumps(o) for o in generate_orders(30, seed=2)))
    assert run(ready, "ingest", "-t", "A1CLISELLER", "orders.jsonl").returncode == 0
    rotated = run(ready, "keys", "rotate", "--tenant", "A1CLISELLER", "--batch-size", "7")
    assert rotated.returncode == 0, rotated.stderr
    assert "primary key v2; retired v1" in rotated.stdout
    status = run(ready, "keys", "status", "--tenant", "A1CLISELLER")
    assert "retired" in status.stdout and "30" in status.stdout
    refused = run(ready, "shred", "--tenant", "A1CLISELLER")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    shredded = run(ready, "shred", "--tenant", "A1CLISELLER", "--yes")
    assert shredded.returncode == 0 and "30 unreadable records purged" in shredded.stdout
    after = run(ready, "show", "--tenant", "A1CLISELLER", "--order", "x")
    assert after.returncode == 2 and "was shredded on" in after.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"payload": {"Orders": [', "not valid JSON (line 1"),
        ('{"payload": {"Orders": [{"OrderStatus": "Shipped"}]}}', "has no AmazonOrderId"),
        ('{"a": 1}\n{"b": 2', "line 2 is not a JSON object"),
        ("[]", "stored 0 records"),
    ],
)
def test_bad_files_are_one_line_errors_and_store_nothing(ready: Path, content: str, message: str) -> None:
    (ready / "good.json").write_text(json.dumps(ADDRESS))
    (ready / "bad.json").write_text(content)
    res = run(ready, "ingest", "--tenant", "A1CLISELLER", "good.json", "bad.json")
    if message.startswith("stored"):
        assert res.returncode == 0 and "stored 1 records" in res.stdout
        return
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr
    assert "bad.json" in res.stderr
    listed = run(ready, "tenants", "list")
    assert "A1CLISELLER" in listed.stdout and " 0 " in listed.stdout  # the good file was not stored either


def test_operator_mistakes_exit_2_with_advice(ready: Path) -> None:
    cases = [
        (("init",), "already holds a SageVault deployment"),
        (("ingest", "--tenant", "NOPE1", str(MODELS / "ordersV0.json")), "cannot tell which SP-API operation"),
        (("show", "--tenant", "NOPE1", "--order", "1"), "sagevault tenants add NOPE1"),
        (("ingest", "--tenant", "A1CLISELLER", "missing.json"), "missing.json: no such file"),
        (("ingest", "--tenant", "A1CLISELLER", "--operation", "getFoo", "x.json"), "unknown operation getFoo"),
        (("tenants", "add", "A1CLISELLER", "-m", "ATVPDKIKX0DER"), "already exists"),
        (("tenants", "add", "A9NEW", "-m", "XX"), "not an Amazon marketplace id"),
    ]
    for args, message in cases:
        res = run(ready, *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert message in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr


def test_key_file_problems_refuse_to_start(ready: Path) -> None:
    key = ready / "var" / "keys" / "master.key"
    original = key.read_bytes()
    key.chmod(0o644)
    res = run(ready, "tenants", "list")
    assert res.returncode == 2 and "master.key" in res.stderr and "chmod" in res.stderr
    key.chmod(0o600)
    key.unlink()
    res = run(ready, "show", "--tenant", "A1CLISELLER", "--order", "1")
    assert res.returncode == 2 and "master key file" in res.stderr and "is missing" in res.stderr
    # a different (valid) key file cannot unwrap the tenant's keys
    other = ready / "other"
    other.mkdir()
    assert run(other, "init").returncode == 0
    key.write_bytes((other / "var" / "keys" / "master.key").read_bytes())
    key.chmod(0o600)
    (ready / "address.json").write_text(json.dumps(ADDRESS))
    res = run(ready, "ingest", "--tenant", "A1CLISELLER", "address.json")
    assert res.returncode == 2 and "wrapped by master key local:" in res.stderr
    assert "which this deployment does not hold: restore that key file" in res.stderr
    key.write_bytes(original)
    assert run(ready, "ingest", "--tenant", "A1CLISELLER", "address.json").returncode == 0


def test_unsafe_policy_setting_refuses_to_start(ready: Path) -> None:
    (ready / "sagevault.toml").write_text("[policy]\nsecurity_log_retention_days = 30\n")
    res = run(ready, "tenants", "list")
    assert res.returncode == 2
    assert "security_log_retention_days=30 is unsafe" in res.stderr and ">= 365" in res.stderr


def test_commands_before_init_say_to_run_init(tmp_path: Path) -> None:
    res = run(tmp_path, "tenants", "list")
    assert res.returncode == 2 and "run `sagevault init` first" in res.stderr


def test_an_interrupted_shred_is_finished_by_running_it_again(ready: Path) -> None:
    (ready / "orders.jsonl").write_text("\n".join(json.dumps(o) for o in generate_orders(5, seed=3)))
    assert run(ready, "ingest", "-t", "A1CLISELLER", "orders.jsonl").returncode == 0
    from sagevault.config import load_settings
    from sagevault.deployment import open_deployment
    from sagevault.identity import Principal

    d = open_deployment(load_settings(data_dir=ready / "var"))
    with d.engine.begin() as conn:  # the shred commits, then the process "dies" before purging
        d.vault.shred(conn, "A1CLISELLER", principal=Principal.local_operator())
    d.close()
    res = run(ready, "shred", "--tenant", "A1CLISELLER", "--yes")
    assert res.returncode == 0 and "already shredded" in res.stdout and "5 unreadable records purged" in res.stdout


def test_catalog_gives_every_pii_field_as_one_json_document_or_as_json_lines(tmp_path: Path) -> None:
    rows = json.loads(run(tmp_path, "catalog", "--pii", "--json").stdout)
    assert len(rows) > 100 and all(r["pii"] and r["purposes"] for r in rows)
    assert {"document": "orders-v0:OrderBuyerInfo", "path": "BuyerEmail"}.items() <= next(
        r for r in rows if r["path"] == "BuyerEmail"
    ).items()
    lines = [json.loads(line) for line in run(tmp_path, "catalog", "--pii", "--jsonl").stdout.splitlines()]
    assert lines == rows
    both = run(tmp_path, "catalog", "--json", "--jsonl")
    assert both.returncode == 2 and "not both" in both.stderr


def test_demo_prints_a_masked_table_and_unbroken_next_steps_when_piped(tmp_path: Path) -> None:
    res = run(tmp_path, "demo", env={"COLUMNS": ""})  # not a terminal, no width given: nothing wraps
    assert res.returncode == 0, res.stderr
    assert "[PII user.name]" in res.stdout and "nothing was decrypted" in res.stdout
    for example in sandbox_examples("ordersV0.json", "/orders/v0/orders/{orderId}/buyerInfo"):
        email = example.get("payload", {}).get("BuyerEmail")
        assert not email or email not in res.stdout
    command = next(line for line in res.stdout.splitlines() if "sagevault show --tenant" in line)
    assert re.search(r"--order \d{3}-\d{7}-\d{7} ", command)  # the whole command on one line, to copy
    # the SP-API part: a seller connected to the local stand-in, synced with an RDT, shown masked
    assert "250 new or updated orders in 3 pages, 1 RDT(s)" in res.stdout
    assert "SBX" not in res.stdout.upper() and "[PII user.contact.address.city]" in res.stdout


def test_a_tampered_ciphertext_stops_rotation_with_advice_and_changes_nothing(ready: Path) -> None:
    import sqlite3

    (ready / "orders.jsonl").write_text("\n".join(json.dumps(o) for o in generate_orders(4, seed=6)))
    assert run(ready, "ingest", "-t", "A1CLISELLER", "orders.jsonl").returncode == 0
    db = sqlite3.connect(ready / "var" / "sagevault.db")
    rid, blob = db.execute("SELECT id, pii FROM records ORDER BY id LIMIT 1").fetchone()
    db.execute("UPDATE records SET pii = ? WHERE id = ?", (blob[:-1] + bytes([blob[-1] ^ 1]), rid))
    db.commit()
    res = run(ready, "keys", "rotate", "--tenant", "A1CLISELLER", "--batch-size", "10")
    assert res.returncode == 2
    assert f"of record {rid} failed authentication" in res.stderr and "restore the record" in res.stderr
    versions = {v for (v,) in db.execute("SELECT key_version FROM records")}
    db.close()
    assert versions == {1}  # the failed batch re-encrypted nothing


def test_audit_verify_from_the_command_line_names_what_is_wrong(ready: Path) -> None:
    assert run(ready, "audit", "digest").returncode == 0
    ok = run(ready, "audit", "verify")
    assert ok.returncode == 0 and "audit log verified" in ok.stdout
    # the digest's own event is the head: sealed, and covered by the digest (the shutdown's)
    assert re.search(r"sealed through event (\d+); 0 events after the last signed digest", ok.stdout), ok.stdout
    digests = ready / "var" / "audit" / "digests.jsonl"
    digests.write_text(digests.read_text() + "{not json\n")
    bad = run(ready, "audit", "verify")
    assert bad.returncode == 1 and f"digest file {digests} line" in bad.stderr and "corrupted" in bad.stderr
    digests.write_text("\n".join(digests.read_text().splitlines()[:-1]) + "\n")
    pub = ready / "var" / "keys" / "audit-signing.pub"
    pub.rename(pub.with_suffix(".moved"))
    missing = run(ready, "audit", "verify")
    assert missing.returncode == 1 and "audit verification key" in missing.stderr and "is missing" in missing.stderr


def test_full_scenario_leaves_no_pii_in_any_byte_written(ready: Path) -> None:
    """Ingest, read, reveal, search, rotate, shred and failed actions with known PII, then scan
    the databases, the audit export, the digests, the application logs and all console output."""
    from pii_scan import leaked, pii_strings
    from sagevault.config import load_settings
    from sagevault.deployment import open_deployment
    from sagevault.errors import PurposeNotAllowed
    from sagevault.identity import Principal

    orders = list(generate_orders(40, seed=21))
    (ready / "orders.jsonl").write_text("\n".join(json.dumps(o) for o in orders))
    (ready / "address.json").write_text(json.dumps(ADDRESS))
    console = []
    steps = [
        ("ingest", "-t", "A1CLISELLER", "orders.jsonl", "address.json"),
        ("show", "-t", "A1CLISELLER", "-o", orders[0]["AmazonOrderId"]),
        ("show", "-t", "A1CLISELLER", "-o", orders[0]["BuyerInfo"]["BuyerEmail"]),  # PII typed where an id belongs
        ("tenants", "add", orders[1]["ShippingAddress"]["Phone"], "-m", "ATVPDKIKX0DER"),
        ("ingest", "-t", orders[2]["BuyerInfo"]["BuyerName"], "orders.jsonl"),
        ("keys", "rotate", "-t", "A1CLISELLER"),
    ]
    for args in steps:
        res = run(ready, *args)
        console += [res.stdout, res.stderr]
    d = open_deployment(load_settings(data_dir=ready / "var"))
    me = Principal.local_operator()
    with d.engine.begin() as conn:
        revealed = d.vault.reveal(
            conn,
            "A1CLISELLER",
            orders[3]["AmazonOrderId"],
            ["ShippingAddress.Name", "BuyerInfo.BuyerEmail"],
            "fulfilment",
            principal=me,
        )
        assert {f.value for f in revealed} == {
            orders[3]["ShippingAddress"]["Name"],
            orders[3]["BuyerInfo"]["BuyerEmail"],
        }
        hits = d.vault.search(
            conn, "A1CLISELLER", "email", orders[4]["BuyerInfo"]["BuyerEmail"], purpose="legal", principal=me
        )
        assert [h.order_id for h in hits] == [orders[4]["AmazonOrderId"]]
    with d.engine.begin() as conn, pytest.raises(PurposeNotAllowed):
        d.vault.reveal(
            conn, "A1CLISELLER", orders[3]["AmazonOrderId"], ["BuyerInfo.BuyerEmail"], "tax_invoicing", principal=me
        )
    d.close()
    for args in (
        ("shred", "-t", "A1CLISELLER", "--yes"),
        ("audit", "verify"),
        ("audit", "tail", "-n", "100"),
        ("audit", "export", "--output", "export.jsonl"),
        ("audit", "export", "--format", "syslog"),
    ):
        res = run(ready, *args)
        console += [res.stdout, res.stderr]
        assert res.returncode == 0, res.stderr
    exported = [json.loads(line) for line in (ready / "export.jsonl").read_text().splitlines()]
    names = {e["name"] for e in exported}
    assert {
        "vault:record:ingest",
        "vault:record:read",
        "vault:field:reveal",
        "vault:record:search",
        "storage:keyset:rotate",
        "storage:keyset:destroy",
        "access:permission:deny",
        "cli:command:fail",
    } <= names
    secrets = pii_strings([get_orders_response(orders), ADDRESS])
    assert len(secrets) > 300
    written = b"".join(p.read_bytes() for p in (ready / "var").rglob("*") if p.is_file())
    written += (ready / "export.jsonl").read_bytes() + "".join(console).encode()
    assert (ready / "var" / "logs" / "sagevault.log").stat().st_size > 0
    assert leaked(secrets, written) == []
