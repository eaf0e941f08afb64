"""Identity and access: principals, credentials, grants, allow-lists, kill switches.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def _principal_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["principal_id"], ["principals.id"], name=f"fk_{table}_principal_id_principals")


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("manager_id", sa.String(40), nullable=True),
        sa.Column("owner_id", sa.String(40), nullable=True),
        sa.Column("purpose", sa.String(200), nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("enrolment_hash", sa.LargeBinary(32), nullable=True),
        sa.Column("enrolment_expires_at", _TS, nullable=True),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("password_set_at", _TS, nullable=True),
        sa.Column("totp_secret", sa.LargeBinary(), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("last_active_at", _TS, nullable=True),
        sa.Column("disabled_at", _TS, nullable=True),
        sa.Column("locked_until", _TS, nullable=True),
        sa.Column("lock_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_principals"),
        sa.UniqueConstraint("login", name="uq_principals_login"),
    )
    op.create_table(
        "password_history",
        sa.Column("principal_id", sa.String(40), nullable=False),
        sa.Column("set_at", _TS, nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        _principal_fk("password_history"),
        sa.PrimaryKeyConstraint("principal_id", "set_at", name="pk_password_history"),
    )
    op.create_table(
        "recovery_codes",
        sa.Column("principal_id", sa.String(40), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("used_at", _TS, nullable=True),
        _principal_fk("recovery_codes"),
        sa.PrimaryKeyConstraint("principal_id", "code_hash", name="pk_recovery_codes"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("principal_id", sa.String(40), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("last_used_at", _TS, nullable=True),
        _principal_fk("api_keys"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
    )
    op.create_index("ix_api_keys_principal_id", "api_keys", ["principal_id"])
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("principal_id", sa.String(40), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        _principal_fk("sessions"),
        sa.PrimaryKeyConstraint("token_hash", name="pk_sessions"),
    )
    op.create_index("ix_sessions_principal_id", "sessions", ["principal_id"])
    op.create_table(
        "grants",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("principal_id", sa.String(40), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("tenants", sa.JSON(), nullable=False),
        sa.Column("not_before", _TS, nullable=True),
        sa.Column("not_after", _TS, nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("approved_by", sa.String(64), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        _principal_fk("grants"),
        sa.PrimaryKeyConstraint("id", name="pk_grants"),
    )
    op.create_index("ix_grants_principal_id", "grants", ["principal_id"])
    op.create_table(
        "allowlist",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("scope", sa.String(12), nullable=False),
        sa.Column("target", sa.String(40), nullable=False),
        sa.Column("cidr", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_allowlist"),
        sa.UniqueConstraint("scope", "target", "cidr", name="uq_allowlist_scope_target_cidr"),
    )
    op.create_table(
        "kill_switches",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("engaged", sa.Boolean(), nullable=False),
        sa.Column("changed_at", _TS, nullable=False),
        sa.Column("changed_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("name", "tenant_id", name="pk_kill_switches"),
    )
    op.create_table(
        "access_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=True),
        sa.Column("master_key_id", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_access_state"),
    )
    op.execute("INSERT INTO access_state (id, generation) VALUES (1, 0)")


def downgrade() -> None:
    for table in (
        "access_state",
        "kill_switches",
        "allowlist",
        "grants",
        "sessions",
        "api_keys",
        "recovery_codes",
        "password_history",
        "principals",
    ):
        op.drop_table(table)
