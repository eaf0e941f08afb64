"""Accounts: the first administrator, people and service accounts, resets, leavers and locks.

Every account belongs to one person or one service: logins are unique, never generic and never
reused. A person gets a one-time enrolment secret (they set their own password and TOTP with it);
a service authenticates with API keys.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Row

from sagevault.audit import EventName, Reason
from sagevault.errors import AccessDenied, AccessError, Conflict, looks_like_pii
from sagevault.identity import Principal, Scope, check_new_login

from ._core import AccessCore, new_id
from ._grants import insert_grant, issued_by, rearm_two_person_rule
from ._model import ALL_TENANTS
from ._policy import as_utc
from ._schema import api_keys, principals, recovery_codes

_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}")
_PURPOSE_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ,.:/_()-]{2,199}")
_ENROLMENT_HOURS = 72


@dataclass(frozen=True, slots=True)
class Enrolment:
    principal_id: str
    login: str
    secret: str = field(repr=False)  # shown once; the person uses it to set a password and TOTP
    expires_at: datetime
    pending_grants: int = 0  # grants put back to pending by this reset (two-person rule)


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

    @classmethod
    def of(cls, r: Row[Any]) -> Account:
        return cls(
            r.id,
            r.kind,
            r.login,
            r.status,
            as_utc(r.locked_until),
            as_utc(r.last_active_at),
            as_utc(r.created_at) or datetime.now(UTC),
            as_utc(r.password_set_at),
        )


class Accounts:
    def __init__(self, core: AccessCore) -> None:
        self._core = core

    def _new_login(self, conn: Connection, login: str) -> str:
        login = check_new_login(login)
        if conn.execute(select(principals.c.id).where(principals.c.login == login)).first() is not None:
            raise Conflict(f"login {login} is taken; logins are unique and are never reused for someone else")
        return login

    def _enrolment(self, conn: Connection, principal_id: str, login: str) -> tuple[Enrolment, dict[str, Any]]:
        secret = "sve_" + secrets.token_urlsafe(24)
        expires = self._core.now() + timedelta(hours=_ENROLMENT_HOURS)
        values = {"enrolment_hash": self._core.keyed(conn, "enrol", secret), "enrolment_expires_at": expires}
        return Enrolment(principal_id, login, secret, expires), values

    def bootstrap_admin(self, conn: Connection, login: str, email: str, *, actor: Principal) -> Enrolment:
        """The first person, with the admin role for every tenant. Refused once any person exists."""
        if actor.kind != "operator":
            raise AccessDenied("only the local operator can bootstrap the first administrator")
        if self.count_people(conn):
            raise Conflict("an administrator exists already; people are added with `sagevault users add` by an admin")
        return self._add_person(conn, login, email, None, actor=actor, role="admin")

    def add_person(
        self, conn: Connection, login: str, email: str, *, manager: str | None, actor: Principal
    ) -> Enrolment:
        self._core.authorize(conn, actor, Scope.USERS_ADMIN)
        manager_id = self._core.row(conn, manager, "person").id if manager else None
        return self._add_person(conn, login, email, manager_id, actor=actor)

    def _add_person(
        self,
        conn: Connection,
        login: str,
        email: str,
        manager_id: str | None,
        *,
        actor: Principal,
        role: str | None = None,
    ) -> Enrolment:
        core = self._core
        login = self._new_login(conn, login)
        email = email.strip()
        if not _EMAIL.fullmatch(email):
            raise AccessError("that e-mail address is not valid; give the person's work address, e.g. name@company.com")
        principal_id = new_id("usr")
        enrolment, values = self._enrolment(conn, principal_id, login)
        conn.execute(
            insert(principals).values(
                id=principal_id,
                kind="person",
                login=login,
                email=email,
                manager_id=manager_id,
                status="enrolling",
                created_at=core.now(),
                created_by=actor.id,
                credential_issued_by=issued_by(actor),
                lock_count=0,
                **values,
            )
        )
        if role is not None:
            insert_grant(core, conn, principal_id, role, [ALL_TENANTS], None, None, "active", actor.id, actor.id)
        core.changed(conn)
        core.event(conn, EventName.ACCESS_ACCOUNT_CREATE, actor, counts={"person": 1})
        return enrolment

    def add_service(self, conn: Connection, login: str, *, owner: str, purpose: str, actor: Principal) -> str:
        """A service account owned by a person, for a stated purpose. Returns its principal id."""
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        owner_id = core.row(conn, owner, "person").id
        if not _PURPOSE_TEXT.fullmatch(purpose.strip()) or looks_like_pii(purpose):
            raise AccessError("the purpose must be a short description of the service's job (3-200 characters)")
        login = self._new_login(conn, login)
        principal_id = new_id("svc")
        conn.execute(
            insert(principals).values(
                id=principal_id,
                kind="service",
                login=login,
                created_at=core.now(),
                created_by=actor.id,
                lock_count=0,
                owner_id=owner_id,
                purpose=purpose.strip(),
                status="active",
            )
        )
        core.changed(conn)
        core.event(conn, EventName.ACCESS_ACCOUNT_CREATE, actor, counts={"person": 0})
        return principal_id

    def reset(self, conn: Connection, login: str, *, actor: Principal) -> Enrolment:
        """A new enrolment secret: the person sets a new password and TOTP. Sessions end now."""
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        row = core.row(conn, login, "person")
        enrolment, values = self._enrolment(conn, row.id, row.login)
        conn.execute(
            update(principals)
            .where(principals.c.id == row.id)
            .values(
                status="enrolling" if row.status != "disabled" else "disabled",
                totp_secret=None,
                totp_last_step=None,
                credential_issued_by=issued_by(actor),
                **values,
            )
        )
        core.end_sessions(conn, row.id)
        conn.execute(delete(recovery_codes).where(recovery_codes.c.principal_id == row.id))
        # Whoever resets sees the enrolment secret and could enrol as the person: what needed two
        # people (PII, keys, administration) needs them again.
        rearmed = rearm_two_person_rule(conn, row.id, actor, issued=True)
        core.changed(conn)
        core.event(conn, EventName.ACCESS_ACCOUNT_RESET, actor, counts={"pending_grants": rearmed})
        return dataclasses.replace(enrolment, pending_grants=rearmed)

    def disable(self, conn: Connection, login: str, *, actor: Principal, operation: str | None = None) -> int:
        """Disable an account now: its sessions end and its API keys are revoked. Returns how
        many credentials died with it. `operation` names what it was done for (an incident)."""
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        row = core.row(conn, login)
        if row.id == actor.id:
            raise AccessError("you cannot disable your own account; ask another admin")
        now = core.now()
        conn.execute(update(principals).where(principals.c.id == row.id).values(status="disabled", disabled_at=now))
        ended = core.end_sessions(conn, row.id)
        ended += conn.execute(
            update(api_keys)
            .where(api_keys.c.principal_id == row.id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        core.changed(conn)
        core.event(conn, EventName.ACCESS_ACCOUNT_DISABLE, actor, counts={"credentials": ended}, operation=operation)
        return ended

    def leave(self, conn: Connection, login: str, at: datetime | None = None, *, actor: Principal) -> int:
        """Mark a leaver: from `at` (now when None; with its UTC offset) the account is disabled,
        its sessions ended and its API keys revoked, by the `leavers` job within the policy's
        `leaver_disable_hours`; at once when `at` is not in the future. Returns the credentials
        that ended now (0 when the date is ahead)."""
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        row = core.row(conn, login)
        now = core.now()
        when = now if at is None else at
        if when.tzinfo is None:
            raise AccessError("give the leaving date with its UTC offset (2026-12-31T17:00:00+00:00)")
        if row.status == "disabled":
            raise AccessError(f"{login} is disabled already")
        conn.execute(update(principals).where(principals.c.id == row.id).values(leaving_at=when))
        core.event(
            conn,
            EventName.ACCESS_ACCOUNT_LEAVE,
            actor,
            counts={"hours_ahead": max(0, int((when - now).total_seconds() // 3600))},
            operation=f"leave {row.id}",
        )
        return self.disable(conn, login, actor=actor, operation="leaver") if when <= now else 0

    def disable_leavers(self, conn: Connection, *, actor: Principal) -> list[str]:
        """Disable every account whose leaving date has come (the `leavers` job); their logins."""
        self._core.authorize(conn, actor, Scope.USERS_ADMIN)
        due = (
            conn.execute(
                select(principals.c.login).where(
                    principals.c.leaving_at.is_not(None),
                    principals.c.leaving_at <= self._core.now(),
                    principals.c.status != "disabled",
                )
            )
            .scalars()
            .all()
        )
        for login in due:
            self.disable(conn, login, actor=actor, operation="leaver")
        return list(due)

    def end_sessions(self, conn: Connection, login: str, *, actor: Principal, operation: str | None = None) -> int:
        """End every live session of an account now (it may log in again); how many ended."""
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        row = core.row(conn, login)
        ended = core.end_sessions(conn, row.id)
        core.event(conn, EventName.ACCESS_SESSION_END, actor, counts={"sessions": ended}, operation=operation)
        return ended

    def enable(self, conn: Connection, login: str, *, actor: Principal) -> None:
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        row = core.row(conn, login)
        if row.status != "disabled":
            raise Conflict(f"{row.login} is not disabled, so there is nothing to enable; see `sagevault users list`")
        status = "active" if row.password_hash or row.kind == "service" else "enrolling"
        conn.execute(
            update(principals)
            .where(principals.c.id == row.id)
            .values(status=status, disabled_at=None, last_active_at=core.now())
        )
        # What needed two people before needs them again: sensitive grants wait for approval.
        rearm_two_person_rule(conn, row.id, actor, issued=False)
        core.changed(conn)
        core.event(conn, EventName.ACCESS_ACCOUNT_ENABLE, actor)

    def unlock(self, conn: Connection, login: str, *, actor: Principal) -> None:
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        row = core.row(conn, login, "person")
        if row.locked_until is None:
            raise Conflict(
                f"{row.login} is not locked, so there is nothing to unlock; a disabled account is enabled instead"
            )
        conn.execute(update(principals).where(principals.c.id == row.id).values(locked_until=None))
        core.throttle.clear_account(core.keyed(conn, "login", row.login).hex())
        core.event(conn, EventName.ACCESS_ACCOUNT_UNLOCK, actor, reason=Reason.NONE)

    def list(self, conn: Connection, *, actor: Principal) -> list[Account]:
        """Every account, by login."""
        self._core.authorize(conn, actor, Scope.USERS_ADMIN)
        return [Account.of(r) for r in conn.execute(select(principals).order_by(principals.c.login))]

    @staticmethod
    def count_people(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).where(principals.c.kind == "person")).scalar_one())
