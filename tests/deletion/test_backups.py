"""Backups (DPP 9), on SQLite and PostgreSQL: a backup taken before a shred and a deletion,
restored, brings none of it back (rows, keys, ciphertexts, blind-index tokens, PII in any byte of
the database files); a tampered, forged or foreign backup is refused with nothing changed; an
expired backup raises live-copy-overdue; the file holds no plaintext PII and its key is private."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pyrage
import pytest
from pyrage import x25519
from sqlalchemy import func, select

from conftest import OPERATOR, OTHER, TENANT
from pii_scan import leaked, pii_strings, stored_bytes
from sagevault.audit import AuditEvent, EventName, Signer, create_signing_key
from sagevault.config import load_settings
from sagevault.crypto import InMemoryKeyProvider
from sagevault.deletion import Backups, deletion_requests
from sagevault.deployment import Deployment, init_deployment, open_deployment
from sagevault.errors import ConfigError, IntegrityError, PayloadError, ProcessingRestricted, TenantShredded
from sagevault.identity import Channel
from sagevault.jobs import BUILTIN, Jobs, Watch, carry_out
from sagevault.testing import ManualClock, generate_orders, get_orders_response
from sagevault.vault import Operation, vault_metadata

records = vault_metadata.tables["records"]
tenant_keys = vault_metadata.tables["tenant_keys"]
tenants = vault_metadata.tables["tenants"]
MINE = list(generate_orders(6, seed=11))  # TENANT's: shredded after the backup
THEIRS = list(generate_orders(6, seed=12))  # OTHER's: two of them deleted after the backup
DELETED = THEIRS[:2]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 3, 9, 0, tzinfo=UTC))  # before any of these orders' PII expires


@pytest.fixture
def d(deployment_at, clock: ManualClock) -> Deployment:
    made: Deployment = deployment_at(clock=clock, event_clock=clock)
    with made.unit_of_work() as conn:
        for tenant, orders in ((TENANT, MINE), (OTHER, THEIRS)):
            made.vault.add_tenant(conn, tenant, ["ATVPDKIKX0DER"], principal=OPERATOR)
            made.vault.ingest(conn, tenant, [get_orders_response(orders)], Operation.GET_ORDERS, principal=OPERATOR)
    return made


def _backup(d: Deployment, **options) -> Path:
    with d.unit_of_work() as conn:
        return Path(d.backups.create(conn, principal=OPERATOR, **options).copy.location)


def _ids(d: Deployment, tenant: str, orders: list[dict]) -> list[int]:
    wanted = [o["AmazonOrderId"] for o in orders]
    with d.unit_of_work(read_only=True) as conn:
        query = select(records.c.id).where(records.c.tenant_id == tenant, records.c.order_id.in_(wanted))
        return sorted(conn.execute(query).scalars())


def _blobs(d: Deployment, query) -> list[bytes]:
    with d.unit_of_work(read_only=True) as conn:
        return [bytes(b) for b in conn.execute(query).scalars() if b]


def _state(d: Deployment) -> list:
    """Every vault row, to show that a refused restore changed nothing."""
    with d.unit_of_work(read_only=True) as conn:
        return [
            sorted(tuple(str(v) for v in r) for r in conn.execute(select(t)).all())
            for t in (tenants, tenant_keys, records)
        ]


def _email(d: Deployment, tenant: str, order: dict) -> str:
    with d.unit_of_work() as conn:
        (f,) = d.vault.reveal(
            conn, tenant, order["AmazonOrderId"], ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR
        )
    return str(f.value)


def _delete_records(d: Deployment, tenant: str, ids: list[int]) -> None:
    """A deletion request's partial delete: the rows, then storage:record:delete naming them. (Written
    here as the deletion request's producer writes it: tenant_id and record_ids, outcome success.)"""
    with d.unit_of_work() as conn:
        conn.execute(records.delete().where(records.c.id.in_(ids)))
    d.audit.record(
        AuditEvent(
            name=EventName.STORAGE_RECORD_DELETE,
            channel=Channel.CLI,
            actor=OPERATOR.id,
            tenant_id=tenant,
            record_ids=ids,
            operation="deletion",
        )
    )


def test_a_backup_taken_before_a_shred_and_a_deletion_restored_brings_none_of_it_back(d: Deployment) -> None:
    deleted_ids = _ids(d, OTHER, DELETED)
    assert len(deleted_ids) == 2
    backup = _backup(d)
    wrapped = _blobs(d, select(tenant_keys.c.wrapped).where(tenant_keys.c.tenant_id == TENANT))
    ciphertexts = _blobs(d, select(records.c.pii).where(records.c.tenant_id == TENANT))
    ciphertexts += _blobs(d, select(records.c.pii).where(records.c.id.in_(deleted_ids)))
    tokens = _blobs(d, select(records.c.bi_email).where(records.c.id.in_(deleted_ids)))
    assert len(wrapped) == 2 and len(ciphertexts) == 8 and len(tokens) == 2

    with d.unit_of_work() as conn:
        d.vault.shred(conn, TENANT, principal=OPERATOR)
    with d.unit_of_work() as conn:
        assert d.vault.purge_shredded(conn, TENANT, principal=OPERATOR) == 6
    _delete_records(d, OTHER, deleted_ids)
    with d.unit_of_work() as conn:  # a copy made after the backup: the restore keeps it registered
        later = d.copies.register(conn, kind="export", location="/tmp/x", sha256="ab" * 32, size=1, principal=OPERATOR)

    done = d.backups.restore(backup, principal=OPERATOR)

    assert (done.replayed.tenants, done.replayed.tenant_records, done.replayed.records) == (1, 6, 2)
    assert done.replayed.registers and done.retention_ran
    reads = [
        lambda c: d.vault.get(c, TENANT, MINE[0]["AmazonOrderId"], principal=OPERATOR),
        lambda c: d.vault.search(
            c, TENANT, "email", MINE[0]["BuyerInfo"]["BuyerEmail"], purpose="fulfilment", principal=OPERATOR
        ),
    ]
    for read in reads:
        with d.unit_of_work() as conn, pytest.raises(TenantShredded):
            read(conn)
    with d.unit_of_work(read_only=True) as conn:
        assert conn.execute(select(func.count()).where(tenant_keys.c.tenant_id == TENANT)).scalar_one() == 0
        assert conn.execute(select(func.count()).where(records.c.tenant_id == TENANT)).scalar_one() == 0
        assert conn.execute(select(tenants.c.shredded_at).where(tenants.c.id == TENANT)).scalar_one() is not None
        assert conn.execute(select(func.count()).where(records.c.id.in_(deleted_ids))).scalar_one() == 0
        for order in DELETED:  # the blind index finds nothing of the deleted records
            email = order["BuyerInfo"]["BuyerEmail"]
            assert d.vault.search(conn, OTHER, "email", email, purpose="fulfilment", principal=OPERATOR) == []
        assert [c.id for c in d.copies.list_copies(conn, principal=OPERATOR)] == [later.id, 1]
    assert _email(d, OTHER, THEIRS[3]) == THEIRS[3]["BuyerInfo"]["BuyerEmail"]  # the rest is back and readable
    with d.unit_of_work() as conn:  # and takes writes (ids after the highest, sequences moved on)
        newer = get_orders_response(list(generate_orders(1, seed=13)))
        d.vault.ingest(conn, OTHER, [newer], Operation.GET_ORDERS, principal=OPERATOR)
        d.copies.register(conn, kind="export", location="/tmp/y", sha256="cd" * 32, size=1, principal=OPERATOR)

    haystack = stored_bytes(d)  # SQLite: the file, its WAL and shm; PostgreSQL: every value and heap file
    assert leaked(pii_strings([get_orders_response(MINE + DELETED)]), haystack) == []
    assert [b for b in wrapped + ciphertexts + tokens if b in haystack] == []
    [event] = d.audit.search(name="deletion:backup:restore")
    assert event["outcome"] == "success" and event["fingerprint"] == hashlib.sha256(backup.read_bytes()).hexdigest()
    assert event["counts"]["tenants"] == 1 and event["counts"]["records"] == 2


def _plain(d: Deployment, backup: Path) -> dict[str, bytes]:
    """The archive inside a backup, opened with the deployment's backup key (as an attacker who
    stole that key, or the test, could)."""
    identity = x25519.Identity.from_str(d.settings.backup_key_file.read_text().strip())
    with tarfile.open(fileobj=io.BytesIO(pyrage.decrypt(backup.read_bytes(), [identity]))) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive}  # type: ignore[union-attr]


def _sealed(members: dict[str, bytes], to: x25519.Recipient, path: Path) -> Path:
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    path.write_bytes(pyrage.encrypt(plain.getvalue(), [to]))
    return path


def test_a_tampered_or_forged_backup_is_refused_and_nothing_changes(d: Deployment, tmp_path: Path) -> None:
    backup = _backup(d)
    with d.unit_of_work() as conn:
        d.vault.shred(conn, TENANT, principal=OPERATOR)
    before = _state(d)
    ours = x25519.Recipient.from_str(d.backups.recipient)
    members = _plain(d, backup)
    image = next(n for n in members if n.startswith("database."))
    manifest = json.loads(members["manifest.json"])

    flipped = tmp_path / "flipped.age"
    data = bytearray(backup.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    forged_manifest = json.dumps({**manifest, "audit_last_seq": 0}, sort_keys=True, separators=(",", ":")).encode()
    forged = dict(members, **{"manifest.json": forged_manifest})  # still the original's signature
    other_key = tmp_path / "elsewhere" / "audit-signing.key"  # another deployment's signing key
    create_signing_key(other_key)
    signature = Signer(other_key).sign(b"sagevault-backup-manifest-v1\x00" + forged_manifest)
    resigned = dict(forged, **{"manifest.sig": base64.b64encode(signature)})
    swapped = dict(members, **{image: members[image][:-4096] + b"\0" * 4096})
    ahead = json.dumps({**manifest, "audit_last_seq": 10**6}, sort_keys=True, separators=(",", ":")).encode()
    ours_signed = Signer(d.settings.resolved_audit_signing_key_file).sign(b"sagevault-backup-manifest-v1\x00" + ahead)
    # signed by this deployment, but taken after the last event the security log now holds: the
    # log was rolled back, so the journal a restore replays is incomplete
    rolled_back = dict(members, **{"manifest.json": ahead, "manifest.sig": base64.b64encode(ours_signed)})
    cases = {
        _sealed(members, x25519.Identity.generate().to_public(), tmp_path / "foreign.age"): "cannot be decrypted",
        flipped: "cannot be decrypted",
        _sealed(forged, ours, tmp_path / "forged.age"): "signature does not verify",
        _sealed(resigned, ours, tmp_path / "resigned.age"): "signature does not verify",
        _sealed(swapped, ours, tmp_path / "swapped.age"): "does not match the SHA-256",
        _sealed({"manifest.json": members["manifest.json"]}, ours, tmp_path / "short.age"): "does not hold",
        _sealed(rolled_back, ours, tmp_path / "rolled-back.age"): "rolled back or replaced",
    }
    for path, why in cases.items():
        with pytest.raises(IntegrityError, match=why):
            d.backups.restore(path, principal=OPERATOR)
        assert _state(d) == before, path.name
    refusals = [e for e in d.audit.search(name="deletion:backup:restore") if e["outcome"] == "failure"]
    assert len(refusals) == len(cases) and {e["reason"] for e in refusals} == {"integrity_failure"}
    with d.unit_of_work() as conn, pytest.raises(TenantShredded):
        d.vault.get(conn, TENANT, MINE[0]["AmazonOrderId"], principal=OPERATOR)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_another_deployments_backup_or_master_key_is_refused(d: Deployment, tmp_path: Path) -> None:
    elsewhere = load_settings(data_dir=tmp_path / "elsewhere", password_hash_memory_kib=19456)
    other = init_deployment(elsewhere, keys=InMemoryKeyProvider())
    try:
        with other.unit_of_work() as conn:
            theirs = Path(other.backups.create(conn, principal=OPERATOR).copy.location)
    finally:
        other.close()
    before = _state(d)
    with pytest.raises(IntegrityError, match="cannot be decrypted with this deployment's backup key"):
        d.backups.restore(theirs, principal=OPERATOR)
    assert _state(d) == before
    # the same data dir opened with another master key: the backup's tenant keys could not be read
    backup = _backup(d)
    rekeyed = open_deployment(d.settings, keys=InMemoryKeyProvider(), engine=d.engine, audit_engine=d.audit.engine)
    with pytest.raises(IntegrityError, match="no longer holds"):
        rekeyed.backups.restore(backup, principal=OPERATOR)
    assert _state(d) == before


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_backup_file_holds_no_plaintext_pii_and_its_key_is_private(d: Deployment, tmp_path: Path) -> None:
    offline = x25519.Identity.generate()
    backup = _backup(d, out_dir=tmp_path / "offsite", extra_recipients=[str(offline.to_public())], days=30)
    assert backup.parent == tmp_path / "offsite" and backup.stat().st_mode & 0o777 == 0o600
    secrets = pii_strings([get_orders_response(MINE + THEIRS)])
    assert secrets and leaked(secrets, backup.read_bytes()) == []
    members = _plain(d, backup)
    assert leaked(secrets, b"".join(members.values())) == []  # inside, PII is encrypted under tenant keys
    # the offline recipient can open it too, without the deployment
    assert pyrage.decrypt(backup.read_bytes(), [offline])[:5] == b"manif"
    manifest = json.loads(members["manifest.json"])
    assert manifest["image_sha256"] == hashlib.sha256(members[manifest["image"]]).hexdigest()
    assert {"created_at", "backend", "schema_revision", "audit_last_seq"} <= manifest.keys()
    key = d.settings.backup_key_file
    assert key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)
    with d.unit_of_work() as conn, pytest.raises(ConfigError, match="accessible by group or others"):
        d.backups.create(conn, principal=OPERATOR)
    key.chmod(0o600)
    with d.unit_of_work() as conn:
        with pytest.raises(PayloadError, match="age X25519 public key"):
            d.backups.create(conn, principal=OPERATOR, extra_recipients=["age1nope"])
        with pytest.raises(PayloadError, match="1 to 90 days"):
            d.backups.create(conn, principal=OPERATOR, days=91)
    [created] = d.audit.search(name="deletion:backup:create")
    assert created["fingerprint"] == hashlib.sha256(backup.read_bytes()).hexdigest()
    assert isinstance(d.backups, Backups)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_expired_backup_is_destroyed_by_the_job_and_one_moved_away_raises_live_copy_overdue(
    d: Deployment, clock: ManualClock
) -> None:
    here = _backup(d, days=1)
    moved = _backup(d, days=1)
    away = moved.with_name("moved-elsewhere.bak")
    moved.rename(away)  # a copy that left this server: only a person can destroy it
    clock.advance(days=2)
    with pytest.raises(PayloadError, match="past its expiry"):
        d.backups.restore(here, principal=OPERATOR)  # an expired backup is not brought back
    Jobs(BUILTIN, clock).run(d, "live-copies", force=True)
    Watch(d).catch_up()
    with d.unit_of_work(read_only=True) as conn:
        alarms = d.monitor.list_alarms(conn, principal=OPERATOR)
        live = d.backups.list_backups(conn, principal=OPERATOR, live_only=True)
    assert [a.rule for a in alarms] == ["live-copy-overdue"] and not here.exists()
    assert [c.location for c in live] == [str(moved)]
    with d.unit_of_work() as conn:
        gone = d.backups.destroy(conn, live[0].id, principal=OPERATOR, missing_ok=True)
    assert gone.destroyed_at is not None
    away.unlink()
    with d.unit_of_work() as conn:
        assert d.backups.list_backups(conn, principal=OPERATOR, live_only=True) == []


def test_a_restore_purges_again_what_retention_purged_since_the_backup(d: Deployment, clock: ManualClock) -> None:
    backup = _backup(d)
    ciphertexts = _blobs(d, select(records.c.pii).where(records.c.tenant_id == OTHER))
    clock.advance(days=80)  # every order's PII is past its date (30 days after delivery)
    Jobs(BUILTIN, clock).run(d, "retention", force=True)
    with d.unit_of_work(read_only=True) as conn:
        assert conn.execute(select(func.count()).where(records.c.pii_purged_at.is_(None))).scalar_one() == 0

    done = d.backups.restore(backup, principal=OPERATOR)

    assert done.retention_ran and done.retention_pii == 12
    with d.unit_of_work(read_only=True) as conn:
        assert conn.execute(select(func.count()).where(records.c.pii_purged_at.is_(None))).scalar_one() == 0
    haystack = stored_bytes(d)
    assert [b for b in ciphertexts if b in haystack] == []
    assert leaked(pii_strings([get_orders_response(MINE + THEIRS)]), haystack) == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_deletion_requests_carried_out_after_a_backup_stay_done_when_it_is_restored(d: Deployment) -> None:
    """The end to end of issue 16: requests received and carried out through the real service after
    the backup; the restore re-applies them from the security log and keeps their records."""
    backup = _backup(d)
    deleted_ids = _ids(d, OTHER, DELETED)
    with d.unit_of_work() as conn:
        whole = d.deletion.request(conn, tenant_id=TENANT, principal=OPERATOR, source="seller-offboarding").id
        part = d.deletion.request(
            conn, tenant_id=OTHER, principal=OPERATOR, scope="orders", orders=[o["AmazonOrderId"] for o in DELETED]
        ).id
    assert carry_out(d, whole, OPERATOR).state == carry_out(d, part, OPERATOR).state == "done"

    done = d.backups.restore(backup, principal=OPERATOR)

    assert (done.replayed.tenants, done.replayed.records) == (1, 2)
    with d.unit_of_work(read_only=True) as conn:
        assert conn.execute(select(func.count()).where(records.c.tenant_id == TENANT)).scalar_one() == 0
        assert conn.execute(select(func.count()).where(records.c.id.in_(deleted_ids))).scalar_one() == 0
        states = conn.execute(select(deletion_requests.c.state).order_by(deletion_requests.c.id)).scalars().all()
    assert states == ["done", "done"]  # the requests and their certificates are not rolled back
    assert leaked(pii_strings([get_orders_response(MINE + DELETED)]), stored_bytes(d)) == []


def test_a_restore_keeps_restrictions_and_never_hands_a_record_id_out_twice(d: Deployment) -> None:
    from sagevault.jobs import carry_out
    from sagevault.vault._schema import record_ids

    backup = _backup(d)
    restricted, erased = MINE[0]["AmazonOrderId"], MINE[1]["AmazonOrderId"]
    with d.unit_of_work() as conn:
        d.deletion.buyers.restrict(conn, tenant_id=TENANT, principal=OPERATOR, orders=[restricted])
        request = d.deletion.request(conn, tenant_id=TENANT, principal=OPERATOR, scope="orders", orders=[erased])
    carry_out(d, request.id, OPERATOR)
    with d.unit_of_work(read_only=True) as conn:
        counter = conn.execute(select(record_ids.c.last)).scalar_one()
    restored = d.backups.restore(backup, principal=OPERATOR)
    assert restored.counts()["restrictions"] >= 1 and restored.counts()["records"] >= 1
    with d.unit_of_work(read_only=True) as conn:
        with pytest.raises(ProcessingRestricted):
            d.vault.reveal(conn, TENANT, restricted, ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR)
        assert d.vault.rights.orders_of(conn, TENANT, [erased]) == []
        assert conn.execute(select(record_ids.c.last)).scalar_one() >= counter  # never rolled back


def test_a_restore_brings_back_data_never_access_an_api_key_revoked_since_stays_revoked(d: Deployment) -> None:
    from sagevault.errors import AccessDenied

    with d.unit_of_work() as conn:
        d.access.accounts.add_person(conn, "olga.owner", "olga@seller-tools.example", manager=None, actor=OPERATOR)
        d.access.accounts.add_service(conn, "svc-sync", owner="olga.owner", purpose="order sync", actor=OPERATOR)
        key = d.access.api_keys.issue(conn, "svc-sync", scopes=["records:read"], actor=OPERATOR)
    backup = _backup(d)
    with d.unit_of_work() as conn:
        d.access.api_keys.revoke(conn, key.key_id, actor=OPERATOR)
    d.backups.restore(backup, principal=OPERATOR)
    with d.unit_of_work() as conn, pytest.raises(AccessDenied):
        d.access.api_keys.verify(conn, key.token, source="127.0.0.1")
