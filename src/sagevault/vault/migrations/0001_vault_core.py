"""Vault core: tenants, wrapped tenant keys, records, blind index.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_BLIND_INDEX = ("bi_email", "bi_phone", "bi_postal_code", "bi_name", "bi_name_2")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("marketplaces", sa.JSON(), nullable=False),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shred_receipt", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
    )
    op.create_table(
        "tenant_keys",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(8), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("master_key_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_tenant_keys_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("tenant_id", "purpose", "version", name="pk_tenant_keys"),
    )
    op.create_table(
        "record_ids",
        sa.Column("name", sa.String(16), nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_record_ids"),
    )
    op.bulk_insert(
        sa.table("record_ids", sa.column("name", sa.String), sa.column("last", sa.BigInteger)),
        [{"name": "records", "last": 0}],
    )
    op.create_table(
        "records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("document", sa.String(40), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("operation", sa.String(40), nullable=False),
        sa.Column("marketplace_id", sa.String(32), nullable=True),
        sa.Column("seller_id", sa.String(64), nullable=False),
        sa.Column("retrieved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purchased_at", sa.String(40), nullable=True),
        sa.Column("order_status", sa.String(40), nullable=True),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("pii_fields", sa.Integer(), nullable=False),
        sa.Column("unknown_fields", sa.Integer(), nullable=False),
        sa.Column("clear", sa.Text(), nullable=False),
        sa.Column("pii", sa.LargeBinary(), nullable=False),
        *[sa.Column(name, sa.LargeBinary(16), nullable=True) for name in _BLIND_INDEX],
        sa.PrimaryKeyConstraint("id", name="pk_records"),
        sa.UniqueConstraint("tenant_id", "order_id", "document", name="uq_records_tenant_id_order_id_document"),
    )
    for name in _BLIND_INDEX:
        where = sa.text(f"{name} IS NOT NULL")
        op.create_index(f"ix_records_{name}", "records", [name], sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    op.drop_table("records")
    op.drop_table("record_ids")
    op.drop_table("tenant_keys")
    op.drop_table("tenants")
