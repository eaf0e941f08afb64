"""What a detection rule may do on its own when it raises an alarm (`responses` in the rule
file): disable the principal (its sessions end, its API keys are revoked), end its sessions, or
engage the PII kill switch for the tenant. Each acts as `job:monitor` and records the security
event the same change by a person would; an administrator undoes it (`users enable`,
`killswitch release`) after looking at the alarm.

`IncidentActions` is the same for a person working an incident: the action runs with their own
permissions and its event names the incident."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from sagevault.audit import EventName
from sagevault.errors import PayloadError
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


class IncidentActions:
    """`sagevault.incidents.Containment` over the access layer: a kill switch (for a tenant or
    all), an account disabled, its sessions ended, an API key revoked."""

    def __init__(self, access: AccessService) -> None:
        self._access = access

    def take(
        self, conn: Connection, action: str, target: str, *, tenant_id: str | None, actor: Principal, incident: int
    ) -> str:
        why = f"incident {incident}"
        if action == "kill-switch":
            self._access.switches.set(conn, target, True, actor=actor, tenant_id=tenant_id, operation=why)
            return f"{target} engaged for {tenant_id or 'every tenant'}"
        if action == "lock-account":
            ended = self._access.accounts.disable(conn, target, actor=actor, operation=why)
            return f"account disabled ({ended} credentials ended)"
        if action == "revoke-sessions":
            ended = self._access.accounts.end_sessions(conn, target, actor=actor, operation=why)
            return f"{ended} sessions ended"
        if action == "revoke-key":
            self._access.api_keys.revoke(conn, target, actor=actor, operation=why)
            return "API key revoked"
        raise PayloadError(f"no containment action {action}")
