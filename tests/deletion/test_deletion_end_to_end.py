"""Deletion, return and retention end to end through the real service (uvicorn on 127.0.0.1,
SageVault's TLS, an httpx client), the deployment's clock moved by hand: Amazon's 72-hour request
from receipt to certificate with its alarms at 48 h and 66 h; afterwards no PII of the tenant in
any byte of the database files or WAL, search finds nothing, the certificate verifies and a
tampered one does not; a backup taken before the deletion, restored, brings nothing back; an order
delivered 31 days ago has no PII left, one under a legal hold keeps it and the status says why."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import OPERATOR, OTHER, TENANT
from pii_scan import leaked, pii_strings
from sagevault.deletion import verify_certificate
from sagevault.deployment import Deployment, open_deployment
from sagevault.errors import IntegrityError
from sagevault.jobs import BUILTIN, Jobs, Watch
from sagevault.testing import ManualClock, generate_orders, get_orders_response
from sagevault.vault import Operation
from webapi import Api

ORDERS = list(generate_orders(30, seed=21, prefix="5"))


def _alarms(d: Deployment, prefix: str) -> list[str]:
    Watch(d).catch_up()
    with d.unit_of_work(read_only=True) as conn:
        return sorted(a.rule for a in d.monitor.list_alarms(conn, principal=OPERATOR) if a.rule.startswith(prefix))


def _database_bytes(d: Deployment) -> bytes:
    root = d.settings.resolved_data_dir
    return b"".join(p.read_bytes() for p in root.iterdir() if p.name.startswith("sagevault.db"))


def test_amazons_request_runs_to_a_certificate_and_nothing_of_it_comes_back(
    serve_watched: Callable[..., Api],
) -> None:
    clock = ManualClock()
    api = serve_watched(clock)
    d = api.d
    with d.unit_of_work() as conn:
        d.vault.ingest(conn, TENANT, [get_orders_response(ORDERS)], Operation.GET_ORDERS, principal=OPERATOR)
        d.vault.add_tenant(conn, OTHER, ["ATVPDKIKX0DER"], principal=OPERATOR)
        backup = d.backups.create(conn, principal=OPERATOR)  # taken before the deletion
    officer = api.login("pat.privacy", api.person("pat.privacy", "privacy-officer", ["*"]))
    base = f"{api.base}/deletion-requests"
    made = api.client.post(base, headers=officer, json={"tenant": TENANT, "scope": "tenant", "source": "amazon-notice"})
    assert made.status_code == 201, made.text
    request = made.json()
    assert request["due_at"] == (clock() + timedelta(hours=72)).isoformat()

    jobs = Jobs(BUILTIN, clock)
    for hours in (48, 66):
        clock.advance(hours=hours - (0 if hours == 48 else 48))
        jobs.run(d, "deletion-clocks", force=True)
    assert _alarms(d, "deletion-request") == ["deletion-request-warning", "deletion-request-warning"]
    officer = api.login("pat.privacy")  # a new session: 66 hours later
    ran = api.client.post(f"{base}/{request['id']}/run", headers=officer)
    assert ran.status_code == 200 and ran.json()["state"] == "done", ran.text
    clock.advance(hours=10)
    jobs.run(d, "deletion-clocks", force=True)
    assert "deletion-request-overdue" not in _alarms(d, "deletion-request")  # done in time: no overdue alarm

    scope_pii = pii_strings([get_orders_response(ORDERS)])
    assert leaked(scope_pii, _database_bytes(d)) == []
    search = {"kind": "email", "value": ORDERS[0]["BuyerInfo"]["BuyerEmail"], "purpose": "legal"}
    found = api.client.post(f"{api.base}/tenants/{TENANT}/search", headers=officer, json=search)
    assert found.status_code in (404, 410) and "items" not in found.json()
    signed = api.client.get(f"{base}/{request['id']}/certificate", headers=officer).json()
    public = d.settings.resolved_audit_signing_key_file.with_suffix(".pub")
    cert = verify_certificate(signed, public)
    assert cert["method_code"] == "cryptographic erase" and cert["within_deadline"] is True
    assert cert["counts"]["records"] == len(ORDERS) + 2
    tampered = copy.deepcopy(signed)
    tampered["certificate"]["completed_at"] = tampered["certificate"]["request"]["received_at"]
    with pytest.raises(IntegrityError):
        verify_certificate(tampered, public)

    restored = d.backups.restore(Path(backup.copy.location), principal=OPERATOR)
    assert restored.counts()["tenants"] == 1, restored.counts()
    again = open_deployment(d.settings, keys=d.keys, clock=clock, event_clock=clock)
    try:
        with again.unit_of_work(read_only=True) as conn:
            assert again.vault.tenant_states(conn, [TENANT])[TENANT] is not None  # still shredded
            assert again.vault.rights.scan(conn, TENANT, None).gone
        assert leaked(scope_pii, _database_bytes(again)) == []
    finally:
        again.close()


def test_an_order_delivered_31_days_ago_loses_its_pii_unless_a_legal_hold_keeps_it(
    serve_watched: Callable[..., Api],
) -> None:
    clock = ManualClock()
    api = serve_watched(clock)
    d = api.d
    orders = list(generate_orders(3, seed=23, prefix="6"))
    delivered = (clock() - timedelta(days=31)).isoformat().replace("+00:00", "Z")
    recent = (clock() - timedelta(days=29)).isoformat().replace("+00:00", "Z")
    for order, when in zip(orders, (delivered, delivered, recent), strict=True):
        order["LatestDeliveryDate"] = when
        order["EarliestDeliveryDate"] = when
    with d.unit_of_work() as conn:
        d.vault.ingest(conn, TENANT, [get_orders_response(orders)], Operation.GET_ORDERS, principal=OPERATOR)
    officer = api.login("pat.privacy", api.person("pat.privacy", "privacy-officer", ["*"]))
    hold = {
        "tenant": TENANT,
        "order": orders[1]["AmazonOrderId"],
        "reason": "Chargeback dispute, case CB-A118",
        "until": (clock() + timedelta(days=60)).isoformat(),
    }
    held = api.client.post(f"{api.base}/retention/holds", headers=officer, json=hold)
    assert held.status_code == 201, held.text
    assert api.client.post(f"{api.base}/retention/holds", headers=officer, json={**hold, "reason": ""}).status_code in (
        400,
        422,
    )
    Jobs(BUILTIN, clock).run(d, "retention", force=True)

    with d.unit_of_work(read_only=True) as conn:
        gone = d.vault.reveal(
            conn, TENANT, orders[0]["AmazonOrderId"], ["BuyerInfo.BuyerEmail"], "legal", principal=OPERATOR
        )
        kept = d.vault.reveal(
            conn, TENANT, orders[1]["AmazonOrderId"], ["BuyerInfo.BuyerEmail"], "legal", principal=OPERATOR
        )
        fresh = d.vault.reveal(
            conn, TENANT, orders[2]["AmazonOrderId"], ["BuyerInfo.BuyerEmail"], "legal", principal=OPERATOR
        )
    assert gone == [] and [f.value for f in kept] == [orders[1]["BuyerInfo"]["BuyerEmail"]] and fresh
    status = api.client.get(
        f"{api.base}/retention", headers=officer, params={"tenant": TENANT, "order": orders[1]["AmazonOrderId"]}
    ).json()
    assert status["order"]["state"] == "held"
    assert [h["reason"] for h in status["order"]["held_by"]] == ["Chargeback dispute, case CB-A118"]
    purged = api.client.get(
        f"{api.base}/retention", headers=officer, params={"tenant": TENANT, "order": orders[0]["AmazonOrderId"]}
    ).json()
    assert purged["order"]["state"] == "purged"
    d.release_deleted_pages()
    assert leaked(pii_strings([get_orders_response(orders[:1])]), _database_bytes(d)) == []
    assert json.dumps(status).find(orders[1]["BuyerInfo"]["BuyerEmail"]) < 0
