"""Incident response end to end through the real service (uvicorn on 127.0.0.1, SageVault's TLS,
an httpx client): a canary reveal raises its alarm, which opens a canary-access incident with
that type's procedure; the 24-hour clock warns at 12 h and 20 h and alarms at 24 h; the
security officer works the incident over HTTPS, drafts the notification (the IMPOC, the facts,
no PII), records it, is refused closing without corrective controls, and closes it; the report
lists all of it. The deployment's clock (a `ManualClock`) stamps the events too."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta

from conftest import OPERATOR, TENANT
from pii_scan import leaked, pii_strings, written_files
from sagevault.deployment import Deployment
from sagevault.jobs import BUILTIN, Jobs, Watch
from sagevault.monitor import Alarm, fake_orders
from sagevault.testing import ManualClock, get_orders_response
from webapi import Api

REVEAL = {"fields": ["ShippingAddress.Name", "ShippingAddress.AddressLine1"], "purpose": "fulfilment"}


def _alarms(d: Deployment) -> list[Alarm]:
    Watch(d).catch_up()
    with d.unit_of_work(read_only=True) as conn:
        return d.monitor.list_alarms(conn, principal=OPERATOR, limit=1000)


def _clocks(d: Deployment, clock: ManualClock) -> None:
    Jobs(BUILTIN, clock).run(d, "incident-clocks", force=True)


def test_a_canary_reveal_opens_an_incident_that_is_worked_notified_and_closed_over_https(
    serve_watched: Callable[..., Api],
) -> None:
    clock = ManualClock()
    api = serve_watched(clock)
    d = api.d
    canaries = list(fake_orders(2))
    with d.unit_of_work() as conn:
        d.monitor.plant(conn, d.vault, TENANT, canaries, principal=OPERATOR)
        d.incidents.plans.set_impoc(conn, "Dana Smith", "ir-lead@seller-tools.example", principal=OPERATOR)
        d.incidents.plans.approve(conn, d.infrastructure(conn), principal=OPERATOR)
    api.person("pia.packer", "fulfilment", [TENANT])
    packer = api.login("pia.packer")
    api.person("sam.officer", "security-officer", ["*"])
    officer = api.login("sam.officer")
    packer_id = api._people["pia.packer"].id

    revealed_at = clock()
    url = f"{api.base}/tenants/{TENANT}/orders/{canaries[0]['AmazonOrderId']}/reveal"
    assert api.client.post(url, headers=packer, json=REVEAL).status_code == 200

    [alarm] = [a for a in _alarms(d) if a.rule == "canary-touched"]
    assert alarm.principal == packer_id and "open-incident: incident 1 opened" in alarm.responses
    listed = api.client.get(f"{api.base}/incidents", headers=officer)
    assert listed.status_code == 200, listed.text
    [summary] = listed.json()["items"]
    assert summary["type"] == "canary-access" and summary["severity"] == "critical" and summary["amazon_involved"]
    assert summary["detected_at"] == revealed_at.isoformat()
    assert summary["notify_amazon_due"] == (revealed_at + timedelta(hours=24)).isoformat()
    assert summary["notified_at"] is None and summary["state"] == "new"
    case = api.client.get(f"{api.base}/incidents/1", headers=officer).json()
    assert case["tasks"][0]["text"] == "Identify the principal and channel from the alarm's evidence"
    assert case["alarms"] == [alarm.id] and case["tenants"] == [TENANT]
    assert case["clock"]["running"] and case["clock"]["seconds_left"] == 24 * 3600

    clock.advance(hours=12)
    _clocks(d, clock)
    clock.advance(hours=8)
    _clocks(d, clock)
    warnings = [a for a in _alarms(d) if a.rule == "incident-notify-warning"]
    assert len(warnings) == 2 and {a.severity for a in warnings} == {"high"}
    assert not [a for a in _alarms(d) if a.rule == "incident-notify-overdue"]
    clock.advance(hours=4)
    _clocks(d, clock)
    [overdue] = [a for a in _alarms(d) if a.rule == "incident-notify-overdue"]
    assert overdue.severity == "critical" and overdue.clause == "8"

    officer = api.login("sam.officer")  # a day later: a new session
    contain = {"action": "kill-switch", "target": "pii-access", "tenant": TENANT}
    r = api.client.post(f"{api.base}/incidents/1/actions", headers=officer, json=contain)
    assert r.status_code == 200 and r.json()["actions"][0]["result"] == f"pii-access engaged for {TENANT}"
    assert api.client.post(url, headers=packer, json=REVEAL).status_code in (401, 403)  # contained
    patch = {"state": "triage", "roles": {"incident-commander": "Dana Smith"}, "records_affected": 1}
    assert api.client.patch(f"{api.base}/incidents/1", headers=officer, json=patch).status_code == 200
    for state in ("containment", "eradication", "recovery", "post-incident"):
        r = api.client.patch(f"{api.base}/incidents/1", headers=officer, json={"state": state})
        assert r.status_code == 200, r.text
    item = b"exported security events of pia.packer"
    evidence = {
        "label": "pia.packer's events",
        "sha256": hashlib.sha256(item).hexdigest(),
        "location": "evidence locker 1",
        "collected_by": "Investigator Lee",
    }
    r = api.client.post(f"{api.base}/incidents/1/evidence", headers=officer, json=evidence)
    assert r.status_code == 200, r.text
    draft = api.client.post(f"{api.base}/incidents/1/notification-draft", headers=officer)
    assert draft.status_code == 200, draft.text
    text = draft.json()["text"]
    assert "From: Dana Smith <ir-lead@seller-tools.example>" in text and "canary-access" in text
    assert "Containment actions taken: 1" in text and "Amazon Information involved: possibly" in text
    sent = {"at": clock().isoformat(), "reference": "AMZ-SEC-0001"}
    r = api.client.post(f"{api.base}/incidents/1/notified", headers=officer, json=sent)
    assert r.status_code == 200 and r.json()["clock"]["state"] == "notified late"
    naive = {"at": clock().replace(tzinfo=None).isoformat(), "reference": "x"}
    refused = api.client.post(f"{api.base}/incidents/1/notified", headers=officer, json=naive)
    assert refused.status_code == 400 and "UTC offset" in refused.json()["detail"]

    documentation = {
        "description": "A fulfilment account revealed a canary order's address outside any shipment.",
        "root_cause": "A shared workstation left logged in.",
        "remediation": "Sessions ended, the account reset, workstation locked down.",
    }
    refused = api.client.post(f"{api.base}/incidents/1/close", headers=officer, json=documentation)
    assert refused.status_code == 400 and "corrective controls" in refused.json()["detail"]
    documentation["corrective_controls"] = "Idle sessions end after 15 minutes; kiosk mode on shared stations."
    closed = api.client.post(f"{api.base}/incidents/1/close", headers=officer, json=documentation)
    assert closed.status_code == 200, closed.text
    report = closed.json()
    incident = report["report"]["incident"]
    assert incident["state"] == "closed" and incident["notify_reference"] == "AMZ-SEC-0001"
    assert incident["alarms"] == [alarm.id] and len(incident["tasks"]) == len(case["tasks"])
    assert incident["evidence"][0]["sha256"] == evidence["sha256"]
    assert incident["notification_draft_sha256"] == draft.json()["sha256"]
    assert {e["kind"] for e in incident["timeline"]} >= {"opened", "alarm", "clock", "state", "evidence", "notified"}
    assert [e["detail"]["stage"] for e in incident["timeline"] if e["kind"] == "clock"] == ["12h", "20h", "24h"]
    assert "## Corrective controls" in report["markdown"] and "AMZ-SEC-0001" in report["markdown"]
    logged = {e["fingerprint"] for e in d.audit.search(name="incident:report:write")}
    assert logged == {report["sha256_json"], report["sha256_markdown"]}
    again = api.client.get(f"{api.base}/incidents/1/report", headers=officer).json()
    assert again["sha256_json"] == report["sha256_json"]

    everything = json.dumps([report, draft.json(), [a.payload() for a in _alarms(d)]]).encode()
    assert leaked(pii_strings([get_orders_response(canaries)]), everything + written_files(d)) == []
