"""Ingest's hot path: documents split into clear and PII, PII sealed per field under the
tenant's primary key, blind-index tokens computed, each record dated for retention, rows
bulk-inserted in one statement.

Retention dates (DPP 1): a record's PII goes `pii_after_delivery` days after its order's delivery
(the delivery the order document gives, else the end of the promised window, else the purchase
plus `delivery_margin` days), the whole record `records` days after the purchase (else after its
retrieval). Every document of an order shares its order document's dates: a document stored
before its order's takes provisional dates from its retrieval and is re-dated when the order
document comes."""

from __future__ import annotations

import functools
import gc
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import Connection

from sagevault.catalog import Catalog, Document
from sagevault.db import bulk_insert, driver_value, one_of
from sagevault.errors import PayloadError

from ._keyring import TenantKeyring
from ._operations import ORDER_DOCUMENTS, SourceDocument, when
from ._schema import BLIND_INDEX_COLUMNS, BLIND_INDEX_SLOTS, record_ids, records
from ._split import UNKNOWN_PATH, PiiValue, describe_unknown_path, split
from ._views import IngestResult, RetentionDays

CHUNK = 500  # bound on IN (...) lists
_RECORD_COLUMNS = (
    "id",
    "tenant_id",
    "order_id",
    "document",
    "origin",
    "operation",
    "marketplace_id",
    "seller_id",
    "retrieved_at",
    "purchased_at",
    "order_status",
    "key_version",
    "bi_version",
    "pii_fields",
    "unknown_fields",
    "pii_expires_at",
    "expires_at",
    "clear",
    "pii",
    *BLIND_INDEX_COLUMNS,
)


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


Dates = tuple[datetime, datetime]  # (pii_expires_at, expires_at), in UTC
_LAST_DAY = datetime(9999, 12, 1, tzinfo=UTC)  # a date past which nothing is kept anyway


def _plus(at: datetime, delta: timedelta) -> datetime:
    try:
        return min(at + delta, _LAST_DAY)
    except OverflowError:  # past year 9999
        return _LAST_DAY


@functools.cache
def _deltas(days: RetentionDays) -> tuple[timedelta, timedelta, timedelta]:
    return timedelta(days=days.delivery_margin), timedelta(days=days.pii_after_delivery), timedelta(days=days.records)


def _utc(at: datetime) -> datetime:
    """A stored or given time in UTC (SQLite hands timestamps back without their zone: UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def retention_dates(
    days: RetentionDays, purchased: str | None, delivered: str | None, deliver_by: str | None, retrieved: datetime
) -> Dates:
    """When a record's PII goes and when the record goes, from its order's dates (`order_dates`).

    A delivered order's last update bounds its delivery from above, and so does the promised
    window's end: the earlier of the two is taken (PII never outlives a late delivery's promise by
    more than the policy's days). Without either, the purchase plus `delivery_margin` days. The PII
    never outlives the record."""
    bought = when(purchased)
    delivery = when(deliver_by)
    done = when(delivered)
    if done is not None and (delivery is None or done < delivery):
        delivery = done
    margin, pii, keep = _deltas(days)
    start = bought or retrieved
    if delivery is None:
        delivery = _plus(start, margin)
    expires = _plus(start, keep)
    return min(_plus(delivery, pii), expires), expires


def _earliest(one: Dates | None, other: Dates) -> Dates:
    return other if one is None else (min(one[0], other[0]), min(one[1], other[1]))


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


class DocumentStore:
    """Writes documents of one catalog under a keyring's tenant keys."""

    def __init__(self, keys: TenantKeyring, catalog: Catalog, retention: RetentionDays | None = None) -> None:
        self._keys = keys
        self._trees = {doc: catalog.tree(doc) for doc in Document}
        self.retention = retention or RetentionDays()  # the policy's days: how each record is dated

    def store(
        self,
        conn: Connection,
        tenant_id: str,
        docs: Sequence[SourceDocument],
        retrieved_at: datetime | None,
        origin: str = "amazon",
    ) -> IngestResult:
        """Encrypt and insert `docs` (the last copy of a document wins), replacing the stored
        documents they update. Any error stores nothing (the caller's transaction rolls back)."""
        result = IngestResult()
        if not docs:
            return result
        with _paused_cyclic_gc():
            return self._store(conn, tenant_id, docs, retrieved_at, result, origin)

    def _store(
        self,
        conn: Connection,
        tenant_id: str,
        docs: Sequence[SourceDocument],
        retrieved_at: datetime | None,
        result: IngestResult,
        origin: str,
    ) -> IngestResult:
        latest = {(d.order_id, d.document): d for d in docs}  # last copy of a document wins
        cipher = self._keys.primary(conn, tenant_id)
        index = self._keys.blind_index(conn, tenant_id)
        retrieved = _utc(retrieved_at or datetime.now(UTC))
        now = driver_value(conn, records.c.retrieved_at, retrieved)
        stored, restricted = _stored(conn, tenant_id, latest)
        doomed = [rid for rid, order_id, document, _, _ in stored if (order_id, Document(document)) in latest]
        dated, redate = self._dates(latest, stored, set(doomed), retrieved)
        stamp: Callable[[datetime], Any] = records.c.pii_expires_at.type.dialect_impl(conn.dialect).bind_processor(
            conn.dialect
        ) or (lambda v: v)
        ids = _allocate_ids(conn, len(latest))
        rows: list[tuple[Any, ...]] = []
        trees = self._trees
        dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
        seal, version, token, index_version = cipher.seal_values, cipher.version, index.token, index.version
        for rid, doc in zip(ids, latest.values(), strict=True):
            pii: list[PiiValue] = []
            unknown: dict[str, Any] = {}
            clear = split(doc.body, trees[doc.document], "", pii, unknown)
            pii_expires_at, expires_at = dated[doc.order_id]
            plain: list[tuple[str, Any]] = [(path, value) for path, _, value in pii]
            slots = index_slots({(f.search, v) for _, f, v in pii if f.search is not None and type(v) is str}, token)
            if unknown:
                plain.append((UNKNOWN_PATH, unknown))
                result.unknown_paths.update(describe_unknown_path(p) for p in unknown)
            try:
                clear_json = dumps(clear)
            except ValueError:
                raise PayloadError(f"order {doc.order_id}: payload holds NaN or Infinity, which JSON forbids") from None
            rows.append(
                (
                    rid,
                    tenant_id,
                    doc.order_id,
                    doc.document.value,
                    origin,
                    doc.operation.value,
                    doc.marketplace_id,
                    tenant_id,
                    now,
                    doc.purchased_at,
                    doc.order_status,
                    version,
                    index_version,
                    len(pii),
                    len(unknown),
                    stamp(pii_expires_at),
                    stamp(expires_at),
                    clear_json,
                    seal(str(rid), plain),
                    *slots.values(),
                )
            )
            result.pii_fields += len(pii)
            result.unknown_fields += len(unknown)
            result.documents[doc.document.value] += 1
        result.replaced = _delete(conn, doomed)
        _redate(conn, tenant_id, redate)
        bulk_insert(conn, records, _RECORD_COLUMNS, rows)
        if restricted:  # a buyer's restriction outlives the order being stored again
            for i in range(0, len(restricted), CHUNK):
                conn.execute(
                    update(records)
                    .where(
                        records.c.tenant_id == tenant_id, one_of(conn, records.c.order_id, restricted[i : i + CHUNK])
                    )
                    .values(restricted_at=retrieved)
                )
        result.records = len(rows)
        result.orders = len({d.order_id for d in latest.values()})
        return result

    def _dates(
        self,
        latest: dict[tuple[str, Document], SourceDocument],
        stored: list[tuple[int, str, str, Any, Any]],
        doomed: set[int],
        retrieved: datetime,
    ) -> tuple[dict[str, Dates], dict[str, Dates]]:
        """Each order's retention dates, and those of the orders whose stored documents (the ones
        this batch does not replace) must take new dates because an order document came.

        An order document of the batch dates its order (two of them, v0 and 2026-01-01: the
        earlier dates). Otherwise the stored order document's dates hold; without one, the
        earliest of the stored documents' and the provisional dates of a document retrieved now."""
        days = self.retention
        dates: dict[str, Dates] = {}
        for doc in latest.values():
            if doc.document in ORDER_DOCUMENTS:
                found = retention_dates(days, doc.purchased_at, doc.delivered_at, doc.deliver_by, retrieved)
                dates[doc.order_id] = _earliest(dates.get(doc.order_id), found)
        from_order: dict[str, Dates] = {}
        from_others: dict[str, Dates] = {}
        siblings: set[str] = set()
        for rid, order_id, document, pii_expires_at, expires_at in stored:
            if rid in doomed:
                continue
            siblings.add(order_id)
            if pii_expires_at is None or expires_at is None:  # stored before records were dated
                continue
            kept = from_order if Document(document) in ORDER_DOCUMENTS else from_others
            kept[order_id] = _earliest(kept.get(order_id), (_utc(pii_expires_at), _utc(expires_at)))
        redate = {}
        for order_id in siblings & dates.keys():
            dates[order_id] = redate[order_id] = _earliest(from_order.get(order_id), dates[order_id])
        provisional = retention_dates(days, None, None, None, retrieved)
        for order_id, _ in latest:
            if order_id not in dates:
                dates[order_id] = from_order.get(order_id) or _earliest(from_others.get(order_id), provisional)
        return dates, redate


def index_slots(searchable: Iterable[tuple[str, str]], token: Callable[[str, str], bytes]) -> dict[str, bytes | None]:
    """The blind-index columns of a record from its searchable (kind, value) pairs: a token each,
    in the kind's first free slot (buyer and recipient often share a name: one token)."""
    slots: dict[str, bytes | None] = dict.fromkeys(BLIND_INDEX_COLUMNS)
    for kind, value in searchable:
        tok = token(kind, value)
        for column in BLIND_INDEX_SLOTS[kind]:
            if slots[column] is None:
                slots[column] = tok
                break
    return slots


def _stored(
    conn: Connection, tenant_id: str, latest: dict[tuple[str, Document], SourceDocument]
) -> tuple[list[tuple[int, str, str, Any, Any]], list[str]]:
    """The stored documents of the batch's orders (id, order, document and retention dates), and
    the orders among them whose processing a buyer restricted (any stored document flagged)."""
    order_ids = sorted({order_id for order_id, _ in latest})
    found: list[tuple[int, str, str, Any, Any]] = []
    restricted: set[str] = set()
    columns = (records.c.id, records.c.order_id, records.c.document, records.c.pii_expires_at, records.c.expires_at)
    for i in range(0, len(order_ids), CHUNK):
        chunk = order_ids[i : i + CHUNK]
        for r in conn.execute(
            select(*columns, records.c.restricted_at).where(
                records.c.tenant_id == tenant_id, one_of(conn, records.c.order_id, chunk)
            )
        ):
            found.append((r.id, r.order_id, r.document, r.pii_expires_at, r.expires_at))
            if r.restricted_at is not None:
                restricted.add(r.order_id)
    return found, sorted(restricted)


def _delete(conn: Connection, doomed: list[int]) -> int:
    for i in range(0, len(doomed), CHUNK):
        conn.execute(delete(records).where(one_of(conn, records.c.id, doomed[i : i + CHUNK])))
    return len(doomed)


_REDATE = (
    update(records)
    .where(records.c.tenant_id == bindparam("tenant"), records.c.order_id == bindparam("order"))
    .values(pii_expires_at=bindparam("pii_at"), expires_at=bindparam("at"))
)


def _redate(conn: Connection, tenant_id: str, dates: dict[str, Dates]) -> None:
    """Give the stored documents of these orders their order's (new) dates."""
    if dates:
        conn.execute(
            _REDATE, [{"tenant": tenant_id, "order": o, "pii_at": p, "at": e} for o, (p, e) in sorted(dates.items())]
        )
