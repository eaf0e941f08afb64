"""Records: retention dates for the records stored before ingest dated them, read from their
stored clear part as ingest reads an order document (`order_dates`).

An order document (orders-v0 Order, Orders 2026-01-01 Order) is dated from its purchase, delivery
and promised delivery dates; the other documents of an order (address, buyer info, items,
regulated information) take their order document's dates; a document whose order has none is
dated from its retrieval (the purchase taken as no earlier). The policy profile is not known to
a migration: the DPP's own numbers (and the profile's defaults) are used, PII 30 days after
delivery, records 548 days, delivery 30 days after purchase when the order gives no date. A
stricter profile applies to records ingested from now on.

Batched by record id (rows read and written a page at a time); runs on SQLite and PostgreSQL.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from sagevault.catalog import Document
from sagevault.vault._ingest import retention_dates
from sagevault.vault._operations import ORDER_DOCUMENTS, order_dates
from sagevault.vault._views import RetentionDays

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BATCH = 2000
_DAYS = RetentionDays()  # 30 days after delivery, 548 days, a 30-day delivery margin

_records = sa.table(
    "records",
    sa.column("id", sa.Integer),
    sa.column("tenant_id", sa.String),
    sa.column("order_id", sa.String),
    sa.column("document", sa.String),
    sa.column("retrieved_at", sa.DateTime(timezone=True)),
    sa.column("purchased_at", sa.String),
    sa.column("clear", sa.Text),
    sa.column("pii_expires_at", sa.DateTime(timezone=True)),
    sa.column("expires_at", sa.DateTime(timezone=True)),
)
_ORDER_DOCS = [d.value for d in ORDER_DOCUMENTS]


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _dates(document: str, purchased: str | None, clear: str, retrieved: datetime) -> tuple[datetime, datetime]:
    if document not in _ORDER_DOCS:
        return retention_dates(_DAYS, None, None, None, retrieved)
    try:
        body: Any = json.loads(clear)
    except ValueError:
        body = None
    found = order_dates(Document(document), body) if isinstance(body, dict) else None
    if found is None:
        return retention_dates(_DAYS, purchased, None, None, retrieved)
    return retention_dates(_DAYS, found.purchased or purchased, found.delivered, found.deliver_by, retrieved)


def upgrade() -> None:
    conn = op.get_bind()
    r = _records
    # 1. Every undated record from its own document, a batch at a time (keyset on id).
    write = (
        sa.update(r)
        .where(r.c.id == sa.bindparam("rid"))
        .values(pii_expires_at=sa.bindparam("pii_at"), expires_at=sa.bindparam("at"))
    )
    after = 0
    while True:
        rows = conn.execute(
            sa.select(r.c.id, r.c.document, r.c.purchased_at, r.c.clear, r.c.retrieved_at)
            .where(r.c.id > after, r.c.pii_expires_at.is_(None))
            .order_by(r.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        params = []
        for rid, document, purchased, clear, retrieved in rows:
            pii_at, at = _dates(document, purchased, clear, _utc(retrieved))
            params.append({"rid": rid, "pii_at": pii_at, "at": at})
        conn.execute(write, params)
        after = rows[-1].id
    # 2. The other documents of an order take its order document's dates (the earliest, when an
    # order has both an orders-v0 and an Orders 2026-01-01 document).
    o = r.alias("o")

    def of_order(column: Any) -> Any:
        return (
            sa.select(sa.func.min(column))
            .where(o.c.tenant_id == r.c.tenant_id, o.c.order_id == r.c.order_id, o.c.document.in_(_ORDER_DOCS))
            .scalar_subquery()
        )

    has_order = sa.exists().where(
        o.c.tenant_id == r.c.tenant_id, o.c.order_id == r.c.order_id, o.c.document.in_(_ORDER_DOCS)
    )
    after = 0
    while True:
        ids = list(
            conn.execute(
                sa.select(r.c.id).where(r.c.id > after, r.c.document.not_in(_ORDER_DOCS)).order_by(r.c.id).limit(BATCH)
            ).scalars()
        )
        if not ids:
            break
        conn.execute(
            sa.update(r)
            .where(r.c.id > after, r.c.id <= ids[-1], r.c.document.not_in(_ORDER_DOCS), has_order)
            .values(pii_expires_at=of_order(o.c.pii_expires_at), expires_at=of_order(o.c.expires_at))
        )
        after = ids[-1]


def downgrade() -> None:
    """The dates stay: a record without them would never be purged."""
