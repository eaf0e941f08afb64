"""Log-in and enrolment: password and TOTP (or a one-time recovery code), sessions, password
changes, and a new person's first password and TOTP.

Log-in is the one place where a refusal changes state (failure counters, a lock): `login` and
`change_password` therefore return an `Attempt` instead of raising, so the edge commits and then
calls `attempt.session()` or `attempt.check()`, which raise the refusal.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.engine import Connection, Row

from sagevault.audit import EventName, Outcome, Reason
from sagevault.errors import (
    AccessError,
    AccountLocked,
    AuthenticationFailed,
    Conflict,
    CredentialExpired,
    NetworkDenied,
    SageVaultError,
)
from sagevault.identity import Channel, Principal, normalise_login

from ._core import AccessCore, encodable
from ._network import parse_address
from ._passwords import PasswordHasher, check_strength
from ._policy import as_utc
from ._schema import password_history, principals, recovery_codes, sessions

_RECOVERY = re.compile(r"[a-z2-7]{5}-?[a-z2-7]{5}")
_RECOVERY_CODES = 10
_MAX_LOCK = timedelta(hours=24)
_SESSIONS_KEPT = 10_000  # live sessions remembered per process and policy generation
_NEVER_VALID = datetime.min.replace(tzinfo=UTC)


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


class Authentication:
    def __init__(self, core: AccessCore, hasher: PasswordHasher) -> None:
        self._core = core
        self._hasher = hasher
        # Live sessions this process has checked, by token hash: (principal id, expiry), valid for
        # one policy generation. Every change that ends a session or an account changes the
        # generation, so a hit is what the database would answer; expiry is checked every time.
        self._sessions: tuple[int, dict[bytes, tuple[str, datetime]]] = (0, {})

    # --- enrolment --------------------------------------------------------------------------------

    def _check_enrolment(self, conn: Connection, login: str, secret: str) -> Row[Any]:
        core = self._core
        if not (encodable(login) and encodable(secret)):
            raise AuthenticationFailed("that login and enrolment secret do not match an open enrolment")
        row = conn.execute(select(principals).where(principals.c.login == normalise_login(login))).first()
        expires = as_utc(row.enrolment_expires_at) if row is not None else None
        if (
            row is None
            or row.enrolment_hash is None
            or row.status != "enrolling"
            or expires is None
            or not hmac.compare_digest(bytes(row.enrolment_hash), core.keyed(conn, "enrol", secret))
        ):
            raise core.refuse(
                conn,
                EventName.ACCESS_ACCOUNT_ENROL,
                row.id if row else None,
                AuthenticationFailed(
                    "that login and enrolment secret do not match an open enrolment; ask an admin for a new one "
                    "(`sagevault users reset`)"
                ),
            )
        if expires <= core.now():
            raise core.refuse(
                conn,
                EventName.ACCESS_ACCOUNT_ENROL,
                row.id,
                CredentialExpired(
                    "this enrolment secret has expired; ask an admin for a new one (`sagevault users reset`)"
                ),
            )
        return row

    def begin_enrolment(self, conn: Connection, login: str, secret: str) -> TotpSetup:
        """Check the enrolment secret and make the person's TOTP secret (to put in an authenticator)."""
        row = self._check_enrolment(conn, login, secret)
        totp_secret = pyotp.random_base32()
        wrapped = self._core.keys.wrap(totp_secret.encode(), {"purpose": "totp", "principal": row.id})
        conn.execute(update(principals).where(principals.c.id == row.id).values(totp_secret=wrapped))
        uri = pyotp.TOTP(totp_secret).provisioning_uri(name=row.id, issuer_name="SageVault")
        return TotpSetup(totp_secret, uri)

    def finish_enrolment(self, conn: Connection, login: str, secret: str, password: str, code: str) -> list[str]:
        """Set the first password, confirm TOTP with a code, and hand out recovery codes (once)."""
        core = self._core
        row = self._check_enrolment(conn, login, secret)
        if row.totp_secret is None:
            raise Conflict(
                "start with `begin_enrolment` (POST /api/v1/enrolment/begin, `sagevault users enrol`) "
                "to get a TOTP secret first"
            )
        try:
            check_strength(password, row.login, core.profile)
            self._check_history(conn, row.id, password)  # a reset does not wipe the history
        except AccessError as exc:
            raise core.refuse(conn, EventName.ACCESS_PASSWORD_CHANGE, row.id, exc) from None
        step = self._totp_step(row, code)
        if step is None:
            raise core.refuse(
                conn,
                EventName.ACCESS_ACCOUNT_ENROL,
                row.id,
                AuthenticationFailed(
                    "that TOTP code is wrong; check the authenticator's clock and try the current code",
                    reason="bad_totp",
                ),
            )
        now = core.now()
        hashed = self._hasher.hash(password)
        conn.execute(
            update(principals)
            .where(principals.c.id == row.id)
            .values(
                status="active",
                password_hash=hashed,
                password_set_at=now,
                totp_last_step=step,
                enrolment_hash=None,
                enrolment_expires_at=None,
                last_active_at=now,
            )
        )
        conn.execute(insert(password_history).values(principal_id=row.id, set_at=now, password_hash=hashed))
        codes = self._new_recovery_codes(conn, row.id)
        core.changed(conn)
        core.event(conn, EventName.ACCESS_ACCOUNT_ENROL, row.id)
        return codes

    def _new_recovery_codes(self, conn: Connection, principal_id: str) -> list[str]:
        conn.execute(delete(recovery_codes).where(recovery_codes.c.principal_id == principal_id))
        codes = []
        for _ in range(_RECOVERY_CODES):
            raw = base64.b32encode(secrets.token_bytes(7)).decode().lower()[:10]
            codes.append(f"{raw[:5]}-{raw[5:]}")
            conn.execute(
                insert(recovery_codes).values(
                    principal_id=principal_id, code_hash=self._core.keyed(conn, "recovery", raw)
                )
            )
        return codes

    def _totp_step(self, row: Row[Any], code: str) -> int | None:
        """The time step `code` belongs to (current, or one either side for clock drift), if it
        is right and newer than the last one used: a code works once."""
        if row.totp_secret is None or not re.fullmatch(r"[0-9]{6}", code.strip()):
            return None
        secret = self._core.keys.unwrap(bytes(row.totp_secret), {"purpose": "totp", "principal": row.id}).decode()
        totp = pyotp.TOTP(secret)
        now_step = totp.timecode(self._core.now())
        for step in (now_step, now_step - 1, now_step + 1):
            if hmac.compare_digest(totp.generate_otp(step), code.strip()):
                return step
        return None

    # --- log-in -----------------------------------------------------------------------------------

    def login(
        self, conn: Connection, login: str, password: str, code: str, *, source: str, channel: Channel = Channel.API
    ) -> Attempt:
        """Password and TOTP (or a recovery code) from `source`. Returns the attempt; the edge
        commits, then `attempt.session()` hands over the session or raises the refusal."""
        core = self._core
        try:
            row, used_recovery, address = self._authenticate(conn, login, password, code, source, channel)
        except SageVaultError as exc:
            return Attempt(None, exc)
        now = core.now()
        conn.execute(update(principals).where(principals.c.id == row.id).values(last_active_at=now, lock_count=0))
        token = "svs_" + secrets.token_urlsafe(32)
        expires = now + timedelta(hours=core.settings.session_hours)
        conn.execute(
            insert(sessions).values(
                token_hash=core.keyed(conn, "session", token), principal_id=row.id, created_at=now, expires_at=expires
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
        *,
        allow_expired: bool = False,
    ) -> tuple[Row[Any], bool, str]:
        """Check password and TOTP (or a recovery code) through the allow-list, the throttle
        and the lock; count a failure and lock at the threshold. A TOTP step is used up here.
        Returns the account row, whether a recovery code was used, and the source address."""
        core = self._core
        address = parse_address(source)
        ip_key = core.source_key(conn, str(address))
        fail: dict[str, Any] = {"source": str(address), "channel": channel}
        policy = core.policy(conn)
        if not policy.source_allowed(None, address):
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
        # Always spend one password verification, so a failure takes as long for an unknown,
        # disabled or locked account as for a wrong password.
        password_ok = self._hasher.verify(row.password_hash if usable and row is not None else None, password)
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
        until: datetime,
        password_ok: bool,
        account_key: str,
        ip_key: str,
        fail: dict[str, Any],
    ) -> None:
        """Refuse a log-in to a locked account. Only someone who knows the password learns that
        it is locked; anyone else gets the answer an unknown login gets (the event keeps the
        truth). Guesses at a locked account still count against their source."""
        self._core.throttle.failed(account_key, ip_key)
        self._core.event(
            conn,
            EventName.ACCESS_LOGIN_FAILURE,
            principal_id,
            outcome=Outcome.DENIED,
            reason=Reason.ACCOUNT_LOCKED,
            **fail,
        )
        if password_ok:
            raise AccountLocked(
                f"this account is locked until {until:%Y-%m-%d %H:%M} UTC after repeated failed log-ins; "
                "an admin can unlock it sooner (`sagevault users unlock`)"
            )
        raise AuthenticationFailed("wrong login, password or code")

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
        raise AuthenticationFailed("wrong login, password or code")

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
        self, conn: Connection, token: str, *, source: str, channel: Channel = Channel.API
    ) -> Principal:
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
        if principal_id is None or status != "active" or expires <= core.now():
            raise core.refuse(
                conn,
                EventName.ACCESS_LOGIN_FAILURE,
                principal_id,
                AuthenticationFailed("this session has ended; log in again", reason="session_ended"),
                source=str(address),
                channel=channel,
            )
        if hit is None and len(known) < _SESSIONS_KEPT:
            known[token_hash] = (principal_id, expires)
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

    # --- passwords ----------------------------------------------------------------------------------

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
    ) -> Attempt:
        """Change a password with the current one and a TOTP code (which counts like a log-in:
        failures lock). Refused (and recorded) when the new one is weak, breached, one of the
        last 10, or the current one is under a day old. The edge commits, then `check()`s."""
        try:
            self._change_password(conn, login, current, new, code, source, channel)
        except SageVaultError as exc:
            return Attempt(None, exc)
        return Attempt(None, None)

    def _change_password(
        self, conn: Connection, login: str, current: str, new: str, code: str, source: str, channel: Channel
    ) -> None:
        core = self._core
        row, _, source = self._authenticate(conn, login, current, code, source, channel, allow_expired=True)
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
            check_strength(new, row.login, profile)
            self._check_history(conn, row.id, new)
        except AccessError as exc:
            raise core.refuse(conn, EventName.ACCESS_PASSWORD_CHANGE, row.id, exc, source=source) from None
        hashed = self._hasher.hash(new)
        conn.execute(
            update(principals).where(principals.c.id == row.id).values(password_hash=hashed, password_set_at=now)
        )
        conn.execute(insert(password_history).values(principal_id=row.id, set_at=now, password_hash=hashed))
        core.event(conn, EventName.ACCESS_PASSWORD_CHANGE, row.id, source=source)

    def _check_history(self, conn: Connection, principal_id: str, password: str) -> None:
        kept = self._core.profile.password_history
        history = (
            conn.execute(
                select(password_history.c.password_hash)
                .where(password_history.c.principal_id == principal_id)
                .order_by(password_history.c.set_at.desc())
                .limit(kept)
            )
            .scalars()
            .all()
        )
        if any(self._hasher.verify(old, password) for old in history):
            raise AccessError(
                f"password refused: it is one of your last {kept}; choose a new one", reason="password_reused"
            )
