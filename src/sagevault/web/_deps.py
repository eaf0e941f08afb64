"""What every route shares: problem details, the request's unit of work, the authenticated
principal (allow-list → authentication → rate limit, in that order) and pagination.

Route modules import from here and never from `_app`, which imports them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Connection

from sagevault import errors
from sagevault.audit import AuditEvent, Channel, EventName, outcome_of
from sagevault.db import reading
from sagevault.deployment import Deployment
from sagevault.vault import Principal

API = "/api/v1"
T = TypeVar("T")

# A selling partner id as the vault accepts one: a path that cannot name a tenant is a 422.
TENANT_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$"
TenantPath = Annotated[str, Path(min_length=2, max_length=64, pattern=TENANT_ID, description="The tenant's id.")]

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


# Routes whose unit of work writes nothing to the vault database (their security events go to the
# audit log, a database of its own): on SQLite their transaction is a snapshot read that does not
# queue for the write lock. A route that writes must not be listed.
READ_ROUTES = frozenset({"tenants", "order", "reveal", "search"})


def unit_of_work(request: Request) -> Iterator[Connection]:
    """One transaction per request: committed when the handler returns, rolled back if it raises."""
    with deployment(request).engine.connect() as conn:
        if getattr(request.scope.get("route"), "name", None) in READ_ROUTES:
            reading(conn)
        with conn.begin():
            yield conn


# scope="function": the transaction ends (commits or rolls back) before the answer is sent, so a
# client never sees 2xx for work that did not commit.
Conn = Annotated[Connection, Depends(unit_of_work, scope="function")]


def bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""


def principal(request: Request, conn: Conn) -> Principal:
    """The chain every authenticated route runs, in this order: the source address against the
    global allow-list (before anything about the credential is looked at); the source's budget
    of refused requests; the bearer credential (a session for people, an API key for services,
    each also held to its own allow-list); then the principal's and the route's rate limits.
    Authorisation is the handler's domain call (`decide`)."""
    d = deployment(request)
    address = source(request)
    limiter = request.app.state.limiter
    source_key = d.access.client_ip_hash(conn, address) or ""
    limiter.admit_source(source_key)  # refused without an event: the budget's end was recorded once
    token = bearer(request)
    try:
        address = d.access.admit_source(conn, address, channel=Channel.API)
        if token.startswith("svk_"):
            who: Principal = d.access.verify_api_key(conn, token, source=address, channel=Channel.API)
        elif token.startswith("svs_"):
            who = d.access.authenticate_session(conn, token, source=address, channel=Channel.API)
        else:
            refused = errors.AuthenticationFailed("this request needs a bearer token: a session "
                                                  "(POST /api/v1/sessions) or an API key", reason="no_credential")
            raise edge_refusal(d, conn, refused, None, address)  # fmt: skip
    except errors.AccessDenied:
        if limiter.refused(source_key):  # this refusal spent the source's budget: say so, once
            edge_refusal(d, conn, errors.RateLimited("too many refused requests from this address"), None, address)
        raise
    route = request.scope.get("route")
    try:
        limiter.admit(who.id, f"{request.method} {getattr(route, 'path', request.url.path)}")
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


Who = Annotated[Principal, Depends(principal)]


# Pagination: `?limit=N&cursor=C`. A cursor is opaque to clients: the position after the last
# item of the previous page. Answers are {"items": [...], "next_cursor": C or null}.
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


class Page:
    """`limit` and `cursor` query parameters, validated (a bad one is a 400/422, never a 500)."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")] = 50,
        cursor: Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page.")] = None,
    ) -> None:
        self.limit = limit
        self.cursor = cursor

    def position(self, kind: type[T]) -> T | None:
        """The decoded cursor, checked to be a value this API could have given out: a sequence
        number (an int the database can hold) or an id (short, encodable text without NUL)."""
        return checked_position(decode_cursor(self.cursor), kind)

    def of(self, items: Sequence[T], key: Callable[[T], Any], render: Callable[[T], Any]) -> dict[str, Any]:
        """One page of an already sorted (by `key`, ascending) in-memory sequence."""
        items = sorted(items, key=key)  # Python's order, whatever the database's collation was
        after = decode_cursor(self.cursor)
        if after is not None:
            try:
                items = [i for i in items if key(i) > after]
            except TypeError:
                raise errors.PayloadError("the cursor is not one this API gave out; start again without one") from None
        page = items[: self.limit]
        more = len(items) > self.limit
        return {"items": [render(i) for i in page], "next_cursor": encode_cursor(key(page[-1])) if more else None}


Paging = Annotated[Page, Depends(Page)]
