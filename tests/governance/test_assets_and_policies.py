"""The asset inventory and the policy register: the deployment's own parts registered once, an
asset without an owner refused, reviews and NIST SP 800-88 disposals (once), policies approved and
their overdue reviews alarmed once; on SQLite and PostgreSQL, on the command line and over HTTPS."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from commands import run
from conftest import OPERATOR, TENANT
from sagevault.deployment import Deployment
from sagevault.errors import Conflict, NotFound, PayloadError
from sagevault.jobs import Watch, default_jobs
from sagevault.testing import ManualClock
from webapi import Api

SHA = hashlib.sha256(b"Data Protection Policy v1").hexdigest()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def d(deployment_at: Callable[..., Deployment], clock: ManualClock) -> Deployment:
    return deployment_at(clock=clock)


def test_the_deployment_registers_its_own_parts_once_and_people_add_the_rest(d: Deployment, clock: ManualClock) -> None:
    assets = d.governance.assets
    with d.unit_of_work() as conn:
        added = assets.sync_deployment(conn, d.own_assets(), principal=OPERATOR)
        assert assets.sync_deployment(conn, d.own_assets(), principal=OPERATOR) == []  # idempotent by name
        listed = assets.list_assets(conn, principal=OPERATOR)
    kinds = {a.kind for a in added}
    assert {"server", "database", "key-provider", "backup-location"} <= kinds
    assert all(a.source == "deployment" and a.state == "active" and a.owner for a in added)
    database = next(a for a in added if a.kind == "database" and a.amazon_data)
    assert d.engine.dialect.name in database.name and database.encrypted_at_rest is True
    assert "@" not in database.name and "password" not in json.dumps([a.payload() for a in listed])
    assert [a.id for a in listed] == [a.id for a in added]

    with d.unit_of_work() as conn:
        with pytest.raises(PayloadError, match="needs an owner"):
            assets.add(conn, name="laptop-7", kind="workstation", owner="  ", principal=OPERATOR)
        with pytest.raises(PayloadError, match="kind is one of"):
            assets.add(conn, name="laptop-7", kind="toaster", owner="IT", principal=OPERATOR)
        laptop = assets.add(
            conn, name="laptop-7", kind="workstation", owner="IT desk", principal=OPERATOR, mfa=True, region="eu-west-1"
        )
        with pytest.raises(Conflict, match="already"):
            assets.add(conn, name="laptop-7", kind="workstation", owner="IT desk", principal=OPERATOR)
    assert laptop.source == "manual" and laptop.next_review_at == clock() + timedelta(days=365)
    assert [e["operation"] for e in d.audit.search(name="governance:asset:add")][-1] == f"asset manual {laptop.id}"


def test_reviews_fall_due_after_a_year_and_a_disposal_is_recorded_once(d: Deployment, clock: ManualClock) -> None:
    assets = d.governance.assets
    with d.unit_of_work() as conn:
        nas = assets.add(conn, name="office NAS", kind="backup-location", owner="Ops", principal=OPERATOR)
        crm = assets.add(conn, name="helpdesk", kind="saas", owner="Support", principal=OPERATOR, amazon_data=False)
    clock.advance(days=366)
    with d.unit_of_work() as conn:
        assert [a.id for a in assets.due(conn)] == [nas.id, crm.id]
        reviewed = assets.review(conn, crm.id, principal=OPERATOR, notes="checked SSO and MFA", owner="Support lead")
        assert [a.id for a in assets.due(conn)] == [nas.id]
    assert reviewed.last_reviewed_at == clock() and reviewed.owner == "Support lead"
    assert reviewed.next_review_at == clock() + timedelta(days=365)

    with d.unit_of_work() as conn:
        with pytest.raises(PayloadError, match="clear, purge, destroy"):
            assets.dispose(conn, nas.id, principal=OPERATOR, method="shred", media="4 HDD", verified_by="Kim")
        with pytest.raises(NotFound):
            assets.dispose(conn, 999, principal=OPERATOR, method="purge", media="4 HDD", verified_by="Kim")
        gone = assets.dispose(conn, nas.id, principal=OPERATOR, method="purge", media="4 HDD", verified_by="Kim")
    assert gone.state == "disposed" and gone.disposed_at == clock()
    assert gone.disposal is not None
    assert {k: gone.disposal[k] for k in ("standard", "method", "media", "verified_by", "recorded_by")} == {
        "standard": "NIST SP 800-88 Rev. 1",
        "method": "purge",
        "media": "4 HDD",
        "verified_by": "Kim",
        "recorded_by": OPERATOR.id,
    }
    with d.unit_of_work() as conn:
        with pytest.raises(Conflict, match="cannot be disposed of again"):
            assets.dispose(conn, nas.id, principal=OPERATOR, method="destroy", media="4 HDD", verified_by="Kim")
        with pytest.raises(Conflict, match="cannot be reviewed"):
            assets.review(conn, nas.id, principal=OPERATOR)
        assert nas.id not in [a.id for a in assets.list_assets(conn, principal=OPERATOR)]
        assert nas.id in [a.id for a in assets.list_assets(conn, principal=OPERATOR, include_disposed=True)]
        assert assets.due(conn) == []
    assert [e["counts"] for e in d.audit.search(name="governance:asset:dispose")] == [{"asset": nas.id}]


def test_an_overdue_policy_review_is_recorded_once_and_raises_the_alarm(d: Deployment, clock: ManualClock) -> None:
    policies = d.governance.policies
    with d.unit_of_work() as conn:
        dpp = policies.add(
            conn, name="Data Protection Policy", version="1.0", owner="CISO", sha256=SHA, principal=OPERATOR
        )
        irp = policies.add(conn, name="IR plan", version="3", owner="CISO", content=b"plan text", principal=OPERATOR)
        with pytest.raises(Conflict, match="registered already"):
            policies.add(conn, name="IR plan", version="3", owner="CISO", sha256=SHA, principal=OPERATOR)
        with pytest.raises(PayloadError, match="64 hexadecimal"):
            policies.add(conn, name="Other", version="1", owner="CISO", sha256="abc", principal=OPERATOR)
        with pytest.raises(PayloadError, match="one of them"):
            policies.add(conn, name="Other", version="1", owner="CISO", principal=OPERATOR)
        with pytest.raises(PayloadError, match="owner is required"):
            policies.add(conn, name="Other", version="1", owner="", sha256=SHA, principal=OPERATOR)
        approved = policies.approve(conn, dpp.id, principal=OPERATOR, review_days=180)
    assert irp.sha256 == hashlib.sha256(b"plan text").hexdigest()
    assert approved.approved_by == OPERATOR.id and approved.next_review_at == clock() + timedelta(days=180)

    jobs = default_jobs(clock)
    clock.advance(days=31)  # the IR plan's version waited 30 days for approval
    jobs.run(d, "governance-reviews-due", force=True)
    jobs.run(d, "governance-reviews-due", force=True)
    with d.unit_of_work(read_only=True) as conn:
        assert [p.id for p in policies.overdue(conn)] == [irp.id]
    clock.advance(days=150)  # the DPP's 180-day review passes too
    jobs.run(d, "governance-reviews-due", force=True)
    noted = [e["operation"] for e in d.audit.search(name="governance:policy:overdue")]
    assert noted == [f"policy approval {irp.id}", f"policy review {dpp.id}"]

    with d.unit_of_work() as conn:
        policies.approve(conn, dpp.id, principal=OPERATOR)
        newer = policies.add(conn, name="IR plan", version="4", owner="CISO", sha256=SHA, principal=OPERATOR)
        with pytest.raises(Conflict, match="superseded"):
            policies.approve(conn, irp.id, principal=OPERATOR)
        states = {p.id: p.state(clock()) for p in policies.list_policies(conn, principal=OPERATOR)}
        assert policies.overdue(conn) == []
    assert states == {dpp.id: "approved", irp.id: "superseded", newer.id: "pending"}

    Watch(d).catch_up()
    with d.unit_of_work(read_only=True) as conn:
        alarms = [a for a in d.monitor.list_alarms(conn, principal=OPERATOR) if a.rule == "policy-review-overdue"]
    assert sorted(a.severity for a in alarms) == ["high", "high"]


def test_assets_and_policies_on_the_command_line(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    listed = json.loads(run(tmp_path, "assets", "list", "--json").stdout)
    assert {a["kind"] for a in listed} >= {"database", "key-provider", "backup-location"}
    assert len(json.loads(run(tmp_path, "assets", "list", "--json").stdout)) == len(listed)

    ownerless = run(tmp_path, "assets", "add", "packing-pc", "--kind", "workstation")
    assert ownerless.returncode == 2 and "needs an owner" in ownerless.stderr
    made = run(tmp_path, "assets", "add", "packing-pc", "--kind", "workstation", "--owner", "Warehouse", "--mfa")
    assert made.returncode == 0 and "added" in made.stdout, made.stderr
    asset_id = made.stdout.split()[1]
    assert run(tmp_path, "assets", "review", asset_id, "--notes", "BitLocker on").returncode == 0
    gone = run(
        tmp_path, "assets", "dispose", asset_id, "--method", "destroy", "--media", "1 SSD", "--verified-by", "Kim"
    )
    assert gone.returncode == 0, gone.stderr
    again = run(
        tmp_path, "assets", "dispose", asset_id, "--method", "purge", "--media", "1 SSD", "--verified-by", "Kim"
    )
    assert again.returncode == 2 and "cannot be disposed of again" in again.stderr
    shown = run(tmp_path, "assets", "show", asset_id)
    assert "NIST SP 800-88" in shown.stdout and "method destroy" in shown.stdout and "verified by Kim" in shown.stdout

    (tmp_path / "dpp.txt").write_text("our policy")
    added = run(tmp_path, "policies", "add", "DPP", "--version", "1.0", "--owner", "CISO", "--file", "dpp.txt")
    assert added.returncode == 0 and hashlib.sha256(b"our policy").hexdigest() in added.stdout
    bad = run(tmp_path, "policies", "add", "DPP", "--version", "2", "--owner", "CISO", "--sha256", "xyz")
    assert bad.returncode == 2 and "64 hexadecimal" in bad.stderr
    assert run(tmp_path, "policies", "approve", "1").returncode == 0
    [policy] = json.loads(run(tmp_path, "policies", "list", "--json").stdout)
    assert policy["state"] == "approved" and policy["approved_by"] and policy["next_review_at"]


def test_assets_and_policies_over_https_need_the_governance_scopes(api: Api) -> None:
    lead = api.login("cam.compliance", api.person("cam.compliance", "compliance", ["*"]))
    packer = api.login("pia.packer", api.person("pia.packer", "fulfilment", [TENANT]))
    base = f"{api.base}/assets"
    assert api.client.get(base, headers=packer).status_code == 403
    assert api.client.post(base, headers=packer, json={"name": "x", "kind": "server", "owner": "o"}).status_code == 403
    assert api.client.get(f"{api.base}/policies", headers=packer).status_code == 403

    page = api.client.get(base, headers=lead)
    assert page.status_code == 200, page.text
    own = page.json()["items"]
    assert own and all(a["source"] == "deployment" for a in own)
    for body, status, words in (
        ({"name": "pc", "kind": "server"}, 422, "owner"),
        ({"name": "pc", "kind": "server", "owner": "   "}, 400, "needs an owner"),
        ({"name": "pc", "kind": "toaster", "owner": "IT"}, 422, "kind"),
        ({"name": own[0]["name"], "kind": "server", "owner": "IT"}, 409, "already"),
    ):
        r = api.client.post(base, headers=lead, json=body)
        assert r.status_code == status and words in r.text, (body, r.text)
    made = api.client.post(base, headers=lead, json={"name": "pc", "kind": "workstation", "owner": "IT", "mfa": True})
    assert made.status_code == 201, made.text
    one = f"{base}/{made.json()['id']}"
    assert api.client.get(one, headers=lead).json()["mfa"] is True
    assert api.client.get(f"{base}/999", headers=lead).status_code == 404
    assert api.client.post(f"{one}/review", headers=lead, json={"notes": "ok"}).status_code == 200
    dispose = {"method": "purge", "media": "1 SSD", "verified_by": "Kim"}
    r = api.client.post(f"{one}/dispose", headers=lead, json=dispose)
    assert r.status_code == 200 and r.json()["disposal"]["method"] == "purge", r.text
    assert api.client.post(f"{one}/dispose", headers=lead, json=dispose).status_code == 409
    assert api.client.post(f"{one}/review", headers=lead, json={}).status_code == 409

    policies = f"{api.base}/policies"
    body = {"name": "DPP", "version": "1.0", "owner": "CISO", "sha256": SHA}
    assert api.client.post(policies, headers=packer, json=body).status_code == 403
    made = api.client.post(policies, headers=lead, json=body)
    assert made.status_code == 201 and made.json()["state"] == "pending", made.text
    assert api.client.post(policies, headers=lead, json=body).status_code == 409
    assert api.client.post(policies, headers=lead, json={**body, "sha256": "g" * 64}).status_code == 400
    approved = api.client.post(f"{policies}/{made.json()['id']}/approve", headers=lead)
    assert approved.status_code == 200 and approved.json()["state"] == "approved", approved.text
    assert api.client.post(f"{policies}/999/approve", headers=lead, json={"review_days": 90}).status_code == 404
    assert [p["id"] for p in api.client.get(policies, headers=lead).json()["items"]] == [made.json()["id"]]
    refused = [e["operation"] for e in api.d.audit.search(name="access:permission:deny")]
    assert {"assets sync", "assets add", "policies list", "policies add"} <= set(refused)
