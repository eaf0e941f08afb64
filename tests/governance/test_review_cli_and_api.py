"""`sagevault reviews` on the shell (in process) and /api/v1/reviews with the governance scopes: a
campaign started, shown, decided (never by its subject, never revoking the last admin), closed (not
by a reviewer over their own undecided access, unless the default is revoke; the default decides)
and its signed report checked offline; bad input refused with what to do."""

from __future__ import annotations

import json
from pathlib import Path

from commands import run
from conftest import OPERATOR, TENANT
from sagevault.audit import load_public_key
from sagevault.governance._reviews import verify_report
from webapi import Api


def test_a_campaign_on_the_command_line_from_start_to_a_report_checked_offline(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    made = run(tmp_path, "users", "bootstrap-admin", "--login", "alice.ng", "--email", "alice@seller-tools.example")
    assert made.returncode == 0, made.stderr
    assert "no campaigns" in run(tmp_path, "reviews", "list").stdout
    far = run(tmp_path, "reviews", "start", "--due-days", "91")
    assert far.returncode == 2 and "1 to 90" in far.stderr
    started = run(tmp_path, "reviews", "start", "--due-days", "30", "--default", "none")
    assert started.returncode == 0 and "campaign 1 started: 1 items" in started.stdout, started.stderr
    again = run(tmp_path, "reviews", "start")
    assert again.returncode == 2 and "campaign 1 is open" in again.stderr
    [listed] = json.loads(run(tmp_path, "reviews", "list", "--json").stdout)
    assert listed["state"] == "open" and listed["counts"]["undecided"] == 1 and listed["default_decision"] == "none"
    shown = json.loads(run(tmp_path, "reviews", "show", "1", "--json").stdout)
    [item] = shown["items"]
    assert item["item_kind"] == "grant" and item["role"] == "admin" and "@" not in json.dumps(shown)
    table = run(tmp_path, "reviews", "show", "1")
    assert table.returncode == 0 and "admin on *" in table.stdout

    item_id = str(item["id"])
    last = run(tmp_path, "reviews", "decide", item_id, "revoke", "--justification", "testing the rule")
    assert last.returncode == 2 and "last active administrator" in last.stderr
    blank = run(tmp_path, "reviews", "decide", item_id, "keep", "--justification", " ")
    assert blank.returncode == 2 and "give a justification" in blank.stderr
    early = run(tmp_path, "reviews", "close", "1")
    assert early.returncode == 2 and "decide them" in early.stderr and "set a default" in early.stderr
    kept = run(tmp_path, "reviews", "decide", item_id, "keep", "--justification", "the only administrator")
    assert kept.returncode == 0 and "item 1 decided keep" in kept.stdout
    unclosed = run(tmp_path, "reviews", "export", "1")
    assert unclosed.returncode == 2 and "reviews close 1" in unclosed.stderr
    closed = run(tmp_path, "reviews", "close", "1")
    assert closed.returncode == 0 and "campaign 1 closed: 1 kept, 0 revoked" in closed.stdout, closed.stderr

    report = tmp_path / "review-1.json"
    assert run(tmp_path, "reviews", "export", "1", "--out", str(report)).returncode == 0
    assert run(tmp_path, "reviews", "export", "1", "--out", str(report)).returncode == 2  # nothing overwritten
    ok = run(tmp_path, "reviews", "verify", str(report))
    assert ok.returncode == 0 and "valid: campaign 1" in ok.stdout
    document = json.loads(report.read_text())
    document["report"]["items"][0]["decision"] = "revoke"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    bad = run(tmp_path, "reviews", "verify", str(forged))
    assert bad.returncode == 1 and "INVALID" in bad.stdout
    (tmp_path / "notes.txt").write_text("not json")
    notjson = run(tmp_path, "reviews", "verify", str(tmp_path / "notes.txt"))
    assert notjson.returncode == 2 and "not a JSON report" in notjson.stderr


def test_reviews_over_https_need_the_governance_scopes(api: Api) -> None:
    cora = api.person("cora.comply", "compliance", ["*"])
    vic = api.person("vic.viewer", "viewer", [TENANT])
    reviewer, viewer = api.login("cora.comply", cora), api.login("vic.viewer", vic)
    base = f"{api.base}/reviews"
    assert api.client.get(base, headers=viewer).status_code == 403
    assert api.client.post(base, headers=viewer, json={}).status_code == 403
    assert api.client.post(base, headers=reviewer, json={"due_days": 91}).status_code == 422
    made = api.client.post(base, headers=reviewer, json={"due_days": 30, "default_decision": "keep"})
    assert made.status_code == 201, made.text
    campaign = made.json()
    assert api.client.post(base, headers=reviewer, json={}).status_code == 409
    with api.d.unit_of_work(read_only=True) as conn:
        ids = {a.login: a.id for a in api.d.access.accounts.list(conn, actor=OPERATOR)}
    by_subject = {i["subject"]: i for i in campaign["items"]}
    admin_item, own_item, vic_item = (by_subject[ids[login]] for login in ("alice.ng", "cora.comply", "vic.viewer"))
    assert [c["id"] for c in api.client.get(base, headers=reviewer).json()] == [campaign["id"]]
    assert api.client.get(f"{base}/{campaign['id']}", headers=reviewer).json()["items"] == campaign["items"]
    assert api.client.get(f"{base}/999", headers=reviewer).status_code == 404

    def decide(item: dict, decision: str, why: str, headers: dict[str, str] = reviewer):
        return api.client.post(
            f"{base}/items/{item['id']}/decision", headers=headers, json={"decision": decision, "justification": why}
        )

    own = decide(own_item, "keep", "I review access")
    assert own.status_code == 403 and "your own access" in own.json()["detail"]
    pii = decide(vic_item, "revoke", "call him on +1 206 555 0100")
    assert pii.status_code == 400 and "phone number" in pii.json()["detail"]
    assert decide(vic_item, "revoke", "x" * 501).status_code == 422
    assert decide(admin_item, "revoke", "test the rule").status_code == 409
    revoked = decide(vic_item, "revoke", "moved to another team")
    assert revoked.status_code == 200 and revoked.json()["applied"] is True, revoked.text
    assert api.client.get(f"{api.base}/tenants/{TENANT}/orders/{api.order_id}", headers=viewer).status_code == 403
    assert decide(vic_item, "keep", "undo").status_code == 409
    assert api.client.post(f"{base}/{campaign['id']}/close", headers=reviewer).status_code == 409
    assert api.client.get(f"{base}/{campaign['id']}/report", headers=reviewer).status_code == 409

    dan = api.person("dan.comply", "compliance", ["*"])  # joins after the campaign started: not in it
    api.clock.advance(days=31)
    reviewer = api.login("cora.comply", cora)
    own_close = api.client.post(f"{base}/{campaign['id']}/close", headers=reviewer)  # her own grant undecided
    assert own_close.status_code == 403 and "your own access" in own_close.json()["detail"]
    closed = api.client.post(f"{base}/{campaign['id']}/close", headers=api.login("dan.comply", dan))
    assert closed.status_code == 200, closed.text
    assert closed.json()["state"] == "closed" and closed.json()["counts"]["by_default"] == 2
    assert {i["decided_by"] for i in closed.json()["items"] if i["by_default"]} == {"default"}
    signed = api.client.get(f"{base}/{campaign['id']}/report", headers=reviewer).json()
    public = load_public_key(api.d.settings.resolved_audit_signing_key_file.with_suffix(".pub"))
    assert verify_report(signed, public) and signed["report"]["counts"]["revoke"] == 1
    signed["report"]["counts"]["revoke"] = 0
    assert not verify_report(signed, public)
