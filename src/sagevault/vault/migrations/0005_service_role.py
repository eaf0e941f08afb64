"""PostgreSQL: what the running service may do on the vault's database (vault, access and jobs
tables): read and write rows, read the revision; no DDL (the migrations run as the owner).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Every table of the chain at this revision; a later revision that adds a table grants it too
# (tests/db/test_service_role.py checks that the role can use every table and nothing more).
_TABLES = (
    "tenants",
    "tenant_keys",
    "record_ids",
    "records",
    "principals",
    "password_history",
    "recovery_codes",
    "api_keys",
    "sessions",
    "grants",
    "allowlist",
    "kill_switches",
    "access_state",
    "job_runs",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sagevault_app') THEN "
        "CREATE ROLE sagevault_app NOLOGIN; END IF; END $$"
    )
    # The owner may take the role (SET ROLE) when one URL serves both (a superuser always may).
    op.execute(
        "DO $$ BEGIN IF NOT pg_has_role(current_user, 'sagevault_app', 'MEMBER') THEN "
        "EXECUTE 'GRANT sagevault_app TO ' || quote_ident(current_user); END IF; END $$"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(_TABLES)} TO sagevault_app")
    op.execute("GRANT SELECT ON alembic_version TO sagevault_app")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"REVOKE ALL ON {', '.join(_TABLES)}, alembic_version FROM sagevault_app")
