"""A unit of work marked read-only cannot write on SQLite (`query_only`), whatever the pooled
connection did before; and a writing unit after it can. The pragma is set only when it changes, so
these alternations on one pooled connection are what keeps that honest."""

from __future__ import annotations

import pytest
from sqlalchemy import text
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
