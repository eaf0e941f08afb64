"""Alembic environment of the audit tables (their own version table)."""

from __future__ import annotations

from alembic import context

from sagevault.audit._schema import audit_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection, target_metadata=audit_metadata, version_table="alembic_version_audit", render_as_batch=True
)
with context.begin_transaction():
    context.run_migrations()
