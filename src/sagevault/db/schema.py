"""The tables, as SQLAlchemy Core. Alembic migrations under `migrations/` create the same schema
(a test compares them)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
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

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One selling partner. A shredded tenant keeps this row as its tombstone.
tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("marketplaces", JSON, nullable=False),
    Column("region", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("shredded_at", DateTime(timezone=True), nullable=True),
    Column("shred_receipt", JSON, nullable=True),
)

# Wrapped key material. `purpose` is "data" (AES-256-GCM, versioned) or "index" (blind-index
# HMAC key). `wrapped` is NULL once a version is retired; every row goes on shred.
tenant_keys = Table(
    "tenant_keys",
    metadata,
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
    metadata,
    Column("name", String(16), primary_key=True),
    Column("last", BigInteger, nullable=False),
)

# One piece of Amazon Information: a document of one SP-API operation for one order.
# `clear` holds the non-PII part as JSON; `pii` holds one AES-GCM ciphertext per PII field
# (see sagevault.crypto.FieldCipher for the layout). The origin columns are the DPP data
# attribution tag.
records = Table(
    "records",
    metadata,
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
    Column("pii_fields", Integer, nullable=False),
    Column("unknown_fields", Integer, nullable=False),
    Column("clear", Text, nullable=False),
    Column("pii", LargeBinary, nullable=False),
    # Blind index: HMAC tokens of normalised PII under the tenant's index key, for equality
    # search. Kept on the record row (not a side table) so ingest writes one row per document.
    *[Column(name, LargeBinary(16), nullable=True) for name in BLIND_INDEX_COLUMNS],
    # The one index that leads with tenant_id: ingest's lookups, per-tenant counts and rotation
    # scans all use its prefix. A second tenant_id index lets the planner pick it on stale
    # statistics and scan a whole tenant per ingest batch.
    UniqueConstraint("tenant_id", "order_id", "document"),
    # Token-only indexes: tokens are keyed per tenant, so they are already selective, and an
    # index that led with tenant_id would tempt PostgreSQL's planner away from the unique
    # (tenant_id, order_id, document) index when ingest looks up existing documents.
    # Partial: a document without, say, a second name adds no entry for it.
    *[
        Index(None, name, sqlite_where=text(f"{name} IS NOT NULL"), postgresql_where=text(f"{name} IS NOT NULL"))
        for name in BLIND_INDEX_COLUMNS
    ],
)

# --- identity and access (sagevault.access) ------------------------------------------------
# A person or a service account. `id` is the pseudonymous id events carry (usr_/svc_ + 12
# random consonants, so it can never look like a phone number);
# login and e-mail stay in this table and never reach an event or a log line.
principals = Table(
    "principals",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(8), nullable=False),  # person | service
    Column("login", String(64), nullable=False, unique=True),
    Column("email", String(254), nullable=True),
    Column("manager_id", String(40), nullable=True),  # people: who answers for their access
    Column("owner_id", String(40), nullable=True),  # services: the person who owns it
    Column("purpose", String(200), nullable=True),  # services: what it is for
    Column("status", String(12), nullable=False),  # enrolling | active | disabled
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("enrolment_hash", LargeBinary(32), nullable=True),
    Column("enrolment_expires_at", DateTime(timezone=True), nullable=True),
    Column("password_hash", String(200), nullable=True),
    Column("password_set_at", DateTime(timezone=True), nullable=True),
    Column("totp_secret", LargeBinary, nullable=True),  # wrapped by the master key
    Column("totp_last_step", BigInteger, nullable=True),  # replay guard
    Column("last_active_at", DateTime(timezone=True), nullable=True),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    Column("locked_until", DateTime(timezone=True), nullable=True),
    Column("lock_count", Integer, nullable=False, server_default=text("0")),
)

password_history = Table(
    "password_history",
    metadata,
    Column("principal_id", String(40), ForeignKey("principals.id"), primary_key=True),
    Column("set_at", DateTime(timezone=True), primary_key=True),
    Column("password_hash", String(200), nullable=False),
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("principal_id", String(40), ForeignKey("principals.id"), primary_key=True),
    Column("code_hash", LargeBinary(32), primary_key=True),
    Column("used_at", DateTime(timezone=True), nullable=True),
)

# Service credentials: `id` is the public part of the key; only a keyed hash of the secret part
# is stored.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(24), primary_key=True),
    Column("principal_id", String(40), ForeignKey("principals.id"), nullable=False, index=True),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("scopes", JSON, nullable=False),  # the most this key may do; the grants still decide
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("principal_id", String(40), ForeignKey("principals.id"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# A principal holds a role for some tenants ("*" = all) in an optional window. Grants of roles
# that reach PII or keys stay `pending` until a second administrator approves them.
grants = Table(
    "grants",
    metadata,
    Column("id", String(24), primary_key=True),
    Column("principal_id", String(40), ForeignKey("principals.id"), nullable=False, index=True),
    Column("role", String(32), nullable=False),
    Column("tenants", JSON, nullable=False),
    Column("not_before", DateTime(timezone=True), nullable=True),
    Column("not_after", DateTime(timezone=True), nullable=True),
    Column("status", String(12), nullable=False),  # pending | active | revoked
    Column("requested_by", String(64), nullable=False),
    Column("approved_by", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

allowlist = Table(
    "allowlist",
    metadata,
    Column("id", String(24), primary_key=True),
    Column("scope", String(12), nullable=False),  # global | role | principal
    Column("target", String(40), nullable=False),  # "" | role name | principal id
    Column("cidr", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=False),
    UniqueConstraint("scope", "target", "cidr"),
)

kill_switches = Table(
    "kill_switches",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("tenant_id", String(64), primary_key=True),  # "*" = every tenant
    Column("engaged", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("changed_by", String(64), nullable=False),
)

# One row: a counter every access change bumps (so each process knows its cached decisions are
# stale) and the access secret (keyed hashes of API keys, codes, sessions, client IPs), wrapped
# by the master key.
access_state = Table(
    "access_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("generation", BigInteger, nullable=False),
    Column("secret", LargeBinary, nullable=True),
    Column("master_key_id", String(200), nullable=True),
)
