"""The vault's tables: tenants, their wrapped keys, records and the record id counter, as
SQLAlchemy Core. The Alembic revisions in `migrations/` create the same schema (a test compares
them)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from sagevault.db import NAMING_CONVENTION

vault_metadata = MetaData(naming_convention=NAMING_CONVENTION)

# One selling partner. A shredded tenant keeps this row as its tombstone.
tenants = Table(
    "tenants",
    vault_metadata,
    Column("id", String(64), primary_key=True),
    Column("marketplaces", JSON, nullable=False),
    Column("region", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("shredded_at", DateTime(timezone=True), nullable=True),
    Column("shred_receipt", JSON, nullable=True),
)

# Wrapped key material. `purpose` is "data" (AES-256-GCM) or "index" (blind-index HMAC key), each
# versioned and rotated on its own. `wrapped` is NULL once a version is retired; every row goes
# on shred. `master_key_id` names the master key that wrapped it (the master key rotates too).
tenant_keys = Table(
    "tenant_keys",
    vault_metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id"), primary_key=True),
    Column("purpose", String(8), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("status", String(12), nullable=False),
    Column("wrapped", LargeBinary, nullable=True),
    Column("master_key_id", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("retired_at", DateTime(timezone=True), nullable=True),
)

RECORD_ID = BigInteger().with_variant(Integer(), "sqlite")

# Search kind -> the record columns holding its tokens (a document has at most two names:
# buyer and recipient).
BLIND_INDEX_SLOTS: dict[str, tuple[str, ...]] = {
    "email": ("bi_email",),
    "phone": ("bi_phone",),
    "postal_code": ("bi_postal_code",),
    "name": ("bi_name", "bi_name_2"),
}
BLIND_INDEX_COLUMNS = tuple(c for cols in BLIND_INDEX_SLOTS.values() for c in cols)

# Record ids are handed out from this one-row counter, never reused (not even after a purge),
# so an old ciphertext can never match a new record's associated data.
record_ids = Table(
    "record_ids",
    vault_metadata,
    Column("name", String(16), primary_key=True),
    Column("last", BigInteger, nullable=False),
)

# One piece of Amazon Information: a document of one SP-API operation for one order.
# `clear` holds the non-PII part as JSON; `pii` holds one AES-GCM ciphertext per PII field
# (see sagevault.crypto.FieldCipher for the layout). The origin columns are the DPP data
# attribution tag.
records = Table(
    "records",
    vault_metadata,
    # Allocated by the vault before encryption (associated data binds it); on SQLite an
    # INTEGER PRIMARY KEY is the rowid itself, so the id costs no index of its own.
    Column("id", RECORD_ID, primary_key=True, autoincrement=False),
    # No foreign key: PostgreSQL checks one with a trigger per inserted row, a third of bulk
    # ingest time. The vault checks the tenant (and its tombstone) in the same transaction,
    # and tenant rows are never deleted.
    Column("tenant_id", String(64), nullable=False),
    Column("order_id", String(64), nullable=False),
    Column("document", String(40), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("operation", String(40), nullable=False),
    Column("marketplace_id", String(32), nullable=True),
    Column("seller_id", String(64), nullable=False),
    Column("retrieved_at", DateTime(timezone=True), nullable=False),
    Column("purchased_at", String(40), nullable=True),
    Column("order_status", String(40), nullable=True),
    Column("key_version", Integer, nullable=False),
    # The blind-index key version of the tokens below (the index key rotates apart from the data key).
    Column("bi_version", Integer, nullable=False, server_default=text("1")),
    Column("pii_fields", Integer, nullable=False),
    Column("unknown_fields", Integer, nullable=False),
    # Retention (DPP 1, 9): the PII fields go at `pii_expires_at` (30 days after delivery), the
    # whole record at `expires_at` (18 months); `pii_purged_at` says the PII is gone. A record
    # whose processing a buyer restricted (`restricted_at`) is read, revealed and exported by no one.
    Column("pii_expires_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("pii_purged_at", DateTime(timezone=True), nullable=True),
    Column("restricted_at", DateTime(timezone=True), nullable=True),
    Column("clear", Text, nullable=False),
    Column("pii", LargeBinary, nullable=False),
    # Blind index: HMAC tokens of normalised PII under the tenant's index key, for equality
    # search. Kept on the record row (not a side table) so ingest writes one row per document.
    *[Column(name, LargeBinary(16), nullable=True) for name in BLIND_INDEX_COLUMNS],
    # The one index that leads with tenant_id: ingest's lookups, per-tenant counts and rotation
    # scans all use its prefix. A second tenant_id index lets the planner pick it on stale
    # statistics and scan a whole tenant per ingest batch.
    UniqueConstraint("tenant_id", "order_id", "document"),
    # The retention job's scans: records whose PII is still there, by expiry; records by expiry.
    Index(
        "ix_records_pii_expires",
        "pii_expires_at",
        sqlite_where=text("pii_purged_at IS NULL"),
        postgresql_where=text("pii_purged_at IS NULL"),
    ),
    Index("ix_records_expires", "expires_at"),
    # Token-only indexes: tokens are keyed per tenant, so they are already selective, and an
    # index that led with tenant_id would tempt PostgreSQL's planner away from the unique
    # (tenant_id, order_id, document) index when ingest looks up existing documents.
    # Partial: a document without, say, a second name adds no entry for it.
    *[
        Index(None, name, sqlite_where=text(f"{name} IS NOT NULL"), postgresql_where=text(f"{name} IS NOT NULL"))
        for name in BLIND_INDEX_COLUMNS
    ],
)

# A tenant's own secrets (an SP-API refresh token): each sealed under the tenant's data key, with
# `secret/<name>` as its associated data, so a crypto-shred destroys them with the tenant's data and
# a rotation re-seals them before the old key version is retired.
tenant_secrets = Table(
    "tenant_secrets",
    vault_metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id"), primary_key=True),
    Column("name", String(40), primary_key=True),
    Column("key_version", Integer, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
