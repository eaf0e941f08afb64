"""The engine factory, the unit-of-work helpers and the migration runner.

Domain services receive a SQLAlchemy `Connection` inside a transaction that the edge (a CLI
command, a request, a job) opened; they never commit. Each domain declares its own tables
(`<domain>/_schema.py`) and migrations (`<domain>/migrations/`); this package only runs them.
"""

from __future__ import annotations

from ._engine import (
    SERVICE_ROLE,
    brief_write,
    bulk_insert,
    create_engine_for,
    driver_cursor,
    driver_rows,
    driver_value,
    is_sqlite,
    lock_not_had,
    one_of,
    query_only,
    read_only,
    reading,
    statements_on_their_own,
)
from ._migrations import MigrationChain, migrate, migrate_if_behind, schema_is_current

# Constraint and index names, the same in every domain's tables and migrations.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

__all__ = [
    "NAMING_CONVENTION",
    "SERVICE_ROLE",
    "MigrationChain",
    "brief_write",
    "bulk_insert",
    "create_engine_for",
    "driver_cursor",
    "driver_rows",
    "driver_value",
    "is_sqlite",
    "lock_not_had",
    "migrate",
    "migrate_if_behind",
    "one_of",
    "query_only",
    "read_only",
    "reading",
    "schema_is_current",
    "statements_on_their_own",
]
