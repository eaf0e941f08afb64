"""What a detection rule may do on its own when it raises an alarm (`responses` in the rule
file): disable the principal (its sessions end, its API keys are revoked), end its sessions, or
engage the PII kill switch for the tenant. Each acts as `job:monitor` and records the security
event the same change by a person would; an administrator undoes it (`users enable`,
`killswitch release`) after looking at the alarm."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from sagevault.audit import EventName
from sagevault.identity import Principal

from ._core import AccessCore
from ._model import KillSwitch
from ._schema import api_keys, principals
from ._service import AccessService

MONITOR = Principal.job("monitor")


class AlarmResponses:
    """`sagevault.monitor.Responder` over the access layer."""

    def __init__(self, access: AccessService) -> None:
        self._access = access
        self._core: AccessCore = access.core

    def respond(self, conn: Connection, response: str, *, principal_id: str | None, tenant_id: str | None) -> str:
        if response == "kill-switch":
            if tenant_id is None:
                return "skipped: the alarm names no tenant"
            self._access.switches.set(conn, KillSwitch.PII_ACCESS.value, True, actor=MONITOR, tenant_id=tenant_id)
            return f"pii-access engaged for {tenant_id}"
        row = self._account(conn, principal_id)
        if row is None:
            return "skipped: the alarm names no account (an operator or job is not one)"
        if response == "revoke-sessions":
            ended = self._core.end_sessions(conn, row.id)
            self._core.event(conn, EventName.ACCESS_SESSION_END, MONITOR, counts={"sessions": ended})
            return f"{ended} sessions of {row.id} ended"
        if response == "lock-principal":
            if row.status == "disabled":
                return f"{row.id} was already disabled"
            now = self._core.now()
            conn.execute(update(principals).where(principals.c.id == row.id).values(status="disabled", disabled_at=now))
            ended = self._core.end_sessions(conn, row.id)
            ended += conn.execute(
                update(api_keys)
                .where(api_keys.c.principal_id == row.id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
            self._core.changed(conn)
            self._core.event(conn, EventName.ACCESS_ACCOUNT_DISABLE, MONITOR, counts={"credentials": ended})
            return f"{row.id} disabled ({ended} credentials ended)"
        raise ValueError(f"no response {response}")

    @staticmethod
    def _account(conn: Connection, principal_id: str | None):  # type: ignore[no-untyped-def]
        if not principal_id:
            return None
        return conn.execute(select(principals.c.id, principals.c.status).where(principals.c.id == principal_id)).first()
