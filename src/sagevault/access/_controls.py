"""Network controls: IP allow-lists (global, per role, per account) and kill switches (stop PII
access, SP-API sync or exports at once, for one tenant or all). Both take effect on the next
decision in every process and survive restarts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import EventName
from sagevault.errors import AccessError, Conflict, NetworkDenied, NotFound, shown
from sagevault.identity import Channel, Principal, Scope, event_tenant

from ._core import AccessCore, new_id
from ._model import ALL_TENANTS, ROLES, KillSwitch
from ._network import overlapping, parse_address, parse_network
from ._policy import as_utc
from ._schema import allowlist, kill_switches


@dataclass(frozen=True, slots=True)
class AllowEntry:
    id: str
    scope: str  # global | role | principal
    target: str  # "" | the role's name | the principal's id
    cidr: str


class AllowLists:
    def __init__(self, core: AccessCore) -> None:
        self._core = core

    def add(
        self, conn: Connection, cidr: str, *, actor: Principal, role: str | None = None, login: str | None = None
    ) -> AllowEntry:
        """Add a network to the global allow-list, a role's, or one principal's."""
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        if role is not None and login is not None:
            raise AccessError("an allow-list entry is for a role or for a principal, not both")
        scope, target = "global", ""
        if role is not None:
            if role not in ROLES:
                raise AccessError(f"no role {shown(role)}; roles: {', '.join(ROLES)}")
            scope, target = "role", role
        elif login is not None:
            scope, target = "principal", core.row(conn, login).id
        try:
            network = parse_network(cidr)
            existing = [
                parse_network(r.cidr)
                for r in conn.execute(select(allowlist).where(allowlist.c.scope == scope, allowlist.c.target == target))
            ]
            clash = overlapping(network, existing)
            if clash is not None:
                raise Conflict(f"{network} overlaps {clash}, already on this allow-list; remove one or merge them")
        except AccessError as exc:
            raise core.refuse(conn, EventName.ACCESS_ALLOWLIST_ADD, actor, exc) from None
        entry_id = new_id("net")
        conn.execute(
            insert(allowlist).values(
                id=entry_id, scope=scope, target=target, cidr=str(network), created_at=core.now(), created_by=actor.id
            )
        )
        core.changed(conn)
        core.event(conn, EventName.ACCESS_ALLOWLIST_ADD, actor)
        return AllowEntry(entry_id, scope, target, str(network))

    def remove(self, conn: Connection, entry_id: str, *, actor: Principal) -> None:
        core = self._core
        core.authorize(conn, actor, Scope.USERS_ADMIN)
        if not conn.execute(delete(allowlist).where(allowlist.c.id == entry_id)).rowcount:
            raise NotFound(f"no allow-list entry {shown(entry_id)}; see `sagevault allowlist list`")
        core.changed(conn)
        core.event(conn, EventName.ACCESS_ALLOWLIST_REMOVE, actor)

    def list(self, conn: Connection, *, actor: Principal) -> list[AllowEntry]:
        self._core.authorize(conn, actor, Scope.USERS_ADMIN)
        rows = conn.execute(select(allowlist).order_by(allowlist.c.scope, allowlist.c.target, allowlist.c.cidr))
        return [AllowEntry(r.id, r.scope, r.target, r.cidr) for r in rows]

    def admit_source(self, conn: Connection, source: str, *, channel: Channel = Channel.API) -> str:
        """Let a request that carries no credential yet (enrolment) go on only from inside the
        global allow-list; a refusal is recorded as access:network:deny. Returns the address."""
        core = self._core
        address = parse_address(source)
        if not core.policy(conn).source_allowed(None, address):
            raise core.refuse(
                conn,
                EventName.ACCESS_NETWORK_DENY,
                None,
                NetworkDenied("requests from this address are not allowed: it is outside the IP allow-list"),
                source=str(address),
                channel=channel,
            )
        return str(address)


class KillSwitches:
    def __init__(self, core: AccessCore) -> None:
        self._core = core

    def set(
        self,
        conn: Connection,
        name: str,
        engaged: bool,
        *,
        actor: Principal,
        tenant_id: str | None = None,
        operation: str | None = None,
    ) -> None:
        """Engage or release a kill switch for one tenant or all. It takes effect on the next
        decision in every process, and stays until released (restarts included). `operation`
        names what it was done for in the event (an incident)."""
        core = self._core
        try:
            switch = KillSwitch(name)
        except ValueError:
            names = ", ".join(k.value for k in KillSwitch)
            raise AccessError(f"no kill switch {shown(name)}; switches: {names}") from None
        target = tenant_id or ALL_TENANTS
        core.authorize(conn, actor, Scope.KILLSWITCH_OPERATE, None if target == ALL_TENANTS else target)
        if target != ALL_TENANTS:
            error = core.check_tenants(conn, [target])
            if error is not None and error.reason != "tenant_shredded":
                raise error
        now = core.now()
        done = conn.execute(
            update(kill_switches)
            .where(kill_switches.c.name == switch.value, kill_switches.c.tenant_id == target)
            .values(engaged=engaged, changed_at=now, changed_by=actor.id)
        ).rowcount
        if not done:
            conn.execute(
                insert(kill_switches).values(
                    name=switch.value, tenant_id=target, engaged=engaged, changed_at=now, changed_by=actor.id
                )
            )
        core.changed(conn)
        core.event(
            conn,
            EventName.ACCESS_KILLSWITCH_ENGAGE if engaged else EventName.ACCESS_KILLSWITCH_RELEASE,
            actor,
            tenant_id=event_tenant(None if target == ALL_TENANTS else target),
            operation=operation,
        )

    def list(self, conn: Connection, *, actor: Principal) -> list[tuple[str, str, bool, datetime]]:
        """Every switch ever flipped: (name, tenant or "*", engaged, changed at)."""
        core = self._core
        core.authorize(conn, actor, Scope.KILLSWITCH_OPERATE)
        rows = conn.execute(select(kill_switches).order_by(kill_switches.c.name, kill_switches.c.tenant_id))
        return [(r.name, r.tenant_id, bool(r.engaged), as_utc(r.changed_at) or core.now()) for r in rows]
