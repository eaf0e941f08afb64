"""`sagevault keys rotate-master`: every tenant key, the access secret and every TOTP secret
wrapped again by a new master key, the old one destroyed; with a key file and with AWS KMS
(moto's KMS on 127.0.0.1), run to its end, stopped half-way and run again, and seen at once by a
process that opened the deployment before the rotation."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import boto3
import pyotp
import pytest
from sqlalchemy import select

from commands import run
from conftest import OPERATOR
from sagevault.config import load_settings
from sagevault.crypto import begin_local_rotation
from sagevault.deployment import Deployment, open_deployment
from sagevault.testing import generate_orders, get_orders_response
from sagevault.vault._schema import tenant_keys

PASSWORD = "Harbor-Lantern-42-Quill"
TENANTS = ("A1FIRSTSELLER", "A2SECONDSELLER")


def _filled(tmp: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """A deployment with two tenants of three orders each; the first order id of each."""
    assert run(tmp, "init", env=env).returncode == 0
    first = {}
    for n, tenant in enumerate(TENANTS):
        assert run(tmp, "tenants", "add", tenant, "--marketplace", "ATVPDKIKX0DER", env=env).returncode == 0
        orders = list(generate_orders(3, seed=n + 1, prefix=str(n + 2)))
        (tmp / f"{tenant}.json").write_text(json.dumps(get_orders_response(orders)))
        assert run(tmp, "ingest", "--tenant", tenant, f"{tenant}.json", env=env).returncode == 0
        first[tenant] = orders[0]["AmazonOrderId"]
    return first


def _open(tmp: Path, **overrides: str) -> Deployment:
    return open_deployment(load_settings(data_dir=tmp / "var", **overrides))  # type: ignore[arg-type]


def _master_ids(d: Deployment) -> set[str]:
    with d.engine.connect() as conn:
        return set(
            conn.execute(select(tenant_keys.c.master_key_id).where(tenant_keys.c.wrapped.is_not(None))).scalars()
        )


def _readable(d: Deployment, tenant: str, order_id: str) -> bool:
    with d.engine.connect() as conn:
        return bool(d.vault.get(conn, tenant, order_id, principal=OPERATOR).records)


def _enrolled_admin(tmp: Path) -> pyotp.TOTP:
    boot = run(tmp, "users", "bootstrap-admin", "--login", "alice.ng", "--email", "alice@seller-tools.example")
    secret = next(w for w in boot.stdout.split() if w.startswith("sve_"))
    began = run(tmp, "users", "enrol", "--login", "alice.ng", "--step", "begin", "--json", stdin=f"{secret}\n")
    totp = pyotp.TOTP(json.loads(began.stdout)["totp_secret"])
    done = run(
        tmp,
        "users",
        "enrol",
        "--login",
        "alice.ng",
        "--step",
        "finish",
        "--json",
        stdin=f"{secret}\n{PASSWORD}\n{PASSWORD}\n{totp.now()}\n",
    )
    assert done.returncode == 0, done.stderr
    return totp


def test_a_local_master_key_rotation_rewraps_everything_and_destroys_the_old_key(tmp_path: Path) -> None:
    first = _filled(tmp_path)
    totp = _enrolled_admin(tmp_path)
    key_file = tmp_path / "var" / "keys" / "master.key"
    old_key = key_file.read_bytes()
    before = _open(tmp_path)  # a server that opened the deployment before the rotation
    (old_id,) = _master_ids(before)

    rotated = run(tmp_path, "keys", "rotate-master", "--batch-size", "1")
    assert rotated.returncode == 0, rotated.stderr
    assert re.search(r"master key rotated to local:\w+: 4 tenant keys and 2 access secrets re-wrapped", rotated.stdout)
    assert "the old key file was overwritten and deleted" in rotated.stdout
    assert key_file.read_bytes() != old_key and oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["audit-signing.key", "audit-signing.pub", "master.key"]

    after = _open(tmp_path)
    (new_id,) = _master_ids(after)
    assert new_id != old_id and new_id == after.keys.key_id
    assert all(_readable(after, t, o) for t, o in first.items())
    after.close()
    # the process from before the rotation had unwrapped no key yet: it reads the key file again
    assert all(_readable(before, t, o) for t, o in first.items())
    before.close()
    # the TOTP secret was re-wrapped too: alice still logs in, with a code of the same authenticator
    listed = run(tmp_path, "users", "list", "--as", "alice.ng", stdin=f"{PASSWORD}\n{totp.at(time.time() + 30)}\n")
    assert listed.returncode == 0, listed.stderr
    events = [e["name"] for e in json.loads("[" + ",".join(run(tmp_path, "audit", "export").stdout.splitlines()) + "]")]
    assert events.count("storage:masterkey:retire") == 1 and events.count("storage:masterkey:rotate") >= 4


def test_a_master_key_rotation_stopped_half_way_reads_everything_and_finishes_when_run_again(tmp_path: Path) -> None:
    first = _filled(tmp_path)
    settings = load_settings(data_dir=tmp_path / "var")
    assert begin_local_rotation(settings)  # the new key beside the old, as the command begins
    d = open_deployment(settings)
    with d.engine.begin() as conn:
        step = d.vault.keys.rewrap_step(conn, principal=OPERATOR, limit=1)  # then the process stops
    d.close()
    assert (step.moved, step.remaining) == (1, 3)
    halfway = _open(tmp_path)  # keys under either master key are read
    assert len(_master_ids(halfway)) == 2 and all(_readable(halfway, t, o) for t, o in first.items())
    halfway.close()
    again = run(tmp_path, "keys", "rotate-master")
    assert again.returncode == 0, again.stderr
    assert "3 tenant keys" in again.stdout
    done = _open(tmp_path)
    assert len(_master_ids(done)) == 1 and all(_readable(done, t, o) for t, o in first.items())
    done.close()


@pytest.mark.usefixtures("aws_test_credentials")
def test_an_aws_kms_master_key_rotation_moves_to_the_next_key_and_schedules_the_old_ones_deletion(
    tmp_path: Path, kms_endpoint: str
) -> None:
    kms = boto3.client("kms", region_name="us-east-1", endpoint_url=kms_endpoint)
    old, new = (kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(2))
    env = {
        "SAGEVAULT_KEY_PROVIDER": "aws-kms",
        "SAGEVAULT_KMS_KEY_ID": old,
        "SAGEVAULT_KMS_ENDPOINT_URL": kms_endpoint,
    }
    first = _filled(tmp_path, env)
    refused = run(tmp_path, "keys", "rotate-master", env=env)
    assert refused.returncode == 2 and "set kms_next_key_id to the new KMS key" in refused.stderr
    rotated = run(tmp_path, "keys", "rotate-master", env=env | {"SAGEVAULT_KMS_NEXT_KEY_ID": new})
    assert rotated.returncode == 0, rotated.stderr
    assert f"AWS KMS deletes the old key {old} in 7 days" in rotated.stdout
    assert f"now set kms_key_id = {new}" in rotated.stdout
    assert kms.describe_key(KeyId=old)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    d = _open(tmp_path, key_provider="aws-kms", kms_key_id=new, kms_endpoint_url=kms_endpoint)
    try:
        assert _master_ids(d) == {f"aws-kms:{new}"}
        assert all(_readable(d, t, o) for t, o in first.items())
    finally:
        d.close()
