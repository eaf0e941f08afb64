"""Grants: a role for a set of tenants, optionally in a time window, and the two-person rule
(a role that reaches PII, keys or account administration waits for a second party)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import EventName, Reason
from sagevault.errors import AccessDenied, AccessError, Conflict, NotFound, SageVaultError, shown
from sagevault.identity import Principal, Scope, event_tenant

from ._core import AccessCore, new_id
from ._model import ROLES
from ._policy import as_utc
from ._schema import api_keys, grants, principals


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


def insert_grant(
    core: AccessCore,
    conn: Connection,
    principal_id: str,
    role: str,
    tenant_ids: Sequence[str],
    not_before: datetime | None,
    not_after: datetime | None,
    status: str,
    requested_by: str,
    approved_by: str | None,
) -> str:
    grant_id = new_id("grt")
    conn.execute(
        insert(grants).values(
            id=grant_id,
            principal_id=principal_id,
            role=role,
            tenants=list(tenant_ids),
            not_before=not_before,
            not_after=not_after,
            status=status,
            requested_by=requested_by,
            approved_by=approved_by,
            created_at=core.now(),
        )
    )
    return grant_id


def issued_by(actor: Principal) -> str | None:
    """What `credential_issued_by` records for a credential `actor` hands out: the local operator
    (and its jobs) holds the master key and could read everything anyway, so it is no party."""
    return None if actor.kind == "operator" else actor.id


def credential_issuers(conn: Connection, principal_id: str, now: datetime) -> set[str]:
    """Who could act as the principal with a credential they handed out: the admin who saw a
    person's live enrolment secret, the admins who issued a service's live keys that reach PII,
    keys or administration. The two-person rule keeps them out of its sensitive grants."""
    person = conn.execute(
        select(principals.c.credential_issued_by).where(principals.c.id == principal_id)
    ).scalar_one_or_none()
    issuers = {person} if person else set()
    keys = conn.execute(
        select(api_keys.c.created_by, api_keys.c.scopes, api_keys.c.expires_at).where(
            api_keys.c.principal_id == principal_id, api_keys.c.revoked_at.is_(None)
        )
    )
    for created_by, scopes, expires_at in keys:
        live = (as_utc(expires_at) or now) > now
        if live and not created_by.startswith(_OPERATORS) and any(Scope(s).sensitive for s in scopes):
            issuers.add(created_by)
    return issuers


_OPERATORS = ("operator:", "job:")


def rearm_two_person_rule(conn: Connection, principal_id: str, actor: Principal, *, issued: bool) -> int:
    """Put the principal's active sensitive grants back to pending, for a second party to approve
    again. `issued`: `actor` handed out a new credential (an enrolment secret, an API key) and
    could act as the principal, so it can neither approve nor have asked (`Grants.approve`);
    otherwise (re-enabling) `actor` becomes the grants' requester. Not when the actor is the local
    operator: holding the master key, the operator could read everything anyway, and re-arming
    would strand an only admin with nobody to approve."""
    if actor.kind == "operator":
        return 0
    sensitive = [name for name, role in ROLES.items() if role.sensitive]
    again: dict[str, Any] = {"status": "pending", "approved_by": None}
    if not issued:
        again["requested_by"] = actor.id
    return conn.execute(
        update(grants)
        .where(grants.c.principal_id == principal_id, grants.c.status == "active", grants.c.role.in_(sensitive))
        .values(**again)
    ).rowcount


# Said with every refusal of the two-person rule.
_TWO_PARTIES = (
    "PII, keys and administration need an admin who asks and a second admin (or the local operator) "
    "who approves, neither the grantee nor whoever issued its enrolment secret or API key"
)


class Grants:
    def __init__(self, core: AccessCore) -> None:
        self._core = core

    def grant(
        self,
        conn: Connection,
        login: str,
        role: str,
        tenant_ids: Sequence[str],
        *,
        actor: Principal,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> GrantInfo:
        """Grant `role` on `tenant_ids` ("*" = all). Roles that reach PII or keys wait for a
        second party (`approve`); nobody grants themself anything."""
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        row = core.row(conn, login)
        not_before, not_after = as_utc(not_before), as_utc(not_after)
        error: SageVaultError | None = None
        if row.id == actor.id:
            error = AccessDenied("you cannot grant yourself a role; another admin must", reason="self_grant")
        elif role not in ROLES:
            error = AccessError(f"no role {shown(role)}; roles: {', '.join(ROLES)}")
        elif ROLES[role].sensitive and actor.id in credential_issuers(conn, row.id, core.now()):
            error = AccessDenied(
                f"you issued {row.login}'s enrolment secret or API key, so you could act as {row.login}: "
                f"{_TWO_PARTIES}",
                reason="two_person_rule",
            )
        elif row.status == "disabled":
            error = Conflict(f"{row.login} is disabled; enable it first")
        elif not tenant_ids:
            error = AccessError("name the tenants (--tenant ID, repeatable) or '*' for all")
        elif not_after is not None and not_after <= (not_before or core.now()):
            error = AccessError("the grant's window ends before it starts (or in the past)")
        else:
            error = core.check_tenants(conn, tenant_ids)
        if error is not None:
            raise core.refuse(conn, EventName.ACCESS_GRANT_CREATE, actor, error)
        pending = ROLES[role].sensitive
        status = "pending" if pending else "active"
        grant_id = insert_grant(
            core, conn, row.id, role, sorted(set(tenant_ids)), not_before, not_after, status, actor.id, None
        )
        core.changed(conn)
        core.event(
            conn,
            EventName.ACCESS_GRANT_CREATE,
            actor,
            operation=f"grant {role}",
            reason=Reason.TWO_PERSON_RULE if pending else Reason.NONE,
            tenant_id=event_tenant(tenant_ids[0]) if len(tenant_ids) == 1 else None,
        )
        return self._info(conn, grant_id)

    def approve(self, conn: Connection, grant_id: str, *, actor: Principal) -> GrantInfo:
        """A second party's approval of a pending grant: an admin or the local operator, never
        the requester or the grantee."""
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        g = conn.execute(select(grants).where(grants.c.id == grant_id)).first()
        if g is None:
            raise NotFound(f"no grant {shown(grant_id)}; see `sagevault grants list --pending`")
        if g.status != "pending":
            raise Conflict(
                f"grant {shown(grant_id)} is {g.status}, no longer pending, so there is nothing to approve; "
                "see `sagevault grants list --pending`"
            )
        issuers = credential_issuers(conn, g.principal_id, core.now())
        refusal: str | None = None
        if actor.kind == "service" or actor.id in (g.requested_by, g.principal_id):
            refusal = f"you asked for this grant or receive it: {_TWO_PARTIES}"
        elif actor.id in issuers:
            refusal = f"you issued the grantee's enrolment secret or API key, so you could act as it: {_TWO_PARTIES}"
        elif g.requested_by in issuers:
            refusal = (
                "whoever asked for this grant issued the grantee's enrolment secret or API key; revoke it and "
                f"have another admin ask: {_TWO_PARTIES}"
            )
        if refusal is not None:
            raise core.refuse(
                conn, EventName.ACCESS_GRANT_APPROVE, actor, AccessDenied(refusal, reason="two_person_rule")
            )
        conn.execute(update(grants).where(grants.c.id == grant_id).values(status="active", approved_by=actor.id))
        core.changed(conn)
        core.event(conn, EventName.ACCESS_GRANT_APPROVE, actor, operation=f"grant {g.role}")
        return self._info(conn, grant_id)

    def revoke(self, conn: Connection, grant_id: str, *, actor: Principal) -> None:
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        done = conn.execute(
            update(grants)
            .where(grants.c.id == grant_id, grants.c.status != "revoked")
            .values(status="revoked", revoked_at=core.now())
        ).rowcount
        if not done:
            if conn.execute(select(grants.c.id).where(grants.c.id == grant_id)).first() is None:
                raise NotFound(f"no grant {shown(grant_id)}; see `sagevault grants list`")
            raise Conflict(f"grant {shown(grant_id)} is revoked already; nothing to do")
        core.changed(conn)
        core.event(conn, EventName.ACCESS_GRANT_REVOKE, actor)

    def list(
        self, conn: Connection, *, actor: Principal, login: str | None = None, pending: bool = False
    ) -> list[GrantInfo]:
        """Live grants (pending and active), oldest first; of one account, or only pending ones."""
        self._core.authorize(conn, actor, Scope.USERS_ADMIN)
        query = select(grants.c.id).where(grants.c.status != "revoked").order_by(grants.c.created_at)
        if login is not None:
            query = query.where(grants.c.principal_id == self._core.row(conn, login).id)
        if pending:
            query = query.where(grants.c.status == "pending")
        return [self._info(conn, gid) for gid in conn.execute(query).scalars()]

    @staticmethod
    def _info(conn: Connection, grant_id: str) -> GrantInfo:
        g = conn.execute(
            select(grants, principals.c.login)
            .join(principals, principals.c.id == grants.c.principal_id)
            .where(grants.c.id == grant_id)
        ).one()
        return GrantInfo(
            g.id,
            g.principal_id,
            g.login,
            g.role,
            tuple(g.tenants),
            g.status,
            as_utc(g.not_before),
            as_utc(g.not_after),
            g.requested_by,
            g.approved_by,
        )
