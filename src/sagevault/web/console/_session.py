"""The console's session: the access session the API issues (`POST /api/v1/sessions`), carried in a
cookie instead of a bearer header, held to a console idle timeout and absolute lifetime, and the
CSRF token every form carries.

A console request is authenticated in the API's order (`_deps.principal`): the source's budget of
refused requests, the global allow-list, the credential (the session in the cookie), then the console's
own clock (idle, lifetime), then the rate limits. The access session (`sessions` table) knows only its
creation and expiry (`session_hours`); the console's last-seen time is kept here, in this process's
memory, keyed by a hash of the token. A token this process has not seen log in (another node, a
restart) is treated as ended: the person logs in again (fail closed). When the console ends a session
it revokes the access session too (access:session:end), so the token is dead for the API as well.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

from fastapi import Request
from sqlalchemy.engine import Connection

from sagevault import errors
from sagevault.deployment import Deployment
from sagevault.identity import Channel, Principal

from .._deps import deployment, edge_refusal, source, transaction

COOKIE = "__Host-sv_console"  # __Host-: Secure, Path=/, no Domain: only this origin ever gets it
LOGIN_COOKIE = "__Host-sv_login"  # the log-in form's nonce (log-in CSRF), before there is a session
IDLE = timedelta(minutes=15)
LIFETIME = timedelta(hours=8)


class SessionEnded(Exception):
    """No console session, or it is over (idle, lifetime, revoked, expired): log in again."""


class CsrfRefused(errors.AccessDenied):
    """A form without the session's CSRF token, or with another one."""


@dataclass
class _Seen:
    started: datetime
    last: datetime


class ConsoleSessions:
    """When each console session started and was last used (this process; see the module's doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[bytes, _Seen] = {}

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def start(self, token: str, now: datetime) -> None:
        with self._lock:
            for key in [k for k, s in self._seen.items() if now - s.started > LIFETIME]:
                del self._seen[key]
            self._seen[self._key(token)] = _Seen(now, now)

    def touch(self, token: str, now: datetime) -> bool:
        """Whether the session is live (known, used within IDLE, younger than LIFETIME); a live one is
        marked as used now, an ended one is forgotten."""
        key = self._key(token)
        with self._lock:
            seen = self._seen.get(key)
            if seen is None:
                return False
            if now - seen.last > IDLE or now - seen.started > LIFETIME:
                del self._seen[key]
                return False
            seen.last = now
            return True

    def forget(self, token: str) -> None:
        with self._lock:
            self._seen.pop(self._key(token), None)


def sessions_of(request: Request) -> ConsoleSessions:
    state = request.app.state
    found: ConsoleSessions | None = getattr(state, "console_sessions", None)
    if found is None:
        found = state.console_sessions = ConsoleSessions()
    return found


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
            with d.access.core.unrecorded_refusals(quiet):
                address = d.access.allowlists.admit_source(conn, address, channel=Channel.API)
                who = d.access.authn.authenticate_session(conn, self.token, source=address, channel=Channel.API)
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
        if not sessions_of(request).touch(self.token, d.now()):
            raise SessionEnded
        route = request.scope.get("route")
        try:
            limiter.admit(who.id, f"{request.method} {route.path if route is not None else request.url.path}")
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
