"""API keys: the credentials of service accounts. A key is `svk_<id>_<secret>`; only a keyed hash
of the secret is stored, it carries the most it may do (scopes), and it expires within the policy's
maximum age."""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import EventName
from sagevault.db import brief_write, lock_not_had, read_only
from sagevault.errors import (
    AccessDenied,
    AccessError,
    AccountDisabled,
    AuthenticationFailed,
    Conflict,
    CredentialExpired,
    NetworkDenied,
    NotFound,
    shown,
)
from sagevault.identity import Channel, Principal, Scope

from ._core import AccessCore
from ._grants import rearm_two_person_rule
from ._policy import AccessPolicy, address_of, as_utc
from ._schema import api_keys, principals

_API_KEY = re.compile(r"svk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    token: str = field(repr=False)  # shown once
    principal_id: str
    scopes: frozenset[str]
    expires_at: datetime
    pending_grants: int = 0  # the service's grants put back to pending by this key (two-person rule)


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What is known of a live API key: everything but its secret, of which only a keyed hash exists."""

    key_id: str
    principal_id: str
    login: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    expires_at: datetime
    last_used_at: datetime | None


class ApiKeys:
    def __init__(self, core: AccessCore) -> None:
        self._core = core
        self._seen: dict[str, datetime] = {}  # key id -> when this process last noted its use

    def issue(
        self, conn: Connection, service: str, *, scopes: Iterable[str], days: int | None = None, actor: Principal
    ) -> ApiKey:
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        row = core.row(conn, service, "service")
        if row.status != "active":
            raise Conflict(f"{row.login} is disabled; enable it before issuing keys")
        max_days = core.profile.api_key_max_age_days
        days = max_days if days is None else days
        if not 1 <= days <= max_days:
            raise AccessError(f"an API key lives 1 to {max_days} days; asked for {days}")
        wanted = frozenset(scopes)
        unknown = sorted(wanted - {s.value for s in Scope})
        if not wanted or unknown:
            raise AccessError(
                f"give the key's scopes from: {', '.join(s.value for s in Scope)}"
                + (f" (unknown: {', '.join(shown(u) for u in unknown)})" if unknown else "")
            )
        rearmed = 0
        if any(Scope(s).sensitive for s in wanted):
            # The issuing admin holds the new key: what the service may do with PII, keys or
            # accounts waits for a second party again.
            rearmed = rearm_two_person_rule(conn, row.id, actor, issued=True)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = core.now()
        expires = now + timedelta(days=days)
        conn.execute(
            insert(api_keys).values(
                id=key_id,
                principal_id=row.id,
                secret_hash=core.keyed(conn, "apikey", secret),
                scopes=sorted(wanted),
                created_at=now,
                created_by=actor.id,
                expires_at=expires,
            )
        )
        core.changed(conn)
        core.event(conn, EventName.ACCESS_APIKEY_CREATE, actor, counts={"days": days, "pending_grants": rearmed})
        return ApiKey(key_id, f"svk_{key_id}_{secret}", row.id, wanted, expires, rearmed)

    def rotate(self, conn: Connection, key_id: str, *, actor: Principal, days: int | None = None) -> ApiKey:
        """A new key for the same service with the same scopes; the old one is revoked now."""
        self._core.authorize(conn, actor, Scope.USERS_ADMIN)
        old = conn.execute(
            select(api_keys.c.scopes, principals.c.login)
            .join(principals, principals.c.id == api_keys.c.principal_id)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        ).first()
        if old is None:
            raise self._dead_key(conn, key_id, "rotated; issue a new key to the service instead")
        new = self.issue(conn, old.login, scopes=old.scopes, days=days, actor=actor)
        self.revoke(conn, key_id, actor=actor)
        return new

    def revoke(self, conn: Connection, key_id: str, *, actor: Principal, operation: str | None = None) -> None:
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        done = conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=core.now())
        ).rowcount
        if not done:
            raise self._dead_key(conn, key_id, "revoked again; nothing to do")
        core.changed(conn)
        core.event(conn, EventName.ACCESS_APIKEY_REVOKE, actor, operation=operation)

    @staticmethod
    def _dead_key(conn: Connection, key_id: str, what: str) -> AccessError:
        """Why no live key `key_id` was found: it never existed (NotFound), or it is revoked (Conflict)."""
        if conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).first() is None:
            return NotFound(f"no API key {shown(key_id)}; see `sagevault users review` or GET /api/v1/api-keys")
        return Conflict(f"API key {shown(key_id)} is revoked and cannot be {what}")

    def list(self, conn: Connection, *, actor: Principal, login: str | None = None) -> list[ApiKeyInfo]:
        """Live (unrevoked) API keys, of every service or of the service `login`, by login then key id.
        Expired keys stay listed until revoked, so a review can see them."""
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        query = (
            select(api_keys, principals.c.login)
            .join(principals, principals.c.id == api_keys.c.principal_id)
            .where(api_keys.c.revoked_at.is_(None))
            .order_by(principals.c.login, api_keys.c.id)
        )
        if login is not None:
            query = query.where(api_keys.c.principal_id == core.row(conn, login, "service").id)
        return [
            ApiKeyInfo(
                k.id,
                k.principal_id,
                k.login,
                tuple(k.scopes),
                as_utc(k.created_at) or core.now(),
                k.created_by,
                as_utc(k.expires_at) or core.now(),
                as_utc(k.last_used_at),
            )
            for k in conn.execute(query)
        ]

    # --- authentication with a key --------------------------------------------------------------

    def verify(self, conn: Connection, token: str, *, source: str, channel: Channel = Channel.API) -> Principal:
        """The service principal an API key stands for, checked against the current policy (one
        read of the generation counter, then memory): a keyed hash, not Argon2."""
        core = self._core
        policy = core.policy(conn)
        try:
            principal = self.check(policy, core.ensure_secret(conn), token, source=source, channel=channel)
        except AccessDenied as exc:
            raise core.refuse(
                conn, EventName.ACCESS_APIKEY_FAILURE, None, exc, source=source, channel=channel
            ) from None
        self._note_use(conn, token[4:20], principal.id)
        return principal

    def check(
        self, policy: AccessPolicy, secret: bytes, token: str, *, source: str, channel: Channel = Channel.API
    ) -> Principal:
        """`verify` without the database: the key against a policy picture and the access secret."""
        match = _API_KEY.fullmatch(token)
        entry = policy.keys.get(match.group(1)) if match else None
        digest = hmac.digest(secret, b"apikey\0" + (match.group(2) if match else "").encode(), "sha256")
        if match is None or entry is None or not hmac.compare_digest(digest, entry.secret_hash):
            raise AuthenticationFailed("this API key is not valid (unknown, revoked or mistyped)")
        if entry.expires_at <= self._core.now().timestamp():
            raise CredentialExpired(
                "this API key has expired; ask the service's owner to issue a new one", reason="credential_expired"
            )
        if policy.status.get(entry.principal_id) != "active":
            raise AccountDisabled("the service account of this API key is disabled")
        if not policy.source_allowed(entry.principal_id, address_of(source)):
            raise NetworkDenied("requests from this address are not allowed: it is outside the IP allow-lists")
        return Principal(entry.principal_id, "service", channel, source, entry.scopes)

    def _note_use(self, conn: Connection, key_id: str, principal_id: str) -> None:
        """Record that a key (and its service) is in use, at most once an hour per key and
        process: the inactivity review must not flag a busy service."""
        now = self._core.now()
        seen = self._seen.get(key_id)
        if seen is not None and now - seen < timedelta(hours=1):
            return
        if read_only(conn):
            # The request's own transaction only reads (on SQLite a DEFERRED snapshot, where a
            # write could fail with SQLITE_BUSY_SNAPSHOT): this bookkeeping commits on its own,
            # and waits only briefly for the write lock. If a writer (an ingest) holds it, the
            # request goes on and a later one notes the use: bookkeeping must not hold a request
            # up (the API may be serving it in its event loop) or, after the busy timeout,
            # refuse it.
            try:
                with brief_write(conn.engine) as own:
                    self._write_use(own, key_id, principal_id, now)
            except Exception as exc:  # a lock or a pooled connection not had: a later request notes it
                if not lock_not_had(exc):
                    raise
                return
        else:
            self._write_use(conn, key_id, principal_id, now)
        self._seen[key_id] = now

    @staticmethod
    def _write_use(conn: Connection, key_id: str, principal_id: str, now: datetime) -> None:
        conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now))
        conn.execute(update(principals).where(principals.c.id == principal_id).values(last_active_at=now))
