"""The data part of the HTTPS API through the real TLS server: tenants and order listings, key
status and rotation, crypto-shred with its certificate and purge, audit search, export and verify."""

from __future__ import annotations

import json
from typing import Any

import pyotp
from sqlalchemy import text

from conftest import OPERATOR, TENANT
from pii_scan import pii_strings
from sagevault.access import ALL_TENANTS
from sagevault.deployment import Deployment
from sagevault.testing import generate_orders, get_orders_response
from webapi import PASSWORD, Api

UNKNOWN = "A9NOSUCHSELLER"


def _login(api: Api, login: str, role: str, tenants: list[str]) -> tuple[dict[str, str], str]:
    """A person with `role` on `tenants`, logged in: their headers and their principal id."""
    totp: pyotp.TOTP = api.person(login, role, tenants)
    r = api.client.post(
        f"{api.base}/sessions", json={"login": login, "password": PASSWORD, "code": api.next_code(totp)}
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}, r.json()["principal"]


def _problem(r: Any, status: int, kind: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["request_id"] == r.headers["x-request-id"]
    if kind is not None:
        assert body["type"].endswith("/" + kind), body
    return body


def _pages(api: Api, path: str, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every page of a listing, following next_cursor to its end."""
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = api.client.get(
            api.base + path, headers=headers, params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert r.status_code == 200, r.text
        pages.append(r.json())
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "the cursor never ends"


def _seed(api: Api, orders: list[dict[str, Any]]) -> None:
    """Orders stored and committed directly, without a request (and its events) of their own."""
    with api.d.engine.begin() as conn:
        api.d.vault.ingest(conn, TENANT, [get_orders_response(orders)], principal=OPERATOR)


def test_every_new_route_refuses_a_request_without_credentials(api: Api) -> None:
    routes = [
        ("POST", "/tenants", {"id": "A3NEWSELLER", "marketplaces": ["ATVPDKIKX0DER"]}),
        ("GET", f"/tenants/{TENANT}/orders", None),
        ("GET", f"/tenants/{TENANT}/keys", None),
        ("POST", f"/tenants/{TENANT}/keys/rotation", None),
        ("POST", f"/tenants/{TENANT}/shred", {"confirm": True}),
        ("GET", f"/tenants/{TENANT}/shred-certificate", None),
        ("POST", f"/tenants/{TENANT}/purge", None),
        ("GET", "/audit/events", None),
        ("GET", "/audit/export", None),
        ("POST", "/audit/verify", None),
    ]
    for method, path, body in routes:
        for headers in ({}, {"Authorization": "Bearer svs_forged"}, {"Authorization": "Bearer svk_forged"}):
            r = api.client.request(method, api.base + path, headers=headers, json=body)
            _problem(r, 401)
    with api.d.engine.connect() as conn:  # nothing was shredded or rotated by the refused requests
        keys = api.d.vault.keys.status(conn, TENANT, principal=OPERATOR)
    assert [(k.purpose, k.version, k.status) for k in keys] == [("data", 1, "primary"), ("index", 1, "primary")]


def test_an_operator_adds_a_tenant_and_pages_through_tenants_and_orders(api: Api) -> None:
    ops, _ = _login(api, "olga.ops", "operator", [ALL_TENANTS])
    added = api.client.post(
        f"{api.base}/tenants",
        headers=ops,
        json={"id": "A3NEWSELLER", "marketplaces": ["ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"]},
    )
    assert added.status_code == 201, added.text
    assert added.json()["id"] == "A3NEWSELLER" and added.json()["region"] == "na"
    assert added.headers["location"].endswith("/tenants/A3NEWSELLER/orders")
    _problem(
        api.client.post(
            f"{api.base}/tenants", headers=ops, json={"id": "A3NEWSELLER", "marketplaces": ["ATVPDKIKX0DER"]}
        ),
        409,
        "tenant-exists",
    )
    _problem(
        api.client.post(
            f"{api.base}/tenants",
            headers=ops,
            json={"id": "A3NEWSELLER2", "marketplaces": ["ATVPDKIKX0DER"], "owner": "x"},
        ),
        422,
    )
    _problem(
        api.client.post(
            f"{api.base}/tenants",
            headers=ops,
            json={"id": "A4EUROSELLER", "marketplaces": ["ATVPDKIKX0DER", "A1PA6795UKMFR9"]},
        ),
        400,
    )  # two regions

    pages = _pages(api, "/tenants", ops, limit=1)
    assert [len(p["items"]) for p in pages] == [1, 1]
    assert [p["items"][0]["id"] for p in pages] == [TENANT, "A3NEWSELLER"]

    new = list(generate_orders(3, seed=5, prefix="5"))
    _seed(api, new)
    pages = _pages(api, f"/tenants/{TENANT}/orders", ops, limit=2)
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    listed = [o["order_id"] for p in pages for o in p["items"]]
    every = sorted([api.order_id, *(o["AmazonOrderId"] for o in new), *_fixture_order_ids(api)])
    assert listed == sorted(set(every))
    first = pages[0]["items"][0]
    assert first["documents"] == ["orders-v0:Order"] and first["record_ids"] and first["order_status"]
    body = "".join(json.dumps(p) for p in pages)
    leaked = [s for s in pii_strings([get_orders_response(new)]) if s in body]
    assert not leaked, leaked

    empty = api.client.get(f"{api.base}/tenants/A3NEWSELLER/orders", headers=ops)
    assert empty.status_code == 200 and empty.json() == {"items": [], "next_cursor": None}
    assert (
        "start again without one"
        in _problem(
            api.client.get(f"{api.base}/tenants/{TENANT}/orders", headers=ops, params={"cursor": "!!garbage!!"}), 400
        )["detail"]
    )
    _problem(api.client.get(f"{api.base}/tenants/{TENANT}/orders", headers=ops, params={"cursor": "MTI"}), 400)  # 12
    _problem(api.client.get(f"{api.base}/tenants/{TENANT}/orders", headers=ops, params={"limit": 0}), 422)
    _problem(api.client.get(f"{api.base}/tenants/{TENANT}/orders", headers=ops, params={"status": "x"}), 422)
    _problem(api.client.get(f"{api.base}/tenants/{UNKNOWN}/orders", headers=ops), 404, "unknown-tenant")

    viewer, _ = _login(api, "vic.viewer", "viewer", [TENANT])
    assert api.client.get(f"{api.base}/tenants/{TENANT}/orders", headers=viewer).status_code == 200
    _problem(api.client.get(f"{api.base}/tenants", headers=viewer), 403)
    _problem(
        api.client.post(
            f"{api.base}/tenants", headers=viewer, json={"id": "A5SELLER", "marketplaces": ["ATVPDKIKX0DER"]}
        ),
        403,
    )


def _fixture_order_ids(api: Api) -> list[str]:
    return [o["AmazonOrderId"] for o in generate_orders(2, seed=11)]  # what the `api` fixture stored


def test_rotation_over_http_moves_every_record_to_the_new_key_and_they_stay_revealable(api: Api) -> None:
    ops, _ = _login(api, "otto.ops", "operator", [TENANT])
    packer, _ = _login(api, "pia.packer", "fulfilment", [TENANT])
    new = list(generate_orders(5, seed=9, prefix="9"))
    _seed(api, new)
    before = api.client.get(f"{api.base}/tenants/{TENANT}/keys", headers=ops).json()
    assert before["primary_version"] == 1 and not before["rotating"] and before["records_to_move"] == 0
    assert all(k["created_at"].endswith("+00:00") for k in before["versions"])  # UTC, said so on every backend
    assert {(k["purpose"], k["version"], k["status"], k["records"]) for k in before["versions"]} == {
        ("data", 1, "primary", 7),
        ("index", 1, "primary", 7),  # records carrying tokens of the index key
    }

    _problem(api.client.post(f"{api.base}/tenants/{TENANT}/keys/rotation", headers=packer), 403)
    _problem(api.client.post(f"{api.base}/tenants/{TENANT}/keys/rotation", headers=ops, params={"batch": 0}), 422)
    steps = []
    while True:
        r = api.client.post(f"{api.base}/tenants/{TENANT}/keys/rotation", headers=ops, params={"batch": 3})
        assert r.status_code in (200, 202), r.text
        steps.append((r.status_code, r.json()["moved"], r.json()["remaining"]))
        if r.status_code == 200:
            break
        assert len(steps) < 10
        midway = api.client.get(f"{api.base}/tenants/{TENANT}/keys", headers=ops).json()
        assert midway["rotating"] and midway["records_to_move"] == r.json()["remaining"]
    assert steps == [(202, 3, 4), (202, 3, 1), (200, 1, 0)]
    assert r.json()["state"] == "complete" and r.json()["primary_version"] == 2 and r.json()["retired_versions"] == [1]

    after = api.client.get(f"{api.base}/tenants/{TENANT}/keys", headers=ops).json()
    data = {k["version"]: k for k in after["versions"] if k["purpose"] == "data"}
    assert after["primary_version"] == 2 and not after["rotating"] and after["records_to_move"] == 0
    assert data[1]["status"] == "retired" and data[1]["records"] == 0 and data[2]["records"] == 7
    for order in new:
        oid = order["AmazonOrderId"]
        masked = api.client.get(f"{api.base}/tenants/{TENANT}/orders/{oid}", headers=ops).json()
        assert [rec["key_version"] for rec in masked["records"]] == [2]
        shown = api.client.post(
            f"{api.base}/tenants/{TENANT}/orders/{oid}/reveal",
            headers=packer,
            json={"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"},
        )
        assert shown.status_code == 200 and shown.json()["fields"][0]["value"] == order["ShippingAddress"]["Name"]
    with api.d.engine.connect() as conn:  # the old version's key material is gone, not only marked
        wrapped = conn.execute(
            text("SELECT wrapped FROM tenant_keys WHERE tenant_id = :t AND purpose = 'data' AND version = 1"),
            {"t": TENANT},
        ).scalar_one()
    assert wrapped is None

    again = api.client.post(f"{api.base}/tenants/{TENANT}/keys/rotation", headers=ops, params={"batch": 500})
    assert again.status_code == 200 and again.json()["primary_version"] == 3 and again.json()["moved"] == 7


def test_shred_over_http_makes_reads_gone_and_the_certificate_stays(api: Api) -> None:
    ops, _ = _login(api, "oda.ops", "operator", [TENANT])
    packer, _ = _login(api, "pat.packer", "fulfilment", [TENANT])
    reveal = f"{api.base}/tenants/{TENANT}/orders/{api.order_id}/reveal"
    fields = {"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"}
    assert api.client.post(reveal, headers=packer, json=fields).status_code == 200
    _problem(api.client.get(f"{api.base}/tenants/{TENANT}/shred-certificate", headers=ops), 404, "not-found")
    _problem(api.client.post(f"{api.base}/tenants/{TENANT}/purge", headers=ops), 400)  # not shredded yet
    _problem(api.client.post(f"{api.base}/tenants/{TENANT}/shred", headers=ops, json={"confirm": False}), 422)
    _problem(api.client.post(f"{api.base}/tenants/{TENANT}/shred", headers=ops, json={}), 422)
    _problem(api.client.post(f"{api.base}/tenants/{TENANT}/shred", headers=packer, json={"confirm": True}), 403)
    assert api.client.post(reveal, headers=packer, json=fields).status_code == 200  # none of those shredded

    shredded = api.client.post(f"{api.base}/tenants/{TENANT}/shred", headers=ops, json={"confirm": True})
    assert shredded.status_code == 201, shredded.text
    certificate = shredded.json()["certificate"]
    assert certificate["tenant_id"] == TENANT and set(certificate["keys_destroyed"]) == {"data:v1", "index:v1"}
    assert shredded.json()["records_to_purge"] == 2
    assert shredded.headers["location"].endswith(f"/tenants/{TENANT}/shred-certificate")

    _problem(api.client.post(reveal, headers=packer, json=fields), 410, "tenant-shredded")
    _problem(api.client.get(f"{api.base}/tenants/{TENANT}/orders/{api.order_id}", headers=ops), 410)
    _problem(api.client.get(f"{api.base}/tenants/{TENANT}/orders", headers=ops), 410)
    _problem(api.client.get(f"{api.base}/tenants/{TENANT}/keys", headers=ops), 410)
    _problem(api.client.post(f"{api.base}/tenants/{TENANT}/keys/rotation", headers=ops), 410)
    _problem(api.client.post(f"{api.base}/tenants/{TENANT}/shred", headers=ops, json={"confirm": True}), 410)
    later = api.client.get(f"{api.base}/tenants/{TENANT}/shred-certificate", headers=ops)
    assert later.status_code == 200 and later.json() == certificate

    first = api.client.post(f"{api.base}/tenants/{TENANT}/purge", headers=ops, params={"batch": 1})
    assert first.status_code == 202 and first.json() == {"tenant_id": TENANT, "purged": 1, "remaining": 1}
    last = api.client.post(f"{api.base}/tenants/{TENANT}/purge", headers=ops, params={"batch": 1})
    assert last.status_code == 200 and last.json()["remaining"] == 0
    with api.d.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM records WHERE tenant_id = :t"), {"t": TENANT}).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM tenant_keys WHERE tenant_id = :t"), {"t": TENANT}).scalar() == 0
    assert api.client.get(f"{api.base}/tenants/{TENANT}/shred-certificate", headers=ops).json() == certificate


def test_unknown_tenants_are_a_404_problem_on_every_tenant_route(api: Api) -> None:
    ops, _ = _login(api, "owen.ops", "operator", [ALL_TENANTS])
    for method, path, body in [
        ("GET", "orders", None),
        ("GET", "keys", None),
        ("POST", "keys/rotation", None),
        ("POST", "shred", {"confirm": True}),
        ("GET", "shred-certificate", None),
        ("POST", "purge", None),
    ]:
        r = api.client.request(method, f"{api.base}/tenants/{UNKNOWN}/{path}", headers=ops, json=body)
        assert "does not exist" in _problem(r, 404, "unknown-tenant")["detail"], (method, path)
        for malformed in ("A", "-A3SELLER", "buyer%40example.com", "A" * 65):  # cannot name a tenant at all
            r = api.client.request(method, f"{api.base}/tenants/{malformed}/{path}", headers=ops, json=body)
            assert "tenant_id" in _problem(r, 422, "invalid-request")["detail"], (method, path, malformed)


def test_audit_search_finds_what_requests_did_pages_by_sequence_and_needs_audit_read(api: Api) -> None:
    officer, officer_id = _login(api, "sara.officer", "security-officer", [ALL_TENANTS])
    packer, packer_id = _login(api, "pete.packer", "fulfilment", [TENANT])
    for _ in range(3):
        assert api.client.get(f"{api.base}/tenants/{TENANT}/orders/{api.order_id}", headers=packer).status_code == 200
    _problem(api.client.get(f"{api.base}/audit/events", headers=packer), 403, "access-denied")

    reads = {"actor": packer_id, "name": "vault:record:read", "limit": 2}
    first = api.client.get(f"{api.base}/audit/events", headers=officer, params=reads)
    assert first.status_code == 200, first.text
    assert len(first.json()["items"]) == 2 and first.json()["next_cursor"]
    second = api.client.get(
        f"{api.base}/audit/events", headers=officer, params={**reads, "cursor": first.json()["next_cursor"]}
    )
    assert len(second.json()["items"]) == 1 and second.json()["next_cursor"] is None
    events = first.json()["items"] + second.json()["items"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    assert all(e["actor"] == packer_id and e["tenant_id"] == TENANT and e["outcome"] == "success" for e in events)

    denied = api.client.get(
        f"{api.base}/audit/events", headers=officer, params={"actor": packer_id, "name": "access:permission:deny"}
    ).json()["items"]
    assert len(denied) == 1 and denied[0]["reason"] == "access_denied"
    everything = api.client.get(f"{api.base}/audit/events", headers=officer, params={"actor": packer_id}).json()
    assert {"access:login:success", "vault:record:read", "access:permission:deny"} <= {
        e["name"] for e in everything["items"]
    }
    mine = api.client.get(f"{api.base}/audit/events", headers=officer, params={"actor": officer_id}).json()["items"]
    assert all(e["actor"] == officer_id for e in mine) and mine
    window = {"actor": packer_id, "since": "2020-01-01", "until": "2020-02-01T00:00:00Z"}
    assert api.client.get(f"{api.base}/audit/events", headers=officer, params=window).json()["items"] == []
    today = {"actor": packer_id, "since": events[0]["at"][:10]}
    assert len(api.client.get(f"{api.base}/audit/events", headers=officer, params=today).json()["items"]) >= 5

    url = f"{api.base}/audit/events"
    assert "ISO 8601" in _problem(api.client.get(url, headers=officer, params={"since": "last tuesday"}), 400)["detail"]
    assert (
        "earlier than until"
        in _problem(api.client.get(url, headers=officer, params={"since": "2026-02-01", "until": "2026-01-01"}), 400)[
            "detail"
        ]
    )
    assert "start again" in _problem(api.client.get(url, headers=officer, params={"cursor": "@@@"}), 400)["detail"]
    _problem(api.client.get(url, headers=officer, params={"cursor": "InNlcSI"}), 400)  # a string, not a position
    _problem(api.client.get(url, headers=officer, params={"cursor": "LTE"}), 400)  # -1
    _problem(api.client.get(url, headers=officer, params={"name": "vault:everything:read"}), 400)
    _problem(api.client.get(url, headers=officer, params={"tennant": TENANT}), 422)  # a typo is not ignored
    email = "buyer.someone@marketplace.amazon.com"
    refused = _problem(api.client.get(url, headers=officer, params={"actor": email}), 400)
    assert email not in refused["detail"] and "id" in refused["detail"]


def test_audit_export_streams_ndjson_without_any_ingested_pii_and_is_itself_recorded(api: Api) -> None:
    packer, _ = _login(api, "paula.packer", "fulfilment", [TENANT])
    officer, officer_id = _login(api, "sven.officer", "security-officer", [ALL_TENANTS])
    seeded = list(generate_orders(4, seed=21, prefix="7"))
    _seed(api, seeded)
    for order in seeded:  # reveals and searches put the PII through every path that records events
        oid = order["AmazonOrderId"]
        assert (
            api.client.post(
                f"{api.base}/tenants/{TENANT}/orders/{oid}/reveal",
                headers=packer,
                json={"fields": ["ShippingAddress.Name", "ShippingAddress.Phone"], "purpose": "fulfilment"},
            ).status_code
            == 200
        )
        assert (
            api.client.post(
                f"{api.base}/tenants/{TENANT}/search",
                headers=packer,
                json={"kind": "email", "value": order["BuyerInfo"]["BuyerEmail"], "purpose": "fulfilment"},
            ).status_code
            == 200
        )
    _problem(api.client.get(f"{api.base}/audit/export", headers=packer), 403)

    with api.client.stream("GET", f"{api.base}/audit/export", headers=officer, params={"tenant": TENANT}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        body = b"".join(r.iter_bytes()).decode()
    events = [json.loads(line) for line in body.splitlines()]
    assert all(e["tenant_id"] == TENANT for e in events)
    names = [e["name"] for e in events]
    assert names.count("vault:field:reveal") == 4 and names.count("vault:record:search") == 4
    assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})
    pii = pii_strings([get_orders_response(seeded)])
    assert len(pii) > 40  # the scan has something to find
    leaked = [s for s in pii if s in body]
    assert not leaked, leaked

    recorded = api.client.get(
        f"{api.base}/audit/events", headers=officer, params={"actor": officer_id, "name": "audit:log:export"}
    ).json()["items"]
    assert len(recorded) == 1 and recorded[0]["counts"]["events"] == len(events)
    assert recorded[0]["seq"] > events[-1]["seq"] and recorded[0]["request_id"]

    everything = api.client.get(f"{api.base}/audit/export", headers=officer).text.splitlines()
    assert len(everything) > len(events)
    assert (
        "ISO 8601"
        in _problem(api.client.get(f"{api.base}/audit/export", headers=officer, params={"until": "soon"}), 400)[
            "detail"
        ]
    )


def test_audit_verify_over_http_passes_and_then_finds_a_rewritten_event(api: Api) -> None:
    officer, officer_id = _login(api, "sue.officer", "security-officer", [ALL_TENANTS])
    packer, _ = _login(api, "phil.packer", "fulfilment", [TENANT])
    _problem(api.client.post(f"{api.base}/audit/verify", headers=packer), 403)
    good = api.client.post(f"{api.base}/audit/verify", headers=officer)
    assert good.status_code == 200, good.text
    assert good.json()["ok"] is True and good.json()["events"] > 10 and good.json()["problems"] == []
    with api.d.audit.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'svc:mallory' WHERE seq = 3"))
    bad = api.client.post(f"{api.base}/audit/verify", headers=officer).json()
    assert bad["ok"] is False and bad["first_bad_seq"] == 3 and bad["problems"]
    runs = api.client.get(
        f"{api.base}/audit/events", headers=officer, params={"actor": officer_id, "name": "audit:log:verify"}
    ).json()["items"]
    assert [e["outcome"] for e in runs] == ["success", "failure"]


def test_the_listing_and_export_queries_page_alike_on_sqlite_and_postgresql(deployment: Deployment) -> None:
    """The HTTP fixture runs on SQLite; the keyset order listing and the export's snapshot count
    are checked here on both backends."""
    d = deployment
    orders = list(generate_orders(7, seed=3))
    with d.engine.begin() as conn:
        d.vault.add_tenant(conn, TENANT, ["ATVPDKIKX0DER"], principal=OPERATOR)
        d.vault.ingest(conn, TENANT, [get_orders_response(orders)], principal=OPERATOR)
        seen: list[str] = []
        after = None
        while page := d.vault.list_orders(conn, TENANT, principal=OPERATOR, after=after, limit=3):
            seen += [o.order_id for o in page]
            after = page[-1].order_id
        assert seen == sorted(o["AmazonOrderId"] for o in orders)
        assert [len(o.record_ids) for o in d.vault.list_orders(conn, TENANT, principal=OPERATOR, limit=10)] == [1] * 7
    through, _ = d.audit.head()
    reads = {"tenant_id": TENANT, "name": "vault:record:read"}
    assert d.audit.count(**reads, through_seq=through) == 5  # 3 + 3 + 1, the empty end, the limit=10 one
    with d.engine.begin() as conn:
        d.vault.list_orders(conn, TENANT, principal=OPERATOR)  # after the snapshot: not counted
    assert d.audit.count(**reads, through_seq=through) == len(list(d.audit.search(**reads, through_seq=through))) == 5
    assert d.audit.count(**reads) == 6


def test_audit_times_past_the_last_utc_instant_are_a_400_that_says_what_to_send(api: Api) -> None:
    officer, _ = _login(api, "olga.officer", "security-officer", [ALL_TENANTS])
    for path in ("/audit/events", "/audit/export"):
        for option, value in (("since", "9999-12-31T23:59:59-23:59"), ("until", "0001-01-01T00:00:00+23:59")):
            r = api.client.get(api.base + path, headers=officer, params={option: value})
            detail = _problem(r, 400, "bad-request")["detail"]
            assert f"{option} is out of range in UTC" in detail and "2026-11-01T08:00:00Z" in detail, detail
        last = api.client.get(api.base + path, headers=officer, params={"since": "9999-12-31T23:59:59+00:00"})
        assert last.status_code == 200, last.text  # the last instant itself is a time like any other


def test_a_batch_reveal_answers_many_orders_with_an_event_each_and_lists_what_is_missing(api: Api) -> None:
    packer, packer_id = _login(api, "pia.packer", "fulfilment", [TENANT])
    viewer, _ = _login(api, "vic.viewer", "viewer", [TENANT])
    orders = list(generate_orders(4, seed=31, prefix="8"))
    _seed(api, orders)
    url = f"{api.base}/tenants/{TENANT}/reveal"
    asked = [o["AmazonOrderId"] for o in orders] + ["999-0000000-0000000", orders[0]["AmazonOrderId"]]
    body = {"orders": asked, "fields": ["ShippingAddress.Name", "ShippingAddress.City"], "purpose": "fulfilment"}
    r = api.client.post(url, headers=packer, json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [o["order_id"] for o in answer["orders"]] == [o["AmazonOrderId"] for o in orders]  # asked order, once
    assert answer["missing"] == ["999-0000000-0000000"]
    for order, revealed in zip(orders, answer["orders"], strict=True):
        values = {f["path"]: f["value"] for f in revealed["fields"]}
        assert values == {
            "ShippingAddress.Name": order["ShippingAddress"]["Name"],
            "ShippingAddress.City": order["ShippingAddress"]["City"],
        }
    events = [e for e in api.d.audit.search(name="vault:field:reveal") if e["operation"] == "reveal batch"]
    assert len(events) == 4 and all(e["actor"] == packer_id and e["counts"] == {"fields": 2} for e in events)
    assert sorted(i for e in events for i in e["record_ids"]) == sorted(
        f["record_id"] for o in answer["orders"] for f in o["fields"][:1]
    )

    refused = _problem(api.client.post(url, headers=viewer, json=body), 403)  # viewers see masked data only
    assert orders[0]["ShippingAddress"]["Name"] not in json.dumps(refused)
    _problem(
        api.client.post(url, headers=packer, json=body | {"fields": ["BuyerInfo.BuyerTaxInfo.CompanyLegalName"]}), 403
    )
    _problem(api.client.post(url, headers=packer, json=body | {"orders": ["x"] * 501}), 422)
    _problem(api.client.post(url, headers=packer, json=body | {"orders": ["not an order id"]}), 422)
    assert len([e for e in api.d.audit.search(name="vault:field:reveal") if e["operation"] == "reveal batch"]) == 4
    denied = [e for e in api.d.audit.search(name="access:permission:deny") if e["operation"] == "reveal batch"]
    assert len(denied) == 2  # the viewer's and the purpose the role does not allow
