"""The one function that decides every access, over an in-memory snapshot of the access state.

`AccessPolicy` is an immutable picture of principals, active grants, allow-lists, kill switches
and API keys at one *generation*. Every change to access state bumps the generation in the
database, so `AccessControl.policy(conn)` costs one primary-key read when nothing changed and
rebuilds the picture when something did: a disabled account, a revoked grant or a kill switch
takes effect on the next request in every process.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import overload

from sqlalchemy import select
from sqlalchemy.engine import Connection

from sagevault.catalog import Purpose
from sagevault.db import driver_cursor
from sagevault.errors import (
    AccessDenied,
    AccountDisabled,
    KillSwitchEngaged,
    NetworkDenied,
    PayloadError,
    PurposeNotAllowed,
)
from sagevault.identity import Principal, Scope

from ._model import ALL_TENANTS, DEPLOYMENT_SCOPES, PURPOSE_SCOPES, ROLES, SWITCHED
from ._network import LOOPBACK, Address, Network, contains, parse_address, parse_network
from ._schema import access_state, allowlist, api_keys, grants, kill_switches, principals


@dataclass(frozen=True, slots=True)
class Rule:
    """What one active grant gives, for one tenant (or "*")."""

    grant_id: str
    role: str
    scopes: frozenset[Scope]
    purposes: frozenset[Purpose]
    not_before: float | None
    not_after: float | None
    networks: tuple[Network, ...] | None  # the role's allow-list; None = no role restriction


@dataclass(frozen=True, slots=True)
class KeyEntry:
    principal_id: str
    secret_hash: bytes
    scopes: frozenset[str]
    expires_at: float


@dataclass(frozen=True)
class AccessPolicy:
    generation: int
    status: dict[str, str] = field(default_factory=dict)  # principal id -> status
    rules: dict[str, dict[str, tuple[Rule, ...]]] = field(default_factory=dict)  # principal -> tenant -> rules
    global_networks: tuple[Network, ...] = LOOPBACK
    principal_networks: dict[str, tuple[Network, ...]] = field(default_factory=dict)
    switches: frozenset[tuple[str, str]] = frozenset()  # (switch, tenant or "*") engaged
    keys: dict[str, KeyEntry] = field(default_factory=dict)
    # (principal, address) → `source_allowed`, remembered for this generation (a new one is a new policy)
    _allowed: dict[tuple[str | None, Address], bool] = field(default_factory=dict, compare=False, repr=False)

    def source_allowed(self, principal_id: str | None, address: Address) -> bool:
        """Inside the global allow-list and, when the principal has one, inside its own."""
        known = self._allowed.get((principal_id, address))
        if known is not None:
            return known
        own = self.principal_networks.get(principal_id or "")
        allowed = contains(self.global_networks, address) and (own is None or contains(own, address))
        if len(self._allowed) < _ALLOWED_KEPT:
            self._allowed[(principal_id, address)] = allowed
        return allowed

    def switched_off(self, scope: Scope, tenant_id: str | None) -> str | None:
        if not self.switches:
            return None
        for switch in SWITCHED.get(scope, ()):
            if (switch.value, ALL_TENANTS) in self.switches or (switch.value, tenant_id) in self.switches:
                return switch.value
        return None


@functools.lru_cache(maxsize=4096)
def address_of(value: str) -> Address:
    """A parsed source address (cached: the same few addresses come back on every request)."""
    return parse_address(value)


def decide(
    policy: AccessPolicy,
    principal: Principal,
    scope: Scope,
    tenant_id: str | None,
    *,
    purpose: Purpose | None = None,
    now: float | None = None,
) -> Rule | None:
    """Allow (returning the grant that allows, or None for the local operator) or raise.

    In order: kill switches (they stop everyone, the operator too); the local operator, who
    holds the master key, passes the rest; the account must be active; the source address must
    be inside the allow-lists; a grant covering the tenant, in its window, reachable from the
    source, must carry the scope; the API key (if any) must carry it too; and a scope that
    decrypts PII needs a purpose the granting role exists for.
    """
    switch = policy.switched_off(scope, tenant_id)
    if switch is not None:
        where = f"tenant {tenant_id}" if (switch, ALL_TENANTS) not in policy.switches and tenant_id else "all tenants"
        raise KillSwitchEngaged(
            f"{scope} is stopped: the {switch} kill switch is engaged for {where}; "
            f"`sagevault killswitch release {switch}` ends it"
        )
    if principal.kind == "operator":
        return None
    status = policy.status.get(principal.id)
    if status != "active":
        raise AccountDisabled(f"{principal.id} is {status or 'unknown'}; it may not act")
    if principal.source_ip is None:
        raise NetworkDenied(
            f"{principal.id} comes with no source address; a person or service is admitted only from an address "
            "inside the IP allow-lists (in-process callers pass source_ip='127.0.0.1')"
        )
    address = address_of(principal.source_ip)
    if not policy.source_allowed(principal.id, address):
        raise NetworkDenied(f"{principal.id} may not act from this address: it is outside the IP allow-lists")
    if principal.scopes is not None and scope.value not in principal.scopes:
        raise AccessDenied(f"this API key does not carry {scope}; issue one that does")
    by_tenant = policy.rules.get(principal.id)
    if not by_tenant:
        raise AccessDenied(f"{principal.id} holds no grants; an admin can grant a role with `sagevault grants add`")
    if tenant_id is None or scope in DEPLOYMENT_SCOPES:
        candidates = by_tenant.get(ALL_TENANTS, ())
    else:
        candidates = by_tenant.get(tenant_id or "", ()) + by_tenant.get(ALL_TENANTS, ())
    rule, purpose_refused = _first_rule(candidates, scope, purpose, time.time() if now is None else now, address)
    if rule is not None:
        return rule
    target = f"tenant {tenant_id}" if tenant_id and scope not in DEPLOYMENT_SCOPES else "this deployment"
    if purpose_refused:
        raise PurposeNotAllowed(
            f"{principal.id} may use {scope} on {target} only for the purposes its role exists for; "
            f"{purpose.value if purpose else 'no purpose'} is not one of them"
        )
    raise AccessDenied(f"{principal.id} lacks {scope} on {target}; ask an admin for a grant (`sagevault grants add`)")


def _first_rule(
    candidates: tuple[Rule, ...], scope: Scope, purpose: Purpose | None, when: float, address: Address
) -> tuple[Rule | None, bool]:
    """The first rule that gives `scope` now, from `address`, for `purpose`; and whether one
    would have, but for the purpose."""
    purpose_refused = False
    for rule in candidates:
        if scope not in rule.scopes:
            continue
        if (rule.not_before is not None and when < rule.not_before) or (
            rule.not_after is not None and when >= rule.not_after
        ):
            continue
        if rule.networks is not None and not contains(rule.networks, address):
            continue
        if scope in PURPOSE_SCOPES and (purpose is None or purpose not in rule.purposes):
            purpose_refused = True
            continue
        return rule, False
    return None, purpose_refused


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A time in UTC. A naive value is taken as UTC: SQLite hands timezone-aware columns back
    naive (they were written in UTC), and callers' times without a zone mean UTC too. (A naive
    value's .timestamp() would read it as the host's local time.)"""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def parse_time(value: str | None, option: str) -> datetime | None:
    """A time a person typed (ISO 8601; no zone means UTC), in UTC; `option` names where it came
    from in the error, which never repeats the value."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError(
            f"{option} is not a date or time; use ISO 8601 such as 2026-11-01 or 2026-11-01T08:00:00Z"
        ) from None
    try:  # 9999-12-31T23:59:59-23:59 parses, but its UTC instant lies past the last datetime
        return as_utc(parsed)
    except (OverflowError, ValueError):
        raise PayloadError(
            f"{option} is out of range in UTC; use a time between the years 0001 and 9999 such as 2026-11-01T08:00:00Z"
        ) from None


def _ts(value: datetime | None) -> float | None:
    return None if value is None else as_utc(value).timestamp()


def load_policy(conn: Connection) -> AccessPolicy:
    generation = conn.execute(select(access_state.c.generation).where(access_state.c.id == 1)).scalar_one()
    status = {r.id: r.status for r in conn.execute(select(principals.c.id, principals.c.status))}
    nets: dict[tuple[str, str], list[Network]] = {}
    for r in conn.execute(select(allowlist.c.scope, allowlist.c.target, allowlist.c.cidr)):
        nets.setdefault((r.scope, r.target), []).append(parse_network(r.cidr))
    rules: dict[str, dict[str, list[Rule]]] = {}
    for g in conn.execute(select(grants).where(grants.c.status == "active")):
        role = ROLES.get(g.role)
        if role is None or status.get(g.principal_id) != "active":
            continue
        role_nets = nets.get(("role", g.role))
        rule = Rule(
            g.id,
            g.role,
            role.scopes,
            role.purposes,
            _ts(g.not_before),
            _ts(g.not_after),
            tuple(role_nets) if role_nets is not None else None,
        )
        for tenant in g.tenants:
            rules.setdefault(g.principal_id, {}).setdefault(tenant, []).append(rule)
    keys = {
        k.id: KeyEntry(k.principal_id, bytes(k.secret_hash), frozenset(k.scopes), _ts(k.expires_at) or 0.0)
        for k in conn.execute(select(api_keys).where(api_keys.c.revoked_at.is_(None)))
    }
    switches = frozenset(
        (s.name, s.tenant_id) for s in conn.execute(select(kill_switches).where(kill_switches.c.engaged.is_(True)))
    )
    return AccessPolicy(
        generation=generation,
        status=status,
        rules={p: {t: tuple(rs) for t, rs in by_t.items()} for p, by_t in rules.items()},
        global_networks=tuple(nets.get(("global", ""), ())) or LOOPBACK,
        principal_networks={target: tuple(n) for (scope, target), n in nets.items() if scope == "principal"},
        switches=switches,
        keys=keys,
    )


_GENERATION = "SELECT generation FROM access_state WHERE id = 1"
_ALLOWED_KEPT = 8192  # source verdicts kept per policy generation


_SEEN = "sagevault_generation"  # conn.info: (transaction, generation) of the last read
_HELD = "sagevault_generation_held"  # conn.info: the generation is read once while this is set (`one_generation`)


@contextmanager
def one_generation(conn: Connection) -> Iterator[None]:
    """Within the block, decisions on `conn` share one read of the generation, on PostgreSQL too
    (SQLite always does, per transaction). For checks made back to back that are one step to a
    person: a request's source and credential. After the block, the next decision reads it again."""
    if conn.info.get(_HELD):
        yield
        return
    conn.info[_HELD] = True
    try:
        yield
    finally:
        conn.info.pop(_HELD, None)
        if conn.dialect.name != "sqlite":
            conn.info.pop(_SEEN, None)


def _generation(conn: Connection) -> int:
    """The current policy generation. On SQLite it is read once per unit of work (every request
    is one) and remembered for the rest of that transaction: a read transaction is a snapshot
    and a writing one holds the write lock, so reading it again would give the same answer.
    `forget_generation` drops it when the transaction changes access state itself. PostgreSQL
    reads committed data statement by statement, so there every decision reads it again: a kill
    switch engaged while a request runs stops that request's next decision (the reveal reads it
    in the statement that reads the order's rows: `AccessControl.state_query`). Once the transaction
    has begun, the read goes straight to the driver's cursor on the same connection (and so in
    the same transaction): SQLAlchemy's result handling would cost more than the query itself."""
    txn = conn.get_transaction()
    seen = conn.info.get(_SEEN)
    if txn is not None and seen is not None and seen[0] is txn:
        return int(seen[1])
    if txn is None:
        generation = int(conn.exec_driver_sql(_GENERATION).scalar_one())  # begins the transaction
    else:
        with driver_cursor(conn, _GENERATION) as cursor:
            cursor.execute(_GENERATION)
            row = cursor.fetchone()
        if row is None:
            raise LookupError("access_state has no row; run the migrations (`sagevault init` or open the deployment)")
        generation = int(row[0])
    if conn.dialect.name == "sqlite" or conn.info.get(_HELD):
        conn.info[_SEEN] = (conn.get_transaction(), generation)
    return generation


def forget_generation(conn: Connection) -> None:
    """After this transaction changed the generation: its next decision reads it again."""
    conn.info.pop(_SEEN, None)


class AccessControl:
    """The vault's gate: every vault operation asks `check`, which asks `decide`."""

    # The policy generation as a scalar subquery: a caller that reads it within a statement of its
    # own (the reveal, with the order's rows) passes it to `check` as `state`, which then decides
    # at that generation instead of reading it in a statement of its own.
    state_query: str | None = f"({_GENERATION})"

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock
        self._policy: AccessPolicy | None = None
        self._lock = threading.Lock()

    def policy(self, conn: Connection, state: int | None = None) -> AccessPolicy:
        """The policy at the current generation (`state`: as the caller read it, see `state_query`)."""
        current = self._policy
        generation = _generation(conn) if state is None else state
        if current is not None and current.generation == generation:
            return current
        with self._lock:
            fresh = load_policy(conn)
            self._policy = fresh
            return fresh

    def check(
        self,
        conn: Connection,
        principal: Principal,
        scope: Scope,
        tenant_id: str | None,
        *,
        purpose: Purpose | None = None,
        fields: Collection[str] = (),
        state: int | None = None,
    ) -> None:
        now = self._clock().timestamp() if self._clock is not None else None
        decide(self.policy(conn, state), principal, scope, tenant_id, purpose=purpose, now=now)
