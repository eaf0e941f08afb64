"""Tenant keys: created, wrapped by the master key, stored in `tenant_keys`, unwrapped on use
into a bounded-lifetime cache, rotated, retired and destroyed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from sagevault.crypto import BlindIndex, FieldCipher, KeyCache, KeyProvider, MasterKeys
from sagevault.errors import IntegrityError, RotationError

from ._schema import records, tenant_keys

DATA = "data"
INDEX = "index"
PRIMARY = "primary"
ACTIVE = "active"  # decrypt-only while a rotation moves records to the primary version
RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class KeyVersionInfo:
    purpose: str
    version: int
    status: str
    created_at: datetime
    retired_at: datetime | None
    records: int


def _context(tenant_id: str, purpose: str, version: int) -> dict[str, str]:
    return {"app": "sagevault", "tenant": tenant_id, "purpose": purpose, "version": str(version)}


class TenantKeyring:
    def __init__(self, provider: KeyProvider | MasterKeys, cache: KeyCache[FieldCipher | BlindIndex]) -> None:
        self._provider = provider if isinstance(provider, MasterKeys) else MasterKeys(provider)
        self._cache = cache

    @property
    def master_key_id(self) -> str:
        return self._provider.key_id

    def _insert(self, conn: Connection, tenant_id: str, purpose: str, version: int, status: str, now: datetime) -> None:
        material = os.urandom(32)
        conn.execute(
            insert(tenant_keys).values(
                tenant_id=tenant_id,
                purpose=purpose,
                version=version,
                status=status,
                wrapped=self._provider.wrap(material, _context(tenant_id, purpose, version)),
                master_key_id=self._provider.key_id,
                created_at=now,
            )
        )

    def create(self, conn: Connection, tenant_id: str, now: datetime) -> None:
        self._insert(conn, tenant_id, DATA, 1, PRIMARY, now)
        self._insert(conn, tenant_id, INDEX, 1, PRIMARY, now)

    def _unwrap(self, conn: Connection, tenant_id: str, purpose: str, version: int) -> bytes:
        row = conn.execute(
            select(tenant_keys.c.wrapped, tenant_keys.c.master_key_id).where(
                tenant_keys.c.tenant_id == tenant_id,
                tenant_keys.c.purpose == purpose,
                tenant_keys.c.version == version,
            )
        ).first()
        if row is None or row.wrapped is None:
            raise IntegrityError(
                f"tenant {tenant_id} has no usable {purpose} key version {version}; a record refers to a "
                "key that was retired or destroyed, so the database is inconsistent"
            )
        return self._provider.unwrap(row.wrapped, _context(tenant_id, purpose, version), row.master_key_id)

    # --- the master key -------------------------------------------------------------------

    def rewrap(self, conn: Connection, limit: int) -> tuple[int, int]:
        """Wrap up to `limit` tenant keys that an older master key wrapped again with the current
        one (the key material, and so every record, stays as it is). Returns how many were
        re-wrapped and how many are left."""
        current = self._provider.key_id
        stale = (tenant_keys.c.wrapped.is_not(None), tenant_keys.c.master_key_id != current)
        rows = conn.execute(
            select(
                tenant_keys.c.tenant_id,
                tenant_keys.c.purpose,
                tenant_keys.c.version,
                tenant_keys.c.wrapped,
                tenant_keys.c.master_key_id,
            )
            .where(*stale)
            .order_by(tenant_keys.c.tenant_id, tenant_keys.c.purpose, tenant_keys.c.version)
            .limit(limit)
        ).all()
        for tenant_id, purpose, version, wrapped, old_id in rows:
            context = _context(tenant_id, purpose, version)
            material = self._provider.unwrap(wrapped, context, old_id)
            conn.execute(
                update(tenant_keys)
                .where(
                    tenant_keys.c.tenant_id == tenant_id,
                    tenant_keys.c.purpose == purpose,
                    tenant_keys.c.version == version,
                    tenant_keys.c.master_key_id == old_id,
                )
                .values(wrapped=self._provider.current.wrap(material, context), master_key_id=current)
            )
        left = conn.execute(select(func.count()).select_from(tenant_keys).where(*stale)).scalar_one()
        return len(rows), int(left)

    def master_key_ids(self, conn: Connection) -> dict[str, int]:
        """How many live tenant keys each master key wraps."""
        return {
            str(k): int(n)
            for k, n in conn.execute(
                select(tenant_keys.c.master_key_id, func.count())
                .where(tenant_keys.c.wrapped.is_not(None))
                .group_by(tenant_keys.c.master_key_id)
            ).all()
        }

    def cipher(self, conn: Connection, tenant_id: str, version: int) -> FieldCipher:
        key = (tenant_id, DATA, version)
        cached = self._cache.get(key)
        if isinstance(cached, FieldCipher):
            return cached
        cipher = FieldCipher(self._unwrap(conn, tenant_id, DATA, version), tenant_id, version)
        self._cache.put(key, cipher)
        return cipher

    def primary_version(self, conn: Connection, tenant_id: str, purpose: str = DATA) -> int:
        version = conn.execute(
            select(tenant_keys.c.version).where(
                tenant_keys.c.tenant_id == tenant_id, tenant_keys.c.purpose == purpose, tenant_keys.c.status == PRIMARY
            )
        ).scalar_one_or_none()
        if version is None:
            raise IntegrityError(f"tenant {tenant_id} has no primary {purpose} key; the database is inconsistent")
        return int(version)

    def primary(self, conn: Connection, tenant_id: str) -> FieldCipher:
        return self.cipher(conn, tenant_id, self.primary_version(conn, tenant_id))

    def blind_index(self, conn: Connection, tenant_id: str, version: int | None = None) -> BlindIndex:
        """The tenant's blind index under `version` of its index key (default: the primary one,
        which new tokens are made with)."""
        version = version if version is not None else self.primary_version(conn, tenant_id, INDEX)
        key = (tenant_id, INDEX, version)
        cached = self._cache.get(key)
        if isinstance(cached, BlindIndex):
            return cached
        index = BlindIndex(self._unwrap(conn, tenant_id, INDEX, version), version)
        self._cache.put(key, index)
        return index

    def blind_indexes(self, conn: Connection, tenant_id: str) -> list[BlindIndex]:
        """Every index key version records may still carry tokens of: the primary one, and the
        old one while a rotation re-tokenises (a search asks with each)."""
        versions = conn.execute(
            select(tenant_keys.c.version)
            .where(
                tenant_keys.c.tenant_id == tenant_id,
                tenant_keys.c.purpose == INDEX,
                tenant_keys.c.status.in_((PRIMARY, ACTIVE)),
            )
            .order_by(tenant_keys.c.version.desc())
        ).scalars()
        return [self.blind_index(conn, tenant_id, int(v)) for v in versions]

    # --- rotation -------------------------------------------------------------------------

    def begin_rotation(self, conn: Connection, tenant_id: str, now: datetime, purpose: str = DATA) -> int:
        """Make a new primary version of the `purpose` key (or return the one an unfinished
        rotation made)."""
        rows = conn.execute(
            select(tenant_keys.c.version, tenant_keys.c.status).where(
                tenant_keys.c.tenant_id == tenant_id, tenant_keys.c.purpose == purpose
            )
        ).all()
        primary = int(max(v for v, s in rows if s == PRIMARY))
        if any(s == ACTIVE for _, s in rows):
            return primary  # resume: records still move to the current primary
        conn.execute(
            update(tenant_keys)
            .where(
                tenant_keys.c.tenant_id == tenant_id,
                tenant_keys.c.purpose == purpose,
                tenant_keys.c.version == primary,
            )
            .values(status=ACTIVE)
        )
        new = int(max(v for v, _ in rows)) + 1
        self._insert(conn, tenant_id, purpose, new, PRIMARY, now)
        return new

    def finish_rotation(self, conn: Connection, tenant_id: str, now: datetime, purpose: str = DATA) -> list[int]:
        """Retire every old version of the `purpose` key once no record uses it; their key
        material is erased."""
        primary = self.primary_version(conn, tenant_id, purpose)
        column = records.c.key_version if purpose == DATA else records.c.bi_version
        query = select(func.count()).where(records.c.tenant_id == tenant_id, column != primary)
        left = conn.execute(query).scalar_one()
        if left:
            what, command = ("key", "rotate") if purpose == DATA else ("index key", "rotate-index")
            raise RotationError(
                f"{left} records of tenant {tenant_id} are still under an old {what} version; "
                f"run `sagevault keys {command}` again to finish"
            )
        old = list(
            conn.execute(
                update(tenant_keys)
                .where(
                    tenant_keys.c.tenant_id == tenant_id,
                    tenant_keys.c.purpose == purpose,
                    tenant_keys.c.status == ACTIVE,
                )
                .values(status=RETIRED, wrapped=None, retired_at=now)
                .returning(tenant_keys.c.version)
            ).scalars()
        )
        if old:
            self._cache.evict_tenant(tenant_id)  # drop the retired keys now, not at TTL
        return old

    # --- shred ----------------------------------------------------------------------------

    def destroy(self, conn: Connection, tenant_id: str) -> list[tuple[str, int]]:
        """Delete every wrapped key of the tenant and every cached copy. Returns what went."""
        gone = [
            (p, v)
            for p, v in conn.execute(
                delete(tenant_keys)
                .where(tenant_keys.c.tenant_id == tenant_id)
                .returning(tenant_keys.c.purpose, tenant_keys.c.version)
            ).all()
        ]
        self.forget(tenant_id)
        return sorted(gone)

    def forget(self, tenant_id: str) -> None:
        """Drop every cached copy of a shredded tenant's keys and never cache them again in this
        process. The shred calls it in the process that served it; every other process (another
        `serve` worker) calls it when it reads the tenant's tombstone, instead of keeping the keys
        until the cache's TTL."""
        self._cache.evict_tenant(tenant_id, forever=True)

    def forget_all(self) -> None:
        """Drop every cached key (a backup restore: no key cached from before it is used after)."""
        self._cache.clear()

    def status(self, conn: Connection, tenant_id: str) -> list[KeyVersionInfo]:
        counts: dict[int, int] = dict(
            conn.execute(
                select(records.c.key_version, func.count())
                .where(records.c.tenant_id == tenant_id)
                .group_by(records.c.key_version)
            ).all()
        )
        rows = conn.execute(
            select(
                tenant_keys.c.purpose,
                tenant_keys.c.version,
                tenant_keys.c.status,
                tenant_keys.c.created_at,
                tenant_keys.c.retired_at,
            )
            .where(and_(tenant_keys.c.tenant_id == tenant_id))
            .order_by(tenant_keys.c.purpose, tenant_keys.c.version)
        ).all()
        by_index: dict[int, int] = dict(
            conn.execute(
                select(records.c.bi_version, func.count())
                .where(records.c.tenant_id == tenant_id)
                .group_by(records.c.bi_version)
            ).all()
        )
        return [
            KeyVersionInfo(p, v, s, c, r, int((counts if p == DATA else by_index).get(v, 0))) for p, v, s, c, r in rows
        ]
