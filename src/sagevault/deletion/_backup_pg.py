"""PostgreSQL backups: `pg_dump --data-only` of the vault's tables (never the security log's), and
a restore that never lets the restored rows be read before every deletion is re-applied.

A restore loads the dump into a scratch schema of the same database (tables made by the
migrations, then made UNLOGGED, so the rows a replay deletes are never written to PostgreSQL's
WAL), replays there, and only then swaps: in one transaction on the live schema, every vault table
is truncated and filled from the scratch schema, and the sequences moved past the highest ids.
Readers see the old rows until that commit and the replayed rows after it. The scratch schema is
dropped whatever happens. Everything here runs as the tables' owner (`database_admin_url`).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, MetaData, inspect, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from sagevault.db import create_engine_for
from sagevault.errors import ConfigError, IntegrityError

AUDIT_TABLES = frozenset({"audit_events", "audit_head", "audit_anchors", "alembic_version_audit"})
VERSION_TABLE = "alembic_version"
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_COPY = re.compile(rb"^COPY ([^ ]+) \((.*)\) FROM stdin;$")
_LIBPQ = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "host": "PGHOST",
    "port": "PGPORT",
}


def _q(name: str) -> str:
    """A schema, table or column name of ours, quoted; anything else is refused."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"refusing the PostgreSQL name {name!r}: SageVault's schemas and tables are lower-case")
    return f'"{name}"'


def _unquote(name: bytes) -> str:
    return name.decode().strip().strip('"')


def libpq_env(url: str) -> dict[str, str]:
    """The environment that points `pg_dump` at `url` (the password in PGPASSWORD, never in argv)."""
    u = make_url(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for key, value in u.query.items():
        if key in _LIBPQ:
            env[_LIBPQ[key]] = value if isinstance(value, str) else value[-1]
    given: dict[str, object] = {"PGHOST": u.host, "PGPORT": u.port, "PGUSER": u.username, "PGDATABASE": u.database}
    env.update({var: str(value) for var, value in given.items() if value is not None})
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    return env


def store_tables(conn: Connection) -> list[str]:
    """The vault database's tables in the connection's schema: everything but the security log's."""
    return sorted(t for t in inspect(conn).get_table_names() if t not in AUDIT_TABLES)


def dump(url: str, schema: str, tables: list[str]) -> bytes:
    """`pg_dump --data-only` of `tables` (one consistent snapshot), as its plain SQL text, run as
    the tables' owner (the service's role may not read the sequences pg_dump reads with them)."""
    command = ["pg_dump", "--data-only", "--no-owner", "--no-privileges", "--encoding=UTF8", "--no-password"]
    command += [f"--table={_q(schema)[1:-1]}.{_q(t)[1:-1]}" for t in tables if t != VERSION_TABLE]
    try:
        ran = subprocess.run(command, env=libpq_env(url), capture_output=True, timeout=3600, check=False)  # noqa: S603
    except FileNotFoundError:
        raise ConfigError("pg_dump is not installed (or not on PATH); install the PostgreSQL client tools") from None
    if ran.returncode != 0:
        first = (ran.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[0][:300]
        raise ConfigError(f"pg_dump failed: {first}")
    return ran.stdout


def copy_blocks(image: bytes) -> Iterator[tuple[str, list[str], bytes]]:
    """The COPY blocks of a data-only dump: (table, columns, rows in COPY text format). Nothing
    else in the dump is executed."""
    lines = iter(image.split(b"\n"))
    for line in lines:
        match = _COPY.match(line)
        if match is None:
            continue
        table = _unquote(match.group(1).rsplit(b".", 1)[-1])
        columns = [_unquote(c) for c in match.group(2).split(b",")]
        rows = []
        for row in lines:
            if row == b"\\.":
                break
            rows.append(row)
        else:
            raise IntegrityError("the backup's dump ends inside a table's data")
        yield table, columns, b"".join(r + b"\n" for r in rows)


def with_search_path(url: str, schema: str) -> str:
    u = make_url(url)
    options = u.query.get("options", "")
    options = options if isinstance(options, str) else " ".join(options)
    return u.update_query_dict({"options": f"{options} -csearch_path={schema}".strip()}).render_as_string(
        hide_password=False
    )


@contextmanager
def owner(admin_url: str) -> Iterator[Engine]:
    """An engine as the tables' owner, disposed afterwards."""
    engine = create_engine_for(admin_url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def scratch_schema(admin_url: str) -> Iterator[tuple[Engine, str]]:
    """A new schema of the live database, for the restore's work, dropped afterwards."""
    name = f"sv_restore_{secrets.token_hex(6)}"
    owner = create_engine_for(admin_url, poolclass=NullPool)
    try:
        with owner.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {_q(name)}")
        engine = create_engine_for(with_search_path(admin_url, name), poolclass=NullPool)
        try:
            yield engine, name
        finally:
            engine.dispose()
            with owner.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {_q(name)} CASCADE")
    finally:
        owner.dispose()


def _ordered(conn: Connection, schema: str, tables: list[str]) -> list[str]:
    """`tables`, every table after the tables its foreign keys name."""
    meta = MetaData()
    meta.reflect(conn, schema=schema, only=tables)
    return [t.name for t in meta.sorted_tables]


def load(conn: Connection, schema: str, image: bytes) -> int:
    """Empty the scratch schema's vault tables (made UNLOGGED first) and COPY the dump into them."""
    tables = [t for t in store_tables(conn) if t != VERSION_TABLE]
    ordered = _ordered(conn, schema, tables)
    for table in reversed(ordered):  # a table that others reference after them
        conn.exec_driver_sql(f"ALTER TABLE {_q(table)} SET UNLOGGED")
    conn.exec_driver_sql(f"TRUNCATE {', '.join(_q(t) for t in ordered)}")  # rows the migrations seeded
    raw: Any = conn.connection.dbapi_connection
    rows = 0
    known = set(tables)
    for table, columns, data in copy_blocks(image):
        if table not in known:
            raise IntegrityError(f"the backup's dump holds a table this schema does not have ({table[:64]})")
        with raw.cursor() as cursor:
            with cursor.copy(f"COPY {_q(table)} ({', '.join(_q(c) for c in columns)}) FROM STDIN") as copy:
                copy.write(data)
            rows += data.count(b"\n")
    return rows


def swap(owner: Connection, live: str, scratch: str) -> list[str]:
    """In the caller's transaction (as the owner): every vault table of `live` emptied and filled
    from `scratch`, sequences past the highest id. Returns the tables swapped."""
    tables = _ordered(owner, live, [t for t in _live_tables(owner, live) if t != VERSION_TABLE])
    scratch_tables = set(_live_tables(owner, scratch))
    missing = [t for t in tables if t not in scratch_tables]
    if missing:
        raise IntegrityError(f"the restored schema lacks tables the deployment has: {', '.join(missing[:5])}")
    versions = {
        s: owner.execute(text(f"SELECT version_num FROM {_q(s)}.{VERSION_TABLE}")).scalar()  # noqa: S608
        for s in (live, scratch)
    }
    if versions[live] != versions[scratch]:
        raise IntegrityError(
            f"the restored schema is at revision {versions[scratch]}, the deployment at {versions[live]}"
        )
    owner.exec_driver_sql(f"TRUNCATE {', '.join(f'{_q(live)}.{_q(t)}' for t in tables)}")
    for table in tables:
        columns = ", ".join(_q(c["name"]) for c in inspect(owner).get_columns(table, schema=live))
        owner.exec_driver_sql(
            f"INSERT INTO {_q(live)}.{_q(table)} ({columns}) SELECT {columns} FROM {_q(scratch)}.{_q(table)}"  # noqa: S608
        )
    serials = owner.execute(
        text(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = :s "
            "AND (column_default LIKE 'nextval(%' OR is_identity = 'YES')"
        ),
        {"s": live},
    ).all()
    for table, column in serials:
        if table in tables:
            owner.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence(:t, :c), COALESCE(MAX({_q(column)}), 0) + 1, false) "  # noqa: S608
                    f"FROM {_q(live)}.{_q(table)}"
                ),
                {"t": f"{_q(live)}.{_q(table)}", "c": column},
            )
    return tables


def _live_tables(conn: Connection, schema: str) -> list[str]:
    return sorted(t for t in inspect(conn).get_table_names(schema=schema) if t not in AUDIT_TABLES)


def vacuum(admin_url: str, schema: str, tables: list[str]) -> None:
    """Prune the dead rows the swap left in the live tables' pages (as their owner)."""
    owner = create_engine_for(admin_url, poolclass=NullPool)
    try:
        with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in tables:
                conn.exec_driver_sql(f"VACUUM {_q(schema)}.{_q(table)}")
    finally:
        owner.dispose()
