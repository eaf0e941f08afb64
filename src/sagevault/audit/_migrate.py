from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect

_MIGRATIONS = Path(__file__).with_name("migrations")


def migrate_audit(engine: Engine) -> None:
    """Bring the audit tables to the newest migration (their own version table)."""
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def has_audit_schema(engine: Engine) -> bool:
    return "audit_events" in inspect(engine).get_table_names()
