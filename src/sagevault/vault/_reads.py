"""What the vault reads of one order: the statements (built once) and the reveal's rows."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from sqlalchemy import Select, and_, bindparam, literal_column, null, select

from sagevault.catalog import CatalogField, Document

from ._schema import records, tenants


def order_rows_query(*columns: Any) -> Select[Any]:
    """One order's records (`columns`) and its tenant's shred mark, for the bound parameters
    `tenant_id` and `order_id`: a row with no record when the tenant has no such order, no row
    when there is no such tenant. Built once: building and hashing the statement on every call
    cost several times what running it does."""
    return (
        select(tenants.c.shredded_at.label("tenant_shredded_at"), *columns)
        .select_from(
            tenants.outerjoin(
                records, and_(records.c.tenant_id == tenants.c.id, records.c.order_id == bindparam("order_id"))
            )
        )
        .where(tenants.c.id == bindparam("tenant_id"))
        .order_by(records.c.document)
    )


ORDER_ROWS = order_rows_query(records)


_SEALED = (records.c.id, records.c.document, records.c.pii, records.c.key_version, records.c.restricted_at)


@functools.cache
def sealed_rows(state_query: str | None) -> Select[Any]:
    """What a reveal reads of an order, with the access gate's rule version
    (`AccessGate.state_query`) in the same statement: always at least one row (the version, the
    tenant's id or NULL, its shred mark, then `SealedRow`'s record columns), so the reveal takes
    one statement whether or not the tenant or the order exists. One query per gate's SQL."""
    state = select((literal_column(state_query) if state_query is not None else null()).label("state")).subquery()
    return (
        select(state.c.state, tenants.c.id, tenants.c.shredded_at, *_SEALED)
        .select_from(
            state.outerjoin(tenants, tenants.c.id == bindparam("tenant_id")).outerjoin(
                records, and_(records.c.tenant_id == tenants.c.id, records.c.order_id == bindparam("order_id"))
            )
        )
        .order_by(records.c.document)
    )


class SealedRow(NamedTuple):
    """A record of `sealed_rows` as the driver returns it (`driver_rows`): the shred mark is only
    tested for NULL, the rest are ids, text and the blob."""

    tenant_shredded_at: Any
    id: int | None
    document: str
    pii: bytes | None  # None with id: a tenant without this order
    key_version: int
    restricted_at: Any  # a buyer restricted processing: tested for NULL only


def by_document(wanted: dict[str, list[CatalogField]]) -> dict[Document, set[str]]:
    """The catalog paths to reveal per document."""
    by_doc: dict[Document, set[str]] = {}
    for matches in wanted.values():
        for f in matches:
            by_doc.setdefault(f.document, set()).add(f.path)
    return by_doc
