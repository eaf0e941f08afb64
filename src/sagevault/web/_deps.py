"""What every route shares: the deployment, the request's unit of work with its authenticated
principal (`Authenticated`: refusal budget → allow-list → credential → rate limits, in that order)
and the path parameters that name tenants and orders.

Route modules import from here (and `_problems`, `_pagination`, `_onehop`), never from `_app`,
which imports them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Annotated

import anyio
from fastapi import Depends, Path, Request
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sagevault import errors
from sagevault.audit import AuditEvent, EventName, outcome_of
from sagevault.compliance import build_pack, register_own_assets
from sagevault.deployment import Deployment
from sagevault.identity import TENANT_ID, Channel, Principal
from sagevault.vault import ORDER_ID

API = "/api/v1"

# A selling partner id as the vault accepts one: a path that cannot name a tenant is a 422.
TenantPath = Annotated[str, Path(min_length=2, max_length=64, pattern=TENANT_ID, description="The tenant's id.")]
# An order id as the vault's ingest accepts one (`sagevault.vault.ORDER_ID`): every stored order is addressable.
OrderPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ORDER_ID, description="The order's id.")]


def deployment(request: Request) -> Deployment:
    d: Deployment = request.app.state.deployment
    return d


# The deployment, for the few routes that carry no bearer token (log-in, enrolment).
CurrentDeployment = Annotated[Deployment, Depends(deployment)]


def source(request: Request) -> str:
    """The client's address: the peer, or X-Forwarded-For as far as trusted proxies vouch for it."""
    peer = request.client.host if request.client else "0.0.0.0"  # noqa: S104 - an address no list allows
    return deployment(request).access.core.client_address(peer, request.headers.get("x-forwarded-for"))


def transaction(
    d: Deployment, *, read_only: bool = False, statements: bool = False
) -> AbstractContextManager[Connection]:
    """The request's unit of work (`Deployment.unit_of_work`)."""
    return d.unit_of_work(read_only=read_only, statements=statements)


def unit_of_work(request: Request) -> Iterator[Connection]:
    """The request's transaction, for the routes that carry no bearer token (enrolment)."""
    with transaction(deployment(request)) as conn:
        yield conn


# scope="function": the transaction ends (commits or rolls back) before the answer is sent, so a
# client never sees 2xx for work that did not commit.
Conn = Annotated[Connection, Depends(unit_of_work, scope="function")]


def evidence_pack(d: Deployment, conn: Connection, who: Principal) -> Response:
    """The signed evidence pack as a download (`POST /api/v1/report/pack` and the console's): the
    deployment's own assets registered first, as for the report. Needs `governance:read`."""
    register_own_assets(d, conn, principal=who)
    pack = build_pack(d, conn, None, principal=who)
    return Response(
        pack.data,
        media_type="application/zip",
        headers={
            "Content-Disposition": 'attachment; filename="sagevault-evidence-pack.zip"',
            "X-Pack-SHA256": pack.sha256,
        },
    )


def bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""


def principal(request: Request, conn: Connection) -> Principal:
    """The chain every authenticated route runs, in this order: the source's budget of refused
    requests (a source over it is still served, but its further refusals are not recorded); the
    source address against the global allow-list (before anything about the credential is looked
    at); the bearer credential (a session for people, an API key for services, each also held to
    its own allow-list); then the principal's and the route's rate limits. Authorisation is the
    handler's domain call (`decide`)."""
    d = deployment(request)
    address = source(request)
    limiter = request.app.state.limiter
    source_key = d.access.core.source_key(conn, address)
    quiet = not limiter.within_budget(source_key)
    token = bearer(request)
    try:
        with d.access.core.unrecorded_refusals(quiet), d.access.core.one_generation(conn):  # one step: one read
            address = d.access.allowlists.admit_source(conn, address, channel=Channel.API)
            if token.startswith("svk_"):
                who: Principal = d.access.api_keys.verify(conn, token, source=address, channel=Channel.API)
            elif token.startswith("svs_"):
                who = d.access.authn.authenticate_session(conn, token, source=address, channel=Channel.API)
            else:
                refused = errors.AuthenticationFailed(
                    "this request needs a bearer token: a session (POST /api/v1/sessions) or an API key",
                    reason="no_credential",
                )
                raise refused if quiet else edge_refusal(d, conn, refused, None, address)
    except errors.AccessDenied:
        if not quiet and limiter.refused(source_key):  # this refusal spent the source's budget: say so, once
            edge_refusal(
                d,
                conn,
                errors.RateLimited(
                    "too many refused requests from this address; further refusals from it go unrecorded"
                ),
                None,
                address,
            )
        raise
    route = request.scope.get("route")
    try:
        limiter.admit(who.id, f"{request.method} {route.path if route is not None else request.url.path}")
    except errors.RateLimited as exc:
        raise edge_refusal(d, conn, exc, who.id, address) from None
    return who


def edge_refusal(
    d: Deployment, conn: Connection, error: errors.SageVaultError, actor: str | None, address: str
) -> errors.SageVaultError:
    """Record a refusal that no domain call saw (no credential, over a rate) as
    `api:request:refuse`, and hand the error back to raise. The event is durable before the
    refusal is answered; if it cannot be written the answer is 503."""
    outcome, reason = outcome_of(error)
    d.audit.record(
        AuditEvent(
            name=EventName.API_REQUEST_REFUSE,
            channel=Channel.API,
            outcome=outcome,
            reason=reason,
            actor=actor,
            client_ip_hash=d.access.core.client_ip_hash(conn, address),
        )
    )
    return error


class Work:
    """An authenticated route's unit of work (`transaction`) and principal (`principal`: refusal
    budget → allow-list → credential → rate limits), opened in one hop to a worker thread. The
    handler does its domain call and ends the work in its own hop: `with work as (d, conn, who):`
    commits when the block ends (before the answer) and rolls back if it raises; work after the
    commit (releasing deleted pages, starting a stream) goes after the block. A dependency for
    each (unit of work, principal) would cost the request five hops; this costs two."""

    def __init__(self, request: Request, read_only: bool = False, *, statements: bool = False) -> None:
        self.d: Deployment = deployment(request)
        self._uow: AbstractContextManager[Connection] | None = transaction(
            self.d, read_only=read_only, statements=statements
        )
        self.conn = self._uow.__enter__()
        try:
            self.who = principal(request, self.conn)
        except BaseException as exc:
            self.end(type(exc), exc, exc.__traceback__)
            raise

    def end(
        self, kind: type[BaseException] | None = None, exc: BaseException | None = None, tb: TracebackType | None = None
    ) -> None:
        """Commit (no exception) or roll back, and give the connection back; once."""
        uow, self._uow = self._uow, None
        if uow is not None:
            uow.__exit__(kind, exc, tb)

    @property
    def open(self) -> bool:
        return self._uow is not None

    def __enter__(self) -> tuple[Deployment, Connection, Principal]:
        return self.d, self.conn, self.who

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.end(kind, exc, tb)


def _work(read_only: bool) -> Callable[[Request], AsyncIterator[Work]]:
    async def authenticated_work(request: Request) -> AsyncIterator[Work]:
        # (A `OneHop` route does not run this: it opens the same `Work` in its own single hop.)
        work = await run_in_threadpool(Work, request, read_only)
        try:
            yield work
        except BaseException as exc:  # the request was invalid, or the handler raised outside its block
            if work.open:  # shielded: a cancelled request still gives its connection (and lock) back
                with anyio.CancelScope(shield=True):
                    await run_in_threadpool(work.end, type(exc), exc, exc.__traceback__)
            raise
        if work.open:  # a handler that did not end its work: committed here, still before the answer
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(work.end)

    return authenticated_work


# The one way an authenticated route gets its unit of work and principal. The chain runs before
# the route's parameters and body are validated: an unauthenticated request is a 401 whatever it
# sent. scope="function": the work ends before the answer is sent, never after.
WRITE, READ = _work(read_only=False), _work(read_only=True)
Authenticated = Annotated[Work, Depends(WRITE, scope="function")]
# The same for a route that writes nothing to the vault database (a SQLite snapshot read, see
# `transaction`). Only routes that never write may take it.
AuthenticatedRead = Annotated[Work, Depends(READ, scope="function")]
