"""Tenant keys over their life: status, rotation of the data key (records re-encrypted), rotation
of the blind-index key (records re-tokenised, searches finding every record meanwhile), and
re-wrapping every tenant key under a new master key. Each step is one unit of work of its
caller's, resumable: run it again until it says it is complete."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, AuditSink, EventName
from sagevault.catalog import Catalog, Document, generic_path
from sagevault.crypto import FieldCipher, PiiBlob, decode_value
from sagevault.errors import AccessDenied, RotationError, shown
from sagevault.identity import Principal, Scope

from ._access import AccessGate
from ._audited import audited, gated
from ._ingest import index_slots
from ._keyring import DATA, INDEX, KeyVersionInfo, TenantKeyring
from ._schema import records
from ._secrets import reseal_secrets
from ._views import RewrapStep, RotationStep


class KeyLifecycle:
    """`Vault.keys`: what the CLI's `keys` commands and the API's key routes run."""

    def __init__(
        self,
        keys: TenantKeyring,
        *,
        audit: AuditSink,
        gate: AccessGate,
        live_tenant: Callable[[Connection, str], Any],
        catalog: Catalog,
    ) -> None:
        self._keys = keys
        self._audit = audit
        self._gate = gate
        self._live_tenant = live_tenant
        # Per document, the search kind of each searchable PII path: what re-tokenising reads.
        self._kinds: dict[Document, dict[str, str]] = {
            doc: {f.path: f.search for f in catalog.fields(doc) if f.pii and f.search} for doc in Document
        }

    def status(self, conn: Connection, tenant_id: str, *, principal: Principal) -> list[KeyVersionInfo]:
        gated(self, conn, principal, Scope.KEYS_READ, tenant_id, operation="key status")
        self._live_tenant(conn, tenant_id)
        return self._keys.status(conn, tenant_id)

    # --- the data key ---------------------------------------------------------------------

    @audited(EventName.STORAGE_KEYSET_ROTATE, "keys rotate", lambda v: ((), {"version": v}))
    def begin_rotation(self, conn: Connection, tenant_id: str, *, principal: Principal) -> int:
        """Add a new primary data key version (or resume an unfinished rotation). New writes
        use it at once; reads of records still under the old version keep working."""
        self._gate.check(conn, principal, Scope.KEYS_ROTATE, tenant_id)
        self._live_tenant(conn, tenant_id)
        return self._keys.begin_rotation(conn, tenant_id, datetime.now(UTC))

    def rotation_remaining(self, conn: Connection, tenant_id: str, target_version: int, *, principal: Principal) -> int:
        gated(self, conn, principal, Scope.KEYS_READ, tenant_id, operation="rotation remaining")
        return _remaining(conn, tenant_id, records.c.key_version, target_version)

    @audited(EventName.STORAGE_KEYSET_ROTATE, "keys reencrypt", lambda n: ((), {"records": n}))
    def reencrypt_batch(
        self, conn: Connection, tenant_id: str, target_version: int, *, principal: Principal, limit: int = 500
    ) -> int:
        """Move up to `limit` records to `target_version`; returns how many moved (0 = done)."""
        self._gate.check(conn, principal, Scope.KEYS_ROTATE, tenant_id)
        self._live_tenant(conn, tenant_id)
        rows = conn.execute(
            select(records.c.id, records.c.key_version, records.c.pii)
            .where(records.c.tenant_id == tenant_id, records.c.key_version != target_version)
            .limit(limit)
        ).all()
        if not rows:
            return 0
        new = self._keys.cipher(conn, tenant_id, target_version)
        olds: dict[int, FieldCipher] = {}
        for rid, version, blob in rows:
            old = olds.get(version) or olds.setdefault(version, self._keys.cipher(conn, tenant_id, version))
            plain = list(old.open(str(rid), blob).items())
            conn.execute(
                update(records)
                .where(records.c.id == rid, records.c.key_version == version)
                .values(pii=new.seal(str(rid), plain), key_version=target_version)
            )
        return len(rows)

    @audited(EventName.STORAGE_KEYSET_RETIRE, "keys retire", lambda vs: ((), {"versions": len(vs)}))
    def finish_rotation(self, conn: Connection, tenant_id: str, *, principal: Principal) -> list[int]:
        """Retire the old versions (their key material is erased); fails if a record still needs one."""
        self._gate.check(conn, principal, Scope.KEYS_ROTATE, tenant_id)
        self._live_tenant(conn, tenant_id)
        reseal_secrets(self._keys, conn, tenant_id)  # before the old versions go
        return self._keys.finish_rotation(conn, tenant_id, datetime.now(UTC))

    def rotate_step(
        self,
        conn: Connection,
        tenant_id: str,
        *,
        principal: Principal,
        limit: int = 500,
        continuing: int | None = None,
    ) -> RotationStep:
        """One step of a data key rotation, as the CLI and the API run it: re-encrypt up to
        `limit` records to the primary version, and once none is left retire the old versions.
        Without `continuing`, the step begins a rotation (a new primary data key version) or
        resumes the one under way; a call after a complete rotation begins the next one (the
        API's steps). With `continuing=N` (the primary version an earlier step reported) it only
        goes on with that rotation: if another client finished it meanwhile, the step reports it
        complete instead of beginning another. Call it until `complete`."""
        target = self._target(conn, tenant_id, DATA, principal, continuing)
        moved = self.reencrypt_batch(conn, tenant_id, target, principal=principal, limit=limit)
        remaining = self.rotation_remaining(conn, tenant_id, target, principal=principal)
        retired = self.finish_rotation(conn, tenant_id, principal=principal) if not remaining else []
        return RotationStep(tenant_id, target, moved, remaining, retired)

    def _target(
        self, conn: Connection, tenant_id: str, purpose: str, principal: Principal, continuing: int | None
    ) -> int:
        if continuing is None:
            if purpose == DATA:
                return self.begin_rotation(conn, tenant_id, principal=principal)
            return self.begin_index_rotation(conn, tenant_id, principal=principal)
        gated(self, conn, principal, Scope.KEYS_ROTATE, tenant_id, operation="keys rotate")
        self._live_tenant(conn, tenant_id)
        target = self._keys.primary_version(conn, tenant_id, purpose)
        if target != continuing:
            raise RotationError(
                f"tenant {shown(tenant_id)} is at {purpose} key version {target}, not {continuing}: another "
                "rotation began meanwhile; run `sagevault keys status` and rotate again if needed"
            )
        return target

    # --- the blind-index key --------------------------------------------------------------

    @audited(EventName.STORAGE_KEYSET_ROTATE, "index rotate", lambda v: ((), {"version": v}))
    def begin_index_rotation(self, conn: Connection, tenant_id: str, *, principal: Principal) -> int:
        """Add a new primary index key version (or resume an unfinished rotation). New records
        get tokens under it at once; searches ask with both versions until the rotation ends."""
        self._gate.check(conn, principal, Scope.KEYS_ROTATE, tenant_id)
        self._live_tenant(conn, tenant_id)
        return self._keys.begin_rotation(conn, tenant_id, datetime.now(UTC), INDEX)

    @audited(EventName.STORAGE_KEYSET_ROTATE, "index retokenise", lambda n: ((), {"records": n}))
    def retokenise_batch(
        self, conn: Connection, tenant_id: str, target_version: int, *, principal: Principal, limit: int = 500
    ) -> int:
        """Give up to `limit` records their search tokens under index key `target_version`
        (their PII is decrypted in memory for it, never stored in clear); how many moved."""
        self._gate.check(conn, principal, Scope.KEYS_ROTATE, tenant_id)
        self._live_tenant(conn, tenant_id)
        rows = conn.execute(
            select(records.c.id, records.c.document, records.c.key_version, records.c.bi_version, records.c.pii)
            .where(records.c.tenant_id == tenant_id, records.c.bi_version != target_version)
            .limit(limit)
        ).all()
        index = self._keys.blind_index(conn, tenant_id, target_version)
        ciphers: dict[int, FieldCipher] = {}
        for rid, document, key_version, bi_version, blob in rows:
            cipher = ciphers.get(key_version) or ciphers.setdefault(
                key_version, self._keys.cipher(conn, tenant_id, key_version)
            )
            kinds = self._kinds[Document(document)]
            wanted = {p: kind for p in PiiBlob.paths(blob) if (kind := kinds.get(generic_path(p))) is not None}
            searchable: set[tuple[str, str]] = set()
            for path, plain in cipher.open(str(rid), blob, wanted).items():
                value = decode_value(plain)
                if type(value) is str:
                    searchable.add((wanted[path], value))
            conn.execute(
                update(records)
                .where(records.c.id == rid, records.c.bi_version == bi_version)
                .values(bi_version=target_version, **index_slots(searchable, index.token))
            )
        return len(rows)

    @audited(EventName.STORAGE_KEYSET_RETIRE, "index retire", lambda vs: ((), {"versions": len(vs)}))
    def finish_index_rotation(self, conn: Connection, tenant_id: str, *, principal: Principal) -> list[int]:
        """Retire the old index key versions once no record carries their tokens."""
        self._gate.check(conn, principal, Scope.KEYS_ROTATE, tenant_id)
        self._live_tenant(conn, tenant_id)
        return self._keys.finish_rotation(conn, tenant_id, datetime.now(UTC), INDEX)

    def rotate_index_step(
        self,
        conn: Connection,
        tenant_id: str,
        *,
        principal: Principal,
        limit: int = 500,
        continuing: int | None = None,
    ) -> RotationStep:
        """One step of an index key rotation, as `rotate_step` is of a data key rotation:
        re-tokenise up to `limit` records, and once none is left retire the old index key."""
        target = self._target(conn, tenant_id, INDEX, principal, continuing)
        moved = self.retokenise_batch(conn, tenant_id, target, principal=principal, limit=limit)
        gated(self, conn, principal, Scope.KEYS_READ, tenant_id, operation="rotation remaining")
        remaining = _remaining(conn, tenant_id, records.c.bi_version, target)
        retired = self.finish_index_rotation(conn, tenant_id, principal=principal) if not remaining else []
        return RotationStep(tenant_id, target, moved, remaining, retired)

    # --- the master key -------------------------------------------------------------------

    def rewrap_step(self, conn: Connection, *, principal: Principal, limit: int = 500) -> RewrapStep:
        """Wrap up to `limit` tenant keys again with the current master key (the new one while a
        master key rotation runs); the local operator only, who holds the key files. Recorded
        as storage:masterkey:rotate with the counts."""
        if principal.kind != "operator":
            raise AccessDenied("only the local operator, who holds the master key, can rotate it")
        moved, remaining = self._keys.rewrap(conn, limit)
        self._audit.record(
            AuditEvent(
                name=EventName.STORAGE_MASTERKEY_ROTATE,
                channel=principal.channel,
                actor=principal.id,
                operation="master rewrap",
                counts={"keys": moved, "remaining": remaining},
            )
        )
        return RewrapStep(self._keys.master_key_id, moved, remaining)

    def master_key_ids(self, conn: Connection) -> dict[str, int]:
        """How many live tenant keys each master key wraps (one entry once a rotation is done)."""
        return self._keys.master_key_ids(conn)


def _remaining(conn: Connection, tenant_id: str, column: Any, target_version: int) -> int:
    query = select(func.count()).where(records.c.tenant_id == tenant_id, column != target_version)
    return int(conn.execute(query).scalar_one())
