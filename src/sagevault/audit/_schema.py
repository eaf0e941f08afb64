"""The audit tables. They live in their own metadata and migration chain so that the embedded
deployment can keep them in a database file of their own (no lock shared with the vault)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, MetaData, String, Table, Text

audit_metadata = MetaData()

SEQ = BigInteger().with_variant(Integer(), "sqlite")

# Append-only. `prev_hash`/`hash` chain every row to the one before it:
# hash = SHA-256(prev_hash || canonical JSON of the row's values); `seal` signs a group's last hash.
audit_events = Table(
    "audit_events",
    audit_metadata,
    Column("seq", SEQ, primary_key=True, autoincrement=False),
    Column("at", String(32), nullable=False),
    Column("name", String(48), nullable=False),
    Column("channel", String(12), nullable=False),
    Column("outcome", String(12), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("actor", String(128), nullable=True),
    Column("tenant_id", String(128), nullable=True),
    Column("record_ids", Text, nullable=False),
    Column("counts", Text, nullable=False),
    Column("client_ip_hash", String(64), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("operation", String(64), nullable=True),
    Column("fingerprint", String(64), nullable=True),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    # On the last event of each committed group: the audit signing key's Ed25519 signature over
    # its seq and hash (`seal_message`), so an event appended without the key is seen as such.
    Column("seal", LargeBinary(64), nullable=True),
    Index("ix_audit_events_at", "at"),
    Index("ix_audit_events_tenant_id", "tenant_id"),
    Index("ix_audit_events_actor", "actor"),
)

# The chain head: one row, locked by every append so that concurrent writers never fork.
audit_head = Table(
    "audit_head",
    audit_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
)

# Where a retention purge cut the chain: the last purged event's seq and hash, signed.
audit_anchors = Table(
    "audit_anchors",
    audit_metadata,
    Column("last_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("purged_at", String(32), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
)

COLUMNS = (
    "seq",
    "at",
    "name",
    "channel",
    "outcome",
    "reason",
    "actor",
    "tenant_id",
    "record_ids",
    "counts",
    "client_ip_hash",
    "request_id",
    "operation",
    "fingerprint",
)
