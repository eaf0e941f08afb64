"""What a restore re-applies to the restored database before anything can read it.

The journal is the security log, which a restore never rolls back (on SQLite it is a database of
its own; on PostgreSQL its tables are never dumped nor swapped): every successful
`storage:keyset:destroy` shreds its tenant again (keys deleted, tombstone set, rows deleted), and
every successful `storage:record:delete` deletes its records again (record ids are never reused,
so an id names one record for ever). Every event in the log is replayed, not only those after the
backup: an event is made durable before the transaction it describes commits, so a backup taken in
between holds rows its event already names. Replaying is idempotent.

When the live database can still be read, its tombstones (shredded tenants, with their receipts)
are applied too, and its registers (live copies, deletion requests, legal holds) replace the
backup's: a restore never forgets a copy made, a request received or a hold placed after the
backup was taken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, MetaData, Table, delete, func, insert, inspect, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from sagevault.db import one_of
from sagevault.errors import IntegrityError
from sagevault.vault import vault_metadata

tenants = vault_metadata.tables["tenants"]
tenant_keys = vault_metadata.tables["tenant_keys"]
records = vault_metadata.tables["records"]
record_ids = vault_metadata.tables["record_ids"]
# A restore brings back Amazon Information (these tables); every other table keeps its live rows:
# accounts, API keys, grants, sessions, allow-lists, kill switches, alarms and the detector's
# cursor, incidents, the registers of copies, requests and holds. A key revoked or an account
# disabled after the backup stays so.
VAULT_DATA = frozenset({"tenants", "tenant_keys", "records", "record_ids", "alembic_version"})
CHUNK = 500

Journal = Callable[[str], Iterable[Mapping[str, Any]]]  # events of one name, by sequence number


@dataclass
class Live:
    """What the live database says, read before the restore replaces it."""

    tombstones: list[dict[str, Any]] = field(default_factory=list)  # shredded tenants' rows
    registers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)  # every table kept live, in dependency order
    counters: dict[str, int] = field(default_factory=dict)  # record id counters: never rolled back


@dataclass
class Replayed:
    tenants: int = 0  # tenants shredded again in the restored copy
    tenant_records: int = 0  # their rows deleted
    records: int = 0  # records deleted again (deletion requests, buyers' erasure)
    registers: bool = False  # the live registers replaced the backup's
    restricted: int = 0  # records whose restriction (or its lifting) was applied again
    rectified: int = 0  # records rectified since the backup: restricted until rectified again


def read_live(engine: Engine) -> Live | None:
    """The live database's tombstones and registers, or None when it cannot be read."""
    try:
        with engine.connect() as conn, conn.begin():
            tombstones = [
                dict(r._mapping) for r in conn.execute(select(tenants).where(tenants.c.shredded_at.is_not(None)))
            ]
            reflected = MetaData()
            reflected.reflect(conn)
            kept = [  # the security log's tables (PostgreSQL may hold them here too) are never touched
                t
                for t in reflected.sorted_tables
                if t.name not in VAULT_DATA and not t.name.startswith(("audit", "alembic"))
            ]
            registers = {t.name: [dict(r._mapping) for r in conn.execute(select(t))] for t in kept}
            counters = {r.name: int(r.last) for r in conn.execute(select(record_ids))}
    except SQLAlchemyError:
        return None
    return Live(tombstones, registers, tables=kept, counters=counters)


def _when(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _shredded(journal: Journal, live: Live | None) -> Iterator[tuple[str, datetime, dict[str, Any] | None, Any]]:
    """(tenant, when, receipt, live row) of every tenant shredded: the live tombstones first."""
    seen: set[str] = set()
    for row in live.tombstones if live else []:
        seen.add(row["id"])
        yield row["id"], row["shredded_at"], row["shred_receipt"], row
    for event in journal("storage:keyset:destroy"):
        tenant = event["tenant_id"]
        if event["outcome"] == "success" and tenant and tenant not in seen:
            seen.add(tenant)
            yield tenant, _when(event["at"]), None, None


def _shred(conn: Connection, tenant: str, at: datetime, receipt: Any, row: Any) -> tuple[bool, int]:
    keys = conn.execute(
        delete(tenant_keys)
        .where(tenant_keys.c.tenant_id == tenant)
        .returning(tenant_keys.c.purpose, tenant_keys.c.version)
    ).all()
    state = conn.execute(select(tenants.c.shredded_at).where(tenants.c.id == tenant)).first()
    if receipt is None:
        receipt = {
            "tenant_id": tenant,
            "shredded_at": at.isoformat(),
            "keys_destroyed": [f"{p}:v{v}" for p, v in sorted(keys)],
            "method": "crypto-shred re-applied by a backup restore (storage:keyset:destroy in the security log)",
        }
    if state is None and row is not None:
        conn.execute(insert(tenants).values(**row))  # a tenant made after the backup: its tombstone
    elif state is not None and state.shredded_at is None:
        conn.execute(update(tenants).where(tenants.c.id == tenant).values(shredded_at=at, shred_receipt=receipt))
    gone = conn.execute(delete(records).where(records.c.tenant_id == tenant)).rowcount
    return bool(keys) or (state is not None and state.shredded_at is None) or gone > 0, gone


def replay(conn: Connection, journal: Journal, live: Live | None) -> Replayed:
    """Re-apply every shred and deletion to the restored database on `conn`."""
    done = Replayed()
    for tenant, at, receipt, row in _shredded(journal, live):
        changed, gone = _shred(conn, tenant, at, receipt, row)
        done.tenants += changed
        done.tenant_records += gone
    for event in journal("storage:record:delete"):
        ids = [int(i) for i in event["record_ids"]]
        if event["outcome"] != "success" or not ids:
            continue
        for i in range(0, len(ids), CHUNK):
            done.records += conn.execute(delete(records).where(one_of(conn, records.c.id, ids[i : i + CHUNK]))).rowcount
    highest = 0
    for name in ("storage:record:delete", "vault:field:rectify", "vault:record:restrict"):
        for event in journal(name):
            highest = max([highest, *(int(i) for i in event["record_ids"])])
    done.restricted, done.rectified = _restrictions(conn, journal)
    _counters(conn, live, highest)
    if live is not None:
        present = set(inspect(conn).get_table_names())
        tables = [t for t in live.tables if t.name in present]
        for table in reversed(tables):
            conn.execute(delete(table))
        for table in tables:
            if live.registers[table.name]:
                conn.execute(insert(table), live.registers[table.name])
        done.registers = True
    return done


def _restrictions(conn: Connection, journal: Journal) -> tuple[int, int]:
    """Every restriction and its lifting, in order; then every record rectified since is
    restricted (the backup holds the value before the correction): rectify it again and lift it."""
    restricted = 0
    for event in journal("vault:record:restrict"):
        ids = [int(i) for i in event["record_ids"]]
        if event["outcome"] != "success" or not ids:
            continue
        flag = _when(event["at"]) if event["counts"].get("restricted") else None
        for i in range(0, len(ids), CHUNK):
            restricted += conn.execute(
                update(records).where(one_of(conn, records.c.id, ids[i : i + CHUNK])).values(restricted_at=flag)
            ).rowcount
    rectified = 0
    for event in journal("vault:field:rectify"):
        ids = [int(i) for i in event["record_ids"]]
        if event["outcome"] != "success" or not ids:
            continue
        rectified += conn.execute(
            update(records).where(one_of(conn, records.c.id, ids)).values(restricted_at=_when(event["at"]))
        ).rowcount
    return restricted, rectified


def _counters(conn: Connection, live: Live | None, highest: int) -> None:
    """Record ids are never handed out twice: the counter goes no lower than the live one, nor
    than any id the security log names."""
    for row in conn.execute(select(record_ids)).all():
        top = max(int(row.last), highest, (live.counters.get(row.name, 0) if live else 0))
        conn.execute(update(record_ids).where(record_ids.c.name == row.name).values(last=top))


def check_master_keys(conn: Connection, holds: Callable[[str], bool]) -> None:
    """Refuse a restore whose tenant keys are wrapped by a master key this deployment no longer
    holds (retired after the backup was taken): its data could not be read."""
    used = conn.execute(
        select(tenant_keys.c.master_key_id, func.count())
        .where(tenant_keys.c.wrapped.is_not(None))
        .group_by(tenant_keys.c.master_key_id)
    ).all()
    lost = sorted(str(k) for k, _ in used if not holds(str(k)))
    if lost:
        raise IntegrityError(
            f"the backup's tenant keys are wrapped by master key {lost[0]}, which this deployment no longer "
            "holds (it was retired after the backup was taken): nothing in it could be read; nothing was restored"
        )
