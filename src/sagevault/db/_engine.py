from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Column, ColumnElement, Engine, Table, any_, create_engine, event, literal
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

_BUSY_TIMEOUT_MS = 10000  # SQLite: how long a writer waits for the write lock (set on every connection)


def _private_file(database: str | None) -> None:
    """Create an SQLite database file, if it does not exist yet (in a directory that does),
    readable by its owner only (0600) whatever the process's umask: SQLite gives its -wal and
    -shm files the database file's mode. Run before each new connection opens the file."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists() or not path.parent.is_dir():  # no directory: SQLite says so, as it would
        return
    with suppress(FileExistsError):  # another process made it first: its mode is checked on opening
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def is_sqlite(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "sqlite"


SERVICE_ROLE = "sagevault_app"  # PostgreSQL: what the running service may do (the migrations grant it)


def create_engine_for(url: str, *, role: str | None = None, **kwargs: Any) -> Engine:
    """An engine with SageVault's connection settings.

    SQLite: WAL for concurrent readers, `synchronous=FULL` so a committed batch survives power
    loss, and `secure_delete` so deleted rows (shredded keys, replaced ciphertexts) are
    overwritten in the file instead of lingering on free pages.

    PostgreSQL with `role`: every connection takes that role (`SET ROLE`) before its first
    statement, so whatever the login, the service holds only the role's privileges.
    """
    # hide_parameters: a database error's message must never carry bound values.
    if url.startswith("sqlite") and ":memory:" not in url and url.rstrip("/") not in ("sqlite:", "sqlite+pysqlite:"):
        # Keep a connection per concurrent request (the API's thread pool has 40 threads). With
        # SQLAlchemy's default of 5, every connection beyond them was closed on return and opened
        # again (pragmas, and a schema parse on its first statement): about 0.8 ms of server CPU
        # per reveal at 16 concurrent requests (bench/api.py, 6.6 → 5.8 ms).
        kwargs.setdefault("pool_size", 48)
        kwargs.setdefault("max_overflow", 16)
    engine = create_engine(url, hide_parameters=True, **kwargs)
    if role is not None and engine.dialect.name == "postgresql":
        set_role = f'SET ROLE "{role}"'

        @event.listens_for(engine, "connect")
        def _take_role(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute(set_role)
            dbapi_conn.commit()

    if engine.dialect.name == "sqlite":
        database = engine.url.database

        @event.listens_for(engine, "do_connect")
        def _private(*_: Any) -> None:
            _private_file(database)

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
                f"busy_timeout={_BUSY_TIMEOUT_MS}",
            ):
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # IMMEDIATE: a writer takes the write lock up front, so it never fails half-way with
            # SQLITE_BUSY_SNAPSHOT. A unit of work that only reads asks for DEFERRED (`reading`):
            # it then queues behind no writer (WAL readers see a snapshot and never block).
            # A unit of work marked read-only is also made unable to write (query_only), so a write
            # that slipped into one fails at once instead of failing later under contention. The
            # pragma is set when it differs from the connection's last unit of work (kept in the
            # pooled connection's `info`): setting it expires every prepared statement of the
            # connection, so setting it on every begin re-prepared every statement of every request.
            deferred = conn.get_execution_options().get(READ_ONLY, False)
            pooled = conn.connection
            begin = "BEGIN" if deferred else "BEGIN IMMEDIATE"
            try:
                query_only(pooled, deferred)
                pooled.dbapi_connection.execute(begin)  # type: ignore[union-attr]
            except conn.dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy raises a failed statement (busy: a 503)
                raise _as_sqlalchemy_error(conn, begin, exc) from exc

    return engine


READ_ONLY = "sagevault_read_only"  # execution option: this unit of work writes nothing to this database
_QUERY_ONLY = "sagevault_query_only"  # a pooled SQLite connection's `info`: its query_only pragma as last set


def query_only(pooled: Any, on: bool) -> None:
    """Set SQLite's `query_only` pragma on a pooled connection (a `PoolProxiedConnection` or a
    `ConnectionFairy`), unless it is already so: the pragma expires the connection's prepared
    statements. Every user of a pooled SQLite connection sets it through here, so `info` stays true."""
    if pooled.info.get(_QUERY_ONLY) is on:
        return
    pooled.info.pop(_QUERY_ONLY, None)  # unknown until the pragma has run
    pooled.dbapi_connection.execute("PRAGMA query_only = 1" if on else "PRAGMA query_only = 0")
    pooled.info[_QUERY_ONLY] = on


def _as_sqlalchemy_error(conn: Connection, statement: str, exc: Exception, *, lost: bool = False) -> StatementError:
    """A driver's error as SQLAlchemy raises a failed statement's (its kinds, parameters hidden)."""
    return DBAPIError.instance(
        statement,
        None,
        exc,
        conn.dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=conn.dialect,
    )


def lock_not_had(exc: BaseException) -> bool:
    """Whether `exc` says a lock could not be had in time (SQLite's write lock within the busy
    timeout, PostgreSQL's `lock_timeout`) or no pooled connection was free within the pool's
    timeout (more requests at once than `database_pool_size` and its burst): load, not a fault."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    return "database is locked" in str(exc.orig) or getattr(exc.orig, "sqlstate", None) == "55P03"


@contextmanager
def brief_write(engine: Engine, wait_ms: int = 50) -> Iterator[Connection]:
    """A transaction of its own that waits at most `wait_ms` for the locks it writes under, for
    bookkeeping that can be done later instead (the next request tries again): if the lock is
    not had in time it raises an error for which `lock_not_had` is true, and the request it rides
    on is neither held up nor refused."""
    with engine.connect() as conn:
        if is_sqlite(conn):
            raw = conn.connection.dbapi_connection
            raw.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")  # type: ignore[union-attr]
            try:
                with conn.begin():
                    yield conn
            finally:
                raw.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")  # type: ignore[union-attr]
        else:
            with conn.begin():
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(wait_ms)}ms'")
                yield conn


@contextmanager
def statements_on_their_own(conn: Connection) -> Iterator[None]:
    """PostgreSQL: within the block each statement on `conn` commits on its own (the driver's
    autocommit: no BEGIN and COMMIT round trips), for a unit of work that only reads. Set on the
    driver's connection itself: SQLAlchemy's `isolation_level` option sets and resets it through
    its characteristics on every checkout, which cost the reveal more than its statements' own
    work. The connection goes back to the pool as it came, or is not put back."""
    driver = conn.connection.driver_connection
    driver.autocommit = True  # type: ignore[union-attr]
    try:
        yield
    finally:
        try:
            driver.autocommit = False  # type: ignore[union-attr]
        except Exception:  # a broken connection: discarded, not put back
            conn.invalidate()


def reading(conn: Connection) -> Connection:
    """Mark `conn`, before its transaction begins, as a unit of work that writes nothing to this
    database. On SQLite its transaction is then DEFERRED: a snapshot read that waits for no
    writer. A write in such a transaction may fail with SQLITE_BUSY_SNAPSHOT if another writer
    committed since its first read, so a write it must make goes in a transaction of its own
    (see `read_only`). Other databases ignore the mark."""
    return conn.execution_options(**{READ_ONLY: True})


def read_only(conn: Connection) -> bool:
    """Whether `conn`'s unit of work was opened with `reading`."""
    return bool(conn.get_execution_options().get(READ_ONLY, False))


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


# (id of the query, dialect class, paramstyle) -> (the query, kept alive so that its id is never
# reused; its SQL; its parameter order)
_COMPILED: dict[tuple[int, type, str], tuple[ClauseElement, str, tuple[str, ...] | None]] = {}


@contextmanager
def driver_cursor(conn: Connection, sql: str) -> Iterator[Any]:
    """A cursor of the driver's own on `conn`, in its transaction, closed afterwards. A driver
    error is raised as SQLAlchemy raises it (`DBAPIError` and its kinds, parameters hidden), and a
    lost connection is invalidated, as `Connection.execute` would: callers and the API's error
    handling see one kind of error whichever way a statement went."""
    if not conn.in_transaction():
        raise RuntimeError("a driver cursor reads in the caller's transaction: begin it first")
    raw = conn.connection.dbapi_connection
    cursor = raw.cursor()  # type: ignore[union-attr]
    base = conn.dialect.loaded_dbapi.Error
    try:
        yield cursor
    except base as exc:
        lost = conn.dialect.is_disconnect(exc, raw, cursor)
        if lost:
            conn.invalidate(exc)
        raise _as_sqlalchemy_error(conn, sql, exc, lost=lost) from exc
    finally:
        with suppress(Exception):  # an invalidated connection's cursor may be gone already
            cursor.close()


def driver_rows(conn: Connection, query: ClauseElement, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a prebuilt `query` with bound `params`, straight from the driver's cursor on
    `conn`, in its transaction (the reveal hot path): values as the driver returns them, with no
    SQLAlchemy result processing, so only for columns whose driver form is what the caller
    wants (ids, text, blobs, or a value only tested for NULL). The statement is compiled once
    per dialect and kept: pass statements built once (module constants), not one per call."""
    key = (id(query), type(conn.dialect), conn.dialect.paramstyle)
    compiled = _COMPILED.get(key)
    if compiled is None:
        c = cast(SQLCompiler, query.compile(dialect=conn.dialect))
        order = tuple(c.positiontup) if c.positional and c.positiontup else None
        compiled = _COMPILED[key] = (query, str(c), order)
    _, sql, order = compiled
    with driver_cursor(conn, sql) as cursor:
        cursor.execute(sql, tuple(params[name] for name in order) if order is not None else params)
        return list(cursor.fetchall())


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
