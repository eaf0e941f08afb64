"""Deletion, return and retention tables, in the vault's database: requests and their
certificates, legal holds, and the live copies (backups, exports, return bundles) tracked until
they are gone. The records' retention dates are columns of `records` (the vault's table, added by
this package's revision)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text

from sagevault.db import NAMING_CONVENTION

deletion_metadata = MetaData(naming_convention=NAMING_CONVENTION)

# One request to delete (or return, then delete) Amazon Information. The scope is a tenant, a
# list of orders, or one buyer found by blind index; the buyer's identifier is never stored, only
# the records it found and a keyed fingerprint that links a second request for the same buyer.
deletion_requests = Table(
    "deletion_requests",
    deletion_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("scope_kind", String(8), nullable=False),  # tenant | orders | buyer
    Column("scope", Text, nullable=False),  # JSON: order ids, or the buyer's search kind and fingerprint
    Column("scope_key", String(64), nullable=False),  # SHA-256 of the canonical scope: links duplicates
    Column("kind", String(8), nullable=False),  # delete | return
    Column("source", String(24), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("state", String(12), nullable=False),
    Column("reason", String(500), nullable=True),  # why it failed
    Column("linked_to", Integer, nullable=True),  # the first request for the same scope
    Column("recipient", String(200), nullable=True),  # return: the age public key the bundle is for
    Column("record_ids", Text, nullable=True),  # JSON: the records the scope resolved to
    Column("counts", Text, nullable=False),  # JSON: records, fields, keys, ...
    Column("clock_stage", Integer, nullable=False),  # 0, 1 (48 h), 2 (66 h), 3 (overdue)
    Column("requested_by", String(128), nullable=False),
    Column("performed_by", String(128), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("done_at", DateTime(timezone=True), nullable=True),
    Column("certificate", Text, nullable=True),  # the signed certificate (JSON)
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_deletion_requests_state", deletion_requests.c.state)
Index("ix_deletion_requests_scope_key", deletion_requests.c.scope_key)

# A legal hold keeps a record's PII past its retention date: for one order, or a whole tenant
# (order_id "*"), with a stated reason and an end date.
legal_holds = Table(
    "legal_holds",
    deletion_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("order_id", String(64), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("released_by", String(128), nullable=True),
    Column("released_at", DateTime(timezone=True), nullable=True),
)
Index("ix_legal_holds_tenant_order", legal_holds.c.tenant_id, legal_holds.c.order_id)

# Copies of Amazon Information outside the live tables: backups, exports, return bundles. Each is
# tracked until it is destroyed, at the latest `expires_at` (90 days).
live_copies = Table(
    "live_copies",
    deletion_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # backup | export | return-bundle
    Column("location", String(500), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("tenant_id", String(64), nullable=True),
    Column("request_id", Integer, nullable=True),
    Column("created_by", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("overdue_at", DateTime(timezone=True), nullable=True),  # when the overdue alarm's event was recorded
    Column("destroyed_at", DateTime(timezone=True), nullable=True),
    Column("destroyed_by", String(128), nullable=True),
)
Index("ix_live_copies_expires", live_copies.c.destroyed_at, live_copies.c.expires_at)
