"""The vault: tenants, ingest, masked reads, reveal, blind-index search, rotation and shred.

Every method takes the caller's open `Connection` and never commits; the edge owns the unit
of work, so a failed batch stores nothing.
"""

from __future__ import annotations

import functools
import gc
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Concatenate, NamedTuple, ParamSpec, Protocol, TypeVar

from sqlalchemy import Select, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Row

from sagevault.audit import AuditEvent, EventName, looks_like_pii, outcome_of
from sagevault.catalog import CATALOG, Catalog, CatalogField, Document, Purpose
from sagevault.catalog._fields import generic_path
from sagevault.crypto import SEARCH_KINDS, FieldCipher, PiiBlob, decode_value
from sagevault.db import (
    BLIND_INDEX_COLUMNS,
    BLIND_INDEX_SLOTS,
    bulk_insert,
    driver_rows,
    driver_value,
    one_of,
    record_ids,
    records,
    tenants,
)
from sagevault.errors import (
    AccessDenied,
    AuditError,
    PayloadError,
    PurposeNotAllowed,
    RecordNotFound,
    SageVaultError,
    TenantExists,
    TenantShredded,
    UnknownTenant,
    shown,
)

from ._access import AccessGate, Action, LocalOperatorGate, Principal
from ._keyring import KeyVersionInfo, TenantKeyring
from ._marketplaces import region_of
from ._operations import Operation, SourceDocument, extract, recognise
from ._split import UNKNOWN_PATH, PiiValue, describe_unknown_path, set_path, split

_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,63}")
_CHUNK = 500  # bound on IN (...) lists
_RECORD_COLUMNS = (
    "id", "tenant_id", "order_id", "document", "origin", "operation", "marketplace_id", "seller_id",
    "retrieved_at", "purchased_at", "order_status", "key_version", "pii_fields", "unknown_fields", "clear", "pii",
    *BLIND_INDEX_COLUMNS,
)  # fmt: skip


def _order_rows_query(*columns: Any) -> Select[Any]:
    """One order's records (`columns`) and its tenant's shred mark, for the bound parameters
    `tenant_id` and `order_id`: a row with no record when the tenant has no such order, no row
    when there is no such tenant. Built once: building and hashing the statement on every call
    cost several times what running it does."""
    return (
        select(tenants.c.shredded_at.label("tenant_shredded_at"), *columns)
        .select_from(tenants.outerjoin(records, and_(records.c.tenant_id == tenants.c.id,
                                                     records.c.order_id == bindparam("order_id"))))
        .where(tenants.c.id == bindparam("tenant_id"))
        .order_by(records.c.document)
    )  # fmt: skip


_ORDER_ROWS = _order_rows_query(records)
_SEALED_ROWS = _order_rows_query(records.c.id, records.c.document, records.c.pii, records.c.key_version)


class _SealedRow(NamedTuple):
    """A row of `_SEALED_ROWS` as the driver returns it (`driver_rows`): the shred mark is only
    tested for NULL, the rest are ids, text and the blob."""

    tenant_shredded_at: Any
    id: int | None
    document: str
    pii: bytes | None  # None with id: a tenant without this order
    key_version: int


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    marketplaces: list[str]
    region: str
    created_at: datetime
    shredded_at: datetime | None


@dataclass(slots=True)
class IngestResult:
    records: int = 0
    orders: int = 0
    replaced: int = 0
    pii_fields: int = 0
    unknown_fields: int = 0
    documents: Counter[str] = field(default_factory=Counter)
    unknown_paths: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class RecordView:
    """A stored record with every PII value replaced by a mask naming its data category."""

    record_id: int
    document: Document
    operation: str
    origin: str
    marketplace_id: str | None
    seller_id: str
    retrieved_at: datetime
    key_version: int
    pii_paths: list[str]
    unknown_fields: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OrderView:
    tenant_id: str
    order_id: str
    records: list[RecordView]


@dataclass(frozen=True, slots=True)
class OrderSummary:
    """An order as a listing shows it: ids and clear (non-PII) state only, nothing decrypted."""

    order_id: str
    record_ids: list[int]
    documents: list[Document]
    order_status: str | None
    purchased_at: str | None
    retrieved_at: datetime


@dataclass(frozen=True, slots=True)
class RevealedField:
    record_id: int
    document: Document
    path: str
    value: Any = field(repr=False)


@dataclass(frozen=True, slots=True)
class SearchHit:
    order_id: str
    record_id: int
    document: Document


@dataclass(frozen=True, slots=True)
class ShredReceipt:
    tenant_id: str
    shredded_at: datetime
    keys_destroyed: list[tuple[str, int]]
    master_key_id: str

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "shredded_at": self.shredded_at.isoformat(),
            "keys_destroyed": [f"{p}:v{v}" for p, v in self.keys_destroyed],
            "master_key_id": self.master_key_id,
            "method": "crypto-shred: every wrapped tenant key deleted and cached copy evicted; backups taken "
            "before this time keep wrapped keys until they expire (live copies <= 90 days)",
        }


def _ingest_counts(r: IngestResult) -> dict[str, int]:
    return {"records": r.records, "orders": r.orders, "replaced": r.replaced, "pii_fields": r.pii_fields,
            "unknown_fields": r.unknown_fields}  # fmt: skip


def mask(f: CatalogField | None) -> str:
    return f"[PII {f.category}]" if f is not None else "[PII unknown]"


@contextmanager
def _paused_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for one ingest batch.

    Splitting documents allocates many short-lived dicts, which trigger collections that walk
    every live object (including the caller's whole batch of payloads); that cost a third of
    ingest CPU. The batch creates no reference cycles, and reference counting still frees
    everything at once. The previous state is restored, so a caller that disabled GC keeps it off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _allocate_ids(conn: Connection, n: int) -> range:
    """`n` fresh record ids. The UPDATE takes the counter row's lock, so concurrent writers get
    disjoint ranges and an id is never handed out twice, even after its record is purged."""
    last = conn.execute(
        update(record_ids)
        .where(record_ids.c.name == "records")
        .values(last=record_ids.c.last + n)
        .returning(record_ids.c.last)
    ).scalar_one()
    return range(int(last) - n + 1, int(last) + 1)


class AuditSink(Protocol):
    def record(self, event: AuditEvent) -> int: ...


P = ParamSpec("P")
R = TypeVar("R")
Details = Callable[[Any], tuple[Sequence[int], dict[str, int]]]


def _no_details(_result: Any) -> tuple[Sequence[int], dict[str, int]]:
    return (), {}


def audited(name: EventName, operation: str, details: Details = _no_details) -> Callable[
    [Callable[Concatenate[Vault, Connection, str, P], R]], Callable[Concatenate[Vault, Connection, str, P], R]
]:  # fmt: skip
    """Record a security event for every call: success (with record ids and counts from the
    result) before the result is handed back, or the refusal or failure with a reason code.
    If the event cannot be made durable, the caller gets AuditUnavailable instead of the result."""

    def wrap(
        method: Callable[Concatenate[Vault, Connection, str, P], R],
    ) -> Callable[Concatenate[Vault, Connection, str, P], R]:
        def run(self: Vault, conn: Connection, tenant_id: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
            principal = kwargs["principal"]
            assert isinstance(principal, Principal)
            try:
                result = method(self, conn, tenant_id, *args, **kwargs)
            except AuditError:
                raise
            except SageVaultError as exc:
                outcome, reason = outcome_of(exc)
                event = EventName.ACCESS_PERMISSION_DENY if isinstance(exc, AccessDenied) else name
                self._audit.record(AuditEvent(
                    name=event, channel=principal.channel, outcome=outcome, reason=reason, actor=principal.id,
                    tenant_id=_audit_tenant(tenant_id), operation=operation,
                ))  # fmt: skip
                raise
            ids, counts = details(result)
            self._audit.record(AuditEvent(
                name=name, channel=principal.channel, actor=principal.id, tenant_id=tenant_id,
                record_ids=list(ids), counts=counts, operation=operation,
            ))  # fmt: skip
            return result

        functools.update_wrapper(run, method)
        return run

    return wrap


def _audit_tenant(tenant_id: str) -> str | None:
    """A tenant id fit for the log; input that is not an id (it may be anything) is left out."""
    return tenant_id if _TENANT_ID.fullmatch(tenant_id) and not looks_like_pii(tenant_id) else None


class Vault:
    """Amazon Information, PII encrypted per tenant and per field."""

    def __init__(
        self, keyring: TenantKeyring, *, audit: AuditSink, gate: AccessGate | None = None, catalog: Catalog = CATALOG
    ) -> None:
        self._keys = keyring
        self._audit = audit
        self._gate: AccessGate = gate or LocalOperatorGate()
        self._catalog = catalog
        self._pii_by_path: dict[str, list[CatalogField]] = {}  # the catalog's PII fields by path
        for f in catalog:
            if f.pii:
                self._pii_by_path.setdefault(f.path, []).append(f)
        self._trees = {doc: catalog.tree(doc) for doc in Document}
        for doc in Document:  # every searchable field of a document must have a token column
            kinds = Counter(f.search for f in catalog.fields(doc) if f.search)
            for kind, n in kinds.items():
                if n > len(BLIND_INDEX_SLOTS[kind]):
                    raise ValueError(f"{doc} has {n} searchable {kind} fields but {len(BLIND_INDEX_SLOTS[kind])} slots")

    def _check(self, conn: Connection, principal: Principal, action: Action, tenant_id: str | None, *,
               operation: str) -> None:  # fmt: skip
        """The gate, for the few reads that are not `audited` as a whole: a refusal is recorded."""
        try:
            self._gate.check(conn, principal, action, tenant_id)
        except AccessDenied as exc:
            outcome, reason = outcome_of(exc)
            self._audit.record(AuditEvent(
                name=EventName.ACCESS_PERMISSION_DENY, channel=principal.channel, outcome=outcome, reason=reason,
                actor=principal.id, tenant_id=_audit_tenant(tenant_id) if tenant_id else None, operation=operation,
            ))  # fmt: skip
            raise

    # --- tenants --------------------------------------------------------------------------

    @audited(EventName.VAULT_TENANT_CREATE, "tenants add")
    def add_tenant(
        self, conn: Connection, tenant_id: str, marketplaces: Sequence[str], *, principal: Principal
    ) -> Tenant:
        self._gate.check(conn, principal, Action.TENANTS_ADMIN, tenant_id)
        if not _TENANT_ID.fullmatch(tenant_id):
            raise PayloadError(
                f"{shown(tenant_id)} is not a selling partner id; "
                "use letters, digits, '.', '_' or '-' (2-64 characters)"
            )
        if looks_like_pii(tenant_id):
            raise PayloadError(
                "a tenant id is a selling partner id (like A2EUQ1WTGCTBG2), not a phone number or e-mail"
            )
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
        now = _now()
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
        self._check(conn, principal, Action.TENANTS_ADMIN, None, operation="list tenants")
        query = select(tenants).order_by(tenants.c.id)
        if after is not None:
            query = query.where(tenants.c.id > after)
        if limit is not None:
            query = query.limit(limit)
        return [self._tenant_from(r) for r in conn.execute(query).all()]

    def record_count(self, conn: Connection, tenant_id: str, *, principal: Principal) -> int:
        self._check(conn, principal, Action.RECORDS_READ, tenant_id, operation="record count")
        return int(conn.execute(select(func.count()).where(records.c.tenant_id == tenant_id)).scalar_one())

    @audited(EventName.VAULT_RECORD_READ, "list orders", lambda os: ((), {"orders": len(os)}))
    def list_orders(
        self, conn: Connection, tenant_id: str, *, principal: Principal, after: str | None = None, limit: int = 50
    ) -> list[OrderSummary]:
        """Up to `limit` of the tenant's orders with ids after `after`, by order id (keyset on the
        (tenant_id, order_id, document) index). Ids and clear state only: no PII is read."""
        self._gate.check(conn, principal, Action.RECORDS_READ, tenant_id)
        self._live_tenant(conn, tenant_id)
        page = select(records.c.order_id).where(records.c.tenant_id == tenant_id)
        if after is not None:
            page = page.where(records.c.order_id > after)
        order_ids = list(conn.execute(page.distinct().order_by(records.c.order_id).limit(limit)).scalars())
        if not order_ids:
            return []
        by_order: dict[str, list[Any]] = {}
        for row in conn.execute(
            select(records.c.order_id, records.c.id, records.c.document, records.c.order_status,
                   records.c.purchased_at, records.c.retrieved_at)
            .where(records.c.tenant_id == tenant_id, one_of(conn, records.c.order_id, order_ids))
            .order_by(records.c.order_id, records.c.document)
        ):  # fmt: skip
            by_order.setdefault(row.order_id, []).append(row)
        return [
            OrderSummary(
                order_id, [r.id for r in rows], [Document(r.document) for r in rows],
                next((r.order_status for r in rows if r.order_status), None),
                next((r.purchased_at for r in rows if r.purchased_at), None),
                max(_aware(r.retrieved_at) for r in rows),
            )
            for order_id in order_ids
            if (rows := by_order.get(order_id))
        ]  # fmt: skip

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

    # --- ingest ---------------------------------------------------------------------------

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
        already stored replaces the old one. Any error stores nothing of the batch."""
        return self.ingest_documents(
            conn, tenant_id, self.prepare(payloads, operation), principal=principal, retrieved_at=retrieved_at
        )

    @audited(EventName.VAULT_RECORD_INGEST, "ingest", lambda r: ((), _ingest_counts(r)))
    def ingest_documents(
        self,
        conn: Connection,
        tenant_id: str,
        docs: Sequence[SourceDocument],
        *,
        principal: Principal,
        retrieved_at: datetime | None = None,
    ) -> IngestResult:
        self._gate.check(conn, principal, Action.RECORDS_INGEST, tenant_id)
        self._live_tenant(conn, tenant_id)
        result = IngestResult()
        if not docs:
            return result
        with _paused_cyclic_gc():
            return self._ingest(conn, tenant_id, docs, retrieved_at, result)

    def _ingest(
        self,
        conn: Connection,
        tenant_id: str,
        docs: Sequence[SourceDocument],
        retrieved_at: datetime | None,
        result: IngestResult,
    ) -> IngestResult:
        latest = {(d.order_id, d.document): d for d in docs}  # last copy of a document wins
        cipher = self._keys.primary(conn, tenant_id)
        index = self._keys.blind_index(conn, tenant_id)
        now = driver_value(conn, records.c.retrieved_at, retrieved_at or _now())
        ids = _allocate_ids(conn, len(latest))
        rows: list[tuple[Any, ...]] = []
        trees = self._trees
        dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
        seal, version, token = cipher.seal_values, cipher.version, index.token
        for rid, doc in zip(ids, latest.values(), strict=True):
            pii: list[PiiValue] = []
            unknown: dict[str, Any] = {}
            clear = split(doc.body, trees[doc.document], "", pii, unknown)
            plain: list[tuple[str, Any]] = [(path, value) for path, _, value in pii]
            slots = dict.fromkeys(BLIND_INDEX_COLUMNS)
            searchable = {(f.search, v) for _, f, v in pii if f.search is not None and type(v) is str}
            for kind, v in searchable:  # buyer and recipient often share a name: one token
                tok = token(kind, v)
                for column in BLIND_INDEX_SLOTS[kind]:  # the first free slot
                    if slots[column] is None:
                        slots[column] = tok
                        break
            if unknown:
                plain.append((UNKNOWN_PATH, unknown))
                result.unknown_paths.update(describe_unknown_path(p) for p in unknown)
            try:
                clear_json = dumps(clear)
            except ValueError:
                raise PayloadError(f"order {doc.order_id}: payload holds NaN or Infinity, which JSON forbids") from None
            rows.append((
                rid, tenant_id, doc.order_id, doc.document.value, "amazon", doc.operation.value, doc.marketplace_id,
                tenant_id, now, doc.purchased_at, doc.order_status, version, len(pii), len(unknown), clear_json,
                seal(str(rid), plain), *slots.values(),
            ))  # fmt: skip
            result.pii_fields += len(pii)
            result.unknown_fields += len(unknown)
            result.documents[doc.document.value] += 1
        result.replaced = self._delete_existing(conn, tenant_id, latest)
        bulk_insert(conn, records, _RECORD_COLUMNS, rows)
        result.records = len(rows)
        result.orders = len({d.order_id for d in latest.values()})
        return result

    def _delete_existing(
        self, conn: Connection, tenant_id: str, latest: dict[tuple[str, Document], SourceDocument]
    ) -> int:
        order_ids = sorted({order_id for order_id, _ in latest})
        doomed: list[int] = []
        for i in range(0, len(order_ids), _CHUNK):
            chunk = order_ids[i : i + _CHUNK]
            for rid, order_id, document in conn.execute(
                select(records.c.id, records.c.order_id, records.c.document).where(
                    records.c.tenant_id == tenant_id, one_of(conn, records.c.order_id, chunk)
                )
            ):
                if (order_id, Document(document)) in latest:
                    doomed.append(rid)
        for i in range(0, len(doomed), _CHUNK):
            conn.execute(delete(records).where(one_of(conn, records.c.id, doomed[i : i + _CHUNK])))
        return len(doomed)

    # --- reads ----------------------------------------------------------------------------

    def _live_order_rows(self, conn: Connection, tenant_id: str, order_id: str,
                         sealed: bool = False) -> Sequence[Any]:  # fmt: skip
        """The order's records, in one query with the tenant's check (`_live_tenant`): a tenant
        that does not exist or was shredded is refused as `_live_tenant` refuses it. `sealed`:
        only what a reveal needs (`_SealedRow`), read through the driver's cursor."""
        params = {"tenant_id": tenant_id, "order_id": order_id}
        rows: Sequence[Any]
        if sealed:
            # bytes(): a driver may hand a blob over as a memoryview (psycopg 2 does)
            rows = [_SealedRow(s, i, doc, p if p is None or type(p) is bytes else bytes(p), v)
                    for s, i, doc, p, v in driver_rows(conn, _SEALED_ROWS, params)]  # fmt: skip
        else:
            rows = conn.execute(_ORDER_ROWS, params).all()
        if not rows or rows[0].tenant_shredded_at is not None:
            if rows:  # shredded, perhaps by another process: its cached keys go now
                self._keys.forget(tenant_id)
            self._live_tenant(conn, tenant_id)  # raises UnknownTenant or TenantShredded
            raise UnknownTenant(tenant_id)  # (it did not: the tenant came after the read above)
        if rows[0].id is None:
            raise RecordNotFound(f"tenant {shown(tenant_id)} has no stored order {shown(order_id)}")
        return list(rows)

    @audited(
        EventName.VAULT_RECORD_READ, "get", lambda v: ([r.record_id for r in v.records], {"records": len(v.records)})
    )
    def get(self, conn: Connection, tenant_id: str, order_id: str, *, principal: Principal) -> OrderView:
        """Every stored document of an order, PII masked. Nothing is decrypted."""
        self._gate.check(conn, principal, Action.RECORDS_READ, tenant_id)
        views = []
        for row in self._live_order_rows(conn, tenant_id, order_id):
            document = Document(row.document)
            data = json.loads(row.clear)
            paths = [p for p in PiiBlob.paths(row.pii) if p != UNKNOWN_PATH]
            for path in paths:
                set_path(data, path, mask(self._catalog.field(document, path)))
            views.append(
                RecordView(
                    row.id, document, row.operation, row.origin, row.marketplace_id, row.seller_id,
                    _aware(row.retrieved_at), row.key_version, paths, row.unknown_fields, data,
                )
            )  # fmt: skip
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
        purpose = self._purpose(purpose)
        wanted = self._pii_fields_named(fields)
        for name, matches in wanted.items():
            for f in matches:
                if purpose not in f.purposes:
                    allowed = ", ".join(sorted(p.value for p in f.purposes))
                    raise PurposeNotAllowed(
                        f"purpose {purpose.value} is not allowed for {name} ({f.category}); allowed: {allowed}"
                    )
        self._gate.check(conn, principal, Action.PII_REVEAL, tenant_id, purpose=purpose, fields=list(wanted))
        by_doc: dict[Document, set[str]] = {}
        for matches in wanted.values():
            for f in matches:
                by_doc.setdefault(f.document, set()).add(f.path)
        out: list[RevealedField] = []
        for row in self._live_order_rows(conn, tenant_id, order_id, sealed=True):
            document = Document(row.document)
            generic = by_doc.get(document)
            if not generic:
                continue
            concrete = [p for p in PiiBlob.paths(row.pii) if generic_path(p) in generic]
            if not concrete:
                continue
            cipher = self._keys.cipher(conn, tenant_id, row.key_version)
            for path, plain in cipher.open(str(row.id), row.pii, set(concrete)).items():
                out.append(RevealedField(row.id, document, path, decode_value(plain)))
        return out

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
        self._gate.check(conn, principal, Action.RECORDS_SEARCH, tenant_id, purpose=purpose, fields=[kind])
        self._live_tenant(conn, tenant_id)
        token = self._keys.blind_index(conn, tenant_id).token(kind, value)
        rows = conn.execute(
            select(records.c.order_id, records.c.id, records.c.document)
            .where(records.c.tenant_id == tenant_id, or_(*(records.c[c] == token for c in BLIND_INDEX_SLOTS[kind])))
            .order_by(records.c.order_id, records.c.document)
        ).all()
        return [SearchHit(o, r, Document(d)) for o, r, d in rows]

    # --- keys -----------------------------------------------------------------------------

    def key_status(self, conn: Connection, tenant_id: str, *, principal: Principal) -> list[KeyVersionInfo]:
        self._check(conn, principal, Action.KEYS_READ, tenant_id, operation="key status")
        self._live_tenant(conn, tenant_id)
        return self._keys.status(conn, tenant_id)

    @audited(EventName.STORAGE_KEYSET_ROTATE, "keys rotate", lambda v: ((), {"version": v}))
    def begin_rotation(self, conn: Connection, tenant_id: str, *, principal: Principal) -> int:
        """Add a new primary data key version (or resume an unfinished rotation). New writes
        use it at once; reads of records still under the old version keep working."""
        self._gate.check(conn, principal, Action.KEYS_ROTATE, tenant_id)
        self._live_tenant(conn, tenant_id)
        return self._keys.begin_rotation(conn, tenant_id, _now())

    def rotation_remaining(self, conn: Connection, tenant_id: str, target_version: int, *, principal: Principal) -> int:
        self._check(conn, principal, Action.KEYS_READ, tenant_id, operation="rotation remaining")
        return int(
            conn.execute(
                select(func.count()).where(records.c.tenant_id == tenant_id, records.c.key_version != target_version)
            ).scalar_one()
        )

    @audited(EventName.STORAGE_KEYSET_ROTATE, "keys reencrypt", lambda n: ((), {"records": n}))
    def reencrypt_batch(
        self, conn: Connection, tenant_id: str, target_version: int, *, principal: Principal, limit: int = 500
    ) -> int:
        """Move up to `limit` records to `target_version`; returns how many moved (0 = done)."""
        self._gate.check(conn, principal, Action.KEYS_ROTATE, tenant_id)
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
        self._gate.check(conn, principal, Action.KEYS_ROTATE, tenant_id)
        self._live_tenant(conn, tenant_id)
        return self._keys.finish_rotation(conn, tenant_id, _now())

    # --- shred ----------------------------------------------------------------------------

    @audited(EventName.STORAGE_KEYSET_DESTROY, "shred", lambda r: ((), {"keys": len(r.keys_destroyed)}))
    def shred(self, conn: Connection, tenant_id: str, *, principal: Principal) -> ShredReceipt:
        """Crypto-shred: destroy every copy of the tenant's keys and leave a tombstone. Constant
        time in the tenant's data; `purge_shredded` removes the unreadable rows afterwards."""
        self._gate.check(conn, principal, Action.TENANTS_SHRED, tenant_id)
        self._live_tenant(conn, tenant_id)
        now = _now()
        receipt = ShredReceipt(tenant_id, now, self._keys.destroy(conn, tenant_id), self._keys.master_key_id)
        conn.execute(
            update(tenants).where(tenants.c.id == tenant_id).values(shredded_at=now, shred_receipt=receipt.as_json())
        )
        return receipt

    def shred_receipt(self, conn: Connection, tenant_id: str, *, principal: Principal) -> dict[str, Any] | None:
        """The receipt of a shredded tenant, or None if it is not shredded."""
        self._check(conn, principal, Action.TENANTS_SHRED, tenant_id, operation="shred receipt")
        self._tenant(conn, tenant_id)
        receipt = conn.execute(select(tenants.c.shred_receipt).where(tenants.c.id == tenant_id)).scalar_one()
        return dict(receipt) if receipt else None

    def unpurged_records(self, conn: Connection, tenant_id: str, *, principal: Principal) -> int:
        """How many unreadable rows of a shredded tenant `purge_shredded` has still to delete."""
        self._check(conn, principal, Action.TENANTS_SHRED, tenant_id, operation="unpurged records")
        self._tenant(conn, tenant_id)
        return int(conn.execute(select(func.count()).where(records.c.tenant_id == tenant_id)).scalar_one())

    @audited(EventName.STORAGE_RECORD_PURGE, "purge", lambda n: ((), {"records": n}))
    def purge_shredded(self, conn: Connection, tenant_id: str, *, principal: Principal, limit: int = 5000) -> int:
        """Delete up to `limit` unreadable rows of a shredded tenant; returns how many went."""
        self._gate.check(conn, principal, Action.TENANTS_SHRED, tenant_id)
        tenant = self._tenant(conn, tenant_id)
        if tenant.shredded_at is None:
            raise PayloadError(f"tenant {tenant_id} is not shredded; run `sagevault shred` first")
        ids = list(conn.execute(select(records.c.id).where(records.c.tenant_id == tenant_id).limit(limit)).scalars())
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            conn.execute(delete(records).where(one_of(conn, records.c.id, chunk)))
        return len(ids)
