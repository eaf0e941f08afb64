"""A unit of work marked read-only cannot write on SQLite (`query_only`), whatever the pooled
connection did before; and a writing unit after it can. The pragma is set only when it changes, so
these alternations on one pooled connection are what keeps that honest."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from sagevault.config import Settings
from sagevault.crypto import InMemoryKeyProvider
from sagevault.deployment import Deployment, init_deployment


def test_read_only_and_writing_units_alternate_on_one_connection(settings: Settings) -> None:
    d = init_deployment(settings, keys=InMemoryKeyProvider())  # SQLite: query_only is its own
    try:
        _alternate(d)
    finally:
        d.close()


def _alternate(d: Deployment) -> None:
    with d.unit_of_work() as conn:
        conn.execute(text("CREATE TABLE scratch_units (n INTEGER)"))
    for n in range(3):
        with pytest.raises(OperationalError, match="readonly"), d.unit_of_work(read_only=True) as conn:
            conn.execute(text("INSERT INTO scratch_units VALUES (:n)"), {"n": -n})
        with d.unit_of_work() as conn:
            conn.execute(text("INSERT INTO scratch_units VALUES (:n)"), {"n": n})
        with d.unit_of_work(read_only=True) as conn:
            assert conn.execute(text("SELECT count(*) FROM scratch_units")).scalar() == n + 1


_XACT = text("SELECT pg_current_xact_id()::text")  # a transaction's id: the same for each of its statements


def _one_transaction(conn: Connection) -> bool:
    return bool(conn.execute(_XACT).scalar_one() == conn.execute(_XACT).scalar_one())


def _refused_midway(d: Deployment) -> None:
    with d.unit_of_work(read_only=True, statements=True) as conn:
        conn.execute(_XACT)
        raise LookupError("a refusal in the middle of a reveal")


@pytest.mark.parametrize("backend", ["postgresql"])
def test_the_reveals_statement_units_run_each_statement_on_its_own_and_leave_the_pool_as_it_was(
    deployment_at: Callable[..., Deployment],
) -> None:
    """PostgreSQL: a read-only unit of `statements` (the reveal's) has no transaction around its
    statements (no BEGIN/COMMIT round trips); every other unit on the same pooled connections,
    before and after it, still runs in one transaction (a write is committed or rolled back whole)."""
    d = deployment_at()
    for _ in range(3):
        for _ in range(2):
            with d.unit_of_work(read_only=True, statements=True) as conn:
                assert not _one_transaction(conn)
        with d.unit_of_work() as conn:
            assert _one_transaction(conn)
        with d.unit_of_work(read_only=True) as conn:
            assert _one_transaction(conn)
        with pytest.raises(LookupError):
            _refused_midway(d)
        with d.unit_of_work() as conn:  # ... leaves its connection as it came too
            assert _one_transaction(conn)
