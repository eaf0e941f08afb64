"""The signed evidence pack: what it holds, that it verifies offline with the key the verifier
trusts (never the key inside the pack), and that one changed byte anywhere, an extra or a missing
file, another key's signature (a pack re-signed by a forger with its own key inside), a compressed
entry or an oversized file does not."""

from __future__ import annotations

import base64
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
from sagevault.compliance import _pack, build_pack, verify_pack
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
    # The pack verifies the audit log before it evaluates the report: the report it holds has seen that run.
    packed = json.loads(zipfile.ZipFile(path).read("report.json"))
    integrity = next(i for i in packed["items"] if i["id"] == "dpp-4-log-integrity")
    assert integrity["status"] == "PASS", integrity
    (event,) = d.audit.search(name="compliance:pack:create")
    assert event["fingerprint"] == pack.sha256

    public = d.settings.resolved_audit_signing_key_file.with_suffix(".pub")
    assert verify_pack(path, public) == (True, [])
    assert verify_pack(raw, public.read_bytes()) == (True, [])

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
    public = api.d.settings.resolved_audit_signing_key_file.with_suffix(".pub")
    assert verify_pack(answer.content, public) == (True, [])
    assert api.client.post(f"{api.base}/report/pack", headers=viewer).status_code == 403


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _forge(raw: bytes) -> bytes:
    """What a forger makes of a genuine pack: every item set to PASS, the manifest rebuilt, signed
    with a fresh key whose public key goes inside the pack, in the canonical layout."""
    source = zipfile.ZipFile(io.BytesIO(raw))
    files = {n: source.read(n) for n in source.namelist() if n not in _pack.SIGNED}
    report = json.loads(files["report.json"])
    for item in report["items"]:
        item["status"] = "PASS"
    report["counts"] = {"PASS": len(report["items"]), "FAIL": 0, "ATTENTION": 0}
    files["report.json"] = json.dumps(report, indent=2).encode() + b"\n"
    key = Ed25519PrivateKey.generate()
    fingerprint = _pack.key_sha256(key.public_key())
    manifest = json.loads(source.read(_pack.MANIFEST))
    manifest["files"] = [
        {"name": n, "sha256": hashlib.sha256(c).hexdigest(), "size": len(c)} for n, c in sorted(files.items())
    ]
    manifest["signing_key_sha256"] = fingerprint
    manifest_bytes = json.dumps(manifest, sort_keys=True, indent=2).encode() + b"\n"
    value = base64.b64encode(key.sign(manifest_bytes)).decode()
    signature = json.dumps({"algorithm": "Ed25519", "key_sha256": fingerprint, "value": value}).encode()
    entries = [(_pack.MANIFEST, manifest_bytes), (_pack.SIGNATURE, signature), (_pack.PUBLIC_KEY, _pem(key))]
    return _pack._zip([*entries, *sorted(files.items())])


def test_a_pack_re_signed_with_another_key_is_refused_by_the_trusted_key(deployment: Deployment) -> None:
    d = deployment
    with d.unit_of_work(read_only=True) as conn:
        raw = build_pack(d, conn, None, principal=OPERATOR).data
    public = d.settings.resolved_audit_signing_key_file.with_suffix(".pub")
    forged = _forge(raw)
    ok, problems = verify_pack(forged, public)
    assert not ok and any("another key" in p for p in problems), problems
    # The genuine pack with another key put inside: the embedded key differs from the trusted one.
    genuine = zipfile.ZipFile(io.BytesIO(raw))
    other = _pem(Ed25519PrivateKey.generate())
    rebuilt = _pack._zip([(n, other if n == _pack.PUBLIC_KEY else genuine.read(n)) for n in genuine.namelist()])
    ok, problems = verify_pack(rebuilt, public)
    assert not ok and any("key inside the pack" in p for p in problems), problems
    with pytest.raises(TypeError):
        verify_pack(raw)  # type: ignore[call-arg]  # no default: the caller names the key it trusts


def test_the_command_refuses_a_forged_pack_without_public_key_and_needs_a_key(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    pack = tmp_path / "evidence.zip"
    assert run(tmp_path, "report", "--pack", str(pack)).returncode == 0
    forged = tmp_path / "forged.zip"
    forged.write_bytes(_forge(pack.read_bytes()))
    refused = run(tmp_path, "report", "verify", str(forged))
    assert refused.returncode == 1 and "INVALID" in refused.stdout and "valid:" not in refused.stdout
    genuine = run(tmp_path, "report", "verify", str(pack))
    assert genuine.returncode == 0 and "valid" in genuine.stdout and "audit-signing.pub" in genuine.stdout
    public = tmp_path / "var" / "keys" / "audit-signing.pub"
    public.rename(tmp_path / "elsewhere.pub")
    missing = run(tmp_path, "report", "verify", str(pack))
    assert missing.returncode == 2 and "--public-key" in missing.stderr and "valid" not in missing.stdout
    pinned = run(tmp_path, "report", "verify", str(pack), "--public-key", str(tmp_path / "elsewhere.pub"))
    assert pinned.returncode == 0


def test_verify_refuses_a_compressed_or_oversized_pack_before_reading_any_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _pem(Ed25519PrivateKey.generate())

    def never(*_args: object, **_kwargs: object) -> bytes:
        raise AssertionError("an entry (or the file) was read before the checks")

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in _pack.SIGNED:
            zf.writestr(name, b"x")
        zf.writestr("report.json", b"\0" * (20 * 1024 * 1024))  # 20 MB in about 20 KB
    stored = bytearray(_pack._zip([(n, b"x") for n in (*_pack.SIGNED, "report.json")]))
    entry = stored.rfind(b"PK\x01\x02")  # the last central-directory entry: declare 2 GB
    stored[entry + 20 : entry + 28] = (2**31).to_bytes(4, "little") * 2
    monkeypatch.setattr(zipfile.ZipFile, "open", never)
    monkeypatch.setattr(zipfile.ZipFile, "read", never)

    ok, problems = verify_pack(bomb.getvalue(), key)
    assert not ok and any("compressed" in p for p in problems), problems
    ok, problems = verify_pack(bytes(stored), key)
    assert not ok and any("declare more bytes" in p for p in problems), problems

    huge = tmp_path / "huge.zip"
    with huge.open("wb") as fh:
        fh.truncate(_pack.MAX_PACK_BYTES + 1)  # sparse: nothing is written
    monkeypatch.setattr(Path, "read_bytes", never)
    ok, problems = verify_pack(huge, key)
    assert not ok and any("larger than any evidence pack" in p for p in problems), problems
