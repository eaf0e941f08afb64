"""Rotation and shred on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from conftest import OPERATOR, OTHER, TENANT
from pii_scan import stored_bytes
from sagevault.deployment import Deployment, open_deployment
from sagevault.errors import IntegrityError, RotationError, TenantShredded
from sagevault.testing import generate_orders, get_orders_response
from sagevault.vault._schema import records, tenant_keys


def _fill(d: Deployment, n: int, tenant: str = TENANT, seed: int = 1) -> list[dict]:
    orders = list(generate_orders(n, seed=seed))
    with d.engine.begin() as conn:
        d.vault.ingest(conn, tenant, [get_orders_response(orders)], principal=OPERATOR)
    return orders


def _email(d: Deployment, tenant: str, order: dict) -> str:
    with d.engine.begin() as conn:
        (f,) = d.vault.reveal(
            conn, tenant, order["AmazonOrderId"], ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR
        )
    return str(f.value)


def test_rotation_keeps_every_record_readable_and_leaves_nothing_under_the_old_version(
    vault_tenant: Deployment,
) -> None:
    d = vault_tenant
    orders = _fill(d, 25)
    with d.engine.begin() as conn:
        target = d.vault.keys.begin_rotation(conn, TENANT, principal=OPERATOR)
    assert target == 2
    # cannot retire v1 while records need it
    with d.engine.begin() as conn, pytest.raises(RotationError, match="25 records"):
        d.vault.keys.finish_rotation(conn, TENANT, principal=OPERATOR)
    # a write during the rotation goes under the new primary
    late = _fill(d, 1, seed=99)[0]
    moved = []
    while True:
        with d.engine.begin() as conn:
            n = d.vault.keys.reencrypt_batch(conn, TENANT, target, principal=OPERATOR, limit=10)
        if not n:
            break
        moved.append(n)
        # reads work between batches, whichever version a record is under
        assert _email(d, TENANT, orders[0]) == orders[0]["BuyerInfo"]["BuyerEmail"]
        assert _email(d, TENANT, orders[-1]) == orders[-1]["BuyerInfo"]["BuyerEmail"]
    assert moved == [10, 10, 5]
    with d.engine.begin() as conn:
        assert d.vault.keys.finish_rotation(conn, TENANT, principal=OPERATOR) == [1]
    with d.engine.begin() as conn:
        versions = set(conn.execute(select(records.c.key_version).where(records.c.tenant_id == TENANT)).scalars())
        old = conn.execute(
            select(tenant_keys.c.status, tenant_keys.c.wrapped).where(
                tenant_keys.c.tenant_id == TENANT, tenant_keys.c.purpose == "data", tenant_keys.c.version == 1
            )
        ).one()
    assert versions == {2}
    assert old.status == "retired" and old.wrapped is None
    for order in [*orders, late]:
        assert _email(d, TENANT, order) == order["BuyerInfo"]["BuyerEmail"]
    # a second rotation starts from v2
    with d.engine.begin() as conn:
        assert d.vault.keys.begin_rotation(conn, TENANT, principal=OPERATOR) == 3


def test_shred_makes_the_tenant_unreadable_and_unsearchable_and_spares_the_others(vault_tenant: Deployment) -> None:
    d = vault_tenant
    mine = _fill(d, 10)
    theirs = _fill(d, 10, tenant=OTHER, seed=2)
    with d.engine.begin() as conn:
        wrapped = list(conn.execute(select(tenant_keys.c.wrapped).where(tenant_keys.c.tenant_id == TENANT)).scalars())
    with d.engine.begin() as conn:
        receipt = d.vault.shred(conn, TENANT, principal=OPERATOR)
    assert sorted(receipt.keys_destroyed) == [("data", 1), ("index", 1)]
    order_id = mine[0]["AmazonOrderId"]
    email = mine[0]["BuyerInfo"]["BuyerEmail"]
    reads = [
        lambda c: d.vault.get(c, TENANT, order_id, principal=OPERATOR),
        lambda c: d.vault.reveal(c, TENANT, order_id, ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR),
        lambda c: d.vault.search(c, TENANT, "email", email, purpose="fulfilment", principal=OPERATOR),
        lambda c: d.vault.ingest(c, TENANT, [get_orders_response(mine)], principal=OPERATOR),
        lambda c: d.vault.shred(c, TENANT, principal=OPERATOR),
    ]
    for read in reads:
        with d.engine.begin() as conn, pytest.raises(TenantShredded, match=f"tenant {TENANT} was shredded on"):
            read(conn)
    with d.engine.begin() as conn:
        assert conn.execute(select(func.count()).where(tenant_keys.c.tenant_id == TENANT)).scalar_one() == 0
        # even with the tombstone check bypassed, no key is left to unwrap: nothing can be found
        with pytest.raises(IntegrityError, match="no primary index key"):
            d.vault._keys.blind_index(conn, TENANT)
    d.release_deleted_pages()
    haystack = stored_bytes(d)
    assert not [w for w in wrapped if bytes(w) in haystack], "a wrapped key survived the shred"
    # the other tenant is untouched
    assert _email(d, OTHER, theirs[3]) == theirs[3]["BuyerInfo"]["BuyerEmail"]
    # the unreadable rows are purged afterwards, in batches
    purged = 0
    while True:
        with d.engine.begin() as conn:
            n = d.vault.purge_shredded(conn, TENANT, principal=OPERATOR, limit=4)
        if not n:
            break
        purged += n
    assert purged == 10
    with d.engine.begin() as conn:
        assert d.vault.record_count(conn, TENANT, principal=OPERATOR) == 0
        assert d.vault.record_count(conn, OTHER, principal=OPERATOR) == 10


def test_a_shred_by_another_worker_empties_this_workers_key_cache_at_its_next_read(vault_tenant: Deployment) -> None:
    """`serve --workers N`: each process has its own key cache. The worker that did not serve the
    shred drops the tenant's keys when it reads the tombstone, not when the cache's TTL runs out."""
    first = vault_tenant
    orders = _fill(first, 3)
    assert _email(first, TENANT, orders[0]) == orders[0]["BuyerInfo"]["BuyerEmail"]  # warms `first`'s cache
    cache = first.vault._keys._cache
    assert any(key[0] == TENANT for key in cache._items)
    second = open_deployment(first.settings, keys=first.keys, engine=first.engine, audit_engine=first.audit.engine)
    with second.engine.begin() as conn:
        second.vault.shred(conn, TENANT, principal=OPERATOR)
    assert any(key[0] == TENANT for key in cache._items)  # another process: nothing reached this cache yet
    order_id = orders[0]["AmazonOrderId"]
    with first.engine.begin() as conn, pytest.raises(TenantShredded):
        first.vault.reveal(conn, TENANT, order_id, ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR)
    assert not any(key[0] == TENANT for key in cache._items)
    cache.put((TENANT, "data", 1), "stale")  # a reader whose snapshot predates the shred: never cached again
    assert not any(key[0] == TENANT for key in cache._items)
    with first.engine.begin() as conn:  # the other tenant's keys are untouched
        first.vault.ingest(conn, OTHER, [get_orders_response(list(generate_orders(1, seed=5)))], principal=OPERATOR)
    assert any(key[0] == OTHER for key in cache._items)


def test_a_rotation_run_in_steps_goes_on_with_its_own_rotation_and_never_begins_another(
    vault_tenant: Deployment,
) -> None:
    """`sagevault keys rotate` steps through one rotation; if another client finishes it (or
    begins the next) between two steps, the command must not begin one of its own."""
    d = vault_tenant
    _fill(d, 8)
    with d.engine.begin() as conn:
        first = d.vault.keys.rotate_step(conn, TENANT, principal=OPERATOR, limit=3)
    assert (first.primary_version, first.moved, first.remaining) == (2, 3, 5)
    with d.engine.begin() as conn:  # another client finishes it
        other = d.vault.keys.rotate_step(conn, TENANT, principal=OPERATOR, limit=100)
    assert other.complete and other.retired == [1]
    with d.engine.begin() as conn:  # the first client's next step: done, nothing begun
        mine = d.vault.keys.rotate_step(conn, TENANT, principal=OPERATOR, limit=3, continuing=first.primary_version)
    assert mine.complete and (mine.primary_version, mine.moved, mine.retired) == (2, 0, [])
    with d.engine.begin() as conn:  # another client begins the next rotation: the old run stops, loudly
        d.vault.keys.rotate_step(conn, TENANT, principal=OPERATOR, limit=3)
    with d.engine.begin() as conn, pytest.raises(RotationError, match="another rotation began meanwhile"):
        d.vault.keys.rotate_step(conn, TENANT, principal=OPERATOR, limit=3, continuing=2)
    rotations = [e for e in d.audit.search(name="storage:keyset:rotate") if e["operation"] == "keys rotate"]
    assert [e["counts"]["version"] for e in rotations] == [2, 2, 3]  # a begin or resume per API step only


def _found(d: Deployment, kind: str, value: str) -> list[str]:
    with d.engine.begin() as conn:
        return [h.order_id for h in d.vault.search(conn, TENANT, kind, value, purpose="fulfilment", principal=OPERATOR)]


def test_an_index_key_rotation_retokenises_in_batches_and_every_search_finds_its_records_throughout(
    vault_tenant: Deployment,
) -> None:
    d = vault_tenant
    orders = _fill(d, 12)
    wanted = [(o["AmazonOrderId"], o["BuyerInfo"]["BuyerEmail"], o["ShippingAddress"]["Name"]) for o in orders]
    with d.engine.begin() as conn:
        before = dict(conn.execute(select(records.c.id, records.c.bi_email).where(records.c.tenant_id == TENANT)).all())
        step = d.vault.keys.rotate_index_step(conn, TENANT, principal=OPERATOR, limit=5)
    assert (step.primary_version, step.moved, step.remaining, step.retired) == (2, 5, 7, [])
    with d.engine.begin() as conn:  # half-way: records carry tokens of either version
        versions = dict(conn.execute(select(records.c.bi_version, func.count()).group_by(records.c.bi_version)).all())
    assert versions == {1: 7, 2: 5}
    for order_id, email, name in wanted:  # every record is found by email and by name, whichever key it is under
        assert order_id in _found(d, "email", email.upper())
        assert order_id in _found(d, "name", name)
    _fill(d, 1, seed=9)  # a record stored mid-rotation gets tokens under the new key
    with d.engine.begin() as conn:
        while not step.complete:
            step = d.vault.keys.rotate_index_step(
                conn, TENANT, principal=OPERATOR, limit=5, continuing=step.primary_version
            )
        after = dict(conn.execute(select(records.c.id, records.c.bi_email).where(records.c.tenant_id == TENANT)).all())
        status = {(k.purpose, k.version): k.status for k in d.vault.keys.status(conn, TENANT, principal=OPERATOR)}
    assert step.retired == [1] and status[("index", 1)] == "retired" and status[("index", 2)] == "primary"
    assert all(after[rid] != token for rid, token in before.items() if token is not None)  # new tokens everywhere
    for order_id, email, _ in wanted:
        assert _found(d, "email", email) == [order_id]
    with d.engine.begin() as conn:  # the retired version's key material is gone
        assert (
            conn.execute(
                select(tenant_keys.c.wrapped).where(
                    tenant_keys.c.tenant_id == TENANT, tenant_keys.c.purpose == "index", tenant_keys.c.version == 1
                )
            ).scalar_one()
            is None
        )
    events = [e for e in d.audit.search(name="storage:keyset:rotate") if e["operation"].startswith("index")]
    assert {e["operation"] for e in events} == {"index rotate", "index retokenise"}
    assert [e["operation"] for e in d.audit.search(name="storage:keyset:retire")] == ["index retire"]
