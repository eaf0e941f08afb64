"""The SP-API connector: connections and sync checkpoints.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sp_connections",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("api", sa.String(20), nullable=False),
        sa.Column("restricted_data", sa.Boolean(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("oauth_state_hash", sa.String(64), nullable=True),
        sa.Column("oauth_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_sp_connections"),
    )
    op.create_table(
        "sp_sync",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("marketplace_id", sa.String(32), nullable=False),
        sa.Column("window_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_token", sa.Text(), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(80), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "marketplace_id", name="pk_sp_sync"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON sp_connections, sp_sync TO sagevault_app")


def downgrade() -> None:
    op.drop_table("sp_sync")
    op.drop_table("sp_connections")
