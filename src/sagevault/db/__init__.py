"""Engine factory, the table definitions and Alembic migrations.

Domain services receive a SQLAlchemy `Connection` inside a transaction that the edge (a CLI
command, a request, a job) opened; they never commit.
"""

from __future__ import annotations

from ._engine import bulk_insert, create_engine_for, driver_value, is_sqlite, migrate, one_of, schema_is_current
from .schema import BLIND_INDEX_COLUMNS, BLIND_INDEX_SLOTS, metadata, record_ids, records, tenant_keys, tenants

__all__ = [
    "BLIND_INDEX_COLUMNS",
    "BLIND_INDEX_SLOTS",
    "bulk_insert",
    "create_engine_for",
    "driver_value",
    "is_sqlite",
    "metadata",
    "migrate",
    "one_of",
    "record_ids",
    "records",
    "schema_is_current",
    "tenant_keys",
    "tenants",
]
