"""Retention (DPP 1, 9), on SQLite and PostgreSQL: records dated at ingest from the delivery, the
promised delivery or the purchase; PII purged 30 days after delivery (reveal and search find
nothing, no byte of it left in the database file), records deleted after 18 months, both held by a
legal hold that says why; holds without a reason or an end date refused; events with counts and
no PII; the 0011 migration dating records stored before; the CLI and the API."""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, update

from commands import run
from conftest import OPERATOR, OTHER, TENANT, sandbox_examples
from pii_scan import leaked, pii_strings, stored_bytes
from sagevault.deployment import Deployment
from sagevault.errors import AccessDenied, Conflict, PayloadError, RecordNotFound, UnknownTenant
from sagevault.testing import ManualClock, generate_orders, get_orders_response
from sagevault.vault import RetentionDays
from sagevault.vault._ingest import retention_dates
from sagevault.vault._schema import BLIND_INDEX_COLUMNS, records
from webapi import Api

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
MIGRATION = Path(__file__).parents[2] / "src/sagevault/vault/migrations/0011_retention_dates.py"


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _days_ago(days: float) -> str:
    return _iso(NOW - timedelta(days=days))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def d(deployment_at: Callable[..., Deployment], clock: ManualClock) -> Deployment:
    made: Deployment = deployment_at(clock=clock, event_clock=clock)
    with made.unit_of_work() as conn:
        for tenant in (TENANT, OTHER):
            made.vault.add_tenant(conn, tenant, ["ATVPDKIKX0DER"], principal=OPERATOR)
    return made


def _orders() -> dict[str, dict[str, Any]]:
    """delivered 31 days ago; promised 29 days ago; delivered 31 days ago (to be held); no delivery
    date at all, bought 65 days ago (purchase + 30 + 30: 5 days past due)."""
    delivered, promised, held, bought = copy.deepcopy(list(generate_orders(4, seed=21, prefix="r")))
    for order in (delivered, promised, held):
        order["PurchaseDate"] = _days_ago(40)
    for order in (delivered, held):
        order.update(EasyShipShipmentStatus="Delivered", LastUpdateDate=_days_ago(31), LatestDeliveryDate=_days_ago(25))
    promised["LatestDeliveryDate"] = _days_ago(29)
    bought["PurchaseDate"] = _days_ago(65)
    return {"delivered": delivered, "promised": promised, "held": held, "bought": bought}


def _ingest(d: Deployment, tenant: str, payloads: list[Any], at: datetime | None = None) -> None:
    with d.unit_of_work() as conn:
        d.vault.ingest(conn, tenant, payloads, principal=OPERATOR, retrieved_at=at)


def _address(order: dict[str, Any]) -> dict[str, Any]:
    return {"payload": {"AmazonOrderId": order["AmazonOrderId"], "ShippingAddress": order["ShippingAddress"]}}


def _items(order: dict[str, Any]) -> dict[str, Any]:
    item = {"ASIN": "B00RETAIN1", "SellerSKU": "SKU-1", "OrderItemId": "1", "Title": "Widget", "QuantityOrdered": 1}
    return {"payload": {"AmazonOrderId": order["AmazonOrderId"], "OrderItems": [item]}}


def _rows(d: Deployment, tenant: str = TENANT) -> dict[tuple[str, str], Any]:
    with d.unit_of_work(read_only=True) as conn:
        found = conn.execute(select(records).where(records.c.tenant_id == tenant)).all()
    return {(r.order_id, r.document): r for r in found}


def _aware(at: datetime | None) -> datetime | None:
    return at if at is None or at.tzinfo else at.replace(tzinfo=UTC)


def _reveal(d: Deployment, order: dict[str, Any]) -> list[Any]:
    with d.unit_of_work() as conn:
        return d.vault.reveal(
            conn,
            TENANT,
            order["AmazonOrderId"],
            ["BuyerInfo.BuyerEmail", "ShippingAddress.Name", "orders-v0:OrderAddress/ShippingAddress.Phone"],
            "fulfilment",
            principal=OPERATOR,
        )


def _search(d: Deployment, order: dict[str, Any]) -> list[Any]:
    with d.unit_of_work() as conn:
        return d.vault.search(
            conn, TENANT, "email", order["BuyerInfo"]["BuyerEmail"], purpose="fulfilment", principal=OPERATOR
        )


def _run(d: Deployment) -> Any:
    with d.unit_of_work() as conn:
        ran = d.retention.run(conn, principal=OPERATOR)
    d.release_deleted_pages()
    return ran


def _hold(d: Deployment, **given: Any) -> Any:
    with d.unit_of_work() as conn:
        return d.retention.add_hold(conn, principal=OPERATOR, **{"tenant_id": TENANT, **given})


def _status(d: Deployment, **given: Any) -> Any:
    with d.unit_of_work(read_only=True) as conn:
        return d.retention.status(conn, principal=OPERATOR, **given)


def test_an_order_delivered_31_days_ago_loses_its_pii_one_29_days_ago_keeps_it_and_a_held_one_says_why(
    d: Deployment, clock: ManualClock
) -> None:
    o = _orders()
    _ingest(d, TENANT, [_address(o["delivered"])], at=NOW - timedelta(days=35))  # before its order: provisional
    _ingest(d, TENANT, [get_orders_response(list(o.values()))])
    _ingest(d, TENANT, [_items(o["promised"])])  # after its order: the order's dates
    rows = _rows(d)
    delivered_at = NOW - timedelta(days=1)  # delivered (the last update, before the promise) + 30 days
    assert _aware(rows[(o["delivered"]["AmazonOrderId"], "orders-v0:Order")].pii_expires_at) == delivered_at
    assert _aware(rows[(o["delivered"]["AmazonOrderId"], "orders-v0:OrderAddress")].pii_expires_at) == delivered_at
    promised = rows[(o["promised"]["AmazonOrderId"], "orders-v0:OrderItems")]
    assert _aware(promised.pii_expires_at) == NOW + timedelta(days=1)
    assert _aware(promised.expires_at) == NOW - timedelta(days=40) + timedelta(days=548)
    assert _aware(rows[(o["bought"]["AmazonOrderId"], "orders-v0:Order")].pii_expires_at) == NOW - timedelta(days=5)
    gone = rows[(o["delivered"]["AmazonOrderId"], "orders-v0:Order")]
    old_blob = bytes(gone.pii)
    old_tokens = [bytes(t) for c in BLIND_INDEX_COLUMNS if (t := gone._mapping[c]) is not None]
    assert _search(d, o["delivered"]) and len(old_tokens) >= 3

    hold = _hold(
        d, order_id=o["held"]["AmazonOrderId"], reason="Litigation 2027-CV-0114", until=NOW + timedelta(days=90)
    )
    ran = _run(d)
    assert (ran.pii, ran.records, ran.more) == (3, 0, False)  # the order and its address, and the undated one

    assert _reveal(d, o["delivered"]) == [] and _search(d, o["delivered"]) == []
    assert _reveal(d, o["bought"]) == []
    assert {f.value for f in _reveal(d, o["promised"])} >= {o["promised"]["BuyerInfo"]["BuyerEmail"]}
    assert {f.value for f in _reveal(d, o["held"])} >= {o["held"]["BuyerInfo"]["BuyerEmail"]}
    after = _rows(d)
    for key in [
        (o["delivered"]["AmazonOrderId"], "orders-v0:Order"),
        (o["delivered"]["AmazonOrderId"], "orders-v0:OrderAddress"),
    ]:
        row = after[key]
        assert (bytes(row.pii), row.pii_fields, row.unknown_fields) == (b"", 0, 0)
        assert all(row._mapping[c] is None for c in BLIND_INDEX_COLUMNS) and _aware(row.pii_purged_at) == NOW
    with d.unit_of_work() as conn:  # the masked view still shows the non-PII part
        view = d.vault.get(conn, TENANT, o["delivered"]["AmazonOrderId"], principal=OPERATOR)
    assert view.records[0].data["OrderTotal"] == o["delivered"]["OrderTotal"] and view.records[0].pii_paths == []
    haystack = stored_bytes(d)
    assert leaked(pii_strings([o["delivered"], o["bought"]]), haystack) == []
    if d.engine.dialect.name == "sqlite":  # secure_delete and an emptied WAL: not one byte of the ciphertext
        assert old_blob[40:120] not in haystack
        assert not [t for t in old_tokens if t in haystack]

    status = _status(d, tenant_id=TENANT, order_id=o["held"]["AmazonOrderId"])
    assert status.order.state == "held" and [h.reason for h in status.order.held_by] == ["Litigation 2027-CV-0114"]
    assert status.order.held_by[0].until == NOW + timedelta(days=90) and status.order.pii_purged_at is None
    [tenant] = status.tenants
    assert (tenant.held, tenant.pii_purged, tenant.pii.overdue, tenant.pii.within_7_days) == (1, 3, 0, 2)
    assert [(h.hold.id, h.records, h.overdue) for h in tenant.holds] == [(hold.id, 1, 1)]
    assert _status(d, tenant_id=TENANT, order_id=o["delivered"]["AmazonOrderId"]).order.state == "purged"
    assert _status(d, tenant_id=TENANT, order_id=o["promised"]["AmazonOrderId"]).order.state == "kept"

    clock.advance(days=2)  # the promised order's day comes; the hold still keeps its order
    assert _run(d).pii == 2 and _reveal(d, o["promised"]) == [] and _reveal(d, o["held"])
    clock.advance(days=100)  # the hold ended: its order's PII goes at the next run
    assert _status(d, tenant_id=TENANT).tenants[0].held == 0
    assert _run(d).pii == 1 and _reveal(d, o["held"]) == []
    assert _run(d).pii == 0  # nothing twice


def test_records_go_after_18_months_unless_held_and_a_release_lets_them_go(d: Deployment, clock: ManualClock) -> None:
    o = _orders()
    _ingest(d, TENANT, [get_orders_response(list(o.values()))])
    _ingest(d, OTHER, [get_orders_response([o["bought"]])])
    _hold(d, reason="Tax audit of the seller, matter 17", until=NOW + timedelta(days=700))  # the whole tenant
    clock.advance(days=549)
    ran = _run(d)
    assert (ran.pii, ran.records) == (0, 1)  # only the other tenant's: the hold keeps the whole tenant
    assert len(_rows(d)) == 4 and _rows(d, OTHER) == {}
    [hold] = _status(d).tenants[0].holds
    assert hold.hold.order_id == "*" and hold.records == 4 and hold.overdue == 4
    assert _status(d, tenant_id=TENANT).tenants[0].records.overdue == 0  # held: not due

    with d.unit_of_work() as conn:
        released = d.retention.release_hold(conn, hold.hold.id, principal=OPERATOR)
    assert released.state(clock()) == "released" and released.released_by == OPERATOR.id
    assert _status(d, tenant_id=TENANT).tenants[0].records.overdue == 4
    ran = _run(d)
    assert (ran.pii, ran.records) == (0, 4) and _rows(d) == {}
    with d.unit_of_work() as conn, pytest.raises(Conflict, match="released already"):
        d.retention.release_hold(conn, hold.hold.id, principal=OPERATOR)
    with d.unit_of_work() as conn, pytest.raises(RecordNotFound):
        d.retention.release_hold(conn, 999, principal=OPERATOR)


def test_a_run_takes_limit_records_a_step_and_says_there_is_more(d: Deployment) -> None:
    orders = list(generate_orders(5, seed=23, prefix="l"))
    for order in orders:
        order["LatestDeliveryDate"] = _days_ago(40)
    _ingest(d, TENANT, [get_orders_response(orders)])
    steps = []
    while True:
        with d.unit_of_work() as conn:
            ran = d.retention.run(conn, principal=OPERATOR, limit=2)
        steps.append(ran.pii)
        if not ran.more:
            break
    assert steps == [2, 2, 1]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_hold_needs_a_reason_and_an_end_date_with_its_offset_in_the_future(d: Deployment) -> None:
    o = _orders()
    _ingest(d, TENANT, [get_orders_response([o["held"]])])
    order = o["held"]["AmazonOrderId"]
    later = NOW + timedelta(days=30)
    refused: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"reason": None, "until": later}, PayloadError, "needs a reason"),
        ({"reason": "   ", "until": later}, PayloadError, "needs a reason"),
        ({"reason": "x" * 501, "until": later}, PayloadError, "longer than 500"),
        ({"reason": "ask buyer at jane.doe@example.com", "until": later}, PayloadError, "e-mail address or phone"),
        ({"reason": "call +1 206 555 0100", "until": later}, PayloadError, "e-mail address or phone"),
        ({"reason": "case 7", "until": None}, PayloadError, "needs an end date"),
        ({"reason": "case 7", "until": datetime(2027, 6, 1)}, PayloadError, "no UTC offset"),
        ({"reason": "case 7", "until": "2027-06-01T00:00:00"}, PayloadError, "no UTC offset"),
        ({"reason": "case 7", "until": "next week"}, PayloadError, "not a time"),
        ({"reason": "case 7", "until": NOW - timedelta(seconds=1)}, PayloadError, "not in the future"),
        ({"reason": "case 7", "until": NOW + timedelta(days=4000)}, PayloadError, "within ten years"),
        ({"reason": "case 7", "until": later, "order_id": "no such order!"}, PayloadError, "an order id is"),
        ({"reason": "case 7", "until": later, "order_id": "111-0000000-0000000"}, RecordNotFound, "holds no order"),
        ({"reason": "case 7", "until": later, "tenant_id": "A9NOSUCHTENANT"}, UnknownTenant, "does not exist"),
        ({"reason": "case 7", "until": later, "tenant_id": "not a tenant"}, PayloadError, "selling partner id"),
    ]
    for given, error, message in refused:
        with pytest.raises(error, match=message):
            _hold(d, **{"order_id": order, **given})
    with d.unit_of_work(read_only=True) as conn:
        assert d.retention.holds(conn, principal=OPERATOR) == []
    ok = _hold(d, order_id=order, reason="Subpoena of 2027-02-20, 10:30", until="2027-06-01T00:00:00+02:00")
    assert ok.until == datetime(2027, 5, 31, 22, 0, tzinfo=UTC) and ok.state(NOW) == "active"
    with pytest.raises(PayloadError, match="give the tenant too"):
        _status(d, order_id=order)
    with pytest.raises(RecordNotFound):
        _status(d, tenant_id=TENANT, order_id="111-0000000-0000000")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_events_carry_counts_per_tenant_and_kind_and_no_pii(d: Deployment, clock: ManualClock) -> None:
    o = _orders()
    _ingest(d, TENANT, [get_orders_response(list(o.values())), _address(o["delivered"])])
    _ingest(d, OTHER, [get_orders_response([o["bought"]])])
    hold = _hold(
        d, order_id=o["held"]["AmazonOrderId"], reason="Litigation 2027-CV-0114", until=NOW + timedelta(days=9)
    )
    _run(d)
    events = list(d.audit.search(name="retention:pii:purge"))
    assert [(e["tenant_id"], e["counts"]) for e in events] == [
        (TENANT, {"orders": 2, "records": 3}),
        (OTHER, {"orders": 1, "records": 1}),
    ]
    assert all(
        e["record_ids"] == [] and e["operation"] == "retention run" and e["actor"] == OPERATOR.id for e in events
    )
    [added] = d.audit.search(name="retention:hold:add")
    assert added["counts"] == {"hold": hold.id, "records": 1} and added["tenant_id"] == TENANT
    with d.unit_of_work() as conn:
        d.retention.release_hold(conn, hold.id, principal=OPERATOR)
    [released] = d.audit.search(name="retention:hold:release")
    assert released["counts"] == {"hold": hold.id}
    clock.advance(days=600)
    _run(d)
    gone = list(d.audit.search(name="retention:record:purge"))
    assert [(e["tenant_id"], e["counts"]) for e in gone] == [
        (TENANT, {"orders": 4, "records": 5}),
        (OTHER, {"orders": 1, "records": 1}),
    ]
    everything = json.dumps(list(d.audit.search()))
    assert leaked(pii_strings([get_orders_response(list(o.values()))]), everything.encode()) == []
    assert "Litigation" not in everything  # a hold's reason stays in its table


def test_ingest_dates_2026_orders_from_delivered_packages_the_window_or_the_purchase(d: Deployment) -> None:
    responses = copy.deepcopy(sandbox_examples("orders_2026-01-01.json", "/orders/2026-01-01/orders"))
    by_id = {o["orderId"]: o for r in responses for o in r["orders"]}
    for package in by_id["202-7654321-1098765"]["packages"]:  # delivered: its last update bounds the delivery
        package["packageStatus"] = {"status": "DELIVERED"}
    _ingest(d, TENANT, responses)
    rows = {order: r for (order, _), r in _rows(d).items()}
    expected = {
        "202-7654321-1098765": datetime(2024, 12, 24, 18, 45, tzinfo=UTC) + timedelta(days=30),  # lastUpdatedTime
        "171-2345678-9012345": datetime(2024, 12, 30, 23, 59, 59, tzinfo=UTC) + timedelta(days=30),  # deliverByWindow
        "250-1234567-8901234": datetime(2024, 12, 25, 2, 30, tzinfo=UTC) + timedelta(days=60),  # createdTime + 30 + 30
    }
    assert {o: _aware(rows[o].pii_expires_at) for o in expected} == expected
    assert _aware(rows["250-1234567-8901234"].expires_at) == datetime(2024, 12, 25, 2, 30, tzinfo=UTC) + timedelta(
        days=548
    )


def test_dates_follow_the_policy_and_never_outlive_the_record() -> None:
    days = RetentionDays(pii_after_delivery=10, records=100, delivery_margin=5)
    got = datetime(2027, 1, 1, tzinfo=UTC)
    assert retention_dates(days, "2026-12-01T00:00:00Z", None, None, got) == (
        datetime(2026, 12, 16, tzinfo=UTC),
        datetime(2027, 3, 11, tzinfo=UTC),
    )
    assert retention_dates(days, "2026-12-01T00:00:00Z", "2026-12-03T00:00:00+01:00", "2026-12-09T00:00:00Z", got)[
        0
    ] == datetime(2026, 12, 12, 23, tzinfo=UTC)  # the earlier of delivered and promised
    assert retention_dates(days, "2026-12-01", None, "2029-01-01T00:00:00Z", got)[0] == datetime(
        2027, 3, 11, tzinfo=UTC
    )
    assert retention_dates(days, "not a date", None, "9999-12-31T00:00:00Z", got) == (
        datetime(2027, 4, 11, tzinfo=UTC),
        datetime(2027, 4, 11, tzinfo=UTC),
    )  # from the retrieval; the PII never outlives the record
    sandbox = retention_dates(days, "1970-01-19T03:58:30Z", None, "1970-01-19T04:15:17Z", got)  # placeholders
    assert sandbox == (got + timedelta(days=15), got + timedelta(days=100))


def test_the_migration_dates_records_stored_before(d: Deployment) -> None:
    o = _orders()
    new = copy.deepcopy(sandbox_examples("orders_2026-01-01.json", "/orders/2026-01-01/orders")[1])
    _ingest(d, TENANT, [_address(o["delivered"])], at=NOW - timedelta(days=35))
    _ingest(d, TENANT, [get_orders_response(list(o.values())), _items(o["promised"]), new])
    _ingest(d, TENANT, [_address(o["bought"])])
    _ingest(d, OTHER, [_items(o["held"])], at=NOW - timedelta(days=3))  # no order document anywhere
    dated = {k: (_aware(r.pii_expires_at), _aware(r.expires_at)) for k, r in {**_rows(d), **_rows(d, OTHER)}.items()}
    with d.unit_of_work() as conn:  # as they were before 0011
        conn.execute(update(records).values(pii_expires_at=None, expires_at=None))
    spec = importlib.util.spec_from_file_location("retention_dates_0011", MIGRATION)
    assert spec and spec.loader
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    migration.BATCH = 3  # several batches
    with d.unit_of_work() as conn, Operations.context(MigrationContext.configure(conn)):
        migration.upgrade()
    again = {k: (_aware(r.pii_expires_at), _aware(r.expires_at)) for k, r in {**_rows(d), **_rows(d, OTHER)}.items()}
    assert again == dated and len(again) == 9
    with d.unit_of_work(read_only=True) as conn:
        assert conn.execute(select(func.count()).where(records.c.pii_expires_at.is_(None))).scalar_one() == 0


def test_retention_from_the_shell(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    assert run(tmp_path, "tenants", "add", TENANT, "--marketplace", "ATVPDKIKX0DER").returncode == 0
    orders = list(generate_orders(3, seed=29, prefix="c"))
    for order in orders:
        order["LatestDeliveryDate"] = "2020-01-01T00:00:00Z"  # long past: 30 days after it too
    orders[2]["LatestDeliveryDate"] = "2099-01-01T00:00:00Z"
    payload = tmp_path / "orders.json"
    payload.write_text(json.dumps(get_orders_response(orders)))
    assert run(tmp_path, "ingest", "--tenant", TENANT, str(payload)).returncode == 0
    held = orders[0]["AmazonOrderId"]

    naive = run(tmp_path, "retention", "hold", "add", "--tenant", TENANT, "--reason", "case 9", "--until", "2099-01-01")
    assert naive.returncode == 2 and naive.stderr.count("\n") == 1 and "no UTC offset" in naive.stderr
    blank = run(tmp_path, "retention", "hold", "add", "--tenant", TENANT, "--reason", " ", "--until", "2099-01-01Z")
    assert blank.returncode == 2 and "needs a reason" in blank.stderr
    missing = run(tmp_path, "retention", "hold", "add", "--tenant", TENANT, "--reason", "case 9")
    assert missing.returncode == 2 and "--until" in missing.stderr
    added = run(
        tmp_path,
        "retention",
        "hold",
        "add",
        "--tenant",
        TENANT,
        "--order",
        held,
        "--reason",
        "Court order 9/27",
        "--until",
        _iso(datetime.now(UTC) + timedelta(days=60)),
    )
    assert added.returncode == 0 and "hold 1 placed" in added.stdout
    [hold] = json.loads(run(tmp_path, "retention", "hold", "list", "--json").stdout)
    assert hold["reason"] == "Court order 9/27" and hold["order_id"] == held and hold["state"] == "active"
    status = json.loads(run(tmp_path, "retention", "status", "--json").stdout)
    [tenant] = status["tenants"]
    assert tenant["pii"]["overdue"] == 1 and tenant["held"] == 1 and tenant["pii"]["later"] == 1
    table = run(tmp_path, "retention", "status", "--tenant", TENANT, "--order", held)
    assert table.returncode == 0 and "state: held" in table.stdout and "Court order 9/27" in table.stdout

    ran = run(tmp_path, "retention", "run")
    assert ran.returncode == 0 and "PII purged from 1 records" in ran.stdout
    assert run(tmp_path, "jobs", "run", "retention").returncode == 0  # the job: nothing left to do
    order = json.loads(run(tmp_path, "retention", "status", "--tenant", TENANT, "--order", held, "--json").stdout)
    assert order["order"]["state"] == "held" and order["order"]["held_by"][0]["reason"] == "Court order 9/27"
    assert run(tmp_path, "retention", "hold", "release", "1").returncode == 0
    again = run(tmp_path, "retention", "hold", "release", "1")
    assert again.returncode == 2 and "released already" in again.stderr
    assert "PII purged from 1 records" in run(tmp_path, "retention", "run").stdout
    assert json.loads(run(tmp_path, "retention", "status", "--json").stdout)["tenants"][0]["pii_purged"] == 2


def test_retention_over_https_needs_its_scopes(api: Api) -> None:
    officer = api.person("pat.privacy", "privacy-officer", ["*"])
    packer = api.person("pia.packer", "fulfilment", [TENANT])
    officer_h, packer_h = api.login("pat.privacy", officer), api.login("pia.packer", packer)
    base = f"{api.base}/retention"
    until = _iso(api.clock() + timedelta(days=30))
    body = {"tenant": TENANT, "order": api.order_id, "reason": "Litigation 2027-CV-0114", "until": until}

    assert api.client.get(base, headers=packer_h).status_code == 403
    assert api.client.post(f"{base}/holds", headers=packer_h, json=body).status_code == 403
    refused = list(api.d.audit.search(name="access:permission:deny"))
    assert {e["operation"] for e in refused} >= {"retention status", "retention hold add"}

    for bad, code in [
        ({**body, "until": until[:-1]}, 400),  # no UTC offset
        ({k: v for k, v in body.items() if k != "until"}, 422),
        ({**body, "reason": ""}, 400),
        ({**body, "reason": "mail jane.doe@example.com"}, 400),
        ({**body, "order": "111-0000000-0000000"}, 404),
        ({**body, "extra": 1}, 422),
    ]:
        answer = api.client.post(f"{base}/holds", headers=officer_h, json=bad)
        assert answer.status_code == code, (bad, answer.text)
    placed = api.client.post(f"{base}/holds", headers=officer_h, json=body)
    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert hold["state"] == "active" and hold["order_id"] == api.order_id and not hold["whole_tenant"]

    status = api.client.get(base, headers=officer_h, params={"tenant": TENANT, "order": api.order_id})
    assert status.status_code == 200, status.text
    order = status.json()["order"]
    assert order["state"] == "held" and order["held_by"][0]["reason"] == "Litigation 2027-CV-0114"
    assert status.json()["tenants"][0]["holds"][0]["id"] == hold["id"]
    assert api.client.get(base, headers=officer_h, params={"order": api.order_id}).status_code == 400
    assert api.client.get(base, headers=officer_h, params={"bogus": 1}).status_code == 422
    page = api.client.get(f"{base}/holds", headers=officer_h, params={"active": True})
    assert [h["id"] for h in page.json()["items"]] == [hold["id"]]

    assert api.client.post(f"{base}/holds/{hold['id']}/release", headers=packer_h).status_code == 403
    released = api.client.post(f"{base}/holds/{hold['id']}/release", headers=officer_h)
    assert released.status_code == 200 and released.json()["state"] == "released"
    assert api.client.post(f"{base}/holds/{hold['id']}/release", headers=officer_h).status_code == 409
    assert api.client.post(f"{base}/holds/999/release", headers=officer_h).status_code == 404
    with api.d.unit_of_work() as conn, pytest.raises(AccessDenied):
        api.d.retention.run(conn, principal=api._people["pia.packer"].principal())
