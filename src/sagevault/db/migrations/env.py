"""Alembic environment: migrations always run on a connection SageVault hands in, into the
version table of the chain being migrated (`sagevault.db.MigrationChain`)."""

from __future__ import annotations

from alembic import context

attributes = context.config.attributes
context.configure(connection=attributes["connection"], version_table=attributes["version_table"], render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
