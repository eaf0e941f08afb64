"""Carrying out a deletion or return request: each step its own unit of work (so a crash
resumes where it stopped), the SQLite write-ahead log emptied once rows are gone (so their old
page images do not stay on disk), a step that cannot succeed recorded as the request's failure.
The CLI, the API and tests run requests through `carry_out`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sagevault.db import is_sqlite
from sagevault.deletion import DeletionRequest
from sagevault.errors import AccessDenied, SageVaultError
from sagevault.identity import Principal

if TYPE_CHECKING:
    from sagevault.deployment import Deployment

MAX_STEPS = 100_000  # a 1M-record tenant purges in 50 steps; this only stops a runaway loop


def carry_out(
    d: Deployment,
    request_id: int,
    principal: Principal,
    *,
    on_step: Callable[[DeletionRequest], None] | None = None,
    retry: bool = False,
) -> DeletionRequest:
    """Run the request's steps until it is done or failed (or linked to another); returns it.
    `retry`: a failed request is first put back to where it can go on."""
    if retry:
        with d.unit_of_work() as conn:
            d.deletion.retry(conn, request_id, principal=principal)
    with d.unit_of_work(read_only=True) as conn:
        state = d.deletion.get(conn, request_id, principal=principal).state
    for _ in range(MAX_STEPS):
        before = state
        try:
            with d.unit_of_work() as conn:
                request = d.deletion.step(conn, request_id, principal=principal)
        except AccessDenied:
            raise  # the caller may not: nothing about the request
        except SageVaultError as exc:
            with d.unit_of_work() as conn:
                d.deletion.fail(conn, request_id, f"{type(exc).__name__}: run it again once fixed", principal=principal)
            raise
        if (
            before == "deleting"
            and request.state != "deleting"
            and (is_sqlite(d.engine) or request.scope_kind == "tenant")
        ):
            d.release_deleted_pages()  # SQLite: the WAL's old page images go; a shred: the key table is vacuumed
        state = request.state
        if on_step is not None:
            on_step(request)
        if request.finished:
            return request
    raise SageVaultError(f"request {request_id} did not finish in {MAX_STEPS} steps; run it again")
