"""/api/v1/incidents and /api/v1/irp: their own scopes (`incidents:read`, `incidents:manage`,
the security officer's), bad input answered 4xx with what to do, and nothing changed by it."""

from __future__ import annotations

import base64
import hashlib

from conftest import TENANT
from webapi import Api


def test_incidents_over_https_need_their_own_scopes_and_refuse_bad_input_with_4xx(api: Api) -> None:
    officer = api.login("sam.officer", api.person("sam.officer", "security-officer", ["*"]))
    packer = api.login("pia.packer", api.person("pia.packer", "fulfilment", [TENANT]))
    base = f"{api.base}/incidents"

    assert api.client.get(base, headers=packer).status_code == 403
    assert api.client.post(base, headers=packer, json={"type": "malware"}).status_code == 403
    refused = list(api.d.audit.search(actor=api._people["pia.packer"].id, name="access:permission:deny"))
    assert [e["operation"] for e in refused] == ["incidents list", "incidents open"]

    for body, status, words in (
        ({"type": "malware", "detected_at": "2026-12-06T08:00:00"}, 400, "UTC offset"),
        ({"type": "malware", "detected_at": "yesterday"}, 400, "not a time"),
        ({"type": "alien-invasion"}, 400, "incident type must be one of"),
        ({"type": "malware", "severity": "urgent"}, 422, ""),
        ({"type": "malware", "tenants": ["x@example.com"]}, 400, "selling partner id"),
        ({"type": "malware", "description": "Call the buyer on +1 206 555 0100"}, 400, "phone number"),
    ):
        r = api.client.post(base, headers=officer, json=body)
        assert r.status_code == status, (body, r.text)
        assert words in r.text
    assert api.client.get(base, headers=officer).json()["items"] == []

    opened = api.client.post(base, headers=officer, json={"type": "malware", "tenants": [TENANT], "amazon": "possible"})
    assert opened.status_code == 201, opened.text
    case = opened.json()
    assert case["state"] == "new" and case["tasks"] and case["notify_amazon_due"] and case["amazon"] == "possible"
    one = f"{base}/{case['id']}"
    assert api.client.get(f"{base}/999", headers=officer).status_code == 404
    moved = api.client.patch(one, headers=officer, json={"state": "eradication"})
    assert moved.status_code == 400 and "can move to triage" in moved.json()["detail"]
    task = case["tasks"][0]["id"]
    assert api.client.post(f"{one}/tasks/{task}", headers=officer, json={"state": "skipped"}).status_code == 400
    done = api.client.post(f"{one}/tasks/{task}", headers=officer, json={"state": "done"})
    assert done.status_code == 200 and done.json()["tasks"][0]["state"] == "done"

    item = b"memory dump summary"
    good = {"label": "dump", "sha256": hashlib.sha256(item).hexdigest(), "location": "locker", "collected_by": "Lee"}
    bad = {**good, "content_base64": base64.b64encode(b"other bytes").decode()}
    r = api.client.post(f"{one}/evidence", headers=officer, json=bad)
    assert r.status_code == 400 and "not the item that was collected" in r.json()["detail"]
    r = api.client.post(f"{one}/evidence", headers=officer, json={**good, "content_base64": "%%%"})
    assert r.status_code == 400 and "not base64" in r.json()["detail"]
    r = api.client.post(
        f"{one}/evidence", headers=officer, json={**good, "content_base64": base64.b64encode(item).decode()}
    )
    assert r.status_code == 200, r.text
    evidence_id = r.json()["evidence"][0]["id"]
    handover = {"from": "Lee", "to": "Counsel Ito", "purpose": "legal hold"}
    r = api.client.post(f"{one}/evidence/{evidence_id}/handover", headers=officer, json=handover)
    assert r.status_code == 200 and r.json()["evidence"][0]["held_by"] == "Counsel Ito"
    r = api.client.post(f"{one}/evidence/{evidence_id}/handover", headers=officer, json=handover)
    assert r.status_code == 400 and "held by Counsel Ito, not Lee" in r.json()["detail"]

    draft = api.client.post(f"{one}/notification-draft", headers=officer)
    assert draft.status_code == 400 and "irp set-impoc" in draft.json()["detail"]
    notified = api.client.post(
        f"{one}/notified", headers=officer, json={"at": "2026-12-06T08:00:00Z", "reference": "r"}
    )
    assert notified.status_code == 400 and "names no IMPOC" in notified.json()["detail"]
    assert api.client.post(f"{one}/close", headers=officer, json={}).status_code == 400
    assert api.client.get(f"{one}/report", headers=officer).status_code == 404
    plan = api.client.get(f"{api.base}/irp", headers=officer)
    assert plan.status_code == 200 and plan.json()["review_due"] is True and plan.json()["version"] == 0
    assert api.client.get(f"{api.base}/irp", headers=packer).status_code == 403

    names = [
        e["name"] for e in api.d.audit.search(actor=api._people["sam.officer"].id) if e["name"].startswith("incident:")
    ]
    assert names == [
        "incident:case:open",
        "incident:task:update",
        "incident:evidence:add",
        "incident:evidence:add",
        "incident:evidence:handover",
    ]
