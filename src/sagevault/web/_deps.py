"""What every route shares: problem details, the request's unit of work with its authenticated
principal (`Authenticated`: refusal budget → allow-list → credential → rate limits, in that order)
and pagination (`PageQuery`).

Route modules import from here and never from `_app`, which imports them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Annotated, Any, TypeVar, get_type_hints

import anyio
from fastapi import Depends, Path, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sagevault import errors
from sagevault.audit import AuditEvent, Channel, EventName, outcome_of
from sagevault.db import reading
from sagevault.deployment import Deployment
from sagevault.vault import ORDER_ID, Principal

API = "/api/v1"
T = TypeVar("T")

# A selling partner id as the vault accepts one: a path that cannot name a tenant is a 422.
TENANT_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$"
TenantPath = Annotated[str, Path(min_length=2, max_length=64, pattern=TENANT_ID, description="The tenant's id.")]
# An order id as the vault's ingest accepts one (`sagevault.vault.ORDER_ID`): every stored order is addressable.
OrderPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ORDER_ID, description="The order's id.")]

# Most specific first: the first class an error is an instance of decides its status.
STATUS: list[tuple[type[Exception], int, str]] = [
    (errors.LoginThrottled, 429, "throttled"),
    (errors.LimiterUnavailable, 503, "limiter-unavailable"),
    (errors.RateLimited, 429, "rate-limited"),
    (errors.NetworkDenied, 403, "network-denied"),
    (errors.AuthenticationFailed, 401, "authentication-failed"),
    (errors.CredentialExpired, 401, "credential-expired"),
    (errors.AccountLocked, 403, "account-locked"),
    (errors.AccountDisabled, 403, "account-disabled"),
    (errors.KillSwitchEngaged, 403, "kill-switch"),
    (errors.PurposeNotAllowed, 403, "purpose-not-allowed"),
    (errors.AccessDenied, 403, "access-denied"),
    (errors.TenantShredded, 410, "tenant-shredded"),
    (errors.UnknownTenant, 404, "unknown-tenant"),
    (errors.TenantExists, 409, "tenant-exists"),
    (errors.RecordNotFound, 404, "not-found"),
    (errors.AuditUnavailable, 503, "audit-unavailable"),
    (errors.StorageBusy, 503, "storage-busy"),
    (errors.RotationError, 409, "rotation-conflict"),
    (errors.Conflict, 409, "conflict"),
    (errors.NotFound, 404, "not-found"),
    (errors.AccessError, 400, "bad-request"),
    (errors.PayloadError, 400, "bad-request"),
    (errors.TenantError, 400, "bad-request"),
    (errors.ConfigError, 400, "bad-request"),
]


def problem(
    status: int, kind: str, detail: str, request_id: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An RFC 9457 problem details response. `detail` says what to do; it never carries a value
    the client sent (it may be a password or PII)."""
    extra = dict(headers or {})
    if status == 401:
        extra["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        {"type": f"https://sagevault.dev/problems/{kind}", "title": kind.replace("-", " "), "status": status,
         "detail": detail, "request_id": request_id},
        status_code=status, media_type="application/problem+json", headers=extra or None,
    )  # fmt: skip


def status_of(exc: BaseException) -> tuple[int, str]:
    for kind, status, name in STATUS:
        if isinstance(exc, kind):
            return status, name
    return 500, "error"


def deployment(request: Request) -> Deployment:
    d: Deployment = request.app.state.deployment
    return d


Vault = Annotated[Deployment, Depends(deployment)]


def source(request: Request) -> str:
    """The client's address: the peer, or X-Forwarded-For as far as trusted proxies vouch for it."""
    peer = request.client.host if request.client else "0.0.0.0"  # noqa: S104 - an address no list allows
    return deployment(request).access.client_address(peer, request.headers.get("x-forwarded-for"))


@contextmanager
def transaction(d: Deployment, *, read_only: bool = False) -> Iterator[Connection]:
    """One unit of work: committed when the block ends, rolled back if it raises. `read_only`: the
    work writes nothing to the vault database (its security events go to the audit log, a database
    of its own), so on SQLite its transaction is a snapshot read that does not queue for the write
    lock. Work that writes must not be marked so."""
    with d.engine.connect() as conn:
        if read_only:
            reading(conn)
        with conn.begin():
            yield conn


def unit_of_work(request: Request) -> Iterator[Connection]:
    """The request's transaction, for the routes that carry no bearer token (enrolment)."""
    with transaction(deployment(request)) as conn:
        yield conn


# scope="function": the transaction ends (commits or rolls back) before the answer is sent, so a
# client never sees 2xx for work that did not commit.
Conn = Annotated[Connection, Depends(unit_of_work, scope="function")]


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
    source_key = d.access.source_key(conn, address)
    quiet = not limiter.within_budget(source_key)
    token = bearer(request)
    try:
        with d.access.unrecorded_refusals(quiet):
            address = d.access.admit_source(conn, address, channel=Channel.API)
            if token.startswith("svk_"):
                who: Principal = d.access.verify_api_key(conn, token, source=address, channel=Channel.API)
            elif token.startswith("svs_"):
                who = d.access.authenticate_session(conn, token, source=address, channel=Channel.API)
            else:
                refused = errors.AuthenticationFailed("this request needs a bearer token: a session "
                                                      "(POST /api/v1/sessions) or an API key", reason="no_credential")
                raise refused if quiet else edge_refusal(d, conn, refused, None, address)  # fmt: skip
    except errors.AccessDenied:
        if not quiet and limiter.refused(source_key):  # this refusal spent the source's budget: say so, once
            edge_refusal(d, conn, errors.RateLimited("too many refused requests from this address; "
                                                     "further refusals from it go unrecorded"), None, address)
        raise
    route = request.scope.get("route")
    try:
        limiter.admit(who.id, f"{request.method} {route.path if route is not None else request.url.path}")
    except errors.RateLimited as exc:
        raise edge_refusal(d, conn, exc, who.id, address) from None
    return who


def edge_refusal(d: Deployment, conn: Connection, error: errors.SageVaultError, actor: str | None,
                 address: str) -> errors.SageVaultError:  # fmt: skip
    """Record a refusal that no domain call saw (no credential, over a rate) as
    `api:request:refuse`, and hand the error back to raise. The event is durable before the
    refusal is answered; if it cannot be written the answer is 503."""
    outcome, reason = outcome_of(error)
    d.audit.record(AuditEvent(name=EventName.API_REQUEST_REFUSE, channel=Channel.API, outcome=outcome, reason=reason,
                              actor=actor, client_ip_hash=d.access.client_ip_hash(conn, address)))  # fmt: skip
    return error


class Work:
    """An authenticated route's unit of work (`transaction`) and principal (`principal`: refusal
    budget → allow-list → credential → rate limits), opened in one hop to a worker thread. The
    handler does its domain call and ends the work in its own hop: `with work as (d, conn, who):`
    commits when the block ends (before the answer) and rolls back if it raises; work after the
    commit (releasing deleted pages, starting a stream) goes after the block. A dependency for
    each (unit of work, principal) would cost the request five hops; this costs two."""

    def __init__(self, request: Request, read_only: bool = False) -> None:
        self.d: Deployment = deployment(request)
        self._uow: AbstractContextManager[Connection] | None = transaction(self.d, read_only=read_only)
        self.conn = self._uow.__enter__()
        try:
            self.who = principal(request, self.conn)
        except BaseException as exc:
            self.end(type(exc), exc, exc.__traceback__)
            raise

    def end(self, kind: type[BaseException] | None = None, exc: BaseException | None = None,
            tb: TracebackType | None = None) -> None:  # fmt: skip
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
_WRITE, _READ = _work(read_only=False), _work(read_only=True)
Authenticated = Annotated[Work, Depends(_WRITE, scope="function")]
# The same for a route that writes nothing to the vault database (a SQLite snapshot read, see
# `transaction`). Only routes that never write may take it.
AuthenticatedRead = Annotated[Work, Depends(_READ, scope="function")]


class OneHop(APIRoute):
    """A route class for the hot path (reveal): the same endpoint, the same OpenAPI operation and
    the same order of checks, without FastAPI's dependency solving: `Work` (refusal budget →
    allow-list → credential → rate limits), then validation of the path parameters and the JSON
    body (a 422 like any other route's, after authentication), then the endpoint, one after the
    other; the work ends (commits or rolls back) before the answer. `bench/api.py` measures what
    it saves.

    Where it runs: on SQLite with a master key held in process (`Deployment.local_reads`), in
    the event loop itself. Its reads are local and take no lock (WAL), so they cost less than
    the two thread switches a worker thread would, and the one wait, for the security events to
    be durable, is awaited (`AuditLog.deferred` and `record_async`: the events join a group
    commit written by the audit log's own thread, and no answer, success or refusal, leaves
    before they are committed). On PostgreSQL, whose reads are network round trips, or with a
    KMS, whose unwraps are, in one hop to a worker thread.

    Takes endpoints whose parameters are path parameters (`Annotated[str, Path(...)]`), at most one
    body model and one `Authenticated`/`AuthenticatedRead`, and that return a `Response`; any other
    shape is refused when the route is declared."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        serve = _one_hop(self.endpoint)

        async def handle(request: Request) -> Response:
            raw = await request.body()  # bounded by the headers middleware (api_max_body_bytes)
            d = deployment(request)
            if not d.local_reads:
                # Not cancellable: a client that goes away still gets its work ended in the thread.
                result: Response = await run_in_threadpool(serve, request, raw)
                return result
            failure: Exception | None = None
            with d.audit.deferred() as events:
                try:
                    result = serve(request, raw)
                except Exception as exc:  # answered (by the error handlers) only once its events are durable
                    failure = exc
            await d.audit.record_async(events)  # AuditUnavailable: a 503, and nothing else is answered
            if failure is not None:
                raise failure
            return result

        return handle


def _json_body(content_type: str | None) -> bool:
    if not content_type:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _one_hop(endpoint: Callable[..., Any]) -> Callable[[Request, bytes], Response]:
    """The single-hop form of `endpoint` (see `OneHop`)."""
    hints = get_type_hints(endpoint, include_extras=True)
    if hints.pop("return", None) is not Response:
        raise TypeError(f"{endpoint.__name__}: a OneHop endpoint returns a Response")
    paths: dict[str, TypeAdapter[Any]] = {}
    body: tuple[str, type[BaseModel]] | None = None
    work: tuple[str, bool] | None = None
    for name, hint in hints.items():
        extras = getattr(hint, "__metadata__", ())
        depends = [m for m in extras if isinstance(m, params.Depends)]
        if depends and depends[0].dependency in (_WRITE, _READ):
            work = (name, depends[0].dependency is _READ)
        elif any(isinstance(m, params.Path) for m in extras):
            paths[name] = TypeAdapter(hint)
        elif isinstance(hint, type) and issubclass(hint, BaseModel) and body is None:
            body = (name, hint)
        else:
            raise TypeError(f"{endpoint.__name__}: a OneHop endpoint takes path parameters, one body model and "
                            f"its unit of work, not {name!r}")  # fmt: skip
    if work is None:
        raise TypeError(f"{endpoint.__name__}: a OneHop endpoint takes Authenticated or AuthenticatedRead")
    work_name, read_only = work

    def arguments(request: Request, raw: bytes) -> dict[str, Any]:
        values: dict[str, Any] = {}
        problems: list[dict[str, Any]] = []
        for name, adapter in paths.items():
            try:
                values[name] = adapter.validate_python(request.path_params[name])
            except ValidationError as exc:
                problems += [{**e, "loc": ("path", name, *e["loc"])} for e in exc.errors(include_input=False)]
        if body is not None:
            name, model = body
            if not raw:
                problems.append({"type": "missing", "loc": ("body",), "msg": "Field required"})
            elif not _json_body(request.headers.get("content-type")):
                problems.append({"type": "content_type", "loc": ("body",), "msg": "send a JSON body "
                                 "(Content-Type: application/json)"})  # fmt: skip
            else:
                try:
                    values[name] = model.model_validate_json(raw)
                except ValidationError as exc:
                    problems += [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
        if problems:
            raise RequestValidationError(problems)
        return values

    def serve(request: Request, raw: bytes) -> Response:
        work = Work(request, read_only)
        with work:  # ends the work if validation or the endpoint raises (the endpoint ends it otherwise)
            result: Response = endpoint(**arguments(request, raw), **{work_name: work})
        return result

    return serve


# Pagination: `?limit=N&cursor=C` (`PageQuery`). A cursor is opaque to clients: the position after
# the last item of the previous page.
MAX_PAGE = 500


def encode_cursor(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if cursor is None:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise errors.PayloadError("the cursor is not one this API gave out; start again without one") from None


def checked_position(value: Any, kind: type[T]) -> T | None:
    if value is None:
        return None
    if kind is int:
        ok = type(value) is int and 0 <= value < 2**63
    elif kind is str:
        ok = type(value) is str and len(value) <= 256 and value.isprintable()  # no NUL, no lone surrogate
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise errors.PayloadError("the cursor is not one this API gave out; start again without one")
    return value  # type: ignore[no-any-return]


class PageQuery(BaseModel):
    """`?limit=&cursor=`, validated (a bad one is a 400/422, never a 500), and no other query
    parameter: a mistyped filter is refused (422), not silently ignored. Routes with filters
    extend it. Answers are {"items": [...], "next_cursor": C or null}."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="Items per page.")
    cursor: str | None = Field(None, max_length=512, description="`next_cursor` of the previous page.")

    def position(self, kind: type[T]) -> T | None:
        """The decoded cursor, checked to be a value this API could have given out: a sequence
        number (an int the database can hold) or an id (short, encodable text without NUL)."""
        return checked_position(decode_cursor(self.cursor), kind)

    def keyset(self, fetched: Sequence[T], key: Callable[[T], Any], render: Callable[[T], Any]) -> dict[str, Any]:
        """The page of `fetched`: up to `limit + 1` items after `position()`, ordered by `key`
        (whose value is the next cursor); the extra item only says that there is more."""
        shown, more = fetched[: self.limit], len(fetched) > self.limit
        return {"items": [render(i) for i in shown], "next_cursor": encode_cursor(key(shown[-1])) if more else None}

    def of(self, items: Iterable[T], key: Callable[[T], Any], render: Callable[[T], Any]) -> dict[str, Any]:
        """One page of a whole list held in memory, sorted here by `key` (Python's order, whatever
        the database's collation was)."""
        after = decode_cursor(self.cursor)
        ordered = sorted(items, key=key)
        if after is not None:
            try:
                ordered = [i for i in ordered if key(i) > after]
            except TypeError:
                raise errors.PayloadError("the cursor is not one this API gave out; start again without one") from None
        return self.keyset(ordered[: self.limit + 1], key, render)
