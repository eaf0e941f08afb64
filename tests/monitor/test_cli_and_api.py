"""`sagevault rules|alarms|canary|monitor` from the shell (in process), and /api/v1/alarms|rules
with their own scopes (`alarms:read`, `alarms:manage`: the security officer's)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from commands import run
from conftest import TENANT
from sagevault.jobs import Watch
from webapi import Api

ALARM_KEYS = {"id", "rule", "rule_version", "clause", "severity", "state", "first_at", "last_at", "count"}
ALARM_KEYS |= {"principal", "tenant", "evidence"}


def test_an_operator_lists_rules_plants_canaries_replays_an_export_and_handles_alarms(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    rules = json.loads(run(tmp_path, "rules", "list", "--json").stdout)
    by_id = {r["id"]: r for r in rules}
    assert {"denied-calls-principal", "request-rate", "reveal-volume", "canary-touched", "password-spraying"} <= set(
        by_id
    )
    assert all({"id", "version", "clause", "severity", "kind", "enabled"} <= r.keys() for r in rules)
    assert by_id["canary-touched"]["severity"] == "critical" and by_id["reveal-volume"]["kind"] == "volume"
    table = run(tmp_path, "rules", "list").stdout
    assert "denied-calls-principal" in table and "shipped" in table

    assert run(tmp_path, "tenants", "add", TENANT, "--marketplace", "ATVPDKIKX0DER").returncode == 0
    seeded = run(tmp_path, "canary", "seed", "--tenant", TENANT, "--count", "2")
    assert seeded.returncode == 0 and "planted 2 canary records" in seeded.stdout
    tenants = run(tmp_path, "tenants", "list").stdout  # the seller's count leaves the canaries out
    rows = [[c for c in re.split(r"[│|\s]+", line) if c] for line in tenants.splitlines() if TENANT in line]
    assert [row[3] for row in rows] == ["0"], tenants

    for _ in range(3):  # an operator asking for an order that is not there: refused, recorded
        assert run(tmp_path, "show", "--tenant", TENANT, "--order", "111-0000000-0000000").returncode == 2
    exported = tmp_path / "events.jsonl"
    assert run(tmp_path, "audit", "export", "--format", "jsonl", "--output", str(exported)).returncode == 0
    replay = run(tmp_path, "rules", "test", "canary-touched", "--replay", str(exported))
    assert replay.returncode == 2 and "canary key" in replay.stderr
    replay = run(tmp_path, "rules", "test", "config-changed", "--replay", str(exported))
    assert replay.returncode == 0 and "0 firings" in replay.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"seq": 1}\nnot json\n')
    refused = run(tmp_path, "rules", "test", "denied-calls-principal", "--replay", str(bad))
    assert refused.returncode == 2 and "line 1 is not an exported event" in refused.stderr

    ran = run(tmp_path, "monitor", "run", "--once")
    assert ran.returncode == 0 and "events evaluated" in ran.stdout
    alarms = json.loads(run(tmp_path, "alarms", "list", "--json").stdout)
    assert all(a.keys() >= ALARM_KEYS for a in alarms)
    assert run(tmp_path, "alarms", "show", "999").returncode == 2


def test_a_replay_names_what_would_fire_and_changes_nothing(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    lines = [
        {
            "seq": i,
            "at": f"2026-12-01T10:00:{i:02d}.000000Z",
            "name": "access:permission:deny",
            "outcome": "denied",
            "reason": "access_denied",
            "actor": "svc-scraper",
            "tenant_id": TENANT,
            "record_ids": [],
            "counts": {},
        }
        for i in range(1, 26)
    ]
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = run(tmp_path, "rules", "test", "denied-calls-principal", "--replay", str(events))
    assert out.returncode == 0, out.stderr
    assert "25 events replayed against denied-calls-principal v1: 6 firings" in out.stdout
    assert "actor=svc-scraper: fired on 6 events" in out.stdout
    as_json = [
        json.loads(x)
        for x in run(
            tmp_path, "rules", "test", "denied-calls-principal", "--replay", str(events), "--json"
        ).stdout.splitlines()
    ]
    assert [f["seqs"][-1] for f in as_json][:1] == [20] and as_json[0]["rule_version"] == 1
    assert not (tmp_path / "var").exists() or not any((tmp_path / "var").glob("*.db"))


def test_alarms_over_https_need_their_own_scopes_and_each_change_is_recorded(api: Api) -> None:
    officer = api.person("sam.officer", "security-officer", ["*"])  # alarms span tenants: a deployment scope
    packer = api.person("pia.packer", "fulfilment", [TENANT])
    officer_h, packer_h = api.login("sam.officer", officer), api.login("pia.packer", packer)
    for _ in range(20):
        url = f"{api.base}/tenants/{TENANT}/orders/{api.order_id}/reveal"
        api.client.post(
            url, headers=packer_h, json={"fields": ["BuyerInfo.BuyerTaxInfo.CompanyLegalName"], "purpose": "fulfilment"}
        )

    Watch(api.d).catch_up()
    assert api.client.get(f"{api.base}/alarms", headers=packer_h).status_code == 403
    refused = list(api.d.audit.search(actor=api._people["pia.packer"].id, name="access:permission:deny"))
    assert refused[-1]["operation"] == "alarms list"  # a refusal of the alarm API is a security event too
    page = api.client.get(f"{api.base}/alarms", headers=officer_h, params={"state": "open"})
    assert page.status_code == 200, page.text
    [alarm] = page.json()["items"]
    assert alarm.keys() >= ALARM_KEYS and alarm["rule"] == "denied-calls-principal" and alarm["count"] == 20
    one = api.client.get(f"{api.base}/alarms/{alarm['id']}", headers=officer_h).json()
    assert one["evidence"]["seqs"] == alarm["evidence"]["seqs"]
    acked = api.client.post(f"{api.base}/alarms/{alarm['id']}/ack", headers=officer_h, json={"note": "looking"})
    assert acked.status_code == 200 and acked.json()["state"] == "acknowledged" and acked.json()["note"] == "looking"
    again = api.client.post(f"{api.base}/alarms/{alarm['id']}/ack", headers=officer_h, json={})
    assert again.status_code == 409
    assert api.client.post(f"{api.base}/alarms/{alarm['id']}/resolve", headers=packer_h, json={}).status_code == 403
    done = api.client.post(f"{api.base}/alarms/{alarm['id']}/false-positive", headers=officer_h, json={"note": "test"})
    assert done.json()["state"] == "false_positive"
    assert api.client.get(f"{api.base}/alarms/999999", headers=officer_h).status_code == 404
    assert api.client.get(f"{api.base}/alarms", headers=officer_h, params={"state": "closed"}).status_code == 422
    rules = api.client.get(f"{api.base}/rules", headers=officer_h, params={"limit": 100}).json()["items"]
    assert {"id", "version", "clause", "severity", "kind", "enabled"} <= rules[0].keys()
    changes = [
        e["name"] for e in api.d.audit.search(actor=api._people["sam.officer"].id) if e["name"].startswith("monitor:")
    ]
    assert changes == ["monitor:alarm:ack", "monitor:alarm:dismiss"]
