"""Governance: the asset inventory, the policy register, the vulnerability register, and
access-review campaigns with their items.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_TABLES = ("assets", "policies", "review_campaigns", "vulnerabilities", "review_items")


def upgrade() -> None:
    op.create_table(
        "assets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("owner", sa.String(120), nullable=False),
        sa.Column("environment", sa.String(24), nullable=False),
        sa.Column("region", sa.String(40), nullable=True),
        sa.Column("amazon_data", sa.Boolean(), nullable=False),
        sa.Column("encrypted_at_rest", sa.Boolean(), nullable=True),
        sa.Column("mfa", sa.Boolean(), nullable=True),
        sa.Column("source", sa.String(12), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("last_reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_reviewed_by", sa.String(128), nullable=True),
        sa.Column("next_review_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disposed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disposal", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_assets"),
        sa.UniqueConstraint("name", name="uq_assets_name"),
    )
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("owner", sa.String(120), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approved_by", sa.String(128), nullable=True),
        sa.Column("next_review_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overdue_noted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_policies"),
        sa.UniqueConstraint("name", "version", name="uq_policies_name_version"),
    )
    op.create_table(
        "review_campaigns",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("default_decision", sa.String(12), nullable=False),
        sa.Column("unused_days", sa.Integer(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(128), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("report_sha256", sa.String(64), nullable=True),
        sa.Column("overdue_noted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminder_stage", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_campaigns"),
    )
    op.create_table(
        "vulnerabilities",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("package", sa.String(120), nullable=False),
        sa.Column("version", sa.String(60), nullable=False),
        sa.Column("advisory", sa.String(80), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("severity", sa.String(12), nullable=False),
        sa.Column("fix_versions", sa.JSON(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overdue_noted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_vulnerabilities"),
        sa.UniqueConstraint("package", "version", "advisory", name="uq_vulnerabilities_package_version_advisory"),
    )
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("subject_kind", sa.String(12), nullable=False),
        sa.Column("subject_status", sa.String(12), nullable=False),
        sa.Column("item_kind", sa.String(12), nullable=False),
        sa.Column("item_ref", sa.String(128), nullable=False),
        sa.Column("item_state", sa.String(12), nullable=False),
        sa.Column("role", sa.String(40), nullable=True),
        sa.Column("tenants", sa.JSON(), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_reveal_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recommendation", sa.String(12), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(12), nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("justification", sa.Text(), nullable=True),
        sa.Column("by_default", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(40), nullable=True),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["review_campaigns.id"], name="fk_review_items_campaign_id_review_campaigns"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_review_items"),
    )
    op.create_index("ix_review_items_campaign_id", "review_items", ["campaign_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON {', '.join(_TABLES)} TO sagevault_app")
        op.execute(f"GRANT USAGE ON SEQUENCE {', '.join(t + '_id_seq' for t in _TABLES)} TO sagevault_app")


def downgrade() -> None:
    for table in reversed(_TABLES):
        op.drop_table(table)
