"""The console's session: the access session the API issues (`POST /api/v1/sessions`), carried in a
cookie instead of a bearer header, held to a console idle timeout and absolute lifetime, and the
CSRF token every form carries.

A console request is authenticated in the API's order (`_deps.principal`): the source's budget of
refused requests, the global allow-list, the credential (the session in the cookie), then the console's
own clock (idle, lifetime), then the rate limits. The console's log-in marks its access session as a
console session (`sessions.console_seen_at`, in the database: every node and worker of a deployment
sees the same times, and a restart keeps them); a session the API issued is not accepted here. When the
console ends a session it revokes the access session too (access:session:end), so the token is dead for
the API as well.
"""

from __future__ import annotations

import hmac
from contextlib import AbstractContextManager
from datetime import timedelta
from types import TracebackType

from fastapi import Request
from sqlalchemy.engine import Connection

from sagevault import errors
from sagevault.deployment import Deployment
from sagevault.identity import Channel, Principal

from .._deps import deployment, edge_refusal, source, transaction

COOKIE = "__Host-sv_console"  # __Host-: Secure, Path=/, no Domain: only this origin ever gets it
LOGIN_COOKIE = "__Host-sv_login"  # the log-in form's nonce (log-in CSRF), before there is a session
# Console routes doing what an API route does count against that route's rate (`api_route_rates`): the
# console is no way around the API's limits (a verification of the whole log, a reveal, a batch).
API_ROUTE_OF = {
    "POST /console/audit/verify": "POST /api/v1/audit/verify",
    "GET /console/audit": "GET /api/v1/audit/events",
    "POST /console/tenants/{tenant}/orders/{order}/reveal": "POST /api/v1/tenants/{tenant_id}/orders/{order_id}/reveal",
    "GET /console/report": "GET /api/v1/report",
    "POST /console/report/pack": "POST /api/v1/report/pack",
    "POST /console/deletions/{request_id}/run": "POST /api/v1/deletion-requests/{request_id}/run",
}
IDLE = timedelta(minutes=15)
LIFETIME = timedelta(hours=8)
TOUCH_EVERY = timedelta(minutes=1)  # the last-used time is written at most this often (idle is ≤ 1 min early)


class SessionEnded(Exception):
    """No console session, or it is over (idle, lifetime, revoked, expired): log in again. `timed_out`:
    a live access session the console's idle timeout or lifetime ended (it is revoked with it)."""

    def __init__(self, *, timed_out: bool = False) -> None:
        super().__init__("the console session ended")
        self.timed_out = timed_out


class CsrfRefused(errors.AccessDenied):
    """A form without the session's CSRF token, or with another one."""


def console_live(d: Deployment, conn: Connection, token: str, *, writable: bool) -> bool:
    """Whether `token` is a live console session (started by the console's log-in, used within IDLE,
    younger than LIFETIME); SessionEnded(timed_out=True) if it was one and IDLE or LIFETIME ended it. A
    live one is marked as used now, at most once a minute: in the page's unit of work if it writes, else
    in a short one of its own."""
    times = d.access.authn.console_times(conn, token)
    if times is None:
        return False
    started, seen = times
    now = d.now()
    if now - seen > IDLE or now - started > LIFETIME:
        raise SessionEnded(timed_out=True)
    if now - seen >= TOUCH_EVERY:
        if writable:
            d.access.authn.console_seen(conn, token, now)
        else:
            with transaction(d) as writing:
                d.access.authn.console_seen(writing, token, now)
    return True


def csrf_token(d: Deployment, conn: Connection, secret: str, label: str = "console csrf") -> str:
    """The form token of a session (or of a log-in nonce): an HMAC under the deployment's access secret."""
    return d.access.core.keyed(conn, label, secret).hex()


def csrf_ok(d: Deployment, conn: Connection, secret: str, sent: str | None, label: str = "console csrf") -> bool:
    return bool(secret) and sent is not None and hmac.compare_digest(csrf_token(d, conn, secret, label), sent)


def end_access_session(d: Deployment, token: str) -> None:
    """Revoke the access session behind an ended console session (recorded as access:session:end)."""
    if not token.startswith("svs_"):
        return
    try:
        with transaction(d) as conn:
            d.access.authn.logout(conn, token)
    except errors.AccessError:
        pass  # already ended


class ConsoleWork:
    """A console request's unit of work and principal, authenticated from the session cookie
    (budget → allow-list → session → console idle/lifetime → rate limits). `with work:` commits when
    the block ends and rolls back if it raises, as `_deps.Work`."""

    def __init__(self, request: Request, *, read_only: bool = False) -> None:
        self.d: Deployment = deployment(request)
        self.token = request.cookies.get(COOKIE, "")
        self.read_only = read_only
        if not self.token.startswith("svs_"):
            raise SessionEnded
        self._uow: AbstractContextManager[Connection] | None = transaction(self.d, read_only=read_only)
        self.conn = self._uow.__enter__()
        try:
            self.who, self.address = self._authenticate(request)
        except BaseException as exc:
            self.end(type(exc), exc, exc.__traceback__)
            raise

    def _authenticate(self, request: Request) -> tuple[Principal, str]:
        d, conn = self.d, self.conn
        address = source(request)
        limiter = request.app.state.limiter
        source_key = d.access.core.source_key(conn, address)
        quiet = not limiter.within_budget(source_key)
        try:
            with d.access.core.unrecorded_refusals(quiet), d.access.core.one_generation(conn):
                address = d.access.allowlists.admit_source(conn, address, channel=Channel.API)
                who = d.access.authn.authenticate_session(
                    conn, self.token, source=address, channel=Channel.API, console=True
                )
        except errors.AccessDenied:
            if not quiet and limiter.refused(source_key):
                edge_refusal(
                    d,
                    conn,
                    errors.RateLimited("too many refused requests from this address; further refusals go unrecorded"),
                    None,
                    address,
                )
            raise
        if not console_live(d, conn, self.token, writable=not self.read_only):
            raise SessionEnded
        route = request.scope.get("route")
        key = f"{request.method} {route.path if route is not None else request.url.path}"
        try:
            limiter.admit(who.id, API_ROUTE_OF.get(key, key))  # counted as the API's route doing the same
        except errors.RateLimited as exc:
            raise edge_refusal(d, conn, exc, who.id, address) from None
        return who, address

    def check_csrf(self, sent: str | None) -> None:
        """Refuse (recorded as api:request:refuse) a form whose token is not this session's."""
        if not csrf_ok(self.d, self.conn, self.token, sent):
            refused = CsrfRefused("this form is stale or did not come from the console; nothing was changed")
            raise edge_refusal(self.d, self.conn, refused, self.who.id, self.address)

    @property
    def csrf(self) -> str:
        return csrf_token(self.d, self.conn, self.token)

    def end(
        self, kind: type[BaseException] | None = None, exc: BaseException | None = None, tb: TracebackType | None = None
    ) -> None:
        uow, self._uow = self._uow, None
        if uow is not None:
            uow.__exit__(kind, exc, tb)

    def __enter__(self) -> ConsoleWork:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.end(kind, exc, tb)
