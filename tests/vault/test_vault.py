"""The vault on SQLite and PostgreSQL: ingest, masked reads, reveal, search, integrity."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlalchemy import bindparam, literal_column, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from conftest import OPERATOR, OTHER, TENANT, sandbox_examples
from pii_scan import leaked, pii_strings, stored_bytes
from sagevault.catalog import Document
from sagevault.crypto import PiiBlob
from sagevault.db import brief_write, driver_rows
from sagevault.deployment import Deployment
from sagevault.errors import (
    AccessDenied,
    IntegrityError,
    PayloadError,
    PurposeNotAllowed,
    RecordNotFound,
    UnknownTenant,
)
from sagevault.identity import Principal
from sagevault.testing import generate_orders, get_orders_response
from sagevault.vault import ORDER_ID, Operation
from sagevault.vault._schema import records

V0 = "ordersV0.json"
V2026 = "orders_2026-01-01.json"
V0_PATHS = [
    "/orders/v0/orders",
    "/orders/v0/orders/{orderId}",
    "/orders/v0/orders/{orderId}/buyerInfo",
    "/orders/v0/orders/{orderId}/address",
    "/orders/v0/orders/{orderId}/orderItems",
    "/orders/v0/orders/{orderId}/orderItems/buyerInfo",
    "/orders/v0/orders/{orderId}/regulatedInfo",
]
V2026_PATHS = ["/orders/2026-01-01/orders", "/orders/2026-01-01/orders/{orderId}"]


def all_sandbox_payloads() -> list[dict[str, Any]]:
    return [p for path in V0_PATHS for p in sandbox_examples(V0, path)] + [
        p for path in V2026_PATHS for p in sandbox_examples(V2026, path)
    ]


def ingest(d: Deployment, payloads: list[Any], tenant: str = TENANT, operation: Operation | None = None) -> Any:
    with d.engine.begin() as conn:
        return d.vault.ingest(conn, tenant, payloads, operation, principal=OPERATOR)


def test_every_sandbox_example_is_stored_with_no_unknown_fields(vault_tenant: Deployment) -> None:
    result = ingest(vault_tenant, all_sandbox_payloads())
    assert result.unknown_fields == 0, result.unknown_paths
    assert set(result.documents) == {d.value for d in Document}
    assert result.pii_fields > 50


def test_no_pii_string_reaches_the_database_bytes(vault_tenant: Deployment) -> None:
    sandbox = all_sandbox_payloads()
    generated = [get_orders_response(list(generate_orders(200, seed=11)))]
    for batch in (sandbox, generated):
        ingest(vault_tenant, batch)
    secrets = pii_strings(sandbox + generated)
    assert len(secrets) > 1000  # the scan is only as good as what it looks for
    haystack = stored_bytes(vault_tenant)
    assert b"Maria Silva Santos" not in haystack  # a 2026 sandbox buyer, spelled out
    assert leaked(secrets, haystack) == []
    # and the clear part is still there: the scan would see it if PII were stored like it
    assert b"902-1845936-5435065" in haystack


def test_masked_get_shows_categories_and_origin_not_values(vault_tenant: Deployment) -> None:
    ingest(vault_tenant, sandbox_examples(V0, "/orders/v0/orders/{orderId}/address"))
    with vault_tenant.engine.begin() as conn:
        view = vault_tenant.vault.get(conn, TENANT, "902-1845936-5435065", principal=OPERATOR)
    (rec,) = view.records
    assert rec.data["ShippingAddress"]["Name"] == "[PII user.name]"
    assert rec.data["ShippingAddress"]["CountryCode"] == "US"
    assert rec.origin == "amazon" and rec.operation == Operation.GET_ORDER_ADDRESS.value
    assert rec.seller_id == TENANT and rec.retrieved_at.tzinfo is not None
    assert "2201 WESTLAKE AVE" not in json.dumps(rec.data)


def test_reveal_returns_only_the_named_fields_for_an_allowed_purpose(vault_tenant: Deployment) -> None:
    ingest(vault_tenant, sandbox_examples(V0, "/orders/v0/orders/{orderId}/address"))
    ingest(vault_tenant, sandbox_examples(V0, "/orders/v0/orders/{orderId}/buyerInfo"))
    with vault_tenant.engine.begin() as conn:
        got = vault_tenant.vault.reveal(
            conn,
            TENANT,
            "902-1845936-5435065",
            ["ShippingAddress.Phone", "BuyerEmail"],
            "fulfilment",
            principal=OPERATOR,
        )
    assert {(f.path, f.value) for f in got} == {
        ("ShippingAddress.Phone", "+1 480-386-0930 ext. 73824"),
        ("BuyerEmail", "fzyrv6gwkhbb15c@example.com"),
    }
    assert "73824" not in repr(got)  # values never reach a repr


def test_reveal_refuses_a_purpose_the_catalog_does_not_allow(vault_tenant: Deployment) -> None:
    ingest(vault_tenant, sandbox_examples(V0, "/orders/v0/orders/{orderId}/buyerInfo"))
    with vault_tenant.engine.begin() as conn, pytest.raises(PurposeNotAllowed, match="allowed: fulfilment, legal"):
        vault_tenant.vault.reveal(
            conn, TENANT, "902-1845936-5435065", ["BuyerEmail"], "tax_invoicing", principal=OPERATOR
        )
    with vault_tenant.engine.begin() as conn, pytest.raises(PurposeNotAllowed, match="not a purpose"):
        vault_tenant.vault.reveal(conn, TENANT, "902-1845936-5435065", ["BuyerEmail"], "marketing", principal=OPERATOR)
    with vault_tenant.engine.begin() as conn, pytest.raises(PayloadError, match="not a PII field"):
        vault_tenant.vault.reveal(
            conn, TENANT, "902-1845936-5435065", ["OrderStatus"], "fulfilment", principal=OPERATOR
        )


def test_reads_take_a_principal_and_an_unknown_one_is_refused(vault_tenant: Deployment) -> None:
    ingest(vault_tenant, sandbox_examples(V0, "/orders/v0/orders/{orderId}/buyerInfo"))
    stranger = Principal(id="svc:report-bot", kind="service")
    with vault_tenant.engine.begin() as conn, pytest.raises(AccessDenied):
        vault_tenant.vault.reveal(conn, TENANT, "902-1845936-5435065", ["BuyerEmail"], "fulfilment", principal=stranger)
    with vault_tenant.engine.begin() as conn, pytest.raises(AccessDenied):
        vault_tenant.vault.get(conn, TENANT, "902-1845936-5435065", principal=stranger)


def test_blind_index_search_matches_normalised_values_within_one_tenant(vault_tenant: Deployment) -> None:
    orders = list(generate_orders(5, seed=3))
    ingest(vault_tenant, [get_orders_response(orders)])
    ingest(vault_tenant, [get_orders_response(list(generate_orders(5, seed=3)))], tenant=OTHER)
    target = orders[2]
    email = target["BuyerInfo"]["BuyerEmail"]
    phone = target["ShippingAddress"]["Phone"]
    with vault_tenant.engine.begin() as conn:
        search = vault_tenant.vault.search
        by_email = search(conn, TENANT, "email", f"  {email.upper()} ", purpose="fulfilment", principal=OPERATOR)
        by_phone = search(conn, TENANT, "phone", phone.replace("-", " "), purpose="fulfilment", principal=OPERATOR)
        by_name = search(
            conn, TENANT, "name", target["BuyerInfo"]["BuyerName"].lower(), purpose="legal", principal=OPERATOR
        )
        miss = search(conn, TENANT, "email", "nobody@example.com", purpose="fulfilment", principal=OPERATOR)
    assert {h.order_id for h in by_email} == {target["AmazonOrderId"]}
    assert {h.order_id for h in by_phone} == {target["AmazonOrderId"]}
    assert {h.order_id for h in by_name} == {target["AmazonOrderId"]}
    assert miss == []
    # the other tenant holds the same values, but its tokens are made with its own key
    with vault_tenant.engine.begin() as conn:
        tokens = conn.execute(
            select(records.c.tenant_id, records.c.bi_email).where(records.c.order_id == target["AmazonOrderId"])
        ).all()
    assert len(tokens) == 2 and tokens[0].bi_email != tokens[1].bi_email


def test_unknown_fields_are_encrypted_and_counted(vault_tenant: Deployment) -> None:
    order = next(generate_orders(1, seed=5))
    order["ShippingAddress"]["DoorCode"] = "DOORCODE-4471"
    order["LoyaltyTier"] = {"Level": "GOLD-MEMBER-99", "Since": 2019}
    order["IsPrime"] = {"unexpected": "SHAPE-MISMATCH-1"}  # a known leaf holding an object
    result = ingest(vault_tenant, [order], operation=Operation.GET_ORDER)
    assert result.unknown_fields == 3
    assert set(result.unknown_paths) == {"ShippingAddress.DoorCode", "LoyaltyTier", "IsPrime"}
    haystack = stored_bytes(vault_tenant)
    for secret in (b"DOORCODE-4471", b"GOLD-MEMBER-99", b"SHAPE-MISMATCH-1", b"DoorCode", b"LoyaltyTier"):
        assert secret not in haystack
    with vault_tenant.engine.begin() as conn:
        (rec,) = vault_tenant.vault.get(conn, TENANT, order["AmazonOrderId"], principal=OPERATOR).records
    assert rec.unknown_fields == 3 and "LoyaltyTier" not in rec.data


def test_a_ciphertext_moved_to_another_record_or_tenant_fails(vault_tenant: Deployment) -> None:
    orders = list(generate_orders(2, seed=9))
    ingest(vault_tenant, [get_orders_response(orders)])
    ingest(vault_tenant, [get_orders_response(orders)], tenant=OTHER)
    a, b = (o["AmazonOrderId"] for o in orders)
    with vault_tenant.engine.begin() as conn:
        blob = dict(conn.execute(select(records.c.order_id, records.c.pii).where(records.c.tenant_id == TENANT)).all())
        # the same order of another tenant gets tenant A's ciphertext
        conn.execute(update(records).where(records.c.tenant_id == OTHER, records.c.order_id == a).values(pii=blob[a]))
        # order b of tenant A gets order a's ciphertext
        conn.execute(update(records).where(records.c.tenant_id == TENANT, records.c.order_id == b).values(pii=blob[a]))
    for tenant, order_id in ((OTHER, a), (TENANT, b)):
        with vault_tenant.engine.begin() as conn, pytest.raises(IntegrityError, match="failed authentication"):
            vault_tenant.vault.reveal(
                conn, tenant, order_id, ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR
            )
    with vault_tenant.engine.begin() as conn:  # order a of tenant A is untouched and still reads
        (f,) = vault_tenant.vault.reveal(conn, TENANT, a, ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR)
    assert f.value == orders[0]["BuyerInfo"]["BuyerEmail"]


def test_a_ciphertext_moved_to_another_field_or_flipped_fails(vault_tenant: Deployment) -> None:
    order = next(generate_orders(1, seed=2))
    ingest(vault_tenant, [order], operation=Operation.GET_ORDER)
    with vault_tenant.engine.begin() as conn:
        blob = conn.execute(select(records.c.pii)).scalar_one()
    entries = dict(PiiBlob.entries(blob))
    # swap the name and e-mail ciphertexts, keeping each path where it was
    swapped = dict(entries)
    swapped["BuyerInfo.BuyerEmail"], swapped["BuyerInfo.BuyerName"] = (
        entries["BuyerInfo.BuyerName"],
        entries["BuyerInfo.BuyerEmail"],
    )
    flipped = bytearray(blob)
    flipped[-1] ^= 0x01  # the tag of the last field, BuyerInfo.BuyerTaxInfo.CompanyLegalName
    for bad in (_rebuild(swapped), bytes(flipped)):
        with vault_tenant.engine.begin() as conn:
            conn.execute(update(records).values(pii=bad))
        with vault_tenant.engine.begin() as conn, pytest.raises(IntegrityError):
            vault_tenant.vault.reveal(
                conn,
                TENANT,
                order["AmazonOrderId"],
                ["BuyerInfo.BuyerEmail", "BuyerInfo.BuyerName", "BuyerInfo.BuyerTaxInfo.CompanyLegalName"],
                "legal",
                principal=OPERATOR,
            )


def _rebuild(entries: dict[str, bytes]) -> bytes:
    """Forge a record's blob from (path, sealed) pairs, as an attacker with database access could."""
    return PiiBlob.build(list(entries.items()))


def test_a_failed_batch_stores_nothing(vault_tenant: Deployment) -> None:
    good = get_orders_response(list(generate_orders(3, seed=4)))
    bad = {"payload": {"Orders": [{"OrderStatus": "Shipped"}]}}  # no AmazonOrderId
    with pytest.raises(PayloadError, match=r"payload 2: payload.Orders\[0\] has no AmazonOrderId"):
        ingest(vault_tenant, [good, bad])
    with vault_tenant.engine.begin() as conn:
        assert vault_tenant.vault.record_count(conn, TENANT, principal=OPERATOR) == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "must be a JSON object"),
        ({"errors": [{"code": "Unauthorized"}]}, "error response"),
        ({"payload": {"Orders": "nope"}}, "payload.Orders to be a list"),
        ({"hello": "world"}, "cannot tell which SP-API operation"),
        ({"orders": [{"orderId": 42}]}, "has no orderId"),
    ],
)
def test_payloads_of_the_wrong_shape_are_refused_clearly(vault_tenant: Deployment, payload: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        ingest(vault_tenant, [payload])


@pytest.mark.parametrize(
    "order_id",
    ["902-1845936\x005435065", "902 1845936", "902-1845936'", '902-"1845936"', "-902-1845936", "9" * 65, ""],
)
def test_an_order_id_the_api_could_not_address_is_refused_and_never_echoed(
    vault_tenant: Deployment, order_id: str
) -> None:
    """A NUL, a space or a quote could be stored (PostgreSQL refuses a NUL with a 500) but never read
    through `/orders/{order_id}`: the vault takes the ids the API's order paths take, and no other."""
    v0 = next(generate_orders(1, seed=9))
    v0["AmazonOrderId"] = order_id
    batches: list[tuple[Any, Operation | None]] = [
        (get_orders_response([v0]), None),
        ({"payload": {"AmazonOrderId": order_id, "BuyerEmail": "a@b.example"}}, Operation.GET_ORDER_BUYER_INFO),
        ({"orders": [{"orderId": order_id}]}, Operation.SEARCH_ORDERS_2026),
    ]
    for payload, operation in batches:
        with pytest.raises(PayloadError, match=r"has no (AmazonOrderId|orderId) of the form") as refused:
            ingest(vault_tenant, [payload], operation=operation)
        if order_id:
            assert order_id not in str(refused.value)
    with vault_tenant.engine.begin() as conn:
        assert vault_tenant.vault.record_count(conn, TENANT, principal=OPERATOR) == 0


def test_the_sandbox_examples_and_generated_orders_have_ids_an_order_path_accepts(vault_tenant: Deployment) -> None:
    ingest(vault_tenant, [*all_sandbox_payloads(), get_orders_response(list(generate_orders(50, seed=3)))])
    with vault_tenant.engine.begin() as conn:
        stored = set(conn.execute(select(records.c.order_id).where(records.c.tenant_id == TENANT)).scalars())
    assert len(stored) > 50
    assert all(re.fullmatch(ORDER_ID, order_id) for order_id in stored)


def test_reingesting_an_order_replaces_its_document(vault_tenant: Deployment) -> None:
    order = next(generate_orders(1, seed=8))
    ingest(vault_tenant, [order], operation=Operation.GET_ORDER)
    order["OrderStatus"] = "Shipped"
    order["ShippingAddress"]["Phone"] = "+1 206-555-0000"
    result = ingest(vault_tenant, [order], operation=Operation.GET_ORDER)
    assert result.replaced == 1
    with vault_tenant.engine.begin() as conn:
        assert vault_tenant.vault.record_count(conn, TENANT, principal=OPERATOR) == 1
        (phone,) = vault_tenant.vault.reveal(
            conn, TENANT, order["AmazonOrderId"], ["ShippingAddress.Phone"], "fulfilment", principal=OPERATOR
        )
        hits = vault_tenant.vault.search(conn, TENANT, "phone", "12065550000", purpose="fulfilment", principal=OPERATOR)
    assert phone.value == "+1 206-555-0000"
    assert [h.order_id for h in hits] == [order["AmazonOrderId"]]


def test_unknown_tenant_and_order_are_clear_errors(vault_tenant: Deployment) -> None:
    with pytest.raises(UnknownTenant, match="sagevault tenants add NOPE"):
        ingest(vault_tenant, [next(generate_orders(1))], tenant="NOPE", operation=Operation.GET_ORDER)
    with vault_tenant.engine.begin() as conn, pytest.raises(RecordNotFound, match="no stored order 111-"):
        vault_tenant.vault.get(conn, TENANT, "111-0000000-0000000", principal=OPERATOR)


_MISSING = select(literal_column("x")).select_from(text("no_such_table")).where(literal_column("y") == bindparam("v"))


def test_brief_writes_wait_briefly_for_locks_and_leave_the_pooled_connection_as_it_was(deployment: Deployment) -> None:
    sqlite = deployment.engine.dialect.name == "sqlite"
    ask = "PRAGMA busy_timeout" if sqlite else "SHOW lock_timeout"
    with brief_write(deployment.engine) as conn:
        raw = conn.connection.dbapi_connection
        assert conn.exec_driver_sql(ask).scalar() == (50 if sqlite else "50ms")
    cursor = raw.cursor()  # type: ignore[union-attr]
    cursor.execute(ask)
    assert cursor.fetchone()[0] == (10000 if sqlite else "0")  # the next unit of work on it waits as usual
    cursor.close()
    raw.rollback()  # type: ignore[union-attr]  # (PostgreSQL began a transaction for the SHOW)


def test_driver_level_reads_fail_as_sqlalchemy_fails_and_hide_their_parameters(deployment: Deployment) -> None:
    """The reveal's rows and the policy generation are read through the driver's cursor; their
    errors are SQLAlchemy's (so the API tells a busy database from a fault as it does for every
    other statement) and carry no parameter value."""
    with deployment.engine.connect() as conn, conn.begin():
        with pytest.raises(DBAPIError) as info:
            driver_rows(conn, _MISSING, {"v": "buyer-7@example.com"})
        assert "buyer-7@example.com" not in str(info.value) and "no_such_table" in str(info.value)
        assert isinstance(
            info.value, OperationalError if deployment.engine.dialect.name == "sqlite" else ProgrammingError
        )
    with deployment.engine.connect() as conn, pytest.raises(RuntimeError, match="begin it first"):
        driver_rows(conn, _MISSING, {"v": 1})
