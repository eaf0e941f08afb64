"""Backups (DPP 9): encrypted, signed copies of the vault's database, tracked as live copies until
they are destroyed (90 days at most), and a restore that re-applies every shred and deletion done
since, before anything can read the restored data, so no deleted data comes back.

`create` runs in the caller's unit of work (it registers the copy there). `restore` replaces the
vault's database: it verifies the file, works on a copy no reader can reach (SQLite: in memory;
PostgreSQL: a scratch schema), replays the journal there and only then swaps it in. It owns the
transactions of that copy, as a migration would; on SQLite the service must be stopped first.
See docs/backups.md.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, AuditLog, EventName, Gate, Signer, check_scope, outcome_of, public_path
from sagevault.config import Settings
from sagevault.crypto import KeyProvider
from sagevault.db import MigrationChain, is_sqlite, migrate
from sagevault.errors import AuditError, Conflict, IntegrityError, PayloadError, RecordNotFound
from sagevault.identity import Principal, Scope
from sagevault.logs import get_logger

from . import _backup_pg as pg
from . import _backup_sqlite as lite
from ._backup_file import FORMAT, IMAGES, Manifest, Opened, backup_identity, open_backup, recipients, seal
from ._backup_replay import Live, Replayed, check_master_keys, read_live, replay
from ._copies import LiveCopies, LiveCopy
from ._retention import Retention
from ._schema import live_copies

KIND = "backup"
RESTORE = Principal.job("backup-restore")  # who re-applies the retention purge to a restored copy


@dataclass(frozen=True)
class Backup:
    """A backup just written: its live copy and its signed manifest."""

    copy: LiveCopy
    manifest: Manifest


@dataclass(frozen=True)
class Restored:
    """What a restore did: the backup's manifest, and what it re-applied before the swap."""

    manifest: Manifest
    sha256: str
    replayed: Replayed
    retention_pii: int | None  # None: the retention purge could not run (see `retention_ran`)
    retention_records: int | None

    @property
    def retention_ran(self) -> bool:
        return self.retention_pii is not None

    def counts(self) -> dict[str, int]:
        return {
            "tenants": self.replayed.tenants,
            "tenant_records": self.replayed.tenant_records,
            "records": self.replayed.records,
            "retention_pii": self.retention_pii or 0,
            "retention_records": self.retention_records or 0,
            "retention_ran": int(self.retention_ran),
            "registers_kept": int(self.replayed.registers),
            "restrictions": self.replayed.restricted,
            "rectified_restricted": self.replayed.rectified,
        }


class Backups:
    """`Deployment.backups`: create, list, destroy and restore backups of the vault's database."""

    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        keys: KeyProvider,
        audit: AuditLog,
        gate: Gate,
        copies: LiveCopies,
        retention: Retention,
        chain: MigrationChain,
        forget_keys: Callable[[], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._keys = keys
        self._audit = audit
        self._gate = gate
        self._copies = copies
        self._retention = retention
        self._chain = chain
        self._forget_keys = forget_keys or (lambda: None)
        self._clock = clock or (lambda: datetime.now(UTC))

    # --- keys -----------------------------------------------------------------------------------

    @property
    def recipient(self) -> str:
        """The deployment's backup identity's public key (age1...): every backup is encrypted to it."""
        return str(backup_identity(self._settings.backup_key_file).to_public())

    def _signer(self) -> Signer:
        return Signer(self._settings.resolved_audit_signing_key_file)

    # --- create, list, destroy ------------------------------------------------------------------

    def create(
        self,
        conn: Connection,
        *,
        principal: Principal,
        out_dir: Path | None = None,
        extra_recipients: Sequence[str] = (),
        days: int | None = None,
    ) -> Backup:
        """Write an encrypted, signed backup of the vault's database into `out_dir` (default the
        settings' backup_dir) and register it as a live copy expiring in `days` (at most the
        policy's live_copies_days)."""
        check_scope(self._gate, self._audit, conn, principal, Scope.BACKUPS_MANAGE, "backup create")
        keep = self._copies.max_days if days is None else days
        if not 0 < keep <= self._copies.max_days:
            raise PayloadError(
                f"a backup may be kept 1 to {self._copies.max_days} days (the policy's live_copies_days)"
            )
        to = [backup_identity(self._settings.backup_key_file).to_public(), *recipients(list(extra_recipients))]
        signer = self._signer()
        backend = "sqlite" if is_sqlite(conn) else "postgresql"
        revision = str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())
        last_seq = self._audit.head()[0]  # before the copy: every event after it is replayed on restore
        if backend == "sqlite":
            data = lite.image(lite.database_path(self._engine))
        else:
            schema = str(conn.execute(text("SELECT current_schema()")).scalar_one())
            data = pg.dump(self._settings.resolved_database_admin_url, schema, pg.store_tables(conn))
        now = self._clock()
        manifest = Manifest(
            format=FORMAT,
            created_at=now.isoformat(),
            backend=backend,
            schema_revision=revision,
            image=IMAGES[backend],
            image_sha256=hashlib.sha256(data).hexdigest(),
            image_size=len(data),
            audit_last_seq=last_seq,
            master_key_id=self._keys.key_id,
            recipient=str(to[0]),
        )
        folder = (out_dir or self._settings.backup_dir).expanduser().resolve()
        path = folder / f"sagevault-backup-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}.age"
        sha256 = seal(data, manifest, signer, to, path)
        try:
            copy = self._copies.register(
                conn,
                kind=KIND,
                location=str(path),
                sha256=sha256,
                size=path.stat().st_size,
                principal=principal,
                days=keep,
            )
            self._audit.record(
                AuditEvent(
                    name=EventName.DELETION_BACKUP_CREATE,
                    channel=principal.channel,
                    actor=principal.id,
                    operation=f"backup {copy.id}",
                    counts={"copy": copy.id, "bytes": copy.size, "audit_seq": last_seq},
                    fingerprint=sha256,
                )
            )
        except BaseException:
            _shred_file(path)  # an untracked copy must not stay behind
            raise
        return Backup(copy, manifest)

    def list_backups(self, conn: Connection, *, principal: Principal, live_only: bool = False) -> list[LiveCopy]:
        """Backups, newest first (those destroyed too, unless `live_only`)."""
        return self._copies.list_copies(conn, principal=principal, kind=KIND, live_only=live_only)

    def destroy(self, conn: Connection, copy_id: int, *, principal: Principal, missing_ok: bool = False) -> LiveCopy:
        """Overwrite and delete a backup's (or a return bundle's) file, and record the copy
        destroyed. A file that is not there is refused unless `missing_ok` (destroyed elsewhere:
        an offline copy, a bundle handed to its recipient)."""
        check_scope(self._gate, self._audit, conn, principal, Scope.BACKUPS_MANAGE, "backup destroy")
        copy = self._copies.get(conn, copy_id, principal=principal)
        if copy.kind not in (KIND, "return-bundle"):
            raise RecordNotFound(f"live copy {copy_id} is not a backup or a return bundle (it is a {copy.kind})")
        if copy.destroyed_at is not None:
            raise Conflict(f"backup {copy_id} was recorded as destroyed already")
        path = Path(copy.location)
        if path.exists():
            _shred_file(path)
        elif not missing_ok:
            raise PayloadError(
                f"backup {copy_id}'s file {path} is not there; if it was destroyed elsewhere, say so with --missing-ok"
            )
        return self._copies.destroyed(conn, copy_id, principal=principal)

    # --- restore --------------------------------------------------------------------------------

    def verify(self, path: Path) -> Opened:
        """Decrypt and check a backup without restoring it (IntegrityError says why it is refused)."""
        return open_backup(path, backup_identity(self._settings.backup_key_file), self._public_key())

    def _public_key(self) -> Path:
        return public_path(self._settings.resolved_audit_signing_key_file)

    def restore(self, path: Path, *, principal: Principal) -> Restored:
        """Restore a backup in place of the vault's database, every deletion recorded since
        re-applied before the swap. Refused, with nothing changed, if the file does not decrypt
        with this deployment's backup key, its manifest's signature does not verify or its image
        is not the one the manifest names. SQLite: stop the service first."""
        with self._engine.connect() as conn, conn.begin():
            check_scope(self._gate, self._audit, conn, principal, Scope.BACKUPS_MANAGE, "backup restore")
        try:
            opened = self.verify(path)
            self._check(opened.manifest)
            self._still_live(path)
            live = read_live(self._engine)
            if is_sqlite(self._engine):
                restored = self._restore_sqlite(opened, live, principal)
            else:
                restored = self._restore_postgresql(opened, live, principal)
        except Exception as exc:
            if not isinstance(exc, AuditError):  # a log that cannot record cannot record this either
                self._record_refusal(principal, exc, path)
            raise
        self._forget_keys()  # no key cached from before the restore is used after it
        return restored

    def _still_live(self, path: Path) -> None:
        """A backup the register says is destroyed or past its expiry is not restored: it should
        be gone (DPP 9: live copies within 90 days), and restoring it would bring back what aged out."""
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        with self._engine.connect() as conn:
            row = conn.execute(
                select(live_copies.c.id, live_copies.c.destroyed_at, live_copies.c.expires_at).where(
                    live_copies.c.sha256 == digest, live_copies.c.kind == KIND
                )
            ).first()
        if row is None:
            return
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        if row.destroyed_at is not None or expires <= self._clock():
            state = "recorded as destroyed" if row.destroyed_at is not None else "past its expiry"
            raise PayloadError(f"backup {row.id} is {state}; it is not restored (nothing was changed)")

    def _check(self, manifest: Manifest) -> None:
        backend = "sqlite" if is_sqlite(self._engine) else "postgresql"
        if manifest.backend != backend:
            raise PayloadError(f"this is a {manifest.backend} backup; the deployment runs on {backend}")
        head = self._audit.head()[0]
        if head < manifest.audit_last_seq:
            raise IntegrityError(
                f"the security log ends at event {head}, before the backup's {manifest.audit_last_seq}: it was rolled "
                "back or replaced, so deletions recorded after the backup cannot be re-applied; restore the "
                "security log first. Nothing was restored"
            )

    def _journal(self, name: str) -> Iterable[Mapping[str, Any]]:
        return self._audit.search(name=name)

    def _apply(self, conn: Connection, live: Live | None) -> tuple[Replayed, int | None, int | None]:
        """The replay, then retention, then the master-key check, on the restored copy."""
        replayed = replay(conn, self._journal, live)
        pii: int | None = 0
        expired: int | None = 0
        try:
            for _ in range(100_000):  # as the retention job would: the policy's purge, whoever restores
                ran = self._retention.run(conn, principal=RESTORE)
                pii, expired = (pii or 0) + ran.pii, (expired or 0) + ran.records
                if not ran.more:
                    break
        except NotImplementedError:  # retention is being built: the retention job catches up on its first run
            get_logger("sagevault.deletion").warning("restore: the retention purge is not available; not applied")
            pii = expired = None
        holds = getattr(self._keys, "holds", None)
        check_master_keys(conn, holds if callable(holds) else (lambda key_id: key_id == self._keys.key_id))
        return replayed, pii, expired

    def _migrated(self, engine: Engine, manifest: Manifest, revision: str = "heads") -> None:
        """Bring a restored copy to `revision`, by default the deployment's (a backup from an
        older SageVault); a revision this SageVault does not know is refused."""
        try:
            migrate(engine, self._chain, revision)
        except Exception as exc:  # alembic: an unknown revision, a failed step
            raise IntegrityError(
                f"the backup is at schema revision {manifest.schema_revision}, which this SageVault cannot migrate "
                f"({type(exc).__name__}); restore it with the SageVault version that wrote it. Nothing was restored"
            ) from None

    def _restore_sqlite(self, opened: Opened, live: Live | None, principal: Principal) -> Restored:
        if str(self._engine.url) == str(self._audit.engine.url):
            raise PayloadError(
                "the security log shares the vault's database file, so a restore would roll it back; keep it "
                "in a file of its own (audit_database_url) before restoring"
            )
        target_db = lite.database_path(self._engine)
        with lite.in_memory(opened.image) as (engine, memory):
            self._migrated(engine, opened.manifest)
            with engine.begin() as conn:
                replayed, pii, expired = self._apply(conn, live)
            target = lite.write_beside(memory, target_db)
        restored = Restored(opened.manifest, opened.sha256, replayed, pii, expired)
        try:
            self._record_done(principal, restored)
            self._engine.dispose()  # this process's connections to the old file go before it does
            lite.swap(target, target_db)
        except BaseException:
            lite.discard(target)
            raise
        return restored

    def _restore_postgresql(self, opened: Opened, live: Live | None, principal: Principal) -> Restored:
        admin = self._settings.resolved_database_admin_url
        with self._engine.connect() as conn:
            schema = str(conn.execute(text("SELECT current_schema()")).scalar_one())
        with pg.scratch_schema(admin) as (engine, scratch):
            self._migrated(engine, opened.manifest, opened.manifest.schema_revision)  # the tables the dump fills
            with engine.begin() as conn:
                pg.load(conn, scratch, opened.image)
            self._migrated(engine, opened.manifest)
            with engine.begin() as conn:
                replayed, pii, expired = self._apply(conn, live)
            restored = Restored(opened.manifest, opened.sha256, replayed, pii, expired)
            self._record_done(principal, restored)
            with pg.owner(admin) as owner, owner.begin() as conn:
                tables = pg.swap(conn, schema, scratch)
        pg.vacuum(admin, schema, tables)
        return restored

    def _record_done(self, principal: Principal, restored: Restored) -> None:
        """deletion:backup:restore, before the swap: a restore the log cannot record is not done."""
        self._audit.record(
            AuditEvent(
                name=EventName.DELETION_BACKUP_RESTORE,
                channel=principal.channel,
                actor=principal.id,
                operation="backup restore",
                counts=restored.counts(),
                fingerprint=restored.sha256,
            )
        )

    def _record_refusal(self, principal: Principal, error: BaseException, path: Path) -> None:
        outcome, reason = outcome_of(error)
        fingerprint = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        self._audit.record(
            AuditEvent(
                name=EventName.DELETION_BACKUP_RESTORE,
                channel=principal.channel,
                actor=principal.id,
                outcome=outcome,
                reason=reason,
                operation="backup restore",
                fingerprint=fingerprint,
            )
        )


def _shred_file(path: Path) -> None:
    """Overwrite a file with zeros, flush it to disk, and delete it. (On a copy-on-write or
    flash file system the old blocks may survive the overwrite; the file was encrypted.)"""
    try:
        size = path.stat().st_size
        with path.open("r+b") as fh:
            block = b"\0" * 65536
            for start in range(0, size, len(block)):
                fh.write(block[: min(len(block), size - start)])
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        path.unlink(missing_ok=True)
