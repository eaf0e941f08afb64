from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from sagevault.db import migrate

_MIGRATIONS = Path(__file__).with_name("migrations")


def migrate_audit(engine: Engine) -> None:
    """Bring the audit tables to the newest migration (their own chain and version table)."""
    migrate(engine, _MIGRATIONS)
