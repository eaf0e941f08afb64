"""Accounts, credentials, grants, allow-lists and kill switches.

Every method takes the caller's connection inside a transaction the edge owns (it never
commits) and the acting principal. Administrative methods ask `decide` for `users:admin` (or
`killswitch:operate`) first; that refusal, every failed log-in, key check, enrolment, password
change, grant and allow-list change, and every lock and change, is a security event. Mistakes
that change nothing (an unknown grant id, a switch name that does not exist) are plain errors.

Log-in is the one place where a refusal changes state (failure counters, a lock): `login`
therefore returns a `LoginAttempt` instead of raising, so the edge commits and then calls
`attempt.session()`, which raises the refusal.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hmac
import ipaddress
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pyotp
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import DBAPIError

from sagevault.audit import AuditEvent, Channel, EventName, Outcome, Reason, looks_like_pii, outcome_of
from sagevault.catalog import Purpose
from sagevault.config import Settings
from sagevault.crypto import KeyProvider
from sagevault.db import (
    access_state,
    allowlist,
    api_keys,
    brief_write,
    grants,
    kill_switches,
    lock_not_had,
    password_history,
    principals,
    read_only,
    recovery_codes,
    sessions,
    tenants,
)
from sagevault.errors import (
    AccessDenied,
    AccessError,
    AccountDisabled,
    AccountLocked,
    AuthenticationFailed,
    Conflict,
    CredentialExpired,
    NetworkDenied,
    NotFound,
    RecordNotFound,
    SageVaultError,
    shown,
)
from sagevault.vault import Principal

from ._model import ALL_TENANTS, ROLES, KillSwitch, Scope
from ._network import client_address, overlapping, parse_address, parse_network
from ._passwords import PasswordHashing, check_strength
from ._policy import AccessControl, AccessPolicy, address_of, as_utc, decide, forget_generation
from ._throttle import LoginThrottle

Clock = Callable[[], datetime]

GENERIC_LOGINS = frozenset({
    "admin", "administrator", "root", "test", "tester", "testing", "shared", "team", "user", "users", "guest",
    "demo", "default", "service", "support", "operator", "ops", "dev", "sagevault", "system", "sysadmin",
    "superuser", "su", "info", "office", "staff", "all", "everyone", "temp", "sa", "api", "svc", "bot",
})  # fmt: skip
_LOGIN = re.compile(r"[a-z][a-z0-9._-]{2,63}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}")
_PURPOSE_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ,.:/_()-]{2,199}")
_API_KEY = re.compile(r"svk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_RECOVERY = re.compile(r"[a-z2-7]{5}-?[a-z2-7]{5}")
_SECRET_CONTEXT = MappingProxyType({"purpose": "access-secret"})  # bound into the wrapped secret
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ENROLMENT_HOURS = 72
_RECOVERY_CODES = 10
_MAX_LOCK = timedelta(hours=24)
_SESSIONS_KEPT = 10_000  # live sessions remembered per process and policy generation
_NEVER_VALID = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Enrolment:
    principal_id: str
    login: str
    secret: str = field(repr=False)  # shown once; the person uses it to set a password and TOTP
    expires_at: datetime
    pending_grants: int = 0  # grants put back to pending by this reset (two-person rule)


@dataclass(frozen=True, slots=True)
class TotpSetup:
    secret: str = field(repr=False)
    uri: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Session:
    token: str = field(repr=False)  # shown once; only a keyed hash is stored
    principal: Principal
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of a log-in or a password change: the edge commits (failure counters and a
    lock are state too), then calls `session()` or `check()`, which raise the refusal."""

    _session: Session | None = field(repr=False)
    _error: SageVaultError | None

    @property
    def ok(self) -> bool:
        return self._error is None

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def session(self) -> Session:
        self.check()
        assert self._session is not None, "this attempt was not a log-in"
        return self._session


LoginAttempt = Attempt


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


@dataclass(frozen=True, slots=True)
class GrantInfo:
    id: str
    principal_id: str
    login: str
    role: str
    tenants: tuple[str, ...]
    status: str
    not_before: datetime | None
    not_after: datetime | None
    requested_by: str
    approved_by: str | None


@dataclass(frozen=True, slots=True)
class AllowEntry:
    id: str
    scope: str
    target: str
    cidr: str


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    kind: str
    login: str
    status: str
    locked_until: datetime | None
    last_active_at: datetime | None
    created_at: datetime
    password_set_at: datetime | None


@dataclass(frozen=True, slots=True)
class Review:
    inactive: list[Account]
    expiring_keys: list[tuple[str, str, datetime]]  # key id, principal id, expires at
    expiring_passwords: list[tuple[str, datetime]]  # principal id, expires at


_ID_LETTERS = "bcdfghjkmnpqrstvwxz"  # no digits (an id must never look like a phone number), no vowels


def _new_id(prefix: str) -> str:
    """A random pseudonymous id such as usr_kzqhtbwrmfdx: 12 letters, about 51 bits."""
    return prefix + "_" + "".join(secrets.choice(_ID_LETTERS) for _ in range(12))


def _event_tenant(tenant_id: str | None) -> str | None:
    """A tenant id fit for an event: caller input that does not look like one is left out."""
    if tenant_id is None or not _TENANT.fullmatch(tenant_id) or looks_like_pii(tenant_id):
        return None
    return tenant_id


def _encodable(value: str) -> bool:
    """Text that can be stored and hashed (a lone surrogate cannot be encoded as UTF-8)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


class AccessService:
    def __init__(
        self,
        settings: Settings,
        keys: KeyProvider,
        audit: Any,
        *,
        control: AccessControl | None = None,
        throttle: LoginThrottle | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._settings = settings
        self._policy_profile = settings.policy
        self._keys = keys
        self._audit = audit
        self.control = control or AccessControl(clock)
        self.throttle = throttle or LoginThrottle(settings)
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._hashing = PasswordHashing(settings)
        self._secret: bytes | None = None
        self._key_seen: dict[str, datetime] = {}
        # Live sessions this process has checked, by token hash: (principal id, expiry), valid for
        # one policy generation. Every change that ends a session or an account changes the
        # generation, so a hit is what the database would answer; expiry is checked every time.
        self._sessions: tuple[int, dict[bytes, tuple[str, datetime]]] = (0, {})
        self._trusted = tuple(parse_network(c) for c in settings.trusted_proxies)
        self._quiet = threading.local()  # refusals not recorded on this thread (see `unrecorded_refusals`)

    # --- plumbing ---------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock()

    def make_secret(self, conn: Connection) -> None:
        """Create the access secret (keyed hashes of API keys, codes, sessions, addresses),
        wrapped by the master key, if the deployment has none yet. When one exists nothing is
        wrapped or unwrapped, so opening a deployment costs no KMS call."""
        missing = select(access_state.c.id).where(access_state.c.id == 1, access_state.c.secret.is_(None))
        if conn.execute(missing).first() is None:
            return
        secret = secrets.token_bytes(32)
        made = conn.execute(
            update(access_state).where(access_state.c.id == 1, access_state.c.secret.is_(None))
            .values(secret=self._keys.wrap(secret, _SECRET_CONTEXT), master_key_id=self._keys.key_id)
        ).rowcount  # fmt: skip
        if made:  # else another process made it first: theirs is read on first use
            self._secret = secret

    def ensure_secret(self, conn: Connection) -> bytes:
        """The access secret, made on first use if missing, unwrapped once per process."""
        if self._secret is None:
            self.make_secret(conn)
        if self._secret is None:
            wrapped = conn.execute(select(access_state.c.secret).where(access_state.c.id == 1)).scalar_one()
            self._secret = self._keys.unwrap(bytes(wrapped), _SECRET_CONTEXT)
        return self._secret

    def keyed(self, conn: Connection, label: str, value: str) -> bytes:
        data = value.encode("utf-8", "surrogatepass")  # any str hashes; none raises
        return hmac.digest(self.ensure_secret(conn), label.encode() + b"\0" + data, "sha256")

    def client_ip_hash(self, conn: Connection, address: str | None) -> str | None:
        return self.keyed(conn, "ip", address).hex()[:32] if address else None

    def client_address(self, peer: str, forwarded_for: str | None = None) -> str:
        """The request's source address, believing X-Forwarded-For only from trusted proxies."""
        return str(client_address(peer, forwarded_for, self._trusted))

    def _event(self, conn: Connection, name: EventName, actor: Principal | str | None, *,
               outcome: Outcome = Outcome.SUCCESS, reason: Reason | str = Reason.NONE,
               tenant_id: str | None = None, source: str | None = None, counts: dict[str, int] | None = None,
               channel: Channel | None = None) -> None:  # fmt: skip
        actor_id = actor.id if isinstance(actor, Principal) else actor
        if channel is None:
            channel = actor.channel if isinstance(actor, Principal) else Channel.API
        if source is None and isinstance(actor, Principal):
            source = actor.source_ip
        self._audit.record(AuditEvent(
            name=name, channel=channel, outcome=outcome, reason=Reason(reason), actor=actor_id, tenant_id=tenant_id,
            client_ip_hash=self.client_ip_hash(conn, source), counts=counts or {},
        ))  # fmt: skip

    def _refuse(self, conn: Connection, name: EventName, actor: Principal | str | None, error: SageVaultError,
                **kw: Any) -> SageVaultError:  # fmt: skip
        """Record the refusal as an event and hand the error back for the caller to raise."""
        if not getattr(self._quiet, "on", False):
            outcome, reason = outcome_of(error)
            self._event(conn, name, actor, outcome=outcome, reason=reason, **kw)
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

    def source_key(self, conn: Connection, address: str) -> str:
        """The keyed hash that counts a source: its address, or its /64 for IPv6 (one host can
        hold a whole /64 and rotate through it)."""
        parsed = parse_address(address)
        counted = str(ipaddress.ip_network(f"{parsed}/64", strict=False)) if parsed.version == 6 else str(parsed)
        return self.keyed(conn, "ip", counted).hex()

    def _changed(self, conn: Connection) -> None:
        # A random value, not a counter: a rolled-back change and a later committed one must
        # never share a generation, or a process could keep a picture of the rolled-back state.
        conn.execute(update(access_state).where(access_state.c.id == 1)
                     .values(generation=secrets.randbits(62)))  # fmt: skip
        forget_generation(conn)

    def policy(self, conn: Connection) -> AccessPolicy:
        return self.control.policy(conn)

    def authorize(self, conn: Connection, actor: Principal, scope: Scope | str, tenant_id: str | None = None, *,
                  purpose: Purpose | None = None) -> None:  # fmt: skip
        """Let `actor` go on only if `decide` allows `scope` on `tenant_id` (for `purpose`); a
        refusal is recorded as access:permission:deny with its reason, then raised."""
        try:
            decide(self.policy(conn), actor, Scope(scope), tenant_id, purpose=purpose, now=self.now().timestamp())
        except AccessDenied as exc:
            raise self._refuse(conn, EventName.ACCESS_PERMISSION_DENY, actor, exc,
                               tenant_id=_event_tenant(tenant_id)) from None  # fmt: skip

    def _row(self, conn: Connection, login: str, kind: str | None = None) -> Row[Any]:
        if not _encodable(login):
            raise AccessError("that login holds characters that are not text; check what was typed")
        query = select(principals).where(principals.c.login == login.strip().lower())
        row = conn.execute(query).first()
        if row is None or (kind is not None and row.kind != kind):
            what = {"person": "person", "service": "service account"}.get(kind or "", "account")
            raise AccessError(f"no {what} with login {shown(login)}; see `sagevault users list`")
        return row

    # --- accounts -----------------------------------------------------------------------------

    def _new_login(self, conn: Connection, login: str) -> str:
        login = login.strip().lower()
        if not _LOGIN.fullmatch(login):
            raise AccessError(
                f"login {shown(login)} is not allowed: use 3-64 characters, a letter first, then letters, digits, "
                "'.', '_' or '-' (not an e-mail address)"
            )
        base = re.sub(r"[\d._-]+$", "", login)
        if login in GENERIC_LOGINS or base in GENERIC_LOGINS:
            raise AccessError(
                f"login {login} is a generic name; every account belongs to one person or one service, "
                "so give it that person's or service's own name"
            )
        if conn.execute(select(principals.c.id).where(principals.c.login == login)).first() is not None:
            raise Conflict(f"login {login} is taken; logins are unique and are never reused for someone else")
        return login

    def _insert_principal(self, conn: Connection, kind: str, login: str, actor: Principal, **values: Any) -> str:
        principal_id = _new_id("usr" if kind == "person" else "svc")
        conn.execute(insert(principals).values(
            id=principal_id, kind=kind, login=login, created_at=self.now(), created_by=actor.id, lock_count=0,
            **values,
        ))  # fmt: skip
        self._changed(conn)
        self._event(conn, EventName.ACCESS_ACCOUNT_CREATE, actor, counts={"person": int(kind == "person")})
        return principal_id

    def _enrolment(self, conn: Connection, principal_id: str, login: str) -> tuple[Enrolment, dict[str, Any]]:
        secret = "sve_" + secrets.token_urlsafe(24)
        expires = self.now() + timedelta(hours=_ENROLMENT_HOURS)
        values = {"enrolment_hash": self.keyed(conn, "enrol", secret), "enrolment_expires_at": expires}
        return Enrolment(principal_id, login, secret, expires), values

    def bootstrap_admin(self, conn: Connection, login: str, email: str, *, actor: Principal) -> Enrolment:
        """The first person, with the admin role for every tenant. Refused once any person exists."""
        if actor.kind != "operator":
            raise AccessDenied("only the local operator can bootstrap the first administrator")
        if conn.execute(select(principals.c.id).where(principals.c.kind == "person").limit(1)).first():
            raise Conflict(
                "an administrator exists already; people are added with `sagevault users add` by an admin"
            )
        return self._add_person(conn, login, email, None, actor=actor, role="admin")

    def add_person(self, conn: Connection, login: str, email: str, *, manager: str | None,
                   actor: Principal) -> Enrolment:  # fmt: skip
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        manager_id = self._row(conn, manager, "person").id if manager else None
        return self._add_person(conn, login, email, manager_id, actor=actor)

    def _add_person(self, conn: Connection, login: str, email: str, manager_id: str | None, *, actor: Principal,
                    role: str | None = None) -> Enrolment:  # fmt: skip
        login = self._new_login(conn, login)
        email = email.strip()
        if not _EMAIL.fullmatch(email):
            raise AccessError("that e-mail address is not valid; give the person's work address, e.g. name@company.com")
        principal_id = _new_id("usr")
        enrolment, values = self._enrolment(conn, principal_id, login)
        conn.execute(insert(principals).values(
            id=principal_id, kind="person", login=login, email=email, manager_id=manager_id, status="enrolling",
            created_at=self.now(), created_by=actor.id, lock_count=0, **values,
        ))  # fmt: skip
        if role is not None:
            self._insert_grant(conn, principal_id, role, [ALL_TENANTS], None, None, "active", actor.id, actor.id)
        self._changed(conn)
        self._event(conn, EventName.ACCESS_ACCOUNT_CREATE, actor, counts={"person": 1})
        return enrolment

    def add_service(self, conn: Connection, login: str, *, owner: str, purpose: str, actor: Principal) -> str:
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        owner_id = self._row(conn, owner, "person").id
        if not _PURPOSE_TEXT.fullmatch(purpose.strip()) or looks_like_pii(purpose):
            raise AccessError("the purpose must be a short description of the service's job (3-200 characters)")
        login = self._new_login(conn, login)
        return self._insert_principal(conn, "service", login, actor, owner_id=owner_id, purpose=purpose.strip(),
                                      status="active")  # fmt: skip

    def reset(self, conn: Connection, login: str, *, actor: Principal) -> Enrolment:
        """A new enrolment secret: the person sets a new password and TOTP. Sessions end now."""
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        row = self._row(conn, login, "person")
        enrolment, values = self._enrolment(conn, row.id, row.login)
        conn.execute(update(principals).where(principals.c.id == row.id).values(
            status="enrolling" if row.status != "disabled" else "disabled", totp_secret=None, totp_last_step=None,
            **values,
        ))  # fmt: skip
        self._end_sessions(conn, row.id)
        conn.execute(delete(recovery_codes).where(recovery_codes.c.principal_id == row.id))
        # Whoever resets sees the enrolment secret and could enrol as the person: what needed two
        # people (PII, keys, administration) needs them again.
        rearmed = self._rearm_two_person_rule(conn, row.id, actor)
        self._changed(conn)
        self._event(conn, EventName.ACCESS_ACCOUNT_RESET, actor, counts={"pending_grants": rearmed})
        return dataclasses.replace(enrolment, pending_grants=rearmed)

    def _rearm_two_person_rule(self, conn: Connection, principal_id: str, actor: Principal) -> int:
        """Put the principal's active sensitive grants back to pending, requested by `actor`.
        Not when the actor is the local operator: holding the master key, the operator could
        read everything anyway, and re-arming would strand an only admin with nobody to approve."""
        if actor.kind == "operator":
            return 0
        sensitive = [name for name, role in ROLES.items() if role.sensitive]
        return conn.execute(
            update(grants).where(grants.c.principal_id == principal_id, grants.c.status == "active",
                                 grants.c.role.in_(sensitive))
            .values(status="pending", requested_by=actor.id, approved_by=None)
        ).rowcount  # fmt: skip

    def _check_enrolment(self, conn: Connection, login: str, secret: str) -> Row[Any]:
        if not (_encodable(login) and _encodable(secret)):
            raise AuthenticationFailed("that login and enrolment secret do not match an open enrolment")
        row = conn.execute(select(principals).where(principals.c.login == login.strip().lower())).first()
        expires = as_utc(row.enrolment_expires_at) if row is not None else None
        if (
            row is None or row.enrolment_hash is None or row.status != "enrolling" or expires is None
            or not hmac.compare_digest(bytes(row.enrolment_hash), self.keyed(conn, "enrol", secret))
        ):  # fmt: skip
            raise self._refuse(conn, EventName.ACCESS_ACCOUNT_ENROL, row.id if row else None, AuthenticationFailed(
                "that login and enrolment secret do not match an open enrolment; ask an admin for a new one "
                "(`sagevault users reset`)"
            ))  # fmt: skip
        if expires <= self.now():
            raise self._refuse(conn, EventName.ACCESS_ACCOUNT_ENROL, row.id, CredentialExpired(
                "this enrolment secret has expired; ask an admin for a new one (`sagevault users reset`)"
            ))  # fmt: skip
        return row

    def begin_enrolment(self, conn: Connection, login: str, secret: str) -> TotpSetup:
        """Check the enrolment secret and make the person's TOTP secret (to put in an authenticator)."""
        row = self._check_enrolment(conn, login, secret)
        totp_secret = pyotp.random_base32()
        wrapped = self._keys.wrap(totp_secret.encode(), {"purpose": "totp", "principal": row.id})
        conn.execute(update(principals).where(principals.c.id == row.id).values(totp_secret=wrapped))
        uri = pyotp.TOTP(totp_secret).provisioning_uri(name=row.id, issuer_name="SageVault")
        return TotpSetup(totp_secret, uri)

    def finish_enrolment(self, conn: Connection, login: str, secret: str, password: str, code: str) -> list[str]:
        """Set the first password, confirm TOTP with a code, and hand out recovery codes (once)."""
        row = self._check_enrolment(conn, login, secret)
        if row.totp_secret is None:
            raise Conflict("start with `begin_enrolment` (POST /api/v1/enrolment/begin, `sagevault users enrol`) "
                           "to get a TOTP secret first")
        try:
            check_strength(password, row.login, self._policy_profile)
            self._check_history(conn, row.id, password)  # a reset does not wipe the history
        except AccessError as exc:
            raise self._refuse(conn, EventName.ACCESS_PASSWORD_CHANGE, row.id, exc) from None
        step = self._totp_step(row, code)
        if step is None:
            raise self._refuse(conn, EventName.ACCESS_ACCOUNT_ENROL, row.id, AuthenticationFailed(
                "that TOTP code is wrong; check the authenticator's clock and try the current code", reason="bad_totp",
            ))  # fmt: skip
        now = self.now()
        hashed = self._hashing.hash(password)
        conn.execute(update(principals).where(principals.c.id == row.id).values(
            status="active", password_hash=hashed, password_set_at=now, totp_last_step=step,
            enrolment_hash=None, enrolment_expires_at=None, last_active_at=now,
        ))  # fmt: skip
        conn.execute(insert(password_history).values(principal_id=row.id, set_at=now, password_hash=hashed))
        codes = self._new_recovery_codes(conn, row.id)
        self._changed(conn)
        self._event(conn, EventName.ACCESS_ACCOUNT_ENROL, row.id)
        return codes

    def _new_recovery_codes(self, conn: Connection, principal_id: str) -> list[str]:
        conn.execute(delete(recovery_codes).where(recovery_codes.c.principal_id == principal_id))
        codes = []
        for _ in range(_RECOVERY_CODES):
            raw = base64.b32encode(secrets.token_bytes(7)).decode().lower()[:10]
            codes.append(f"{raw[:5]}-{raw[5:]}")
            conn.execute(insert(recovery_codes).values(principal_id=principal_id,
                                                       code_hash=self.keyed(conn, "recovery", raw)))  # fmt: skip
        return codes

    def _totp_step(self, row: Row[Any], code: str) -> int | None:
        """The time step `code` belongs to (current, or one either side for clock drift), if it
        is right and newer than the last one used: a code works once."""
        if row.totp_secret is None or not re.fullmatch(r"[0-9]{6}", code.strip()):
            return None
        secret = self._keys.unwrap(bytes(row.totp_secret), {"purpose": "totp", "principal": row.id}).decode()
        totp = pyotp.TOTP(secret)
        now_step = totp.timecode(self.now())
        for step in (now_step, now_step - 1, now_step + 1):
            if hmac.compare_digest(totp.generate_otp(step), code.strip()):
                return step
        return None

    # --- log-in ---------------------------------------------------------------------------------

    def login(self, conn: Connection, login: str, password: str, code: str, *, source: str,
              channel: Channel = Channel.API) -> LoginAttempt:  # fmt: skip
        """Password and TOTP (or a recovery code) from `source`. Returns the attempt; the edge
        commits, then `attempt.session()` hands over the session or raises the refusal."""
        try:
            row, used_recovery, address = self._authenticate(conn, login, password, code, source, channel)
        except SageVaultError as exc:
            return Attempt(None, exc)
        now = self.now()
        conn.execute(update(principals).where(principals.c.id == row.id).values(
            last_active_at=now, lock_count=0,
        ))  # fmt: skip
        token = "svs_" + secrets.token_urlsafe(32)
        expires = now + timedelta(hours=self._settings.session_hours)
        conn.execute(insert(sessions).values(token_hash=self.keyed(conn, "session", token), principal_id=row.id,
                                             created_at=now, expires_at=expires))  # fmt: skip
        self._event(conn, EventName.ACCESS_LOGIN_SUCCESS, row.id, source=address, channel=channel,
                    reason=Reason.RECOVERY_CODE if used_recovery else Reason.NONE)  # fmt: skip
        return Attempt(Session(token, Principal(row.id, "person", channel, address), expires), None)

    def _authenticate(self, conn: Connection, login: str, password: str, code: str, source: str, channel: Channel,
                      *, allow_expired: bool = False) -> tuple[Row[Any], bool, str]:  # fmt: skip
        """Check password and TOTP (or a recovery code) through the allow-list, the throttle
        and the lock; count a failure and lock at the threshold. A TOTP step is used up here.
        Returns the account row, whether a recovery code was used, and the source address."""
        address = parse_address(source)
        ip_key = self.source_key(conn, str(address))
        fail: dict[str, Any] = {"source": str(address), "channel": channel}
        policy = self.policy(conn)
        if not policy.source_allowed(None, address):
            raise self._refuse(conn, EventName.ACCESS_NETWORK_DENY, None, NetworkDenied(
                "log-ins from this address are not allowed: it is outside the IP allow-list"), **fail)  # fmt: skip
        try:
            self.throttle.admit(ip_key)
        except SageVaultError as exc:
            raise self._refuse(conn, EventName.ACCESS_LOGIN_FAILURE, None, exc, **fail) from None
        folded = login.strip().lower()
        account_key = self.keyed(conn, "login", folded).hex()
        if not all(map(_encodable, (login, password, code))):  # nothing a real person types
            self._failed(conn, None, account_key, ip_key, "bad_input", fail)
        row = conn.execute(
            select(principals).where(principals.c.login == folded, principals.c.kind == "person")
        ).first()
        now = self.now()
        usable = row is not None and row.status == "active"
        locked_until = as_utc(row.locked_until) if row is not None else None
        if row is not None and locked_until is not None and locked_until <= now:
            conn.execute(update(principals).where(principals.c.id == row.id).values(locked_until=None))
            self.throttle.clear_account(account_key)  # kept until now, so a lost commit loses no count
            self._event(conn, EventName.ACCESS_ACCOUNT_UNLOCK, row.id, reason=Reason.COOL_OFF, **fail)
            locked_until = None
        # Always spend one Argon2 verification, so a failure takes as long for an unknown,
        # disabled or locked account as for a wrong password.
        password_ok = self._hashing.verify(row.password_hash if usable and row is not None else None, password)
        if row is not None and locked_until is not None:
            self._locked(conn, row.id, locked_until, password_ok, account_key, ip_key, fail)
        if not password_ok or row is None:
            reason = "account_disabled" if row is not None and row.status == "disabled" else "bad_credentials"
            self._failed(conn, row, account_key, ip_key, reason, fail)
        assert row is not None
        step = self._totp_step(row, code)
        used_recovery = False
        if step is None:
            if _RECOVERY.fullmatch(code.strip().lower()) and self._use_recovery_code(conn, row.id, code):
                used_recovery = True
            else:
                self._failed(conn, row, account_key, ip_key, "bad_totp", fail)
        elif not self._consume_step(conn, row.id, step):
            self._failed(conn, row, account_key, ip_key, "totp_replay", fail)
        # The account's own allow-list is checked only once password and code are right, so a
        # refusal tells nothing about which logins exist or which passwords are right.
        if not policy.source_allowed(row.id, address):
            raise self._refuse(conn, EventName.ACCESS_NETWORK_DENY, row.id, NetworkDenied(
                "log-ins from this address are not allowed for this account"), **fail)  # fmt: skip
        set_at = as_utc(row.password_set_at)
        expired = set_at is None or set_at + timedelta(days=self._policy_profile.password_max_age_days) <= now
        if expired and not allow_expired:
            raise self._refuse(conn, EventName.ACCESS_LOGIN_FAILURE, row.id, CredentialExpired(
                f"your password is older than {self._policy_profile.password_max_age_days} days; set a new one "
                "with `sagevault users password`"), **fail)  # fmt: skip
        self.throttle.clear_account(account_key)
        return row, used_recovery, str(address)

    def _locked(self, conn: Connection, principal_id: str, until: datetime, password_ok: bool, account_key: str,
                ip_key: str, fail: dict[str, Any]) -> None:  # fmt: skip
        """Refuse a log-in to a locked account. Only someone who knows the password learns that
        it is locked; anyone else gets the answer an unknown login gets (the event keeps the
        truth). Guesses at a locked account still count against their source."""
        self.throttle.failed(account_key, ip_key)
        self._event(conn, EventName.ACCESS_LOGIN_FAILURE, principal_id, outcome=Outcome.DENIED,
                    reason=Reason.ACCOUNT_LOCKED, **fail)  # fmt: skip
        if password_ok:
            raise AccountLocked(
                f"this account is locked until {until:%Y-%m-%d %H:%M} UTC after repeated failed log-ins; "
                "an admin can unlock it sooner (`sagevault users unlock`)"
            )
        raise AuthenticationFailed("wrong login, password or code")

    def _consume_step(self, conn: Connection, principal_id: str, step: int) -> bool:
        """Mark a TOTP step used, if it is newer than the last one: one conditional UPDATE, so two
        concurrent log-ins with the same code cannot both pass."""
        return bool(conn.execute(
            update(principals).where(
                principals.c.id == principal_id,
                or_(principals.c.totp_last_step.is_(None), principals.c.totp_last_step < step),
            ).values(totp_last_step=step)
        ).rowcount)  # fmt: skip

    def _failed(self, conn: Connection, row: Row[Any] | None, account_key: str, ip_key: str, reason: str,
                fail: dict[str, Any]) -> None:  # fmt: skip
        """Count a failed log-in, lock the account at the threshold, report spraying; raise."""
        failure = self.throttle.failed(account_key, ip_key)
        actor = row.id if row is not None else None
        self._event(conn, EventName.ACCESS_LOGIN_FAILURE, actor, outcome=Outcome.DENIED, reason=reason,
                    counts={"failures": failure.account_failures}, **fail)  # fmt: skip
        if failure.spraying_started:
            self._event(conn, EventName.ACCESS_SPRAY_DETECT, None, outcome=Outcome.DENIED, reason=Reason.SPRAYING,
                        **fail)  # fmt: skip
        if row is not None and row.status == "active" and failure.account_failures >= self.throttle.threshold:
            locks = row.lock_count + 1
            minutes = self._settings.lockout_base_minutes * 2 ** (locks - 1)
            until = self.now() + min(timedelta(minutes=minutes), _MAX_LOCK)
            conn.execute(update(principals).where(principals.c.id == row.id).values(locked_until=until,
                                                                                    lock_count=locks))  # fmt: skip
            self._event(conn, EventName.ACCESS_ACCOUNT_LOCK, row.id, outcome=Outcome.DENIED,
                        reason=Reason.ACCOUNT_LOCKED, counts={"locks": locks, "minutes": int(minutes)},
                        **fail)  # fmt: skip
        # The event keeps the precise reason; the caller gets one message and one reason for all.
        raise AuthenticationFailed("wrong login, password or code")

    def _use_recovery_code(self, conn: Connection, principal_id: str, code: str) -> bool:
        raw = code.strip().lower().replace("-", "")
        result = conn.execute(
            update(recovery_codes).where(
                recovery_codes.c.principal_id == principal_id,
                recovery_codes.c.code_hash == self.keyed(conn, "recovery", raw),
                recovery_codes.c.used_at.is_(None),
            ).values(used_at=self.now())
        )
        return result.rowcount == 1

    def authenticate_session(self, conn: Connection, token: str, *, source: str,
                             channel: Channel = Channel.API) -> Principal:  # fmt: skip
        address = parse_address(source)
        policy = self.policy(conn)  # read first: the session read below sees at least this generation
        token_hash = self.keyed(conn, "session", token)
        generation, known = self._sessions
        if generation != policy.generation:
            known = {}
            self._sessions = (policy.generation, known)
        hit = known.get(token_hash)
        principal_id: str | None
        if hit is not None:
            principal_id, expires = hit
            status = policy.status.get(principal_id)
        else:
            row = conn.execute(
                select(sessions.c.principal_id, sessions.c.expires_at, principals.c.status)
                .join(principals, principals.c.id == sessions.c.principal_id)
                .where(sessions.c.token_hash == token_hash, sessions.c.revoked_at.is_(None))
            ).first()
            principal_id, status = (row.principal_id, row.status) if row is not None else (None, None)
            expires = as_utc(row.expires_at) if row is not None else _NEVER_VALID
        if principal_id is None or status != "active" or expires <= self.now():
            raise self._refuse(conn, EventName.ACCESS_LOGIN_FAILURE, principal_id,
                               AuthenticationFailed("this session has ended; log in again", reason="session_ended"),
                               source=str(address), channel=channel)  # fmt: skip
        if hit is None and len(known) < _SESSIONS_KEPT:
            known[token_hash] = (principal_id, expires)
        if not policy.source_allowed(principal_id, address):
            raise self._refuse(conn, EventName.ACCESS_NETWORK_DENY, principal_id, NetworkDenied(
                "requests from this address are not allowed: it is outside the IP allow-lists"),
                source=str(address), channel=channel)  # fmt: skip
        return Principal(principal_id, "person", channel, str(address))

    def logout(self, conn: Connection, token: str, *, actor: Principal | None = None) -> None:
        """End the session `token` (the holder's own); recorded as access:session:end. A token
        that is not a live session is refused: an API key is revoked, not logged out."""
        ended = conn.execute(update(sessions).where(sessions.c.token_hash == self.keyed(conn, "session", token),
                                                    sessions.c.revoked_at.is_(None))
                             .values(revoked_at=self.now())).rowcount  # fmt: skip
        if not ended:
            raise AccessError("this credential is not a live session; an API key is revoked by an admin "
                              "(DELETE /api/v1/api-keys/{key_id} or `sagevault users revoke-key`)")  # fmt: skip
        self._changed(conn)  # every process forgets the session now (see `authenticate_session`)
        self._event(conn, EventName.ACCESS_SESSION_END, actor, channel=actor.channel if actor else Channel.API)

    def _end_sessions(self, conn: Connection, principal_id: str) -> int:
        ended = conn.execute(update(sessions).where(sessions.c.principal_id == principal_id,
                                                    sessions.c.revoked_at.is_(None))
                             .values(revoked_at=self.now())).rowcount  # fmt: skip
        self._changed(conn)  # sessions checked before are forgotten by every process
        return int(ended)

    def change_password(self, conn: Connection, login: str, current: str, new: str, code: str, *,
                        source: str, channel: Channel = Channel.API) -> Attempt:  # fmt: skip
        """Change a password with the current one and a TOTP code (which counts like a log-in:
        failures lock). Refused (and recorded) when the new one is weak, breached, one of the
        last 10, or the current one is under a day old. The edge commits, then `check()`s."""
        try:
            self._change_password(conn, login, current, new, code, source, channel)
        except SageVaultError as exc:
            return Attempt(None, exc)
        return Attempt(None, None)

    def _change_password(self, conn: Connection, login: str, current: str, new: str, code: str, source: str,
                         channel: Channel) -> None:  # fmt: skip
        row, _, source = self._authenticate(conn, login, current, code, source, channel, allow_expired=True)
        now = self.now()
        set_at = as_utc(row.password_set_at)
        expired = set_at is None or set_at + timedelta(days=self._policy_profile.password_max_age_days) <= now
        too_young = set_at is not None and now - set_at < timedelta(days=self._policy_profile.password_min_age_days)
        if not expired and too_young:
            raise self._refuse(conn, EventName.ACCESS_PASSWORD_CHANGE, row.id, AccessError(
                f"the password was changed less than {self._policy_profile.password_min_age_days} day(s) ago; "
                "try again later, or ask an admin for a reset", reason="password_too_young"),
                source=source)  # fmt: skip
        try:
            check_strength(new, row.login, self._policy_profile)
        except AccessError as exc:
            raise self._refuse(conn, EventName.ACCESS_PASSWORD_CHANGE, row.id, exc, source=source) from None
        try:
            self._check_history(conn, row.id, new)
        except AccessError as exc:
            raise self._refuse(conn, EventName.ACCESS_PASSWORD_CHANGE, row.id, exc, source=source) from None
        hashed = self._hashing.hash(new)
        conn.execute(update(principals).where(principals.c.id == row.id).values(password_hash=hashed,
                                                                                password_set_at=now))  # fmt: skip
        conn.execute(insert(password_history).values(principal_id=row.id, set_at=now, password_hash=hashed))
        self._event(conn, EventName.ACCESS_PASSWORD_CHANGE, row.id, source=source)

    def _check_history(self, conn: Connection, principal_id: str, password: str) -> None:
        history = conn.execute(
            select(password_history.c.password_hash).where(password_history.c.principal_id == principal_id)
            .order_by(password_history.c.set_at.desc()).limit(self._policy_profile.password_history)
        ).scalars().all()  # fmt: skip
        if any(self._hashing.verify(old, password) for old in history):
            raise AccessError(
                f"password refused: it is one of your last {self._policy_profile.password_history}; choose a new one",
                reason="password_reused",
            )

    # --- leavers, locks ---------------------------------------------------------------------------

    def disable(self, conn: Connection, login: str, *, actor: Principal) -> int:
        """Disable an account now: its sessions end and its API keys are revoked. Returns how
        many credentials died with it."""
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        row = self._row(conn, login)
        if row.id == actor.id:
            raise AccessError("you cannot disable your own account; ask another admin")
        now = self.now()
        conn.execute(update(principals).where(principals.c.id == row.id).values(status="disabled", disabled_at=now))
        ended = self._end_sessions(conn, row.id)
        ended += conn.execute(update(api_keys).where(api_keys.c.principal_id == row.id, api_keys.c.revoked_at.is_(None))
                              .values(revoked_at=now)).rowcount  # fmt: skip
        self._changed(conn)
        self._event(conn, EventName.ACCESS_ACCOUNT_DISABLE, actor, counts={"credentials": ended})
        return ended

    def enable(self, conn: Connection, login: str, *, actor: Principal) -> None:
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        row = self._row(conn, login)
        if row.status != "disabled":
            raise Conflict(f"{row.login} is not disabled, so there is nothing to enable; see `sagevault users list`")
        status = "active" if row.password_hash or row.kind == "service" else "enrolling"
        conn.execute(update(principals).where(principals.c.id == row.id).values(status=status, disabled_at=None,
                                                                                last_active_at=self.now()))  # fmt: skip
        # What needed two people before needs them again: sensitive grants wait for approval.
        self._rearm_two_person_rule(conn, row.id, actor)
        self._changed(conn)
        self._event(conn, EventName.ACCESS_ACCOUNT_ENABLE, actor)

    def unlock(self, conn: Connection, login: str, *, actor: Principal) -> None:
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        row = self._row(conn, login, "person")
        if row.locked_until is None:
            raise Conflict(f"{row.login} is not locked, so there is nothing to unlock; a disabled account is enabled "
                           "instead")
        conn.execute(update(principals).where(principals.c.id == row.id).values(locked_until=None))
        self.throttle.clear_account(self.keyed(conn, "login", row.login).hex())
        self._event(conn, EventName.ACCESS_ACCOUNT_UNLOCK, actor, reason=Reason.NONE)

    def accounts(self, conn: Connection, *, actor: Principal) -> list[Account]:
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        rows = conn.execute(select(principals).order_by(principals.c.login))
        return [self._account(r) for r in rows]

    @staticmethod
    def _account(r: Row[Any]) -> Account:
        return Account(r.id, r.kind, r.login, r.status, as_utc(r.locked_until), as_utc(r.last_active_at),
                       as_utc(r.created_at) or datetime.now(UTC), as_utc(r.password_set_at))  # fmt: skip

    def review(self, conn: Connection, *, actor: Principal, warn_days: int = 30) -> Review:
        """Accounts unused for the policy's inactivity period, and API keys and passwords that
        expire within `warn_days`."""
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        now = self.now()
        stale = now - timedelta(days=self._policy_profile.inactive_account_days)
        inactive = []
        expiring_pw = []
        for r in conn.execute(select(principals).where(principals.c.status != "disabled")):
            account = self._account(r)
            last = account.last_active_at or account.created_at
            if last <= stale:
                inactive.append(account)
            if account.password_set_at is not None:
                due = account.password_set_at + timedelta(days=self._policy_profile.password_max_age_days)
                if due <= now + timedelta(days=warn_days):
                    expiring_pw.append((account.id, due))
        keys = []
        for k in conn.execute(select(api_keys).where(api_keys.c.revoked_at.is_(None))):
            expires = as_utc(k.expires_at)
            assert expires is not None
            if expires <= now + timedelta(days=warn_days):
                keys.append((k.id, k.principal_id, expires))
        self._event(conn, EventName.ACCESS_REVIEW_RUN, actor, counts={
            "inactive": len(inactive), "expiring_keys": len(keys), "expiring_passwords": len(expiring_pw)})  # fmt: skip
        return Review(inactive, keys, expiring_pw)

    # --- API keys -------------------------------------------------------------------------------

    def issue_api_key(self, conn: Connection, service: str, *, scopes: Iterable[str], days: int | None = None,
                      actor: Principal) -> ApiKey:  # fmt: skip
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        row = self._row(conn, service, "service")
        if row.status != "active":
            raise Conflict(f"{row.login} is disabled; enable it before issuing keys")
        max_days = self._policy_profile.api_key_max_age_days
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
            rearmed = self._rearm_two_person_rule(conn, row.id, actor)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = self.now()
        expires = now + timedelta(days=days)
        conn.execute(insert(api_keys).values(
            id=key_id, principal_id=row.id, secret_hash=self.keyed(conn, "apikey", secret), scopes=sorted(wanted),
            created_at=now, created_by=actor.id, expires_at=expires,
        ))  # fmt: skip
        self._changed(conn)
        self._event(conn, EventName.ACCESS_APIKEY_CREATE, actor, counts={"days": days, "pending_grants": rearmed})
        return ApiKey(key_id, f"svk_{key_id}_{secret}", row.id, wanted, expires, rearmed)

    def rotate_api_key(self, conn: Connection, key_id: str, *, actor: Principal, days: int | None = None) -> ApiKey:
        """A new key for the same service with the same scopes; the old one is revoked now."""
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        old = conn.execute(
            select(api_keys.c.scopes, principals.c.login).join(principals, principals.c.id == api_keys.c.principal_id)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        ).first()  # fmt: skip
        if old is None:
            raise self._dead_key(conn, key_id, "rotated; issue a new key to the service instead")
        new = self.issue_api_key(conn, old.login, scopes=old.scopes, days=days, actor=actor)
        self.revoke_api_key(conn, key_id, actor=actor)
        return new

    def revoke_api_key(self, conn: Connection, key_id: str, *, actor: Principal) -> None:
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        done = conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                            .values(revoked_at=self.now())).rowcount  # fmt: skip
        if not done:
            raise self._dead_key(conn, key_id, "revoked again; nothing to do")
        self._changed(conn)
        self._event(conn, EventName.ACCESS_APIKEY_REVOKE, actor)

    @staticmethod
    def _dead_key(conn: Connection, key_id: str, what: str) -> AccessError:
        """Why no live key `key_id` was found: it never existed (NotFound), or it is revoked (Conflict)."""
        if conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).first() is None:
            return NotFound(f"no API key {shown(key_id)}; see `sagevault users review` or GET /api/v1/api-keys")
        return Conflict(f"API key {shown(key_id)} is revoked and cannot be {what}")

    def api_key_list(self, conn: Connection, *, actor: Principal, login: str | None = None) -> list[ApiKeyInfo]:
        """Live (unrevoked) API keys, of every service or of the service `login`, by login then key id.
        Expired keys stay listed until revoked, so a review can see them."""
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        query = (select(api_keys, principals.c.login).join(principals, principals.c.id == api_keys.c.principal_id)
                 .where(api_keys.c.revoked_at.is_(None)).order_by(principals.c.login, api_keys.c.id))  # fmt: skip
        if login is not None:
            query = query.where(api_keys.c.principal_id == self._row(conn, login, "service").id)
        return [ApiKeyInfo(k.id, k.principal_id, k.login, tuple(k.scopes), as_utc(k.created_at) or self.now(),
                           k.created_by, as_utc(k.expires_at) or self.now(), as_utc(k.last_used_at))
                for k in conn.execute(query)]  # fmt: skip

    def verify_api_key(self, conn: Connection, token: str, *, source: str, channel: Channel = Channel.API) -> Principal:
        """The service principal an API key stands for, checked against the current policy (one
        read of the generation counter, then memory): a keyed hash, not Argon2."""
        policy = self.policy(conn)
        try:
            principal = self.check_api_key(policy, self.ensure_secret(conn), token, source=source, channel=channel)
        except AccessDenied as exc:
            raise self._refuse(conn, EventName.ACCESS_APIKEY_FAILURE, None, exc, source=source,
                               channel=channel) from None  # fmt: skip
        self._note_use(conn, token[4:20], principal.id)
        return principal

    def _note_use(self, conn: Connection, key_id: str, principal_id: str) -> None:
        """Record that a key (and its service) is in use, at most once an hour per key and
        process: the inactivity review must not flag a busy service."""
        now = self.now()
        seen = self._key_seen.get(key_id)
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
            except DBAPIError as exc:
                if not lock_not_had(exc):
                    raise
                return
        else:
            self._write_use(conn, key_id, principal_id, now)
        self._key_seen[key_id] = now

    @staticmethod
    def _write_use(conn: Connection, key_id: str, principal_id: str, now: datetime) -> None:
        conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now))
        conn.execute(update(principals).where(principals.c.id == principal_id).values(last_active_at=now))

    def check_api_key(self, policy: AccessPolicy, secret: bytes, token: str, *, source: str,
                      channel: Channel = Channel.API) -> Principal:  # fmt: skip
        match = _API_KEY.fullmatch(token)
        entry = policy.keys.get(match.group(1)) if match else None
        digest = hmac.digest(secret, b"apikey\0" + (match.group(2) if match else "").encode(), "sha256")
        if match is None or entry is None or not hmac.compare_digest(digest, entry.secret_hash):
            raise AuthenticationFailed("this API key is not valid (unknown, revoked or mistyped)")
        if entry.expires_at <= self.now().timestamp():
            raise CredentialExpired("this API key has expired; ask the service's owner to issue a new one",
                                    reason="credential_expired")  # fmt: skip
        if policy.status.get(entry.principal_id) != "active":
            raise AccountDisabled("the service account of this API key is disabled")
        if not policy.source_allowed(entry.principal_id, address_of(source)):
            raise NetworkDenied("requests from this address are not allowed: it is outside the IP allow-lists")
        return Principal(entry.principal_id, "service", channel, source, entry.scopes)

    # --- grants -----------------------------------------------------------------------------------

    def _insert_grant(self, conn: Connection, principal_id: str, role: str, tenant_ids: Sequence[str],
                      not_before: datetime | None, not_after: datetime | None, status: str, requested_by: str,
                      approved_by: str | None) -> str:  # fmt: skip
        grant_id = _new_id("grt")
        conn.execute(insert(grants).values(
            id=grant_id, principal_id=principal_id, role=role, tenants=list(tenant_ids), not_before=not_before,
            not_after=not_after, status=status, requested_by=requested_by, approved_by=approved_by,
            created_at=self.now(),
        ))  # fmt: skip
        return grant_id

    def grant(self, conn: Connection, login: str, role: str, tenant_ids: Sequence[str], *, actor: Principal,
              not_before: datetime | None = None, not_after: datetime | None = None) -> GrantInfo:  # fmt: skip
        """Grant `role` on `tenant_ids` ("*" = all). Roles that reach PII or keys wait for a
        second party (`approve`); nobody grants themself anything."""
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        row = self._row(conn, login)
        not_before, not_after = as_utc(not_before), as_utc(not_after)
        error: SageVaultError | None = None
        if row.id == actor.id:
            error = AccessDenied("you cannot grant yourself a role; another admin must", reason="self_grant")
        elif role not in ROLES:
            error = AccessError(f"no role {shown(role)}; roles: {', '.join(ROLES)}")
        elif row.status == "disabled":
            error = Conflict(f"{row.login} is disabled; enable it first")
        elif not tenant_ids:
            error = AccessError("name the tenants (--tenant ID, repeatable) or '*' for all")
        elif not_after is not None and not_after <= (not_before or self.now()):
            error = AccessError("the grant's window ends before it starts (or in the past)")
        else:
            error = self._check_tenants(conn, tenant_ids)
        if error is not None:
            raise self._refuse(conn, EventName.ACCESS_GRANT_CREATE, actor, error)
        pending = ROLES[role].sensitive
        status = "pending" if pending else "active"
        grant_id = self._insert_grant(conn, row.id, role, sorted(set(tenant_ids)), not_before, not_after, status,
                                      actor.id, None)  # fmt: skip
        self._changed(conn)
        self._event(conn, EventName.ACCESS_GRANT_CREATE, actor,
                    reason=Reason.TWO_PERSON_RULE if pending else Reason.NONE,
                    tenant_id=_event_tenant(tenant_ids[0]) if len(tenant_ids) == 1 else None)
        return self._grant_info(conn, grant_id)

    def _check_tenants(self, conn: Connection, tenant_ids: Sequence[str]) -> SageVaultError | None:
        named = [t for t in tenant_ids if t != ALL_TENANTS]
        if ALL_TENANTS in tenant_ids and named:
            return AccessError("'*' already covers every tenant; give either '*' or tenant ids")
        if not named:
            return None
        found = {r.id: r.shredded_at for r in conn.execute(select(tenants.c.id, tenants.c.shredded_at)
                                                            .where(tenants.c.id.in_(named)))}  # fmt: skip
        missing = [t for t in named if t not in found]
        if missing:
            return AccessError(f"no tenant {', '.join(shown(t) for t in missing)}; see `sagevault tenants list`",
                               reason="unknown_tenant")  # fmt: skip
        shredded = [t for t in named if found[t] is not None]
        if shredded:
            return AccessError(f"tenant {', '.join(shredded)} was shredded; nothing there to grant",
                               reason="tenant_shredded")  # fmt: skip
        return None

    def approve(self, conn: Connection, grant_id: str, *, actor: Principal) -> GrantInfo:
        """A second party's approval of a pending grant: an admin or the local operator, never
        the requester or the grantee."""
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        g = conn.execute(select(grants).where(grants.c.id == grant_id)).first()
        if g is None:
            raise NotFound(f"no grant {shown(grant_id)}; see `sagevault grants list --pending`")
        if g.status != "pending":
            raise Conflict(f"grant {shown(grant_id)} is {g.status}, no longer pending, so there is nothing to approve; "
                           "see `sagevault grants list --pending`")
        if actor.kind == "service" or actor.id in (g.requested_by, g.principal_id):
            raise self._refuse(conn, EventName.ACCESS_GRANT_APPROVE, actor, AccessDenied(
                "a grant that reaches PII, keys or account administration needs a second party: an admin "
                "(or the local operator) other than whoever asked for it and whoever receives it",
                reason="two_person_rule"))  # fmt: skip
        conn.execute(update(grants).where(grants.c.id == grant_id).values(status="active", approved_by=actor.id))
        self._changed(conn)
        self._event(conn, EventName.ACCESS_GRANT_APPROVE, actor)
        return self._grant_info(conn, grant_id)

    def revoke(self, conn: Connection, grant_id: str, *, actor: Principal) -> None:
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        done = conn.execute(update(grants).where(grants.c.id == grant_id, grants.c.status != "revoked")
                            .values(status="revoked", revoked_at=self.now())).rowcount  # fmt: skip
        if not done:
            if conn.execute(select(grants.c.id).where(grants.c.id == grant_id)).first() is None:
                raise NotFound(f"no grant {shown(grant_id)}; see `sagevault grants list`")
            raise Conflict(f"grant {shown(grant_id)} is revoked already; nothing to do")
        self._changed(conn)
        self._event(conn, EventName.ACCESS_GRANT_REVOKE, actor)

    def grants(self, conn: Connection, *, actor: Principal, login: str | None = None,
               pending: bool = False) -> list[GrantInfo]:  # fmt: skip
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        query = select(grants.c.id).where(grants.c.status != "revoked").order_by(grants.c.created_at)
        if login is not None:
            query = query.where(grants.c.principal_id == self._row(conn, login).id)
        if pending:
            query = query.where(grants.c.status == "pending")
        return [self._grant_info(conn, gid) for gid in conn.execute(query).scalars()]

    def _grant_info(self, conn: Connection, grant_id: str) -> GrantInfo:
        g = conn.execute(select(grants, principals.c.login).join(principals, principals.c.id == grants.c.principal_id)
                         .where(grants.c.id == grant_id)).one()  # fmt: skip
        return GrantInfo(g.id, g.principal_id, g.login, g.role, tuple(g.tenants), g.status, as_utc(g.not_before),
                         as_utc(g.not_after), g.requested_by, g.approved_by)  # fmt: skip

    # --- allow-lists ----------------------------------------------------------------------------

    def allow(self, conn: Connection, cidr: str, *, actor: Principal, role: str | None = None,
              login: str | None = None) -> AllowEntry:  # fmt: skip
        """Add a network to the global allow-list, a role's, or one principal's."""
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        if role is not None and login is not None:
            raise AccessError("an allow-list entry is for a role or for a principal, not both")
        scope, target = "global", ""
        if role is not None:
            if role not in ROLES:
                raise AccessError(f"no role {shown(role)}; roles: {', '.join(ROLES)}")
            scope, target = "role", role
        elif login is not None:
            scope, target = "principal", self._row(conn, login).id
        try:
            network = parse_network(cidr)
            existing = {r.id: parse_network(r.cidr) for r in conn.execute(
                select(allowlist).where(allowlist.c.scope == scope, allowlist.c.target == target))}  # fmt: skip
            clash = overlapping(network, existing.values())
            if clash is not None:
                raise Conflict(f"{network} overlaps {clash}, already on this allow-list; remove one or merge them")
        except AccessError as exc:
            raise self._refuse(conn, EventName.ACCESS_ALLOWLIST_ADD, actor, exc) from None
        entry_id = _new_id("net")
        conn.execute(insert(allowlist).values(id=entry_id, scope=scope, target=target, cidr=str(network),
                                              created_at=self.now(), created_by=actor.id))  # fmt: skip
        self._changed(conn)
        self._event(conn, EventName.ACCESS_ALLOWLIST_ADD, actor)
        return AllowEntry(entry_id, scope, target, str(network))

    def disallow(self, conn: Connection, entry_id: str, *, actor: Principal) -> None:
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        if not conn.execute(delete(allowlist).where(allowlist.c.id == entry_id)).rowcount:
            raise NotFound(f"no allow-list entry {shown(entry_id)}; see `sagevault allowlist list`")
        self._changed(conn)
        self._event(conn, EventName.ACCESS_ALLOWLIST_REMOVE, actor)

    def allow_entries(self, conn: Connection, *, actor: Principal) -> list[AllowEntry]:
        self.authorize(conn, actor, Scope.USERS_ADMIN)
        rows = conn.execute(select(allowlist).order_by(allowlist.c.scope, allowlist.c.target, allowlist.c.cidr))
        return [AllowEntry(r.id, r.scope, r.target, r.cidr) for r in rows]

    # --- for the edges: what exists, who may come in ---------------------------------------------

    def check_known(self, conn: Connection, kind: str, ident: str, *, actor: Principal) -> None:
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
        value = ident.strip().lower() if kind == "account" else ident
        if not _encodable(value) or conn.execute(select(column).where(column == value)).first() is None:
            raise RecordNotFound(f"no {what} {shown(ident)}; list the {plural} to find the right one")

    def admit_source(self, conn: Connection, source: str, *, channel: Channel = Channel.API) -> str:
        """Let a request that carries no credential yet (enrolment) go on only from inside the
        global allow-list; a refusal is recorded as access:network:deny. Returns the address."""
        address = parse_address(source)
        if not self.policy(conn).source_allowed(None, address):
            raise self._refuse(conn, EventName.ACCESS_NETWORK_DENY, None, NetworkDenied(
                "requests from this address are not allowed: it is outside the IP allow-list"),
                source=str(address), channel=channel)  # fmt: skip
        return str(address)

    # --- kill switches --------------------------------------------------------------------------

    def set_switch(self, conn: Connection, name: str, engaged: bool, *, actor: Principal,
                   tenant_id: str | None = None) -> None:  # fmt: skip
        """Engage or release a kill switch for one tenant or all. It takes effect on the next
        decision in every process, and stays until released (restarts included)."""
        try:
            switch = KillSwitch(name)
        except ValueError:
            names = ", ".join(k.value for k in KillSwitch)
            raise AccessError(f"no kill switch {shown(name)}; switches: {names}") from None
        target = tenant_id or ALL_TENANTS
        self.authorize(conn, actor, Scope.KILLSWITCH_OPERATE, None if target == ALL_TENANTS else target)
        if target != ALL_TENANTS:
            error = self._check_tenants(conn, [target])
            if error is not None and error.reason != "tenant_shredded":
                raise error
        now = self.now()
        done = conn.execute(update(kill_switches).where(kill_switches.c.name == switch.value,
                                                        kill_switches.c.tenant_id == target)
                            .values(engaged=engaged, changed_at=now, changed_by=actor.id)).rowcount  # fmt: skip
        if not done:
            conn.execute(insert(kill_switches).values(name=switch.value, tenant_id=target, engaged=engaged,
                                                      changed_at=now, changed_by=actor.id))  # fmt: skip
        self._changed(conn)
        self._event(conn, EventName.ACCESS_KILLSWITCH_ENGAGE if engaged else EventName.ACCESS_KILLSWITCH_RELEASE,
                    actor, tenant_id=_event_tenant(None if target == ALL_TENANTS else target))  # fmt: skip

    def switches(self, conn: Connection, *, actor: Principal) -> list[tuple[str, str, bool, datetime]]:
        self.authorize(conn, actor, Scope.KILLSWITCH_OPERATE)
        rows = conn.execute(select(kill_switches).order_by(kill_switches.c.name, kill_switches.c.tenant_id))
        return [(r.name, r.tenant_id, bool(r.engaged), as_utc(r.changed_at) or self.now()) for r in rows]

    def count_people(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).where(principals.c.kind == "person")).scalar_one())
