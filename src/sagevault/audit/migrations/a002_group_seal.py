"""Audit log: a seal on the last event of every committed group (an Ed25519 signature over its
sequence number and chain hash, by the audit signing key, which is not in the database).

Revision ID: a002
Revises: a001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a002"
down_revision = "a001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Added, never filled in: events written before it are vouched for by the first seal after
    # them (the chain hash it signs covers every event before it) and by the signed digests.
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("seal", sa.LargeBinary(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("seal")
