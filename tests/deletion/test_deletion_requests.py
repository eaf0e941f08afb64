"""Deletion and return requests (DPP 9), on SQLite and PostgreSQL: a whole tenant crypto-shredded
and purged, orders and one buyer's orders deleted, a return bundle encrypted to the recipient,
verification before success, a signed certificate that a tampered copy fails, the 72-hour clock
with its alarms, linked duplicates, "nothing held", a buyer's restriction and rectification."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import pyrage
import pytest
from pyrage import x25519
from sqlalchemy import func, insert, select

from conftest import OPERATOR, OTHER, TENANT
from sagevault.deletion import verify_certificate
from sagevault.deployment import Deployment
from sagevault.errors import AccessDenied, IntegrityError, PayloadError, ProcessingRestricted, TenantShredded
from sagevault.jobs import BUILTIN, Jobs, Watch, carry_out
from sagevault.testing import ManualClock, generate_orders, get_orders_response
from sagevault.vault import Operation
from sagevault.vault._schema import records

ORDERS = list(generate_orders(12, seed=5))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 12, 6, 9, 0, tzinfo=UTC))


@pytest.fixture
def d(deployment_at, clock: ManualClock) -> Deployment:
    made: Deployment = deployment_at(clock=clock, event_clock=clock)
    with made.unit_of_work() as conn:
        for tenant in (TENANT, OTHER):
            made.vault.add_tenant(conn, tenant, ["ATVPDKIKX0DER"], principal=OPERATOR)
            made.vault.ingest(conn, tenant, [get_orders_response(ORDERS)], Operation.GET_ORDERS, principal=OPERATOR)
    return made


def _request(d: Deployment, **facts) -> int:
    with d.unit_of_work() as conn:
        return d.deletion.request(conn, principal=OPERATOR, **{"tenant_id": TENANT, **facts}).id


def _count(d: Deployment, tenant: str) -> int:
    with d.unit_of_work(read_only=True) as conn:
        return int(conn.execute(select(func.count()).where(records.c.tenant_id == tenant)).scalar_one())


def _public_key(d: Deployment):
    return d.settings.resolved_audit_signing_key_file.with_suffix(".pub")


def test_a_whole_tenant_is_crypto_shredded_purged_verified_and_certified(d: Deployment) -> None:
    request_id = _request(d, source="seller-offboarding")
    done = carry_out(d, request_id, OPERATOR)
    assert done.state == "done" and done.done_at is not None and done.done_at <= done.due_at
    assert _count(d, TENANT) == 0 and _count(d, OTHER) == len(ORDERS)
    with d.unit_of_work(read_only=True) as conn:
        signed = d.deletion.certificate(conn, request_id, principal=OPERATOR)
        with pytest.raises(TenantShredded):
            d.vault.search(
                conn, TENANT, "email", ORDERS[0]["BuyerInfo"]["BuyerEmail"], purpose="fulfilment", principal=OPERATOR
            )
    cert = verify_certificate(signed, _public_key(d))
    assert cert["method_code"] == "cryptographic erase" and cert["keys_destroyed"] == ["data v1", "index v1"]
    assert cert["verification"] == {
        "rows_remaining": 0,
        "ciphertexts_openable": 0,
        "key_versions_remaining": 0,
        "result": "pass",
    }
    assert cert["counts"]["records"] == len(ORDERS) and cert["request"]["source"] == "seller-offboarding"
    tampered = copy.deepcopy(signed)
    tampered["certificate"]["counts"]["records"] = 1
    with pytest.raises(IntegrityError, match="changed after it was signed"):
        verify_certificate(tampered, _public_key(d))
    steps = [e["operation"] for e in d.audit.search(name="deletion:request:step")]
    assert steps == ["scoped", "deleting", "verifying", "done"]


def test_orders_and_one_buyer_are_deleted_row_by_row_and_everything_else_stays(d: Deployment) -> None:
    doomed = [ORDERS[0]["AmazonOrderId"], ORDERS[1]["AmazonOrderId"]]
    by_orders = carry_out(d, _request(d, scope="orders", orders=doomed), OPERATOR)
    buyer = ORDERS[2]["BuyerInfo"]["BuyerEmail"]
    by_buyer = carry_out(d, _request(d, scope="buyer", buyer={"email": buyer}, source="buyer-request"), OPERATOR)
    assert (by_orders.state, by_buyer.state) == ("done", "done")
    assert _count(d, TENANT) == len(ORDERS) - 3 and _count(d, OTHER) == len(ORDERS)
    with d.unit_of_work(read_only=True) as conn:
        assert d.vault.search(conn, TENANT, "email", buyer, purpose="fulfilment", principal=OPERATOR) == []
        assert d.vault.search(conn, OTHER, "email", buyer, purpose="fulfilment", principal=OPERATOR)  # another seller
        cert = d.deletion.certificate(conn, by_buyer.id, principal=OPERATOR)["certificate"]
        stored = d.deletion.get(conn, by_buyer.id, principal=OPERATOR)
    assert cert["method_code"] == "logical delete" and cert["scope"]["identified_by"] == ["email"]
    assert buyer not in json.dumps(stored.scope) and buyer not in json.dumps(cert)  # the identifier is not kept
    deleted = [i for e in d.audit.search(name="storage:record:delete") for i in e["record_ids"]]
    assert len(deleted) == 3  # the journal a backup restore re-applies


def test_a_second_request_for_the_same_scope_is_linked_and_nothing_held_is_certified_too(d: Deployment) -> None:
    first = _request(d)
    with d.unit_of_work() as conn:
        second = d.deletion.request(conn, tenant_id=TENANT, principal=OPERATOR, source="authorisation-revoked")
    assert (second.state, second.linked_to) == ("linked", first)
    carry_out(d, first, OPERATOR)
    with d.unit_of_work(read_only=True) as conn:
        assert d.deletion.certificate(conn, second.id, principal=OPERATOR)["certificate"]["request"]["id"] == first
    nobody = carry_out(d, _request(d, tenant_id="A9NOBODYHERE"), OPERATOR)
    nobuyer = carry_out(d, _request(d, tenant_id=OTHER, scope="buyer", buyer={"phone": "+1 206 555 0199"}), OPERATOR)
    for request in (nobody, nobuyer):
        with d.unit_of_work(read_only=True) as conn:
            cert = verify_certificate(d.deletion.certificate(conn, request.id, principal=OPERATOR), _public_key(d))
        assert cert["method_code"] == "nothing held" and cert["counts"]["records"] == 0


def test_a_return_is_a_bundle_only_the_recipient_opens_then_the_scope_is_deleted(d: Deployment) -> None:
    identity = x25519.Identity.generate()
    order = ORDERS[3]["AmazonOrderId"]
    request = carry_out(
        d, _request(d, scope="orders", orders=[order], kind="return", recipient=str(identity.to_public())), OPERATOR
    )
    assert request.state == "done" and _count(d, TENANT) == len(ORDERS) - 1
    returns = d.settings.resolved_data_dir / "returns"
    bundle = returns / f"return-{request.id}-{TENANT}.jsonl.age"
    sealed = bundle.read_bytes()
    assert ORDERS[3]["BuyerInfo"]["BuyerEmail"].encode() not in sealed
    [line] = pyrage.decrypt(sealed, [identity]).decode().splitlines()
    returned = json.loads(line)
    assert returned["order_id"] == order and returned["body"]["BuyerInfo"] == ORDERS[3]["BuyerInfo"]
    manifest = verify_certificate(
        json.loads((returns / f"return-{request.id}-{TENANT}.manifest.json").read_text()), _public_key(d)
    )  # the manifest is signed like a certificate
    assert (
        manifest["records"] == 1
        and manifest["orders"] == 1
        and manifest["file_sha256"] == request.counts["bundle"]["sha256"]
    )
    exported = list(d.audit.search(name="vault:record:export"))
    assert len(exported) == 1 and len(exported[0]["record_ids"]) == 1
    with d.unit_of_work(read_only=True) as conn:
        [live] = d.copies.list_copies(conn, principal=OPERATOR, kind="return-bundle")
    assert live.request_id == request.id and live.sha256 == manifest["file_sha256"]
    assert (live.expires_at - live.created_at).days == 90
    with pytest.raises(PayloadError, match="age X25519 public key"):
        _request(d, kind="return", recipient="ssh-ed25519 AAAA")
    with pytest.raises(PayloadError, match="needs the recipient"):
        _request(d, kind="return")


def test_bad_requests_are_refused_and_a_caller_without_the_scope_is_too(d: Deployment, clock: ManualClock) -> None:
    from factories import People

    for facts, message in (
        ({"scope": "everything"}, "scope is one of"),
        ({"kind": "shred"}, "kind is delete or return"),
        ({"source": "rumour"}, "source is one of"),
        ({"received_at": datetime(2026, 12, 6, 8, 0)}, "no UTC offset"),
        ({"received_at": clock() + timedelta(days=1)}, "in the future"),
        ({"scope": "orders", "orders": []}, "give the orders"),
        ({"scope": "buyer", "buyer": {"name": "Ana Lima"}}, "together with a postal_code"),
        ({"tenant_id": "lowercase"}, "selling partner id"),
    ):
        with pytest.raises(PayloadError, match=message):
            _request(d, **facts)
    viewer = People(d.access, d.engine, clock).person("vic.viewer", "viewer").principal()
    with d.unit_of_work() as conn, pytest.raises(AccessDenied):
        d.deletion.request(conn, tenant_id=TENANT, principal=viewer)
    request_id = _request(d)
    with pytest.raises(AccessDenied):
        carry_out(d, request_id, viewer)
    with d.unit_of_work(read_only=True) as conn:
        assert d.deletion.get(conn, request_id, principal=OPERATOR).state == "received"  # a refusal fails nothing


def test_an_interrupted_deletion_goes_on_and_verification_never_reports_success_early(d: Deployment) -> None:
    order = ORDERS[4]["AmazonOrderId"]
    request_id = _request(d, scope="orders", orders=[order])
    for _ in range(2):  # received -> scoped -> deleting: the process stops here
        with d.unit_of_work() as conn:
            d.deletion.step(conn, request_id, principal=OPERATOR)
    with d.unit_of_work(read_only=True) as conn:
        ids = d.deletion.get(conn, request_id, principal=OPERATOR).record_ids
    with d.unit_of_work() as conn:  # a deletion step, then a row of the scope comes back before verification
        d.deletion.step(conn, request_id, principal=OPERATOR)
        row = {c.name: None for c in records.columns}
        conn.execute(insert(records).values(**{**row, **_stub(max(ids) + 10_000, order)}))  # stored again meanwhile
    failed = carry_out(d, request_id, OPERATOR)
    assert failed.state == "failed" and "verification found 1 rows" in (failed.reason or "")
    assert failed.certificate is None
    done = carry_out(d, request_id, OPERATOR, retry=True)  # goes back to deleting, by order
    assert done.state == "done" and _count(d, TENANT) == len(ORDERS) - 1


def _stub(record_id: int, order: str) -> dict:
    return {
        "id": record_id,
        "tenant_id": TENANT,
        "order_id": order,
        "document": "orders-v0:Order",
        "origin": "amazon",
        "operation": "orders-v0.getOrders",
        "seller_id": TENANT,
        "retrieved_at": datetime(2026, 12, 6, tzinfo=UTC),
        "key_version": 1,
        "bi_version": 1,
        "pii_fields": 0,
        "unknown_fields": 0,
        "clear": "{}",
        "pii": b"",
    }


def test_the_72_hour_clock_warns_at_48_and_66_hours_and_alarms_when_overdue(d: Deployment, clock: ManualClock) -> None:
    received = clock() - timedelta(hours=1)
    _request(d, received_at=received)
    jobs = Jobs(BUILTIN, clock)
    for hours in (47.9, 48, 65.9, 66, 71.9, 72, 80):
        clock.advance(seconds=(received + timedelta(hours=hours) - clock()).total_seconds())
        jobs.run(d, "deletion-clocks", force=True)
    Watch(d).catch_up()
    with d.unit_of_work(read_only=True) as conn:
        alarms = [a for a in d.monitor.list_alarms(conn, principal=OPERATOR) if a.rule.startswith("deletion-request")]
    assert sorted((a.rule, a.severity) for a in alarms) == [
        ("deletion-request-overdue", "critical"),
        ("deletion-request-warning", "high"),
        ("deletion-request-warning", "high"),
    ]
    warned = [e["operation"] for e in d.audit.search(name="deletion:clock:warn")]
    assert warned == ["request 1 48h", "request 1 66h"]


def test_a_restricted_buyer_is_read_revealed_found_and_exported_by_no_one_until_lifted(d: Deployment) -> None:
    order, email = ORDERS[5]["AmazonOrderId"], ORDERS[5]["BuyerInfo"]["BuyerEmail"]
    with d.unit_of_work() as conn:
        d.deletion.buyers.restrict(conn, tenant_id=TENANT, principal=OPERATOR, buyer={"email": email})
    with d.unit_of_work(read_only=True) as conn:
        with pytest.raises(ProcessingRestricted):
            d.vault.get(conn, TENANT, order, principal=OPERATOR)
        with pytest.raises(ProcessingRestricted):
            d.vault.reveal(conn, TENANT, order, ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR)
        assert d.vault.search(conn, TENANT, "email", email, purpose="fulfilment", principal=OPERATOR) == []
        batch = d.vault.reveal_many(conn, TENANT, [order], ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR)
        assert batch.missing == [order]
        assert order not in [o.order_id for o in d.vault.list_orders(conn, TENANT, principal=OPERATOR, limit=100)]
        ids = d.vault.rights.orders_of(conn, TENANT, [order])
        exported, withheld = d.vault.rights.export(conn, TENANT, ids, principal=OPERATOR)
        assert exported == [] and withheld == ids
    with d.unit_of_work() as conn:
        lifted = d.deletion.buyers.restrict(conn, tenant_id=TENANT, principal=OPERATOR, orders=[order], lift=True)
    with d.unit_of_work(read_only=True) as conn:
        assert d.vault.reveal(conn, TENANT, order, ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR)
        cert = verify_certificate(d.deletion.certificate(conn, lifted.id, principal=OPERATOR), _public_key(d))
    assert cert["method_code"] == "restriction lifted"


def test_a_rectified_field_reads_back_and_is_found_by_its_new_value_only(d: Deployment) -> None:
    order, old = ORDERS[6]["AmazonOrderId"], ORDERS[6]["BuyerInfo"]["BuyerEmail"]
    new = "corrected.buyer@marketplace.amazon.com"
    with d.unit_of_work() as conn:
        request = d.deletion.buyers.rectify(
            conn, tenant_id=TENANT, order_id=order, field="BuyerInfo.BuyerEmail", value=new, principal=OPERATOR
        )
        with pytest.raises(PayloadError, match="not a PII field"):
            d.deletion.buyers.rectify(
                conn, tenant_id=TENANT, order_id=order, field="OrderTotal.Amount", value="1", principal=OPERATOR
            )
    with d.unit_of_work(read_only=True) as conn:
        [shown] = d.vault.reveal(conn, TENANT, order, ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR)
        assert shown.value == new
        assert [
            h.order_id for h in d.vault.search(conn, TENANT, "email", new, purpose="fulfilment", principal=OPERATOR)
        ] == [order]
        assert d.vault.search(conn, TENANT, "email", old, purpose="fulfilment", principal=OPERATOR) == []
        stored = d.deletion.get(conn, request.id, principal=OPERATOR)
    assert new not in json.dumps(stored.scope) and stored.counts["verification"]["reads_back"] is True


def test_a_return_that_takes_a_canary_raises_the_canary_alarm(d: Deployment) -> None:
    from sagevault.monitor import fake_orders

    canaries = list(fake_orders(1))
    with d.unit_of_work() as conn:
        d.monitor.plant(conn, d.vault, TENANT, canaries, principal=OPERATOR)
    identity = x25519.Identity.generate()
    order = canaries[0]["AmazonOrderId"]
    carry_out(
        d, _request(d, scope="orders", orders=[order], kind="return", recipient=str(identity.to_public())), OPERATOR
    )
    Watch(d).catch_up()
    with d.unit_of_work(read_only=True) as conn:
        [alarm] = [a for a in d.monitor.list_alarms(conn, principal=OPERATOR) if a.rule == "canary-touched"]
    assert alarm.evidence["event_name"] == "vault:record:export"


def test_what_a_request_covers_is_its_orders_whatever_was_stored_since(d: Deployment) -> None:
    buyer = ORDERS[7]["BuyerInfo"]["BuyerEmail"]
    order = ORDERS[7]["AmazonOrderId"]
    first = carry_out(d, _request(d, scope="buyer", buyer={"email": buyer}), OPERATOR)
    request_id = _request(d, scope="buyer", buyer={"email": ORDERS[8]["BuyerInfo"]["BuyerEmail"]})
    with d.unit_of_work() as conn:  # scoped, then the order is synced again (new record ids)
        d.deletion.step(conn, request_id, principal=OPERATOR)
        d.vault.ingest(conn, TENANT, [get_orders_response(ORDERS[8:9])], Operation.GET_ORDERS, principal=OPERATOR)
    carry_out(d, request_id, OPERATOR)
    with d.unit_of_work(read_only=True) as conn:
        assert d.vault.rights.orders_of(conn, TENANT, [ORDERS[8]["AmazonOrderId"]]) == []
    with d.unit_of_work() as conn:  # the buyer's order comes back in a later sync: a new request is carried out
        d.vault.ingest(conn, TENANT, [get_orders_response(ORDERS[7:8])], Operation.GET_ORDERS, principal=OPERATOR)
    again = carry_out(d, _request(d, scope="buyer", buyer={"email": buyer}), OPERATOR)
    assert first.state == again.state == "done" and again.linked_to is None
    with d.unit_of_work(read_only=True) as conn:
        assert d.vault.rights.orders_of(conn, TENANT, [order]) == []


def test_a_restriction_outlives_the_order_being_stored_again(d: Deployment) -> None:
    order = ORDERS[9]["AmazonOrderId"]
    with d.unit_of_work() as conn:
        d.deletion.buyers.restrict(conn, tenant_id=TENANT, principal=OPERATOR, orders=[order])
        d.vault.ingest(conn, TENANT, [get_orders_response(ORDERS[9:10])], Operation.GET_ORDERS, principal=OPERATOR)
    with d.unit_of_work(read_only=True) as conn, pytest.raises(ProcessingRestricted):
        d.vault.reveal(conn, TENANT, order, ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR)


def test_a_return_interrupted_after_its_bundle_was_written_writes_it_again_and_never_deletes_first(
    d: Deployment,
) -> None:
    identity = x25519.Identity.generate()
    order = ORDERS[10]["AmazonOrderId"]
    request_id = _request(d, scope="orders", orders=[order], kind="return", recipient=str(identity.to_public()))
    for _ in range(2):
        with d.unit_of_work() as conn:
            d.deletion.step(conn, request_id, principal=OPERATOR)  # received -> scoped -> returning

    def interrupted() -> None:
        with d.unit_of_work() as conn:  # the bundle is written, then the process dies before the commit
            d.deletion.step(conn, request_id, principal=OPERATOR)
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        interrupted()
    done = carry_out(d, request_id, OPERATOR)
    assert done.state == "done" and done.counts["returned"] == 1 and done.counts["bundle"]
    bundle = d.settings.resolved_data_dir / "returns" / f"return-{request_id}-{TENANT}.jsonl.age"
    assert json.loads(pyrage.decrypt(bundle.read_bytes(), [identity]))["order_id"] == order


def test_a_failed_request_stays_on_the_72_hour_clock(d: Deployment, clock: ManualClock) -> None:
    request_id = _request(d, scope="orders", orders=[ORDERS[11]["AmazonOrderId"]])
    with d.unit_of_work() as conn:
        d.deletion.fail(conn, request_id, "disk full", principal=OPERATOR)
    clock.advance(hours=73)
    with d.unit_of_work() as conn:
        assert [n for _, n in d.deletion.clocks(conn)] == ["deletion:clock:overdue"]
