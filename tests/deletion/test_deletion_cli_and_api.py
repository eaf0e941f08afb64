"""`sagevault deletion` on the shell (in process) and /api/v1/deletion-requests with their own
scopes: a request from receipt to a certificate checked offline, a tampered one refused."""

from __future__ import annotations

import json
from pathlib import Path

from commands import run
from conftest import TENANT
from sagevault.testing import generate_orders, get_orders_response
from webapi import Api

SUMMARY_KEYS = {"id", "scope", "kind", "source", "state", "received_at", "due_at", "done_at"}


def test_a_request_on_the_command_line_from_receipt_to_a_certificate_checked_offline(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    assert run(tmp_path, "tenants", "add", TENANT, "--marketplace", "ATVPDKIKX0DER").returncode == 0
    orders = list(generate_orders(4, seed=9))
    (tmp_path / "orders.json").write_text(json.dumps(get_orders_response(orders)))
    assert run(tmp_path, "ingest", "--tenant", TENANT, "orders.json").returncode == 0

    naive = run(
        tmp_path, "deletion", "request", "--tenant", TENANT, "--whole-tenant", "--received-at", "2026-12-06T08:00:00"
    )
    assert naive.returncode == 2 and "UTC offset" in naive.stderr
    unscoped = run(tmp_path, "deletion", "request", "--tenant", TENANT)
    assert unscoped.returncode == 2 and "exactly one scope" in unscoped.stderr
    blank = run(tmp_path, "deletion", "request", "--tenant", TENANT, "--buyer", "email", stdin="\n")
    assert blank.returncode == 2 and "standard input" in blank.stderr
    email = orders[0]["BuyerInfo"]["BuyerEmail"]
    made = run(tmp_path, "deletion", "request", "--tenant", TENANT, "--buyer", "email", stdin=email + "\n")
    assert made.returncode == 0 and "request 1 recorded" in made.stdout and "1 orders" in made.stdout
    [listed] = json.loads(run(tmp_path, "deletion", "list", "--json").stdout)
    assert listed.keys() >= SUMMARY_KEYS and listed["state"] == "received" and listed["scope"] == "buyer"
    ran = run(tmp_path, "deletion", "run", "1")
    assert ran.returncode == 0 and "request 1 done" in ran.stdout, ran.stderr
    cert = tmp_path / "cert.json"
    assert run(tmp_path, "deletion", "certificate", "1", "--out", str(cert)).returncode == 0
    assert "Certificate of sanitization" in cert.with_suffix(".html").read_text()
    ok = run(tmp_path, "deletion", "verify-certificate", str(cert))
    assert ok.returncode == 0 and "valid" in ok.stdout and "SV-DEL-1" in ok.stdout
    tampered = json.loads(cert.read_text())
    tampered["certificate"]["verification"]["rows_remaining"] = 5
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(tampered))
    bad = run(tmp_path, "deletion", "verify-certificate", str(forged))
    assert bad.returncode == 1 and "INVALID" in bad.stdout
    notjson = run(tmp_path, "deletion", "verify-certificate", str(cert.with_suffix(".html")))
    assert notjson.returncode == 2 and "give the .json" in notjson.stderr

    fixed = run(
        tmp_path,
        "deletion",
        "rectify",
        "--tenant",
        TENANT,
        "--order",
        orders[1]["AmazonOrderId"],
        "--field",
        "BuyerInfo.BuyerName",
        stdin="Dana Corrected\n",
    )
    assert fixed.returncode == 0 and "rectified in 1 records" in fixed.stdout, fixed.stderr
    held = run(tmp_path, "deletion", "restrict", "--tenant", TENANT, "--order", orders[2]["AmazonOrderId"])
    assert held.returncode == 0 and "restricted for 1 records" in held.stdout
    shown = run(tmp_path, "show", "--tenant", TENANT, "--order", orders[2]["AmazonOrderId"])
    assert shown.returncode == 2 and "restricted processing" in shown.stderr


def test_deletion_requests_over_https_need_their_own_scopes(api: Api) -> None:
    officer = api.login("pat.privacy", api.person("pat.privacy", "privacy-officer", ["*"]))
    packer = api.login("pia.packer", api.person("pia.packer", "fulfilment", [TENANT]))
    base = f"{api.base}/deletion-requests"
    assert api.client.post(base, headers=packer, json={"tenant": TENANT, "scope": "tenant"}).status_code == 403
    assert api.client.post(base, headers=officer, json={"tenant": TENANT}).status_code == 422  # the scope is said
    assert api.client.get(base, headers=packer).status_code == 403
    for body, words in (
        ({"tenant": TENANT, "scope": "tenant", "received_at": "2026-12-06T08:00:00"}, "UTC offset"),
        ({"tenant": TENANT, "scope": "tenant", "kind": "return"}, "recipient"),
        ({"tenant": TENANT, "scope": "buyer", "buyer": {"name": "Ana"}}, "postal_code"),
        ({"tenant": TENANT, "scope": "buyer", "buyer": {"email": ""}}, "empty"),
        ({"tenant": TENANT, "scope": "tenant", "buyer": {"email": ""}}, "neither with scope tenant"),
        ({"tenant": TENANT, "scope": "orders", "orders": []}, "with scope orders"),
    ):
        r = api.client.post(base, headers=officer, json=body)
        assert r.status_code == 400 and words in r.json()["detail"], r.text
    made = api.client.post(base, headers=officer, json={"tenant": TENANT, "scope": "orders", "orders": [api.order_id]})
    assert made.status_code == 201, made.text
    request = made.json()
    assert request["state"] == "received" and request["seconds_left"] == 72 * 3600
    assert api.client.get(f"{base}/{request['id']}/certificate", headers=officer).status_code == 404
    done = api.client.post(f"{base}/{request['id']}/run", headers=officer)
    assert done.status_code == 200 and done.json()["state"] == "done", done.text
    cert = api.client.get(f"{base}/{request['id']}/certificate", headers=officer).json()
    assert cert["certificate"]["scope"]["orders"] == [api.order_id]
    assert api.client.get(f"{api.base}/tenants/{TENANT}/orders/{api.order_id}", headers=officer).status_code == 404
    page = api.client.get(base, headers=officer, params={"state": "done"}).json()
    assert [r["id"] for r in page["items"]] == [request["id"]]
