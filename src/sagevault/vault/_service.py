"""The vault: tenants, ingest, masked reads, reveal, blind-index search, rotation and shred.

Every method takes the caller's open `Connection` and never commits; the edge owns the unit
of work, so a failed batch stores nothing. Every operation asks the gate first and is a security
event (`_audited`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Row

from sagevault.audit import AuditEvent, AuditSink, EventName
from sagevault.catalog import CATALOG, Catalog, CatalogField, Document, Purpose, generic_path
from sagevault.crypto import SEARCH_KINDS, PiiBlob, decode_value
from sagevault.db import driver_rows, one_of
from sagevault.errors import (
    PayloadError,
    ProcessingRestricted,
    PurposeNotAllowed,
    RecordNotFound,
    TenantExists,
    TenantShredded,
    UnknownTenant,
    shown,
)
from sagevault.identity import Principal, Scope, check_tenant_id, event_tenant

from ._access import AccessGate, HiddenRecords, LocalOperatorGate
from ._audited import audited, checked_first, gated, refusals_recorded
from ._ingest import CHUNK, DocumentStore
from ._keyring import TenantKeyring
from ._marketplaces import region_of
from ._operations import Operation, SourceDocument, extract, recognise
from ._reads import ORDER_ROWS, SealedRow, by_document, sealed_rows
from ._rights import RecordRights
from ._rotation import KeyLifecycle
from ._schema import BLIND_INDEX_SLOTS, records, tenants
from ._secrets import TenantSecrets, forget_secrets
from ._split import UNKNOWN_PATH, set_path
from ._views import (
    BatchReveal,
    IngestResult,
    OrderSummary,
    OrderView,
    PurgeStep,
    RecordView,
    RetentionDays,
    RevealedField,
    SearchHit,
    ShredReceipt,
    Tenant,
    mask,
)

MAX_BATCH_REVEAL = 500  # orders one batch reveal may name


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Vault:
    """Amazon Information, PII encrypted per tenant and per field."""

    def __init__(
        self,
        keyring: TenantKeyring,
        *,
        audit: AuditSink,
        gate: AccessGate | None = None,
        catalog: Catalog = CATALOG,
        retention: RetentionDays | None = None,
    ) -> None:
        self._keys = keyring
        # How long PII and records are kept (the policy profile's numbers): ingest dates each record.
        self.retention = retention or RetentionDays()
        self._audit = audit
        self._gate: AccessGate = gate or LocalOperatorGate()
        self._catalog = catalog
        self._pii_by_path: dict[str, list[CatalogField]] = {}  # the catalog's PII fields by path
        for f in catalog:
            if f.pii:
                self._pii_by_path.setdefault(f.path, []).append(f)
        self._store = DocumentStore(keyring, catalog, self.retention)
        # Records a seller's listing and counts leave out (the monitor's canaries), if any.
        self.hidden: HiddenRecords | None = None
        self.keys = KeyLifecycle(keyring, audit=audit, gate=self._gate, live_tenant=self._live_tenant, catalog=catalog)
        self.secrets = TenantSecrets(keyring, gate=self._gate, live_tenant=self._live_tenant)
        self.rights = RecordRights(
            keyring, audit=audit, gate=self._gate, catalog=catalog, live_tenant=self._live_tenant
        )
        for doc in Document:  # every searchable field of a document must have a token column
            kinds = Counter(f.search for f in catalog.fields(doc) if f.search)
            for kind, n in kinds.items():
                if n > len(BLIND_INDEX_SLOTS[kind]):
                    raise ValueError(f"{doc} has {n} searchable {kind} fields but {len(BLIND_INDEX_SLOTS[kind])} slots")

    @audited(EventName.VAULT_TENANT_CREATE, "tenants add")
    def add_tenant(
        self, conn: Connection, tenant_id: str, marketplaces: Sequence[str], *, principal: Principal
    ) -> Tenant:
        self._gate.check(conn, principal, Scope.TENANTS_ADMIN, tenant_id)
        check_tenant_id(tenant_id)
        if not marketplaces:
            raise PayloadError("a tenant needs at least one marketplace; pass --marketplace MARKETPLACE_ID")
        regions = {region_of(m) for m in marketplaces}
        if len(regions) > 1:
            raise PayloadError(
                f"marketplaces {', '.join(marketplaces)} span SP-API regions {', '.join(sorted(regions))}; "
                "a tenant lives in one region, so add one tenant per region"
            )
        if conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id)).first():
            raise TenantExists(tenant_id)
        now = datetime.now(UTC)
        conn.execute(
            insert(tenants).values(
                id=tenant_id, marketplaces=sorted(set(marketplaces)), region=regions.pop(), created_at=now
            )
        )
        self._keys.create(conn, tenant_id, now)
        return self._tenant(conn, tenant_id)

    def list_tenants(
        self, conn: Connection, *, principal: Principal, after: str | None = None, limit: int | None = None
    ) -> list[Tenant]:
        """Tenants by id; `after` and `limit` give one page of them (keyset: ids after `after`)."""
        gated(self, conn, principal, Scope.TENANTS_ADMIN, None, operation="list tenants")
        query = select(tenants).order_by(tenants.c.id)
        if after is not None:
            query = query.where(tenants.c.id > after)
        if limit is not None:
            query = query.limit(limit)
        return [self._tenant_from(r) for r in conn.execute(query).all()]

    def tenant(self, conn: Connection, tenant_id: str, *, principal: Principal) -> Tenant:
        """A live tenant (its marketplaces and region), for a caller that administers it."""
        gated(self, conn, principal, Scope.TENANTS_ADMIN, tenant_id, operation="tenant")
        return self._live_tenant(conn, tenant_id)

    def record_count(self, conn: Connection, tenant_id: str, *, principal: Principal) -> int:
        gated(self, conn, principal, Scope.RECORDS_READ, tenant_id, operation="record count")
        stored = int(conn.execute(select(func.count()).where(records.c.tenant_id == tenant_id)).scalar_one())
        return stored - (self.hidden.count(conn, tenant_id) if self.hidden else 0)  # canaries are not the seller's

    def record_ids_of(
        self, conn: Connection, tenant_id: str, order_ids: Sequence[str], *, principal: Principal
    ) -> list[int]:
        """The record ids stored for `order_ids`, for a caller that may ingest there (what the
        monitor registers after it planted canary orders)."""
        self._gate.check(conn, principal, Scope.RECORDS_INGEST, tenant_id)
        query = select(records.c.id).where(
            records.c.tenant_id == tenant_id, one_of(conn, records.c.order_id, order_ids)
        )
        return [int(i) for i in conn.execute(query).scalars()]

    def tenant_states(self, conn: Connection, tenant_ids: Sequence[str]) -> dict[str, datetime | None]:
        """Which of `tenant_ids` exist, each with its shred time (None while live): what access
        asks before it grants a role on a tenant or flips its kill switch."""
        rows = conn.execute(select(tenants.c.id, tenants.c.shredded_at).where(tenants.c.id.in_(list(tenant_ids))))
        return {r.id: _aware(r.shredded_at) if r.shredded_at else None for r in rows}

    @audited(EventName.VAULT_RECORD_READ, "list orders", lambda os: ((), {"orders": len(os)}))
    def list_orders(
        self, conn: Connection, tenant_id: str, *, principal: Principal, after: str | None = None, limit: int = 50
    ) -> list[OrderSummary]:
        """Up to `limit` of the tenant's orders with ids after `after`, by order id (keyset on the
        (tenant_id, order_id, document) index). Ids and clear state only: no PII is read."""
        self._gate.check(conn, principal, Scope.RECORDS_READ, tenant_id)
        self._live_tenant(conn, tenant_id)
        found: list[OrderSummary] = []
        while len(found) < limit:  # canary records are left out; the page is filled from further on
            want = limit - len(found)
            page = self._order_page(conn, tenant_id, after, want)
            if not page:
                break
            after = page[-1].order_id
            hidden = self.hidden.hidden(conn, tenant_id, [i for o in page for i in o.record_ids]) if self.hidden else ()
            found += [o for o in page if not hidden or not set(o.record_ids) <= hidden]
            if len(page) < want:
                break
        return found

    @staticmethod
    def _order_page(conn: Connection, tenant_id: str, after: str | None, limit: int) -> list[OrderSummary]:
        page = select(records.c.order_id).where(records.c.tenant_id == tenant_id, records.c.restricted_at.is_(None))
        if after is not None:
            page = page.where(records.c.order_id > after)
        order_ids = list(conn.execute(page.distinct().order_by(records.c.order_id).limit(limit)).scalars())
        if not order_ids:
            return []
        by_order: dict[str, list[Any]] = {}
        for row in conn.execute(
            select(
                records.c.order_id,
                records.c.id,
                records.c.document,
                records.c.order_status,
                records.c.purchased_at,
                records.c.retrieved_at,
            )
            .where(records.c.tenant_id == tenant_id, one_of(conn, records.c.order_id, order_ids))
            .order_by(records.c.order_id, records.c.document)
        ):
            by_order.setdefault(row.order_id, []).append(row)
        return [
            OrderSummary(
                order_id,
                [r.id for r in rows],
                [Document(r.document) for r in rows],
                next((r.order_status for r in rows if r.order_status), None),
                next((r.purchased_at for r in rows if r.purchased_at), None),
                max(_aware(r.retrieved_at) for r in rows),
            )
            for order_id in order_ids
            if (rows := by_order.get(order_id))
        ]

    @staticmethod
    def _tenant_from(row: Row[Any]) -> Tenant:
        shredded = _aware(row.shredded_at) if row.shredded_at else None
        return Tenant(row.id, list(row.marketplaces), row.region, _aware(row.created_at), shredded)

    def _tenant(self, conn: Connection, tenant_id: str) -> Tenant:
        row = conn.execute(select(tenants).where(tenants.c.id == tenant_id)).first()
        if row is None:
            raise UnknownTenant(tenant_id)
        tenant = self._tenant_from(row)
        if tenant.shredded_at is not None:  # shredded, perhaps by another process: its cached keys go now
            self._keys.forget(tenant_id)
        return tenant

    def _live_tenant(self, conn: Connection, tenant_id: str) -> Tenant:
        tenant = self._tenant(conn, tenant_id)
        if tenant.shredded_at is not None:
            raise TenantShredded(tenant_id, tenant.shredded_at)
        return tenant

    def prepare(self, payloads: Iterable[Any], operation: Operation | None = None) -> list[SourceDocument]:
        """Cut payloads into documents, checking every one before anything is stored."""
        docs: list[SourceDocument] = []
        for i, payload in enumerate(payloads, 1):
            op = operation or recognise(payload)
            docs.extend(extract(payload, op, f"payload {i}"))
        return docs

    def ingest(
        self,
        conn: Connection,
        tenant_id: str,
        payloads: Iterable[Any],
        operation: Operation | None = None,
        *,
        principal: Principal,
        retrieved_at: datetime | None = None,
    ) -> IngestResult:
        """Store SP-API responses (or bare order objects). A document of an order that is
        already stored replaces the old one. Any error stores nothing of the batch. A caller
        who may not ingest here is refused before anything of the payloads is read."""
        self.authorize_ingest(conn, tenant_id, principal=principal)
        return self.ingest_documents(
            conn, tenant_id, self.prepare(payloads, operation), principal=principal, retrieved_at=retrieved_at
        )

    @checked_first(EventName.VAULT_RECORD_INGEST, "ingest")
    def authorize_ingest(self, conn: Connection, tenant_id: str, *, principal: Principal) -> None:
        """Refuse (and record) an ingest that `principal` may not make into `tenant_id` now:
        asked before a payload is parsed, so a caller without the right learns nothing about its
        payload and costs no parsing. `ingest_documents` asks again when it stores."""
        self._gate.check(conn, principal, Scope.RECORDS_INGEST, tenant_id)
        self._live_tenant(conn, tenant_id)

    @audited(EventName.VAULT_RECORD_INGEST, "ingest", lambda r: ((), r.counts()))
    def ingest_documents(
        self,
        conn: Connection,
        tenant_id: str,
        docs: Sequence[SourceDocument],
        *,
        principal: Principal,
        retrieved_at: datetime | None = None,
        origin: str = "amazon",  # "sp-api-sync": fetched by SageVault's own connector
    ) -> IngestResult:
        self._gate.check(conn, principal, Scope.RECORDS_INGEST, tenant_id)
        self._live_tenant(conn, tenant_id)
        return self._store.store(conn, tenant_id, docs, retrieved_at, origin)

    def _live_order_rows(self, conn: Connection, tenant_id: str, order_id: str) -> Sequence[Any]:
        """The order's records, in one query with the tenant's check (`_live_rows`)."""
        return self._live_rows(
            conn, tenant_id, order_id, conn.execute(ORDER_ROWS, {"tenant_id": tenant_id, "order_id": order_id}).all()
        )

    def _sealed_order_rows(self, conn: Connection, tenant_id: str, order_id: str) -> tuple[int | None, list[SealedRow]]:
        """The gate's rule version, and what a reveal needs of the order's records (`SealedRow`;
        none if there is no such tenant), in one statement through the driver's cursor, not yet
        checked (`_live_rows`)."""
        read = driver_rows(conn, sealed_rows(self._gate.state_query), {"tenant_id": tenant_id, "order_id": order_id})
        state, tenant = read[0][0], read[0][1]
        # bytes(): a driver may hand a blob over as a memoryview (psycopg 2 does)
        rows = [
            SealedRow(s, i, doc, p if p is None or type(p) is bytes else bytes(p), v, r)
            for _, _, s, i, doc, p, v, r in read
        ]
        return state, rows if tenant is not None else []

    def _live_rows(self, conn: Connection, tenant_id: str, order_id: str, rows: Sequence[Any]) -> Sequence[Any]:
        """`rows` of the order (`order_rows_query`), once the tenant's check (`_live_tenant`)
        passes: a tenant that does not exist or was shredded is refused as `_live_tenant` refuses
        it; an order the tenant does not hold, or whose buyer restricted processing, is refused."""
        if not rows or rows[0].tenant_shredded_at is not None:
            if rows:  # shredded, perhaps by another process: its cached keys go now
                self._keys.forget(tenant_id)
            self._live_tenant(conn, tenant_id)  # raises UnknownTenant or TenantShredded
            raise UnknownTenant(tenant_id)  # (it did not: the tenant came after the read above)
        if rows[0].id is None:
            raise RecordNotFound(f"tenant {shown(tenant_id)} has no stored order {shown(order_id)}")
        if any(r.restricted_at is not None for r in rows):
            raise ProcessingRestricted(f"the buyer restricted processing of order {shown(order_id)}; it is not read")
        return list(rows)

    @audited(
        EventName.VAULT_RECORD_READ, "get", lambda v: ([r.record_id for r in v.records], {"records": len(v.records)})
    )
    def get(self, conn: Connection, tenant_id: str, order_id: str, *, principal: Principal) -> OrderView:
        """Every stored document of an order, PII masked. Nothing is decrypted."""
        self._gate.check(conn, principal, Scope.RECORDS_READ, tenant_id)
        views = []
        for row in self._live_order_rows(conn, tenant_id, order_id):
            document = Document(row.document)
            data = json.loads(row.clear)
            paths = [p for p in PiiBlob.paths(row.pii) if p != UNKNOWN_PATH]
            for path in paths:
                set_path(data, path, mask(self._catalog.field(document, path)))
            views.append(
                RecordView(
                    row.id,
                    document,
                    row.operation,
                    row.origin,
                    row.marketplace_id,
                    row.seller_id,
                    _aware(row.retrieved_at),
                    row.key_version,
                    paths,
                    row.unknown_fields,
                    data,
                )
            )
        return OrderView(tenant_id, order_id, views)

    def _pii_fields_named(self, names: Sequence[str]) -> dict[str, list[CatalogField]]:
        """Catalog PII fields for each requested name (`ShippingAddress.Name`, or with a document
        prefix `orders-v0:OrderAddress/ShippingAddress.Name`)."""
        out: dict[str, list[CatalogField]] = {}
        for name in names:
            doc_name, sep, path = name.rpartition("/")
            candidates = self._pii_by_path.get(generic_path(path), ())
            matches = [f for f in candidates if not sep or f.document.value == doc_name]
            if not matches:
                raise PayloadError(
                    f"{shown(name)} is not a PII field of the catalog; name a catalog path such as "
                    "ShippingAddress.Name or buyer.buyerEmail (see `sagevault catalog`)"
                )
            out[name] = matches
        return out

    @staticmethod
    def _purpose(purpose: Purpose | str) -> Purpose:
        try:
            return Purpose(purpose)
        except ValueError:
            raise PurposeNotAllowed(
                f"{shown(purpose)} is not a purpose; use one of: {', '.join(p.value for p in Purpose)}"
            ) from None

    @audited(
        EventName.VAULT_FIELD_REVEAL, "reveal", lambda fs: (sorted({f.record_id for f in fs}), {"fields": len(fs)})
    )
    def reveal(
        self,
        conn: Connection,
        tenant_id: str,
        order_id: str,
        fields: Sequence[str],
        purpose: Purpose | str,
        *,
        principal: Principal,
    ) -> list[RevealedField]:
        """The plaintext of the named PII fields of one order, if the catalog allows `purpose`
        for every one of them; nothing is decrypted otherwise."""
        purpose, wanted = self._fields_for(fields, purpose)
        state, rows = self._sealed_order_rows(conn, tenant_id, order_id)
        # Decided before anything read is looked at, at the rule version read with the rows (as
        # fresh as they are; no statement of its own, whether or not the tenant or order exists).
        self._gate.check(
            conn, principal, Scope.PII_REVEAL, tenant_id, purpose=purpose, fields=list(wanted), state=state
        )
        by_doc = by_document(wanted)
        out: list[RevealedField] = []
        for row in self._live_rows(conn, tenant_id, order_id, rows):
            self._open_fields(conn, tenant_id, row, by_doc, out)
        return out

    def _fields_for(
        self, fields: Sequence[str], purpose: Purpose | str
    ) -> tuple[Purpose, dict[str, list[CatalogField]]]:
        """The purpose and the catalog's PII fields of each name, once the catalog allows `purpose` for every one."""
        purpose = self._purpose(purpose)
        wanted = self._pii_fields_named(fields)
        for name, matches in wanted.items():
            for f in matches:
                if purpose not in f.purposes:
                    allowed = ", ".join(sorted(p.value for p in f.purposes))
                    raise PurposeNotAllowed(
                        f"purpose {purpose.value} is not allowed for {name} ({f.category}); allowed: {allowed}"
                    )
        return purpose, wanted

    def _open_fields(
        self, conn: Connection, tenant_id: str, row: Any, by_doc: dict[Document, set[str]], out: list[RevealedField]
    ) -> None:
        """Decrypt the wanted fields of one record (`row`: id, document, pii, key_version) into `out`."""
        document = Document(row.document)
        generic = by_doc.get(document)
        if not generic:
            return
        concrete = [p for p in PiiBlob.paths(row.pii) if generic_path(p) in generic]
        if not concrete:
            return
        cipher = self._keys.cipher(conn, tenant_id, row.key_version)
        for path, plain in cipher.open(str(row.id), row.pii, set(concrete)).items():
            out.append(RevealedField(row.id, document, path, decode_value(plain)))

    def reveal_many(
        self,
        conn: Connection,
        tenant_id: str,
        order_ids: Sequence[str],
        fields: Sequence[str],
        purpose: Purpose | str,
        *,
        principal: Principal,
    ) -> BatchReveal:
        """`reveal` for many orders at once (label printing): the same checks, made once; each
        order's reveal recorded as its own vault:field:reveal event (its record ids and field
        count), all made durable together before any value is handed back. Orders the tenant does
        not hold are listed as missing, not refused."""
        with refusals_recorded(self, EventName.VAULT_FIELD_REVEAL, principal, tenant_id, "reveal batch"):
            if len(order_ids) > MAX_BATCH_REVEAL:
                raise PayloadError(f"reveal at most {MAX_BATCH_REVEAL} orders at once; split the batch")
            purpose, named = self._fields_for(fields, purpose)
            self._gate.check(conn, principal, Scope.PII_REVEAL, tenant_id, purpose=purpose, fields=list(named))
            by_doc = by_document(named)
            self._live_tenant(conn, tenant_id)
            wanted = list(dict.fromkeys(order_ids))
            found: dict[str, list[RevealedField]] = {}
            for i in range(0, len(wanted), CHUNK):
                rows = conn.execute(
                    select(records.c.order_id, records.c.id, records.c.document, records.c.pii, records.c.key_version)
                    .where(
                        records.c.tenant_id == tenant_id,
                        one_of(conn, records.c.order_id, wanted[i : i + CHUNK]),
                        records.c.restricted_at.is_(None),  # a restricted order is listed as missing
                    )
                    .order_by(records.c.order_id, records.c.document)
                ).all()
                for row in rows:
                    self._open_fields(conn, tenant_id, row, by_doc, found.setdefault(row.order_id, []))
        self._audit.record_many(
            [
                AuditEvent(
                    name=EventName.VAULT_FIELD_REVEAL,
                    channel=principal.channel,
                    actor=principal.id,
                    tenant_id=event_tenant(tenant_id),
                    record_ids=sorted({f.record_id for f in revealed}),
                    counts={"fields": len(revealed)},
                    operation="reveal batch",
                )
                for revealed in found.values()
            ]
        )
        return BatchReveal({o: found[o] for o in wanted if o in found}, [o for o in wanted if o not in found])

    @audited(EventName.VAULT_RECORD_SEARCH, "search", lambda hs: ([h.record_id for h in hs], {"hits": len(hs)}))
    def search(
        self,
        conn: Connection,
        tenant_id: str,
        kind: str,
        value: str,
        *,
        purpose: Purpose | str,
        principal: Principal,
    ) -> list[SearchHit]:
        """Records whose `kind` field (email, phone, postal_code, name) equals `value` after
        normalisation, found through the blind index without decrypting anything."""
        if kind not in SEARCH_KINDS:
            raise PayloadError(f"cannot search by {shown(kind)}; searchable fields are {', '.join(SEARCH_KINDS)}")
        purpose = self._purpose(purpose)
        kind_fields = [f for f in self._catalog if f.search == kind]
        if not any(purpose in f.purposes for f in kind_fields):
            raise PurposeNotAllowed(f"purpose {purpose.value} does not allow searching by {kind}")
        self._gate.check(conn, principal, Scope.RECORDS_SEARCH, tenant_id, purpose=purpose, fields=[kind])
        self._live_tenant(conn, tenant_id)
        # A token under each live index key version (two while a rotation re-tokenises), each
        # matched only against records that carry that version's tokens.
        matches = [
            and_(
                records.c.bi_version == index.version,
                or_(*(records.c[c] == token for c in BLIND_INDEX_SLOTS[kind])),
            )
            for index in self._keys.blind_indexes(conn, tenant_id)
            for token in (index.token(kind, value),)
        ]
        # Sorted here, not by the database: an ORDER BY on (order_id, document) leads SQLite's
        # planner to walk the tenant's whole (tenant_id, order_id, document) index instead of
        # the token's (0.7 s at 200k orders against well under a millisecond).
        rows = conn.execute(
            select(records.c.order_id, records.c.id, records.c.document).where(
                records.c.tenant_id == tenant_id, or_(*matches), records.c.restricted_at.is_(None)
            )
        ).all()
        return [SearchHit(o, r, Document(d)) for o, r, d in sorted(rows, key=lambda r: (r[0], r[2]))]

    @audited(EventName.STORAGE_KEYSET_DESTROY, "shred", lambda r: ((), {"keys": len(r.keys_destroyed)}))
    def shred(self, conn: Connection, tenant_id: str, *, principal: Principal) -> ShredReceipt:
        """Crypto-shred: destroy every copy of the tenant's keys and leave a tombstone. Constant
        time in the tenant's data; `purge_shredded` removes the unreadable rows afterwards."""
        self._gate.check(conn, principal, Scope.TENANTS_SHRED, tenant_id)
        self._live_tenant(conn, tenant_id)
        now = datetime.now(UTC)
        receipt = ShredReceipt(tenant_id, now, self._keys.destroy(conn, tenant_id), self._keys.master_key_id)
        forget_secrets(conn, tenant_id)  # unreadable now; the rows go too
        conn.execute(
            update(tenants).where(tenants.c.id == tenant_id).values(shredded_at=now, shred_receipt=receipt.as_json())
        )
        return receipt

    def shred_receipt(self, conn: Connection, tenant_id: str, *, principal: Principal) -> dict[str, Any] | None:
        """The receipt of a shredded tenant, or None if it is not shredded."""
        gated(self, conn, principal, Scope.TENANTS_SHRED, tenant_id, operation="shred receipt")
        self._tenant(conn, tenant_id)
        receipt = conn.execute(select(tenants.c.shred_receipt).where(tenants.c.id == tenant_id)).scalar_one()
        return dict(receipt) if receipt else None

    def unpurged_records(self, conn: Connection, tenant_id: str, *, principal: Principal) -> int:
        """How many unreadable rows of a shredded tenant `purge_shredded` has still to delete."""
        gated(self, conn, principal, Scope.TENANTS_SHRED, tenant_id, operation="unpurged records")
        self._tenant(conn, tenant_id)
        return int(conn.execute(select(func.count()).where(records.c.tenant_id == tenant_id)).scalar_one())

    @audited(EventName.STORAGE_RECORD_PURGE, "purge", lambda n: ((), {"records": n}))
    def purge_shredded(self, conn: Connection, tenant_id: str, *, principal: Principal, limit: int = 5000) -> int:
        """Delete up to `limit` unreadable rows of a shredded tenant; returns how many went."""
        self._gate.check(conn, principal, Scope.TENANTS_SHRED, tenant_id)
        tenant = self._tenant(conn, tenant_id)
        if tenant.shredded_at is None:
            raise PayloadError(f"tenant {tenant_id} is not shredded; run `sagevault shred` first")
        ids = list(conn.execute(select(records.c.id).where(records.c.tenant_id == tenant_id).limit(limit)).scalars())
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i : i + CHUNK]
            conn.execute(delete(records).where(one_of(conn, records.c.id, chunk)))
        return len(ids)

    def purge_step(self, conn: Connection, tenant_id: str, *, principal: Principal, limit: int = 5000) -> PurgeStep:
        """One step of the purge that follows a shred: delete up to `limit` unreadable rows and
        say how many are left. Call it again until none is."""
        purged = self.purge_shredded(conn, tenant_id, principal=principal, limit=limit)
        return PurgeStep(tenant_id, purged, self.unpurged_records(conn, tenant_id, principal=principal))
