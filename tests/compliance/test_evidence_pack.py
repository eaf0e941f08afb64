"""The signed evidence pack: what it holds, that it verifies offline (with the key inside it or a
pinned one), and that one changed byte anywhere, an extra or a missing file, or another key's
signature does not."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from commands import run
from conftest import OPERATOR, TENANT
from sagevault.compliance import build_pack, verify_pack
from sagevault.deployment import Deployment
from sagevault.jobs import carry_out
from sagevault.testing import generate_orders, get_orders_response
from sagevault.vault import Operation
from webapi import Api


def _done_deletion(d: Deployment) -> int:
    with d.unit_of_work() as conn:
        d.vault.add_tenant(conn, TENANT, ["ATVPDKIKX0DER"], principal=OPERATOR)
        d.vault.ingest(
            conn,
            TENANT,
            [get_orders_response(list(generate_orders(3, seed=5)))],
            Operation.GET_ORDERS,
            principal=OPERATOR,
        )
        request = d.deletion.request(conn, tenant_id=TENANT, principal=OPERATOR)
    return carry_out(d, request.id, OPERATOR).id


def _rezip(raw: bytes, change: dict[str, bytes | None]) -> bytes:
    """The pack with entries replaced (bytes), removed (None) or added."""
    source = zipfile.ZipFile(io.BytesIO(raw))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name in source.namelist():
            if name in change:
                content = change.pop(name)
                if content is not None:
                    zf.writestr(name, content)
            else:
                zf.writestr(name, source.read(name))
        for name, content in change.items():
            assert content is not None
            zf.writestr(name, content)
    return out.getvalue()


def test_the_pack_holds_the_evidence_and_verifies_offline_and_a_changed_byte_does_not(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    request_id = _done_deletion(d)
    path = tmp_path / "pack.zip"
    with d.unit_of_work(read_only=True) as conn:
        pack = build_pack(d, conn, path, principal=OPERATOR)
    raw = path.read_bytes()
    assert pack.sha256 == hashlib.sha256(raw).hexdigest() and path.stat().st_mode & 0o077 == 0
    names = zipfile.ZipFile(path).namelist()
    assert names[:3] == ["manifest.json", "manifest.sig", "signing-key.pub"]
    assert {"report.json", "report.html", "report.md", "ropa.json", "audit-verify.json"} <= set(names)
    assert f"certificates/SV-DEL-{request_id}.json" in names
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    assert manifest["omitted"] == {"access-review.json": "none exists yet"}
    assert json.loads(zipfile.ZipFile(path).read("audit-verify.json"))["ok"] is True
    (event,) = d.audit.search(name="compliance:pack:create")
    assert event["fingerprint"] == pack.sha256

    public = d.settings.resolved_audit_signing_key_file.with_suffix(".pub")
    assert verify_pack(path) == (True, [])
    assert verify_pack(path, public) == (True, [])

    # One byte changed anywhere: in a file, a header, the directory, the signature, the key.
    positions = sorted({0, len(raw) - 1, *range(0, len(raw), max(1, len(raw) // 400))})
    for at in positions:
        changed = bytearray(raw)
        changed[at] ^= 0x01
        ok, problems = verify_pack(bytes(changed), public)
        assert not ok and problems, f"a change at byte {at} went unnoticed"

    report = zipfile.ZipFile(path).read("report.json")
    other = Ed25519PrivateKey.generate().public_key()
    pem = other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for tampered, why in [
        (_rezip(raw, {"report.json": report.replace(b'"FAIL"', b'"PASS"')}), "does not match its SHA-256"),
        (_rezip(raw, {"ropa.json": None}), "missing"),
        (_rezip(raw, {"extra.txt": b"hello"}), "not in the manifest"),
        (_rezip(raw, {"manifest.json": b"{}"}), "signature does not verify"),
        (b"not a zip at all", "not a readable zip"),
    ]:
        ok, problems = verify_pack(tampered, public)
        assert not ok and any(why in p for p in problems), (why, problems)
    ok, problems = verify_pack(raw, pem)  # pinned to another key
    assert not ok and any("another key" in p or "does not verify" in p for p in problems)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_no_pack_is_written_without_the_signing_key(deployment: Deployment, tmp_path: Path) -> None:
    key = deployment.settings.resolved_audit_signing_key_file
    key.rename(key.with_suffix(".away"))
    try:
        with deployment.unit_of_work(read_only=True) as conn, pytest.raises(Exception, match="signing key"):
            build_pack(deployment, conn, tmp_path / "pack.zip", principal=OPERATOR)
    finally:
        key.with_suffix(".away").rename(key)
    assert not (tmp_path / "pack.zip").exists()


def test_the_commands_write_a_pack_and_verify_it(tmp_path: Path) -> None:
    assert run(tmp_path, "demo").returncode == 0
    pack = tmp_path / "evidence.zip"
    made = run(tmp_path, "report", "--pack", str(pack))
    assert made.returncode == 0, made.stderr
    assert "evidence pack" in made.stdout and pack.is_file()
    valid = run(tmp_path, "report", "verify", str(pack))
    assert valid.returncode == 0 and "valid" in valid.stdout
    public = tmp_path / "var" / "keys" / "audit-signing.pub"
    assert run(tmp_path, "report", "verify", str(pack), "--public-key", str(public)).returncode == 0
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 3] ^= 0x20
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(raw))
    refused = run(tmp_path, "report", "verify", str(bad))
    assert refused.returncode == 1 and "INVALID" in refused.stdout


def test_the_api_answers_with_a_pack_that_verifies(api: Api) -> None:
    lead = api.login("cam.compliance", api.person("cam.compliance", "compliance", ["*"]))
    viewer = api.login("vic.viewer", api.person("vic.viewer", "viewer", [TENANT]))
    answer = api.client.post(f"{api.base}/report/pack", headers=lead)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["x-pack-sha256"] == hashlib.sha256(answer.content).hexdigest()
    assert verify_pack(answer.content) == (True, [])
    assert api.client.post(f"{api.base}/report/pack", headers=viewer).status_code == 403
