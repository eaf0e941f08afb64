"""Every vault operation is a security event: `audited` records the success (with record ids
and counts taken from the result) before the result is handed back, or the refusal or failure
with its reason code. `gated` is the gate alone, for the few reads that are not audited as a
whole: their refusal is recorded."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, AuditSink, EventName, outcome_of
from sagevault.errors import AccessDenied, AuditError, SageVaultError
from sagevault.identity import Principal, Scope, event_tenant

from ._access import AccessGate


class Audited(Protocol):
    """What an audited service holds: where its events go and the gate it asks."""

    _audit: AuditSink
    _gate: AccessGate


S = TypeVar("S", bound=Audited)
P = ParamSpec("P")
R = TypeVar("R")
Details = Callable[[Any], tuple[Sequence[int], dict[str, int]]]
Method = Callable[Concatenate[S, Connection, str, P], R]


def _no_details(_result: Any) -> tuple[Sequence[int], dict[str, int]]:
    return (), {}


def audited(
    name: EventName, operation: str, details: Details = _no_details
) -> Callable[[Method[S, P, R]], Method[S, P, R]]:
    """Record a security event for every call of a method `(self, conn, tenant_id, ..., principal=)`.
    If the event cannot be made durable, the caller gets AuditUnavailable instead of the result."""

    def wrap(method: Method[S, P, R]) -> Method[S, P, R]:
        def run(self: S, conn: Connection, tenant_id: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
            principal = kwargs["principal"]
            assert isinstance(principal, Principal)
            with refusals_recorded(self, name, principal, tenant_id, operation):
                result = method(self, conn, tenant_id, *args, **kwargs)
            ids, counts = details(result)
            self._audit.record(
                AuditEvent(
                    name=name,
                    channel=principal.channel,
                    actor=principal.id,
                    tenant_id=event_tenant(tenant_id),
                    record_ids=list(ids),
                    counts=counts,
                    operation=operation,
                )
            )
            return result

        functools.update_wrapper(run, method)
        return run

    return wrap


def checked_first(name: EventName, operation: str) -> Callable[[Method[S, P, None]], Method[S, P, None]]:
    """For the check an operation makes before its input is read: a refusal is recorded as the
    operation's would be (`audited`); a pass records nothing (the operation records itself)."""

    def wrap(method: Method[S, P, None]) -> Method[S, P, None]:
        def run(self: S, conn: Connection, tenant_id: str, /, *args: P.args, **kwargs: P.kwargs) -> None:
            principal = kwargs["principal"]
            assert isinstance(principal, Principal)
            with refusals_recorded(self, name, principal, tenant_id, operation):
                method(self, conn, tenant_id, *args, **kwargs)

        functools.update_wrapper(run, method)
        return run

    return wrap


@contextmanager
def refusals_recorded(
    service: Audited, name: EventName, principal: Principal, tenant_id: str, operation: str
) -> Iterator[None]:
    """A refusal or failure of the block (not an audit error) is recorded as `name`'s
    (access:permission:deny for an access refusal), then raised."""
    try:
        yield
    except AuditError:
        raise
    except SageVaultError as exc:
        event = EventName.ACCESS_PERMISSION_DENY if isinstance(exc, AccessDenied) else name
        service._audit.record(refusal(event, exc, principal, tenant_id, operation))
        raise


def refusal(
    name: EventName, error: SageVaultError, principal: Principal, tenant_id: str | None, operation: str
) -> AuditEvent:
    """The event that records a refused or failed operation."""
    outcome, reason = outcome_of(error)
    return AuditEvent(
        name=name,
        channel=principal.channel,
        outcome=outcome,
        reason=reason,
        actor=principal.id,
        tenant_id=event_tenant(tenant_id),
        operation=operation,
    )


def gated(
    service: Audited, conn: Connection, principal: Principal, scope: Scope, tenant_id: str | None, *, operation: str
) -> None:
    """Ask the gate; a refusal is recorded (access:permission:deny), then raised."""
    try:
        service._gate.check(conn, principal, scope, tenant_id)
    except AccessDenied as exc:
        service._audit.record(refusal(EventName.ACCESS_PERMISSION_DENY, exc, principal, tenant_id, operation))
        raise
