"""The scope check every domain service makes before it acts on a deployment-wide scope, and the
security event a refusal leaves: access control's decision (a `Gate`, `AccessControl` is the real
one) asked, a refusal recorded as access:permission:deny naming the operation, then raised."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.engine import Connection

from sagevault.errors import AccessDenied
from sagevault.identity import Principal, Scope

from ._events import AuditEvent, AuditSink, EventName, outcome_of


class Gate(Protocol):
    """Access control's decision (`sagevault.access.AccessControl` is one)."""

    def check(self, conn: Connection, principal: Principal, scope: Scope, tenant_id: str | None) -> None: ...


def check_scope(gate: Gate, audit: AuditSink, conn: Connection, principal: Principal, scope: Scope, op: str) -> None:
    """Ask `gate` for a deployment scope; a refusal is recorded (access:permission:deny, naming
    the operation) before it is raised."""
    try:
        gate.check(conn, principal, scope, None)
    except AccessDenied as exc:
        outcome, reason = outcome_of(exc)
        audit.record(
            AuditEvent(
                name=EventName.ACCESS_PERMISSION_DENY,
                channel=principal.channel,
                outcome=outcome,
                reason=reason,
                actor=principal.id,
                operation=op,
            )
        )
        raise
