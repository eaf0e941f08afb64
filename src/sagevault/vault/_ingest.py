"""Ingest's hot path: documents split into clear and PII, PII sealed per field under the
tenant's primary key, blind-index tokens computed, rows bulk-inserted in one statement."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from sagevault.catalog import Catalog, Document
from sagevault.db import bulk_insert, driver_value, one_of
from sagevault.errors import PayloadError

from ._keyring import TenantKeyring
from ._operations import SourceDocument
from ._schema import BLIND_INDEX_COLUMNS, BLIND_INDEX_SLOTS, record_ids, records
from ._split import UNKNOWN_PATH, PiiValue, describe_unknown_path, split
from ._views import IngestResult

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

    def __init__(self, keys: TenantKeyring, catalog: Catalog) -> None:
        self._keys = keys
        self._trees = {doc: catalog.tree(doc) for doc in Document}

    def store(
        self, conn: Connection, tenant_id: str, docs: Sequence[SourceDocument], retrieved_at: datetime | None
    ) -> IngestResult:
        """Encrypt and insert `docs` (the last copy of a document wins), replacing the stored
        documents they update. Any error stores nothing (the caller's transaction rolls back)."""
        result = IngestResult()
        if not docs:
            return result
        with _paused_cyclic_gc():
            return self._store(conn, tenant_id, docs, retrieved_at, result)

    def _store(
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
        now = driver_value(conn, records.c.retrieved_at, retrieved_at or datetime.now(UTC))
        ids = _allocate_ids(conn, len(latest))
        rows: list[tuple[Any, ...]] = []
        trees = self._trees
        dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
        seal, version, token, index_version = cipher.seal_values, cipher.version, index.token, index.version
        for rid, doc in zip(ids, latest.values(), strict=True):
            pii: list[PiiValue] = []
            unknown: dict[str, Any] = {}
            clear = split(doc.body, trees[doc.document], "", pii, unknown)
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
                    "amazon",
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
                    clear_json,
                    seal(str(rid), plain),
                    *slots.values(),
                )
            )
            result.pii_fields += len(pii)
            result.unknown_fields += len(unknown)
            result.documents[doc.document.value] += 1
        result.replaced = _delete_existing(conn, tenant_id, latest)
        bulk_insert(conn, records, _RECORD_COLUMNS, rows)
        result.records = len(rows)
        result.orders = len({d.order_id for d in latest.values()})
        return result


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


def _delete_existing(conn: Connection, tenant_id: str, latest: dict[tuple[str, Document], SourceDocument]) -> int:
    order_ids = sorted({order_id for order_id, _ in latest})
    doomed: list[int] = []
    for i in range(0, len(order_ids), CHUNK):
        chunk = order_ids[i : i + CHUNK]
        for rid, order_id, document in conn.execute(
            select(records.c.id, records.c.order_id, records.c.document).where(
                records.c.tenant_id == tenant_id, one_of(conn, records.c.order_id, chunk)
            )
        ):
            if (order_id, Document(document)) in latest:
                doomed.append(rid)
    for i in range(0, len(doomed), CHUNK):
        conn.execute(delete(records).where(one_of(conn, records.c.id, doomed[i : i + CHUNK])))
    return len(doomed)
