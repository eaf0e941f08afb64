"""Records: retention dates (PII 30 days after delivery, the record after 18 months), when the
PII was purged, and whether a buyer restricted processing.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("pii_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("pii_purged_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("restricted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_records_pii_expires",
        "records",
        ["pii_expires_at"],
        sqlite_where=sa.text("pii_purged_at IS NULL"),
        postgresql_where=sa.text("pii_purged_at IS NULL"),
    )
    op.create_index("ix_records_expires", "records", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_records_expires", "records")
    op.drop_index("ix_records_pii_expires", "records")
    with op.batch_alter_table("records") as batch:
        for name in ("restricted_at", "pii_purged_at", "expires_at", "pii_expires_at"):
            batch.drop_column(name)
