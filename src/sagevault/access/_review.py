"""The access review: accounts unused for the policy's inactivity period, and API keys and
passwords about to expire. Each run is a security event, so an auditor sees that reviews happen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Connection

from sagevault.audit import EventName
from sagevault.identity import Principal, Scope

from ._accounts import Account
from ._core import AccessCore
from ._policy import as_utc
from ._schema import api_keys, principals


@dataclass(frozen=True, slots=True)
class Review:
    inactive: list[Account]
    expiring_keys: list[tuple[str, str, datetime]]  # key id, principal id, expires at
    expiring_passwords: list[tuple[str, datetime]]  # principal id, expires at


class Reviews:
    def __init__(self, core: AccessCore) -> None:
        self._core = core

    def run(self, conn: Connection, *, actor: Principal, warn_days: int = 30) -> Review:
        """Accounts unused for the policy's inactivity period, and API keys and passwords that
        expire within `warn_days`."""
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        now = core.now()
        stale = now - timedelta(days=core.profile.inactive_account_days)
        warn = now + timedelta(days=warn_days)
        inactive = []
        expiring_pw = []
        for r in conn.execute(select(principals).where(principals.c.status != "disabled")):
            account = Account.of(r)
            if (account.last_active_at or account.created_at) <= stale:
                inactive.append(account)
            if account.password_set_at is not None:
                due = account.password_set_at + timedelta(days=core.profile.password_max_age_days)
                if due <= warn:
                    expiring_pw.append((account.id, due))
        keys = []
        for k in conn.execute(select(api_keys).where(api_keys.c.revoked_at.is_(None))):
            expires = as_utc(k.expires_at)
            if expires <= warn:
                keys.append((k.id, k.principal_id, expires))
        core.event(
            conn,
            EventName.ACCESS_REVIEW_RUN,
            actor,
            counts={"inactive": len(inactive), "expiring_keys": len(keys), "expiring_passwords": len(expiring_pw)},
        )
        return Review(inactive, keys, expiring_pw)
