"""What every part of access shares: the clock, the access secret and the keyed hashes made with
it, the decision (`authorize`), how a part records a security event or a refusal, and how it
tells every process that access state changed.

Each part (log-in, accounts, API keys, grants, allow-lists, kill switches, reviews) is a class of
its own holding this core; none holds another's state.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Row

from sagevault.audit import AuditEvent, AuditSink, EventName, Outcome, Reason, outcome_of
from sagevault.catalog import Purpose
from sagevault.config import Settings
from sagevault.crypto import KeyProvider
from sagevault.errors import AccessDenied, AccessError, RecordNotFound, SageVaultError, shown
from sagevault.identity import Channel, Principal, Scope, event_tenant, normalise_login

from ._model import ALL_TENANTS
from ._network import client_address, parse_address, parse_network
from ._policy import AccessControl, AccessPolicy, decide, forget_generation, one_generation
from ._schema import access_state, allowlist, api_keys, grants, principals, sessions
from ._throttle import LoginThrottle

Clock = Callable[[], datetime]

_SECRET_CONTEXT = MappingProxyType({"purpose": "access-secret"})  # bound into the wrapped secret
_ID_LETTERS = "bcdfghjkmnpqrstvwxz"  # no digits (an id must never look like a phone number), no vowels


def new_id(prefix: str) -> str:
    """A random pseudonymous id such as usr_kzqhtbwrmfdx: 12 letters, about 51 bits."""
    return prefix + "_" + "".join(secrets.choice(_ID_LETTERS) for _ in range(12))


def encodable(value: str) -> bool:
    """Text that can be stored and hashed (a lone surrogate cannot be encoded as UTF-8)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


_SOURCE_KEYS_KEPT = 4096


class TenantDirectory(Protocol):
    """What access needs to know of tenants (the vault answers; access does not import it):
    which of `tenant_ids` exist, each with its shred time (None while it is live)."""

    def tenant_states(self, conn: Connection, tenant_ids: Sequence[str]) -> dict[str, datetime | None]: ...


class AccessCore:
    def __init__(
        self,
        settings: Settings,
        keys: KeyProvider,
        audit: AuditSink,
        *,
        tenants: TenantDirectory,
        control: AccessControl | None = None,
        throttle: LoginThrottle | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.profile = settings.policy
        self.keys = keys
        self.audit = audit
        self.tenants = tenants
        self.control = control or AccessControl(clock)
        self.throttle = throttle or LoginThrottle(settings)
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._secret: bytes | None = None
        self._source_keys: dict[str, str] = {}  # address → its keyed hash (`source_key`), the most recent few
        self._trusted = tuple(parse_network(c) for c in settings.trusted_proxies)
        self._quiet = threading.local()  # refusals not recorded on this thread (see `unrecorded_refusals`)

    def now(self) -> datetime:
        return self._clock()

    # --- the access secret and what is hashed with it -------------------------------------------

    def make_secret(self, conn: Connection) -> None:
        """Create the access secret (keyed hashes of API keys, codes, sessions, addresses),
        wrapped by the master key, if the deployment has none yet. When one exists nothing is
        wrapped or unwrapped, so opening a deployment costs no KMS call."""
        missing = select(access_state.c.id).where(access_state.c.id == 1, access_state.c.secret.is_(None))
        if conn.execute(missing).first() is None:
            return
        secret = secrets.token_bytes(32)
        made = conn.execute(
            update(access_state)
            .where(access_state.c.id == 1, access_state.c.secret.is_(None))
            .values(secret=self.keys.wrap(secret, _SECRET_CONTEXT), master_key_id=self.keys.key_id)
        ).rowcount
        if made:  # else another process made it first: theirs is read on first use
            self._secret = secret

    def ensure_secret(self, conn: Connection) -> bytes:
        """The access secret, made on first use if missing, unwrapped once per process."""
        if self._secret is None:
            self.make_secret(conn)
        if self._secret is None:
            wrapped = conn.execute(select(access_state.c.secret).where(access_state.c.id == 1)).scalar_one()
            self._secret = self.keys.unwrap(bytes(wrapped), _SECRET_CONTEXT)
        return self._secret

    def rewrap_secrets(self, conn: Connection) -> int:
        """Wrap the access secret and every person's TOTP secret again with the current master
        key, where an older one wrapped them (a master key rotation); how many were re-wrapped.
        Needs the master key ring (`MasterKeys`), which knows the current key from the old."""
        rewrapped = getattr(self.keys, "rewrapped", None)
        if rewrapped is None:
            return 0
        done = 0
        secret = conn.execute(select(access_state.c.secret).where(access_state.c.id == 1)).scalar_one_or_none()
        if secret is not None and (fresh := rewrapped(bytes(secret), _SECRET_CONTEXT)) is not None:
            conn.execute(
                update(access_state).where(access_state.c.id == 1).values(secret=fresh, master_key_id=self.keys.key_id)
            )
            done += 1
        people = conn.execute(
            select(principals.c.id, principals.c.totp_secret).where(principals.c.totp_secret.is_not(None))
        ).all()
        for principal_id, wrapped in people:
            fresh = rewrapped(bytes(wrapped), {"purpose": "totp", "principal": principal_id})
            if fresh is not None:
                conn.execute(update(principals).where(principals.c.id == principal_id).values(totp_secret=fresh))
                done += 1
        return done

    def keyed(self, conn: Connection, label: str, value: str) -> bytes:
        data = value.encode("utf-8", "surrogatepass")  # any str hashes; none raises
        return hmac.digest(self.ensure_secret(conn), label.encode() + b"\0" + data, "sha256")

    def client_ip_hash(self, conn: Connection, address: str | None) -> str | None:
        """The keyed hash that names a source in security events: its address, or its /64 for
        IPv6 (as the throttle counts it: a host rotating through its /64 is one source)."""
        if not address:
            return None
        try:
            parsed = parse_address(address)
        except (ValueError, SageVaultError):
            return self.keyed(conn, "ip", address).hex()[:32]
        counted = str(ipaddress.ip_network(f"{parsed}/64", strict=False)) if parsed.version == 6 else str(parsed)
        return self.keyed(conn, "ip", counted).hex()[:32]

    def client_address(self, peer: str, forwarded_for: str | None = None) -> str:
        """The request's source address, believing X-Forwarded-For only from trusted proxies."""
        return str(client_address(peer, forwarded_for, self._trusted))

    def source_key(self, conn: Connection, address: str) -> str:
        """The keyed hash that counts a source: its address, or its /64 for IPv6 (one host can
        hold a whole /64 and rotate through it). Remembered for the most recent few thousand
        addresses (every request asks; the access secret never changes within a process)."""
        known = self._source_keys.get(address)
        if known is not None:
            return known
        parsed = parse_address(address)
        counted = str(ipaddress.ip_network(f"{parsed}/64", strict=False)) if parsed.version == 6 else str(parsed)
        key = self.keyed(conn, "ip", counted).hex()
        if len(self._source_keys) >= _SOURCE_KEYS_KEPT:
            self._source_keys.clear()
        self._source_keys[address] = key
        return key

    # --- events -----------------------------------------------------------------------------------

    def event(
        self,
        conn: Connection,
        name: EventName,
        actor: Principal | str | None,
        *,
        outcome: Outcome = Outcome.SUCCESS,
        reason: Reason | str = Reason.NONE,
        tenant_id: str | None = None,
        source: str | None = None,
        counts: dict[str, int] | None = None,
        channel: Channel | None = None,
        operation: str | None = None,
        fingerprint: str | None = None,
    ) -> None:
        actor_id = actor.id if isinstance(actor, Principal) else actor
        if channel is None:
            channel = actor.channel if isinstance(actor, Principal) else Channel.API
        if source is None and isinstance(actor, Principal):
            source = actor.source_ip
        self.audit.record(
            AuditEvent(
                name=name,
                channel=channel,
                outcome=outcome,
                reason=Reason(reason),
                actor=actor_id,
                tenant_id=tenant_id,
                client_ip_hash=self.client_ip_hash(conn, source),
                counts=counts or {},
                operation=operation,
                fingerprint=fingerprint,
            )
        )

    def refuse(
        self, conn: Connection, name: EventName, actor: Principal | str | None, error: SageVaultError, **kw: Any
    ) -> SageVaultError:
        """Record the refusal as an event and hand the error back for the caller to raise."""
        if not getattr(self._quiet, "on", False):
            outcome, reason = outcome_of(error)
            self.event(conn, name, actor, outcome=outcome, reason=reason, **kw)
        return error

    @contextlib.contextmanager
    def unrecorded_refusals(self, quiet: bool = True) -> Iterator[None]:
        """Within the block (on this thread), refusals are raised but not recorded: the API's
        edge uses it for a source that has used up its budget of refused requests, so that a
        flood cannot grow the security log without bound (its budget's end was recorded once)."""
        before = getattr(self._quiet, "on", False)
        self._quiet.on = quiet or before
        try:
            yield
        finally:
            self._quiet.on = before

    # --- the decision -----------------------------------------------------------------------------

    def changed(self, conn: Connection) -> None:
        """Access state changed in this transaction: every process rebuilds its policy picture."""
        # A random value, not a counter: a rolled-back change and a later committed one must
        # never share a generation, or a process could keep a picture of the rolled-back state.
        conn.execute(update(access_state).where(access_state.c.id == 1).values(generation=secrets.randbits(62)))
        forget_generation(conn)

    def policy(self, conn: Connection) -> AccessPolicy:
        return self.control.policy(conn)

    @staticmethod
    def one_generation(conn: Connection) -> contextlib.AbstractContextManager[None]:
        """Decisions in the block share one read of the policy generation (`_policy.one_generation`)."""
        return one_generation(conn)

    def authorize(
        self,
        conn: Connection,
        actor: Principal,
        scope: Scope | str,
        tenant_id: str | None = None,
        *,
        purpose: Purpose | None = None,
    ) -> None:
        """Let `actor` go on only if `decide` allows `scope` on `tenant_id` (for `purpose`); a
        refusal is recorded as access:permission:deny with its reason, then raised."""
        try:
            decide(self.policy(conn), actor, Scope(scope), tenant_id, purpose=purpose, now=self.now().timestamp())
        except AccessDenied as exc:
            raise self.refuse(
                conn, EventName.ACCESS_PERMISSION_DENY, actor, exc, tenant_id=event_tenant(tenant_id)
            ) from None

    # --- lookups shared by the parts ----------------------------------------------------------------

    def row(self, conn: Connection, login: str, kind: str | None = None) -> Row[Any]:
        """The account with `login` (of `kind`, if given), or an AccessError that says where to look."""
        if not encodable(login):
            raise AccessError("that login holds characters that are not text; check what was typed")
        row = conn.execute(select(principals).where(principals.c.login == normalise_login(login))).first()
        if row is None or (kind is not None and row.kind != kind):
            what = {"person": "person", "service": "service account"}.get(kind or "", "account")
            raise AccessError(f"no {what} with login {shown(login)}; see `sagevault users list`")
        return row

    def check_tenants(self, conn: Connection, tenant_ids: Sequence[str]) -> SageVaultError | None:
        """Why `tenant_ids` ("*", or ids) cannot be granted or switched, or None if they can."""
        named = [t for t in tenant_ids if t != ALL_TENANTS]
        if ALL_TENANTS in tenant_ids and named:
            return AccessError("'*' already covers every tenant; give either '*' or tenant ids")
        if not named:
            return None
        found = self.tenants.tenant_states(conn, named)
        missing = [t for t in named if t not in found]
        if missing:
            return AccessError(
                f"no tenant {', '.join(shown(t) for t in missing)}; see `sagevault tenants list`",
                reason="unknown_tenant",
            )
        shredded = [t for t in named if found[t] is not None]
        if shredded:
            return AccessError(
                f"tenant {', '.join(shredded)} was shredded; nothing there to grant", reason="tenant_shredded"
            )
        return None

    def end_sessions(self, conn: Connection, principal_id: str) -> int:
        """End every live session of a principal now; every process forgets them too."""
        ended = conn.execute(
            update(sessions)
            .where(sessions.c.principal_id == principal_id, sessions.c.revoked_at.is_(None))
            .values(revoked_at=self.now())
        ).rowcount
        self.changed(conn)
        return int(ended)

    def exists(self, conn: Connection, kind: str, ident: str, *, actor: Principal) -> None:
        """Raise `RecordNotFound` unless `ident` names an existing (in any state) account (by login),
        grant, API key or allow-list entry; `kind` is one of those four. `users:admin` is asked first,
        so nobody without it learns which ids exist."""
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        column, what, plural = {
            "account": (principals.c.login, "account with login", "accounts"),
            "grant": (grants.c.id, "grant", "grants"),
            "api-key": (api_keys.c.id, "API key", "API keys"),
            "allow-entry": (allowlist.c.id, "allow-list entry", "allow-list entries"),
        }[kind]
        value = normalise_login(ident) if kind == "account" else ident
        if not encodable(value) or conn.execute(select(column).where(column == value)).first() is None:
            raise RecordNotFound(f"no {what} {shown(ident)}; list the {plural} to find the right one")
