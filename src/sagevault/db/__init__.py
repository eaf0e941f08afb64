"""Engine factory, the table definitions and Alembic migrations.

Domain services receive a SQLAlchemy `Connection` inside a transaction that the edge (a CLI
command, a request, a job) opened; they never commit.
"""

from __future__ import annotations

from ._engine import (
    brief_write,
    bulk_insert,
    create_engine_for,
    driver_cursor,
    driver_rows,
    driver_value,
    is_sqlite,
    lock_not_had,
    migrate,
    one_of,
    read_only,
    reading,
    schema_is_current,
)
from .schema import (
    BLIND_INDEX_COLUMNS,
    BLIND_INDEX_SLOTS,
    access_state,
    allowlist,
    api_keys,
    grants,
    kill_switches,
    metadata,
    password_history,
    principals,
    record_ids,
    records,
    recovery_codes,
    sessions,
    tenant_keys,
    tenants,
)

__all__ = [
    "BLIND_INDEX_COLUMNS",
    "BLIND_INDEX_SLOTS",
    "access_state",
    "allowlist",
    "api_keys",
    "brief_write",
    "bulk_insert",
    "create_engine_for",
    "driver_cursor",
    "driver_rows",
    "driver_value",
    "grants",
    "is_sqlite",
    "kill_switches",
    "lock_not_had",
    "metadata",
    "migrate",
    "one_of",
    "password_history",
    "principals",
    "read_only",
    "reading",
    "record_ids",
    "records",
    "recovery_codes",
    "schema_is_current",
    "sessions",
    "tenant_keys",
    "tenants",
]
