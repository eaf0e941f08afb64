"""Log-in and enrolment: password and TOTP (or a one-time recovery code), sessions, password
changes, and a new person's first password and TOTP.

Log-in is the one place where a refusal changes state (failure counters, a lock): `login` and
`change_password` therefore return an `Attempt` instead of raising, so the edge commits and then
calls `attempt.session()` or `attempt.check()`, which raise the refusal.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import Connection, Row

from sagevault.audit import EventName, Outcome, Reason
from sagevault.errors import (
    AccessError,
    AuthenticationFailed,
    CredentialExpired,
    NetworkDenied,
    SageVaultError,
)
from sagevault.identity import Channel, Principal, normalise_login

from ._core import AccessCore, encodable
from ._network import Address, parse_address
from ._passwords import NewPassword, PasswordHasher, prepare_new_password, still_current
from ._policy import as_utc
from ._schema import password_history, principals, recovery_codes, sessions

_RECOVERY = re.compile(r"[a-z2-7]{5}-?[a-z2-7]{5}")
_RECOVERY_CODES = 10
_MAX_LOCK = timedelta(hours=24)
_SESSIONS_KEPT = 10_000  # live sessions remembered per process and policy generation
_NEVER_VALID = datetime.min.replace(tzinfo=UTC)
# The one answer to every failed log-in: a wrong login, password or code, a disabled account, a
# locked one. The security event keeps which it was.
REFUSED = (
    "wrong login, password or code; after repeated failures an account locks for a while "
    "(an admin can unlock it sooner)"
)


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
    sessions_ended: int = 0  # a password change: the account's sessions it ended

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


def totp_step(core: AccessCore, row: Row[Any], code: str) -> int | None:
    """The time step `code` belongs to (current, or one either side for clock drift), if it is
    right for the account of `row` (the caller checks it is newer than the last one used)."""
    if row.totp_secret is None or not re.fullmatch(r"[0-9]{6}", code.strip()):
        return None
    secret = core.keys.unwrap(bytes(row.totp_secret), {"purpose": "totp", "principal": row.id}).decode()
    totp = pyotp.TOTP(secret)
    now_step = totp.timecode(core.now())
    for step in (now_step, now_step - 1, now_step + 1):
        if hmac.compare_digest(totp.generate_otp(step), code.strip()):
            return step
    return None


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """The costly half of a log-in or a password change, done before its write transaction: the
    password verified (one Argon2 verification, also for an unknown or unusable account) against
    the hash stored when it was read. The write transaction uses it if the account still holds
    that hash, and verifies again otherwise."""

    login: str
    principal_id: str | None
    checked_against: str | None = field(repr=False)
    ok: bool


@dataclass(frozen=True, slots=True)
class PasswordChange:
    """`prepare_password_change`'s result: the current password checked, and the new one checked
    and hashed (or why it was refused) if the current one was right."""

    current: PasswordCheck
    new: NewPassword | None
    refusal: AccessError | None


class Authentication:
    def __init__(self, core: AccessCore, hasher: PasswordHasher) -> None:
        self._core = core
        self._hasher = hasher
        # Live sessions this process has checked, by token hash: (principal id, expiry), valid for
        # one policy generation. Every change that ends a session or an account changes the
        # generation, so a hit is what the database would answer; expiry is checked every time.
        self._sessions: tuple[int, dict[bytes, tuple[str, datetime, bool]]] = (0, {})

    # --- enrolment --------------------------------------------------------------------------------

    # --- log-in -----------------------------------------------------------------------------------

    def check_password(
        self, conn: Connection, login: str, password: str, *, source: str, channel: Channel = Channel.API
    ) -> PasswordCheck:
        """The password of `login`, verified in a transaction of its own that reads only (no write
        lock), before `login` or `change_password` runs in one that writes: pass the result to
        them as `checked`. A source outside the allow-list or throttled is refused here already
        (and recorded), before any hashing."""
        self._admit(conn, source, channel)
        folded = normalise_login(login)
        if not (encodable(login) and encodable(password)):  # `login` counts it as bad input
            return PasswordCheck(folded, None, None, False)
        row = conn.execute(
            select(principals.c.id, principals.c.status, principals.c.password_hash).where(
                principals.c.login == folded, principals.c.kind == "person"
            )
        ).first()
        stored = row.password_hash if row is not None and row.status == "active" else None
        return PasswordCheck(folded, row.id if row else None, stored, self._hasher.verify(stored, password))

    def _admit(self, conn: Connection, source: str, channel: Channel) -> tuple[Address, str, dict[str, Any]]:
        """A log-in's source: inside the global allow-list and not throttled, or refused (recorded)."""
        core = self._core
        address = parse_address(source)
        ip_key = core.source_key(conn, str(address))
        fail: dict[str, Any] = {"source": str(address), "channel": channel}
        if not core.policy(conn).source_allowed(None, address):
            raise core.refuse(
                conn,
                EventName.ACCESS_NETWORK_DENY,
                None,
                NetworkDenied("log-ins from this address are not allowed: it is outside the IP allow-list"),
                **fail,
            )
        try:
            core.throttle.admit(ip_key)
        except SageVaultError as exc:
            raise core.refuse(conn, EventName.ACCESS_LOGIN_FAILURE, None, exc, **fail) from None
        return address, ip_key, fail

    def login(
        self,
        conn: Connection,
        login: str,
        password: str,
        code: str,
        *,
        source: str,
        channel: Channel = Channel.API,
        checked: PasswordCheck | None = None,
        console: bool = False,
    ) -> Attempt:
        """Password and TOTP (or a recovery code) from `source`. Returns the attempt; the edge
        commits, then `attempt.session()` hands over the session or raises the refusal. With
        `checked` (from `check_password`, in a transaction before this one) no password is hashed
        while this transaction holds its locks. `console`: a session of the web console, which only
        the console accepts (with its idle timeout and lifetime, `console_times`)."""
        core = self._core
        try:
            row, used_recovery, address = self._authenticate(conn, login, password, code, source, channel, checked)
        except SageVaultError as exc:
            return Attempt(None, exc)
        now = core.now()
        conn.execute(update(principals).where(principals.c.id == row.id).values(last_active_at=now, lock_count=0))
        token = "svs_" + secrets.token_urlsafe(32)
        expires = now + timedelta(hours=core.settings.session_hours)
        conn.execute(
            insert(sessions).values(
                token_hash=core.keyed(conn, "session", token),
                principal_id=row.id,
                created_at=now,
                expires_at=expires,
                console_seen_at=now if console else None,
            )
        )
        core.event(
            conn,
            EventName.ACCESS_LOGIN_SUCCESS,
            row.id,
            source=address,
            channel=channel,
            reason=Reason.RECOVERY_CODE if used_recovery else Reason.NONE,
        )
        return Attempt(Session(token, Principal(row.id, "person", channel, address), expires), None)

    def _authenticate(
        self,
        conn: Connection,
        login: str,
        password: str,
        code: str,
        source: str,
        channel: Channel,
        checked: PasswordCheck | None,
        *,
        allow_expired: bool = False,
    ) -> tuple[Row[Any], bool, str]:
        """Check password and TOTP (or a recovery code) through the allow-list, the throttle
        and the lock; count a failure and lock at the threshold. A TOTP step is used up here.
        Returns the account row, whether a recovery code was used, and the source address."""
        core = self._core
        address, ip_key, fail = self._admit(conn, source, channel)
        policy = core.policy(conn)
        folded = normalise_login(login)
        account_key = core.keyed(conn, "login", folded).hex()
        if not all(map(encodable, (login, password, code))):  # nothing a real person types
            self._failed(conn, None, account_key, ip_key, "bad_input", fail)
        row = conn.execute(
            select(principals).where(principals.c.login == folded, principals.c.kind == "person")
        ).first()
        now = core.now()
        usable = row is not None and row.status == "active"
        locked_until = as_utc(row.locked_until) if row is not None else None
        if row is not None and locked_until is not None and locked_until <= now:
            conn.execute(update(principals).where(principals.c.id == row.id).values(locked_until=None))
            core.throttle.clear_account(account_key)  # kept until now, so a lost commit loses no count
            core.event(conn, EventName.ACCESS_ACCOUNT_UNLOCK, row.id, reason=Reason.COOL_OFF, **fail)
            locked_until = None
        # Always spend one password verification (here, or in `check_password` before this
        # transaction), so a failure takes as long for an unknown, disabled or locked account as
        # for a wrong password.
        stored = row.password_hash if usable and row is not None else None
        if checked is not None and (checked.login, checked.principal_id, checked.checked_against) == (
            folded,
            row.id if row is not None else None,
            stored,
        ):
            password_ok = checked.ok
        else:
            password_ok = self._hasher.verify(stored, password)
        if row is not None and locked_until is not None:
            self._locked(conn, row.id, account_key, ip_key, fail)
        if not password_ok or row is None:
            reason = "account_disabled" if row is not None and row.status == "disabled" else "bad_credentials"
            self._failed(conn, row, account_key, ip_key, reason, fail)
        assert row is not None
        step = totp_step(self._core, row, code)
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
            raise core.refuse(
                conn,
                EventName.ACCESS_NETWORK_DENY,
                row.id,
                NetworkDenied("log-ins from this address are not allowed for this account"),
                **fail,
            )
        set_at = as_utc(row.password_set_at)
        max_age = core.profile.password_max_age_days
        expired = set_at is None or set_at + timedelta(days=max_age) <= now
        if expired and not allow_expired:
            raise core.refuse(
                conn,
                EventName.ACCESS_LOGIN_FAILURE,
                row.id,
                CredentialExpired(
                    f"your password is older than {max_age} days; set a new one with `sagevault users password`"
                ),
                **fail,
            )
        core.throttle.clear_account(account_key)
        return row, used_recovery, str(address)

    def _locked(
        self,
        conn: Connection,
        principal_id: str,
        account_key: str,
        ip_key: str,
        fail: dict[str, Any],
    ) -> None:
        """Refuse a log-in to a locked account with the answer every failed log-in gets, whatever
        was sent: a locked account tells nobody whether the password was right (the event keeps
        the truth). Guesses at a locked account still count against their source."""
        self._core.throttle.failed(account_key, ip_key)
        self._core.event(
            conn,
            EventName.ACCESS_LOGIN_FAILURE,
            principal_id,
            outcome=Outcome.DENIED,
            reason=Reason.ACCOUNT_LOCKED,
            **fail,
        )
        raise AuthenticationFailed(REFUSED)

    @staticmethod
    def _consume_step(conn: Connection, principal_id: str, step: int) -> bool:
        """Mark a TOTP step used, if it is newer than the last one: one conditional UPDATE, so two
        concurrent log-ins with the same code cannot both pass."""
        return bool(
            conn.execute(
                update(principals)
                .where(
                    principals.c.id == principal_id,
                    or_(principals.c.totp_last_step.is_(None), principals.c.totp_last_step < step),
                )
                .values(totp_last_step=step)
            ).rowcount
        )

    def _failed(
        self, conn: Connection, row: Row[Any] | None, account_key: str, ip_key: str, reason: str, fail: dict[str, Any]
    ) -> None:
        """Count a failed log-in, lock the account at the threshold, report spraying; raise."""
        core = self._core
        failure = core.throttle.failed(account_key, ip_key)
        actor = row.id if row is not None else None
        core.event(
            conn,
            EventName.ACCESS_LOGIN_FAILURE,
            actor,
            outcome=Outcome.DENIED,
            reason=reason,
            counts={"failures": failure.account_failures},
            fingerprint=account_key,  # the keyed hash of the login tried: spraying counts distinct ones
            **fail,
        )
        if failure.spraying_started:
            core.event(
                conn, EventName.ACCESS_SPRAY_DETECT, None, outcome=Outcome.DENIED, reason=Reason.SPRAYING, **fail
            )
        if row is not None and row.status == "active" and failure.account_failures >= core.throttle.threshold:
            locks = row.lock_count + 1
            minutes = core.settings.lockout_base_minutes * 2 ** (locks - 1)
            until = core.now() + min(timedelta(minutes=minutes), _MAX_LOCK)
            conn.execute(
                update(principals).where(principals.c.id == row.id).values(locked_until=until, lock_count=locks)
            )
            core.event(
                conn,
                EventName.ACCESS_ACCOUNT_LOCK,
                row.id,
                outcome=Outcome.DENIED,
                reason=Reason.ACCOUNT_LOCKED,
                counts={"locks": locks, "minutes": int(minutes)},
                **fail,
            )
        # The event keeps the precise reason; the caller gets one message and one reason for all.
        raise AuthenticationFailed(REFUSED)

    def _use_recovery_code(self, conn: Connection, principal_id: str, code: str) -> bool:
        raw = code.strip().lower().replace("-", "")
        result = conn.execute(
            update(recovery_codes)
            .where(
                recovery_codes.c.principal_id == principal_id,
                recovery_codes.c.code_hash == self._core.keyed(conn, "recovery", raw),
                recovery_codes.c.used_at.is_(None),
            )
            .values(used_at=self._core.now())
        )
        return result.rowcount == 1

    # --- sessions -----------------------------------------------------------------------------------

    def authenticate_session(
        self, conn: Connection, token: str, *, source: str, channel: Channel = Channel.API, console: bool = False
    ) -> Principal:
        """The person behind a live session `token`. A session the web console started is accepted only
        with `console` (so its idle timeout and lifetime cannot be sidestepped through the API), and a
        session of the API only without it."""
        core = self._core
        address = parse_address(source)
        policy = core.policy(conn)  # read first: the session read below sees at least this generation
        token_hash = core.keyed(conn, "session", token)
        generation, known = self._sessions
        if generation != policy.generation:
            known = {}
            self._sessions = (policy.generation, known)
        hit = known.get(token_hash)
        principal_id: str | None
        if hit is not None:
            principal_id, expires, of_console = hit
            status = policy.status.get(principal_id)
        else:
            row = conn.execute(
                select(sessions.c.principal_id, sessions.c.expires_at, sessions.c.console_seen_at, principals.c.status)
                .join(principals, principals.c.id == sessions.c.principal_id)
                .where(sessions.c.token_hash == token_hash, sessions.c.revoked_at.is_(None))
            ).first()
            principal_id, status = (row.principal_id, row.status) if row is not None else (None, None)
            expires = as_utc(row.expires_at) if row is not None else _NEVER_VALID
            of_console = row is not None and row.console_seen_at is not None
        if principal_id is None or status != "active" or expires <= core.now() or of_console != console:
            told = (
                "this session belongs to the web console; the API takes a session from POST /api/v1/sessions"
                if principal_id is not None and of_console and not console
                else "this session has ended; log in again"
            )
            raise core.refuse(
                conn,
                EventName.ACCESS_LOGIN_FAILURE,
                principal_id,
                AuthenticationFailed(told, reason="session_ended"),
                source=str(address),
                channel=channel,
            )
        if hit is None and len(known) < _SESSIONS_KEPT:
            known[token_hash] = (principal_id, expires, of_console)
        if not policy.source_allowed(principal_id, address):
            raise core.refuse(
                conn,
                EventName.ACCESS_NETWORK_DENY,
                principal_id,
                NetworkDenied("requests from this address are not allowed: it is outside the IP allow-lists"),
                source=str(address),
                channel=channel,
            )
        return Principal(principal_id, "person", channel, str(address))

    def logout(self, conn: Connection, token: str, *, actor: Principal | None = None) -> None:
        """End the session `token` (the holder's own); recorded as access:session:end. A token
        that is not a live session is refused: an API key is revoked, not logged out."""
        core = self._core
        ended = conn.execute(
            update(sessions)
            .where(sessions.c.token_hash == core.keyed(conn, "session", token), sessions.c.revoked_at.is_(None))
            .values(revoked_at=core.now())
        ).rowcount
        if not ended:
            raise AccessError(
                "this credential is not a live session; an API key is revoked by an admin "
                "(DELETE /api/v1/api-keys/{key_id} or `sagevault users revoke-key`)"
            )
        core.changed(conn)  # every process forgets the session now (see `authenticate_session`)
        core.event(conn, EventName.ACCESS_SESSION_END, actor, channel=actor.channel if actor else Channel.API)

    # --- the console's sessions -------------------------------------------------------------------

    def console_times(self, conn: Connection, token: str) -> tuple[datetime, datetime] | None:
        """When the console session `token` started and was last used; None if it is not a live session
        the console started (an API session, a revoked or unknown token)."""
        core = self._core
        row = conn.execute(
            select(sessions.c.created_at, sessions.c.console_seen_at).where(
                sessions.c.token_hash == core.keyed(conn, "session", token), sessions.c.revoked_at.is_(None)
            )
        ).first()
        if row is None or row.console_seen_at is None:
            return None
        return as_utc(row.created_at), as_utc(row.console_seen_at)

    def console_seen(self, conn: Connection, token: str, at: datetime) -> None:
        """Record that the console used the live session `token` at `at` (its log-in makes it a console
        session). Kept in the database, so every node of a deployment applies the same idle timeout."""
        core = self._core
        conn.execute(
            update(sessions)
            .where(sessions.c.token_hash == core.keyed(conn, "session", token), sessions.c.revoked_at.is_(None))
            .values(console_seen_at=at)
        )

    # --- passwords ----------------------------------------------------------------------------------

    def prepare_password_change(
        self, conn: Connection, login: str, current: str, new: str, *, source: str, channel: Channel = Channel.API
    ) -> PasswordChange:
        """The costly half of `change_password`, in a transaction that reads only: the current
        password verified and, if it is right, the new one checked and hashed."""
        checked = self.check_password(conn, login, current, source=source, channel=channel)
        prepared: NewPassword | None = None
        refusal: AccessError | None = None
        if checked.ok and checked.principal_id is not None:
            try:
                prepared = prepare_new_password(
                    conn, self._hasher, self._core.profile, checked.principal_id, checked.login, new
                )
            except AccessError as exc:
                refusal = exc
        return PasswordChange(checked, prepared, refusal)

    def change_password(
        self,
        conn: Connection,
        login: str,
        current: str,
        new: str,
        code: str,
        *,
        source: str,
        channel: Channel = Channel.API,
        prepared: PasswordChange | None = None,
    ) -> Attempt:
        """Change a password with the current one and a TOTP code (which counts like a log-in:
        failures lock). Refused (and recorded) when the new one is weak, breached, one of the
        last 10, or the current one is under a day old. Every session of the account ends (the
        attempt says how many). The edge commits, then `check()`s. With `prepared` (from
        `prepare_password_change`, in a transaction before this one) nothing is hashed here."""
        try:
            ended = self._change_password(conn, login, current, new, code, source, channel, prepared)
        except SageVaultError as exc:
            return Attempt(None, exc)
        return Attempt(None, None, ended)

    def _change_password(
        self,
        conn: Connection,
        login: str,
        current: str,
        new: str,
        code: str,
        source: str,
        channel: Channel,
        prepared: PasswordChange | None,
    ) -> int:
        core = self._core
        checked = prepared.current if prepared is not None else None
        row, _, source = self._authenticate(conn, login, current, code, source, channel, checked, allow_expired=True)
        now = core.now()
        profile = core.profile
        set_at = as_utc(row.password_set_at)
        expired = set_at is None or set_at + timedelta(days=profile.password_max_age_days) <= now
        too_young = set_at is not None and now - set_at < timedelta(days=profile.password_min_age_days)
        if not expired and too_young:
            raise core.refuse(
                conn,
                EventName.ACCESS_PASSWORD_CHANGE,
                row.id,
                AccessError(
                    f"the password was changed less than {profile.password_min_age_days} day(s) ago; "
                    "try again later, or ask an admin for a reset",
                    reason="password_too_young",
                ),
                source=source,
            )
        try:
            if prepared is not None and prepared.refusal is not None and prepared.current.principal_id == row.id:
                raise prepared.refusal
            new_password = prepared.new if prepared is not None else None
            if new_password is None or new_password.principal_id != row.id or not still_current(conn, new_password):
                new_password = prepare_new_password(conn, self._hasher, profile, row.id, row.login, new)
        except AccessError as exc:
            raise core.refuse(conn, EventName.ACCESS_PASSWORD_CHANGE, row.id, exc, source=source) from None
        hashed = new_password.password_hash
        conn.execute(
            update(principals).where(principals.c.id == row.id).values(password_hash=hashed, password_set_at=now)
        )
        conn.execute(insert(password_history).values(principal_id=row.id, set_at=now, password_hash=hashed))
        ended = core.end_sessions(conn, row.id)  # whoever knew the old password may hold a session
        core.event(conn, EventName.ACCESS_PASSWORD_CHANGE, row.id, source=source, counts={"sessions_ended": ended})
        return ended
