from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, ColumnElement, Engine, Table, any_, create_engine, event, literal
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

_MIGRATIONS = Path(__file__).with_name("migrations")


def is_sqlite(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "sqlite"


def create_engine_for(url: str, **kwargs: Any) -> Engine:
    """An engine with SageVault's connection settings.

    SQLite: WAL for concurrent readers, `synchronous=FULL` so a committed batch survives power
    loss, and `secure_delete` so deleted rows (shredded keys, replaced ciphertexts) are
    overwritten in the file instead of lingering on free pages.
    """
    # hide_parameters: a database error's message must never carry bound values.
    engine = create_engine(url, hide_parameters=True, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Own the transaction boundaries (pysqlite's implicit BEGIN breaks SAVEPOINTs).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            for pragma in (
                "journal_mode=WAL",
                "synchronous=FULL",
                "foreign_keys=ON",
                "secure_delete=ON",
                "busy_timeout=10000",
            ):
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _alembic_config(conn: Connection, script_location: Path = _MIGRATIONS) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["connection"] = conn
    return cfg


def migrate(engine: Engine, script_location: Path = _MIGRATIONS) -> None:
    """Bring a migration chain (the vault's by default) to its newest revision."""
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn, script_location), "head")


def schema_is_current(conn: Connection) -> bool:
    script = ScriptDirectory.from_config(_alembic_config(conn))
    current = MigrationContext.configure(conn).get_current_heads()
    return set(current) == set(script.get_heads())


def bulk_insert(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert many rows through the driver's executemany, skipping per-row SQLAlchemy parameter
    processing (the ingest hot path). Values must already be in driver form: use
    `driver_value` for types that need conversion (datetimes on SQLite)."""
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    cols = ", ".join(columns)
    marks = ", ".join([mark] * len(columns))
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({cols}) VALUES ({marks})", list(rows))  # noqa: S608


def driver_value(conn: Connection, column: Column[Any], value: Any) -> Any:
    """`value` converted as SQLAlchemy would bind it for `column` on this connection's dialect."""
    processor = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return processor(value) if processor else value


def one_of(conn: Connection, column: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN values`, as one array parameter on PostgreSQL.

    A list of separate parameters gets a generic plan once psycopg prepares the statement, and
    PostgreSQL then filters a whole tenant row by row instead of probing the index; a single
    typed array parameter keeps the index condition.
    """
    if conn.dialect.name == "postgresql":
        return column == any_(literal(list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)
