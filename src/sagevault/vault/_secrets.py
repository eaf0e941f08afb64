"""A tenant's own secrets (today: the seller's SP-API refresh token), sealed under the tenant's
data key with `secret/<name>` as associated data.

They live and die with the tenant's keys: a crypto-shred makes them unreadable (and deletes the
rows), a data key rotation re-seals them under the new primary version before the old one is
retired. A value is only ever handed to the caller that asked for it, never logged or shown."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from sagevault.errors import IntegrityError, PayloadError, shown
from sagevault.identity import Principal, Scope

from ._access import AccessGate
from ._keyring import TenantKeyring
from ._schema import tenant_secrets

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise PayloadError(f"secret name {shown(name)}: lower-case letters, digits and dashes, up to 40")
    return name


class SecretUnreadable(IntegrityError):
    """A sealed secret that no key of its tenant opens (keys restored from an older backup, or damage)."""


def _write(keys: TenantKeyring, conn: Connection, tenant_id: str, name: str, value: str) -> None:
    cipher = keys.primary(conn, tenant_id)
    sealed = cipher.seal_values(f"secret/{name}", [("value", value)])
    values = {"key_version": cipher.version, "sealed": sealed, "updated_at": datetime.now(UTC)}
    key = (tenant_secrets.c.tenant_id == tenant_id) & (tenant_secrets.c.name == name)
    if conn.execute(update(tenant_secrets).where(key).values(**values)).rowcount == 0:
        conn.execute(insert(tenant_secrets).values(tenant_id=tenant_id, name=name, **values))


def _open(keys: TenantKeyring, conn: Connection, tenant_id: str, name: str, version: int, sealed: bytes) -> str:
    try:
        value = keys.cipher(conn, tenant_id, version).open(f"secret/{name}", sealed)["value"]
    except Exception:  # a retired or missing key version, or a damaged blob: say what to do
        raise SecretUnreadable(
            f"tenant {tenant_id}'s {name} cannot be opened with its keys; store it again "
            "(for an SP-API refresh token: `sagevault connect` the seller again)"
        ) from None
    return value[1:].decode()  # sealed as a string (`seal_values`: b"s" + UTF-8)


def reseal_secrets(keys: TenantKeyring, conn: Connection, tenant_id: str) -> int:
    """Re-seal every secret of the tenant not under its primary data key (a rotation's last step,
    before the old versions are retired); how many moved."""
    primary = keys.primary(conn, tenant_id).version
    rows = conn.execute(
        select(tenant_secrets.c.name, tenant_secrets.c.key_version, tenant_secrets.c.sealed).where(
            tenant_secrets.c.tenant_id == tenant_id, tenant_secrets.c.key_version != primary
        )
    ).all()
    for row in rows:
        _write(keys, conn, tenant_id, row.name, _open(keys, conn, tenant_id, row.name, row.key_version, row.sealed))
    return len(rows)


def forget_secrets(conn: Connection, tenant_id: str) -> None:
    """Delete every sealed secret of a tenant being shredded (unreadable once its keys go)."""
    conn.execute(delete(tenant_secrets).where(tenant_secrets.c.tenant_id == tenant_id))


class TenantSecrets:
    """`Vault.secrets`: put, read and delete a tenant's sealed secrets. Storing or deleting one
    takes the tenant-admin scope; reading one takes the ingest scope (what the sync acting for the
    tenant holds)."""

    def __init__(self, keyring: TenantKeyring, *, gate: AccessGate, live_tenant: Callable[[Connection, str], Any]):
        self._keys = keyring
        self._gate = gate
        self._live_tenant = live_tenant

    def put(self, conn: Connection, tenant_id: str, name: str, value: str, *, principal: Principal) -> None:
        """Seal `value` under the tenant's primary data key, replacing an earlier one."""
        self._gate.check(conn, principal, Scope.TENANTS_ADMIN, tenant_id)
        self._live_tenant(conn, tenant_id)
        _write(self._keys, conn, tenant_id, _check_name(name), value)

    def get(self, conn: Connection, tenant_id: str, name: str, *, principal: Principal) -> str | None:
        """The secret's value, or None when the tenant has none of that name."""
        self._gate.check(conn, principal, Scope.RECORDS_INGEST, tenant_id)
        self._live_tenant(conn, tenant_id)
        row = conn.execute(
            select(tenant_secrets.c.key_version, tenant_secrets.c.sealed).where(
                tenant_secrets.c.tenant_id == tenant_id, tenant_secrets.c.name == _check_name(name)
            )
        ).first()
        if row is None:
            return None
        return _open(self._keys, conn, tenant_id, name, int(row.key_version), bytes(row.sealed))

    def delete(self, conn: Connection, tenant_id: str, name: str, *, principal: Principal) -> bool:
        """Delete the secret; whether there was one."""
        self._gate.check(conn, principal, Scope.TENANTS_ADMIN, tenant_id)
        key = (tenant_secrets.c.tenant_id == tenant_id) & (tenant_secrets.c.name == _check_name(name))
        return bool(conn.execute(delete(tenant_secrets).where(key)).rowcount)
