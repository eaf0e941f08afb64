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

from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Connection

from sagevault import errors
from sagevault.audit import Channel
from sagevault.deployment import Deployment
from sagevault.vault import Principal

API = "/api/v1"
T = TypeVar("T")

# Most specific first: the first class an error is an instance of decides its status.
STATUS: list[tuple[type[Exception], int, str]] = [
    (errors.LoginThrottled, 429, "throttled"),
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
    (errors.RotationError, 409, "rotation-conflict"),
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


def unit_of_work(request: Request) -> Iterator[Connection]:
    """One transaction per request: committed when the handler returns, rolled back if it raises."""
    with deployment(request).engine.begin() as conn:
        yield conn


Conn = Annotated[Connection, Depends(unit_of_work)]


def bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""


def principal(request: Request, conn: Conn) -> Principal:
    """The source address against the allow-lists, then the bearer credential (a session for
    people, an API key for services), then the principal's and the route's rate limits. No
    credential, no handler; authorisation is the handler's domain call (`decide`)."""
    d = deployment(request)
    address = source(request)
    token = bearer(request)
    if token.startswith("svk_"):
        who = d.access.verify_api_key(conn, token, source=address, channel=Channel.API)
    elif token.startswith("svs_"):
        who = d.access.authenticate_session(conn, token, source=address, channel=Channel.API)
    else:
        raise errors.AuthenticationFailed("this request needs a bearer token: a session (POST /api/v1/sessions) "
                                          "or an API key")  # fmt: skip
    limiter = request.app.state.limiter
    route = request.scope.get("route")
    limiter.admit(who.id, f"{request.method} {getattr(route, 'path', request.url.path)}")
    return who


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
        """The decoded cursor, checked to be of the expected type."""
        value = decode_cursor(self.cursor)
        if value is not None and not isinstance(value, kind):
            raise errors.PayloadError("the cursor is not one this API gave out; start again without one")
        return value

    def of(self, items: Sequence[T], key: Callable[[T], Any], render: Callable[[T], Any]) -> dict[str, Any]:
        """One page of an already sorted (by `key`, ascending) in-memory sequence."""
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
