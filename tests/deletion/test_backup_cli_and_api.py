"""`sagevault backup create|list|restore|destroy` from the shell (in process), and
/api/v1/backups with its own scopes (`backups:read`, `backups:manage`: the privacy officer's)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pyrage import x25519
from sqlalchemy import create_engine

from commands import run
from conftest import TENANT
from sagevault.jobs import leader
from sagevault.testing import generate_orders, get_orders_response
from webapi import Api

ORDERS = list(generate_orders(3, seed=21))


def test_an_operator_backs_up_restores_after_a_shred_and_destroys_the_backup(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    assert run(tmp_path, "tenants", "add", TENANT, "--marketplace", "ATVPDKIKX0DER").returncode == 0
    (tmp_path / "orders.json").write_text(json.dumps(get_orders_response(ORDERS)))
    assert run(tmp_path, "ingest", "--tenant", TENANT, "orders.json").returncode == 0
    offline = x25519.Identity.generate().to_public()
    made = run(tmp_path, "backup", "create", "--days", "7", "--recipient", str(offline), "--out", "offsite")
    assert made.returncode == 0, made.stderr
    assert "backup 1 written" in made.stdout and "offsite" in made.stdout
    [listed] = json.loads(run(tmp_path, "backup", "list", "--json").stdout)
    assert listed["id"] == 1 and listed["kind"] == "backup" and listed["destroyed_at"] is None
    backup = Path(listed["location"])
    assert backup.parent == (tmp_path / "offsite").resolve() and "offsite" in run(tmp_path, "backup", "list").stdout

    assert run(tmp_path, "shred", "--tenant", TENANT, "--yes").returncode == 0
    declined = run(tmp_path, "backup", "restore", str(backup), stdin="n\n")
    assert declined.returncode == 1 and "service must be stopped" in declined.stdout
    with leader(create_engine(f"sqlite:///{tmp_path / 'var' / 'sagevault.db'}"), "monitor") as leads:
        assert leads  # as a running `serve`'s detector holds it
        busy = run(tmp_path, "backup", "restore", str(backup), "--yes")
    assert busy.returncode == 2 and "stop it first" in busy.stderr
    restored = run(tmp_path, "backup", "restore", str(backup), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert re.search(r"1 tenants shredded again \(3 of their records deleted\)", restored.stdout), restored.stdout
    shown = run(tmp_path, "show", "--tenant", TENANT, "--order", ORDERS[0]["AmazonOrderId"])
    assert shown.returncode == 2 and "shredded" in shown.stderr

    broken = tmp_path / "broken.age"
    broken.write_bytes(backup.read_bytes()[:-10])
    refused = run(tmp_path, "backup", "restore", str(broken), "--yes")
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and "cannot be decrypted" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    missing = run(tmp_path, "backup", "restore", "nowhere.age", "--yes")
    assert missing.returncode == 2 and "cannot be read" in missing.stderr
    assert run(tmp_path, "backup", "create", "--days", "91").returncode == 2

    gone = run(tmp_path, "backup", "destroy", "1")
    assert gone.returncode == 0 and "backup 1 destroyed" in gone.stdout and not backup.exists()
    again = run(tmp_path, "backup", "destroy", "1")
    assert again.returncode == 2 and "destroyed already" in again.stderr
    assert json.loads(run(tmp_path, "backup", "list", "--json", "--live").stdout) == []


def test_backups_over_https_need_their_own_scopes(api: Api) -> None:
    officer = api.person("pat.privacy", "privacy-officer", ["*"])
    packer = api.person("pia.packer", "fulfilment", [TENANT])
    officer_h, packer_h = api.login("pat.privacy", officer), api.login("pia.packer", packer)
    assert api.client.get(f"{api.base}/backups", headers=packer_h).status_code == 403
    assert api.client.post(f"{api.base}/backups", headers=packer_h, json={}).status_code == 403
    made = api.client.post(f"{api.base}/backups", headers=officer_h, json={"days": 30})
    assert made.status_code == 201, made.text
    body = made.json()
    assert Path(body["location"]).parent == api.d.settings.backup_dir and Path(body["location"]).exists()
    assert body["size"] > 0 and len(body["sha256"]) == 64 and body["destroyed_at"] is None
    assert api.client.post(f"{api.base}/backups", headers=officer_h, json={"days": 91}).status_code == 400
    bad = api.client.post(f"{api.base}/backups", headers=officer_h, json={"recipients": ["nope"]})
    assert bad.status_code == 400
    page = api.client.get(f"{api.base}/backups", headers=officer_h, params={"limit": 1})
    assert page.status_code == 200 and [b["id"] for b in page.json()["items"]] == [body["id"]]
    refused = list(api.d.audit.search(actor=api._people["pia.packer"].id, name="access:permission:deny"))
    assert {e["operation"] for e in refused} == {"copies list", "backup create"}
    [created] = api.d.audit.search(name="deletion:backup:create")
    assert created["actor"] == api._people["pat.privacy"].id and created["fingerprint"] == body["sha256"]
