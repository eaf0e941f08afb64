"""What deletion, return and buyers' rights do to records: find a buyer's orders by blind index,
export records decrypted (a return bundle), delete records (their blind-index tokens go with the
row), rectify a field, restrict or allow processing, and verify that a scope is gone. Each is
checked by the gate and recorded as a security event naming the records by id."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, AuditSink, EventName
from sagevault.catalog import Catalog, Document, Purpose, generic_path
from sagevault.crypto import SEARCH_KINDS, decode_value
from sagevault.db import one_of
from sagevault.errors import IntegrityError, PayloadError, RecordNotFound, SageVaultError, shown
from sagevault.identity import Principal, Scope, event_tenant

from ._access import AccessGate
from ._ingest import CHUNK, index_slots
from ._keyring import TenantKeyring
from ._schema import BLIND_INDEX_COLUMNS, BLIND_INDEX_SLOTS, records, tenant_keys
from ._split import UNKNOWN_PATH, set_path

EVENT_IDS = 1000  # record ids per security event


@dataclass(frozen=True)
class Exported:
    """One record as it was received: the clear part with its PII put back."""

    record_id: int
    order_id: str
    document: str
    operation: str
    retrieved_at: str
    body: dict[str, Any]
    unknown: dict[str, Any] | None  # fields the catalog did not know (kept encrypted, returned as such)


@dataclass(frozen=True)
class Scan:
    """What is left of a scope: rows, and of those, ciphertexts that can still be opened."""

    rows: int
    openable: int
    live_keys: int  # for a whole tenant: key versions still holding material

    @property
    def gone(self) -> bool:
        return self.rows == 0 and self.openable == 0 and self.live_keys == 0


class RecordRights:
    def __init__(
        self,
        keyring: TenantKeyring,
        *,
        audit: AuditSink,
        gate: AccessGate,
        catalog: Catalog,
        live_tenant: Callable[[Connection, str], Any],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._keys = keyring
        self._audit = audit
        self._gate = gate
        self._catalog = catalog
        self._live_tenant = live_tenant
        self._clock = clock or (lambda: datetime.now(UTC))

    def _events(self, name: EventName, principal: Principal, tenant_id: str, ids: Sequence[int], **counts: int) -> None:
        """One event per `EVENT_IDS` records, all durable together."""
        chunks = [list(ids[i : i + EVENT_IDS]) for i in range(0, len(ids), EVENT_IDS)] or [[]]
        self._audit.record_many(
            [
                AuditEvent(
                    name=name,
                    channel=principal.channel,
                    actor=principal.id,
                    tenant_id=event_tenant(tenant_id),
                    record_ids=chunk,
                    counts={"records": len(chunk), **counts},
                    operation="deletion",
                )
                for chunk in chunks
            ]
        )

    # --- scope ------------------------------------------------------------------------------

    def orders_of(self, conn: Connection, tenant_id: str, order_ids: Sequence[str]) -> list[int]:
        """The record ids of the orders named (every document of each)."""
        ids: list[int] = []
        for i in range(0, len(order_ids), CHUNK):
            chunk = list(order_ids[i : i + CHUNK])
            ids += conn.execute(
                select(records.c.id).where(records.c.tenant_id == tenant_id, one_of(conn, records.c.order_id, chunk))
            ).scalars()
        return sorted(ids)

    def tenant_records(self, conn: Connection, tenant_id: str) -> list[int]:
        return sorted(conn.execute(select(records.c.id).where(records.c.tenant_id == tenant_id)).scalars())

    def buyer_orders(
        self, conn: Connection, tenant_id: str, identifiers: dict[str, str], *, principal: Principal
    ) -> tuple[list[str], str]:
        """The orders of one buyer: those whose records carry the blind-index token of every
        identifier given (`email`, `phone`, or `name` and `postal_code` together). Returns the
        order ids and a keyed fingerprint of the identifiers (never the identifiers)."""
        self._gate.check(conn, principal, Scope.DELETION_MANAGE, tenant_id)
        self._live_tenant(conn, tenant_id)
        unknown = sorted(set(identifiers) - set(SEARCH_KINDS))
        if unknown or not identifiers:
            raise PayloadError("identify the buyer by email, phone, or name and postal_code")
        if ("name" in identifiers and "postal_code" not in identifiers) or set(identifiers) == {"postal_code"}:
            raise PayloadError("a name identifies a buyer only together with a postal_code")
        indexes = self._keys.blind_indexes(conn, tenant_id)
        found: set[str] | None = None
        fingerprint = ""
        for kind, value in sorted(identifiers.items()):
            if not isinstance(value, str) or not value.strip():
                raise PayloadError(f"the buyer's {kind} is empty")
            tokens = [(index.version, index.token(kind, value)) for index in indexes]
            fingerprint += "".join(t.hex() for _, t in tokens[-1:]) + kind
            matches = [
                and_(records.c.bi_version == version, or_(*(records.c[c] == token for c in BLIND_INDEX_SLOTS[kind])))
                for version, token in tokens
            ]
            orders = set(  # no DISTINCT: it would walk the tenant's order index instead of the token's
                conn.execute(
                    select(records.c.order_id).where(records.c.tenant_id == tenant_id, or_(*matches))
                ).scalars()
            )
            found = orders if found is None else found & orders
        return sorted(found or ()), fingerprint

    # --- export (a return) ------------------------------------------------------------------

    def export(
        self,
        conn: Connection,
        tenant_id: str,
        record_ids: Sequence[int],
        *,
        principal: Principal,
        purpose: Purpose = Purpose.LEGAL,
    ) -> tuple[list[Exported], list[int]]:
        """The records decrypted, as received (a return to Amazon): needs `pii:export` for the
        purpose (and no `exports` or `pii-access` kill switch). Records whose processing a buyer
        restricted are withheld and listed. Recorded as vault:record:export with the record ids,
        durable before anything is handed back (so the canary rule sees it)."""
        self._gate.check(conn, principal, Scope.PII_EXPORT, tenant_id, purpose=purpose)
        self._live_tenant(conn, tenant_id)
        out: list[Exported] = []
        withheld: list[int] = []
        fields = 0
        for i in range(0, len(record_ids), CHUNK):
            rows = conn.execute(
                select(records).where(
                    records.c.tenant_id == tenant_id, one_of(conn, records.c.id, list(record_ids[i : i + CHUNK]))
                )
            ).all()
            for row in rows:
                if row.restricted_at is not None:
                    withheld.append(int(row.id))
                    continue
                blob = row.pii if row.pii is None or type(row.pii) is bytes else bytes(row.pii)
                opened = self._keys.cipher(conn, tenant_id, row.key_version).open(str(row.id), blob) if blob else {}
                body = _json(row.clear)
                unknown = None
                for path, plain in opened.items():
                    value = decode_value(plain)
                    if path == UNKNOWN_PATH:
                        unknown = value
                    else:
                        set_path(body, path, value)
                fields += len(opened)
                out.append(
                    Exported(
                        int(row.id),
                        row.order_id,
                        row.document,
                        row.operation,
                        _iso(row.retrieved_at),
                        body,
                        unknown,
                    )
                )
        out.sort(key=lambda e: e.record_id)
        self._events(EventName.VAULT_RECORD_EXPORT, principal, tenant_id, [e.record_id for e in out], fields=fields)
        return out, sorted(withheld)

    # --- delete, verify ---------------------------------------------------------------------

    def delete(self, conn: Connection, tenant_id: str, record_ids: Sequence[int], *, principal: Principal) -> int:
        """Delete records (their blind-index tokens are columns of the row: they go with it).
        Recorded as storage:record:delete with the ids: the journal a backup restore re-applies."""
        self._gate.check(conn, principal, Scope.DELETION_MANAGE, tenant_id)
        gone = 0
        for i in range(0, len(record_ids), CHUNK):
            chunk = list(record_ids[i : i + CHUNK])
            gone += conn.execute(
                delete(records).where(records.c.tenant_id == tenant_id, one_of(conn, records.c.id, chunk))
            ).rowcount
        self._events(EventName.STORAGE_RECORD_DELETE, principal, tenant_id, list(record_ids), deleted=gone)
        return gone

    def scan(self, conn: Connection, tenant_id: str, record_ids: Sequence[int] | None) -> Scan:
        """Verification: rows of the scope left (`None`: the whole tenant), how many of them can
        still be opened, and for a whole tenant the key versions still holding material."""
        query = select(records.c.id, records.c.pii, records.c.key_version).where(records.c.tenant_id == tenant_id)
        rows: list[Any] = []
        if record_ids is None:
            rows = list(conn.execute(query).all())
        else:
            for i in range(0, len(record_ids), CHUNK):
                rows += conn.execute(query.where(one_of(conn, records.c.id, list(record_ids[i : i + CHUNK])))).all()
        openable = 0
        for row in rows:
            try:
                blob = row.pii if type(row.pii) is bytes else bytes(row.pii)
                if blob:
                    self._keys.cipher(conn, tenant_id, row.key_version).open(str(row.id), blob)
                    openable += 1
            except (SageVaultError, IntegrityError):
                continue
        live = 0
        if record_ids is None:
            live = int(
                conn.execute(
                    select(func.count()).where(tenant_keys.c.tenant_id == tenant_id, tenant_keys.c.wrapped.is_not(None))
                ).scalar_one()
            )
        return Scan(len(rows), openable, live)

    # --- a buyer's other rights -------------------------------------------------------------

    def rectify(
        self, conn: Connection, tenant_id: str, order_id: str, field: str, value: str, *, principal: Principal
    ) -> list[int]:
        """Correct one PII field (a catalog path such as ShippingAddress.Name) in every document
        of an order that holds it: re-sealed under the primary key, its blind-index token made
        anew. Returns the records changed."""
        self._gate.check(conn, principal, Scope.DELETION_MANAGE, tenant_id)
        self._live_tenant(conn, tenant_id)
        target = generic_path(field)
        if not any(f.pii and f.path == target for f in self._catalog):
            raise PayloadError(f"{shown(field)} is not a PII field of the catalog (see `sagevault catalog --pii`)")
        rows = conn.execute(
            select(records).where(records.c.tenant_id == tenant_id, records.c.order_id == order_id)
        ).all()
        if not rows:
            raise RecordNotFound(f"tenant {shown(tenant_id)} has no stored order {shown(order_id)}")
        cipher = self._keys.primary(conn, tenant_id)
        index = self._keys.blind_index(conn, tenant_id)
        changed: list[int] = []
        for row in rows:
            blob = row.pii if type(row.pii) is bytes else bytes(row.pii)
            opened = self._keys.cipher(conn, tenant_id, row.key_version).open(str(row.id), blob) if blob else {}
            values = {p: decode_value(v) for p, v in opened.items()}
            hits = [p for p in values if p != UNKNOWN_PATH and generic_path(p) == target]
            if not hits:
                continue
            for path in hits:
                values[path] = value
            document = Document(row.document)
            searchable = set()
            for path, plain in values.items():
                f = self._catalog.field(document, generic_path(path)) if path != UNKNOWN_PATH else None
                if f is not None and f.search is not None and type(plain) is str:
                    searchable.add((f.search, plain))
            slots = index_slots(searchable, index.token)
            conn.execute(
                update(records)
                .where(records.c.id == row.id)
                .values(
                    pii=cipher.seal_values(str(row.id), list(values.items())),
                    key_version=cipher.version,
                    bi_version=index.version,
                    **{c: slots[c] for c in BLIND_INDEX_COLUMNS},
                )
            )
            changed.append(int(row.id))
        if not changed:
            raise RecordNotFound(f"order {shown(order_id)} holds no {shown(field)}; nothing to rectify")
        self._events(EventName.VAULT_FIELD_RECTIFY, principal, tenant_id, changed)
        return changed

    def read_field(self, conn: Connection, tenant_id: str, record_ids: Sequence[int], field: str) -> list[Any]:
        """The values of one PII field in the records given (a rectification's verification; not
        handed to anyone, so not an event of its own)."""
        target = generic_path(field)
        values: list[Any] = []
        for row in conn.execute(
            select(records.c.id, records.c.pii, records.c.key_version).where(
                records.c.tenant_id == tenant_id, one_of(conn, records.c.id, list(record_ids))
            )
        ):
            blob = row.pii if type(row.pii) is bytes else bytes(row.pii)
            opened = self._keys.cipher(conn, tenant_id, row.key_version).open(str(row.id), blob) if blob else {}
            values += [decode_value(v) for p, v in opened.items() if p != UNKNOWN_PATH and generic_path(p) == target]
        return values

    def restrict(
        self, conn: Connection, tenant_id: str, record_ids: Sequence[int], restricted: bool, *, principal: Principal
    ) -> int:
        """Restrict processing of records (nobody reads, reveals, finds or exports them) or lift it."""
        self._gate.check(conn, principal, Scope.DELETION_MANAGE, tenant_id)
        self._live_tenant(conn, tenant_id)
        now = self._clock() if restricted else None
        done = 0
        for i in range(0, len(record_ids), CHUNK):
            done += conn.execute(
                update(records)
                .where(records.c.tenant_id == tenant_id, one_of(conn, records.c.id, list(record_ids[i : i + CHUNK])))
                .values(restricted_at=now)
            ).rowcount
        self._events(
            EventName.VAULT_RECORD_RESTRICT, principal, tenant_id, list(record_ids), restricted=int(restricted)
        )
        return done


def _json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def _iso(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
