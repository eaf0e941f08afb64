"""The access service of a test deployment (`Harness`) and its fixtures: `harness` (allow-lists
set) and `admins` (two administrators). A pytest plugin of the suite (tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import OPERATOR, TENANT
from factories import People, Person
from sagevault.access import ALL_TENANTS, AccessCore, AccessService, LoginThrottle
from sagevault.access._login import REFUSED
from sagevault.deployment import Deployment
from sagevault.errors import AuthenticationFailed
from sagevault.identity import Principal
from sagevault.testing import ManualClock, fast_password_hashing

OFFICE = "198.51.100.7"  # inside the allow-list the fixture sets up
ELSEWHERE = "198.51.100.99"
OUTSIDE = "203.0.113.5"
PASSWORD = "Quartz-Fjord-7-Lantern"


class Harness:
    """The access service of a test deployment, with a clock the test moves and a fast password
    hasher (`test_passwords_are_hashed_with_argon2id_at_the_deployment_cost` checks the real one)."""

    def __init__(self, d: Deployment, clock: ManualClock, throttle: LoginThrottle | None = None) -> None:
        self.d = d
        self.clock = clock
        core = AccessCore(
            d.settings, d.keys, d.audit, tenants=d.vault, control=d.access.control, clock=clock, throttle=throttle
        )
        self.svc = AccessService(core, hasher=fast_password_hashing())
        self.people = People(self.svc, d.engine, clock, source=OFFICE)

    def tx(self) -> Any:
        return self.d.engine.begin()

    def enrol(self, conn: Any, enrolment: Any, password: str = PASSWORD) -> Person:
        return self.people.enrol(conn, enrolment, password)

    def person(
        self,
        login: str,
        *roles: str,
        tenants: tuple[str, ...] = (TENANT,),
        admin: Person | None = None,
        approver: Person | None = None,
    ) -> Person:
        """An enrolled person holding `roles` on `tenants`, added by the operator (or `admin`)."""
        return self.people.person(login, *roles, tenants=tenants, admin=admin, approver=approver)

    def login(self, person: Person, source: str = OFFICE, password: str | None = None, code: str | None = None) -> Any:
        with self.tx() as conn:
            attempt = self.svc.authn.login(
                conn, person.login, password or person.password, code or person.code(self.clock), source=source
            )
        self.clock.advance(seconds=30)
        return attempt.session()

    @staticmethod
    def as_principal(person: Person, source: str = OFFICE) -> Principal:
        return person.principal(source)

    def events(self, name: str, actor: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.d.audit.search(name=name) if actor is None or e["actor"] == actor]


def locked_out(h: Harness, person: Person, source: str = OFFICE) -> None:
    """The right password and a fresh code are refused as any failure is, and the event says why."""
    with pytest.raises(AuthenticationFailed) as refused:
        h.login(person, source=source)
    assert str(refused.value) == REFUSED
    assert h.events("access:login:failure", person.id)[-1]["reason"] == "account_locked"


@pytest.fixture
def harness(vault_tenant: Deployment, clock: ManualClock) -> Harness:
    h = Harness(vault_tenant, clock)
    with h.tx() as conn:
        h.svc.allowlists.add(conn, "198.51.100.0/25", actor=OPERATOR)
        h.svc.allowlists.add(conn, "2001:db8::/32", actor=OPERATOR)
    return h


@pytest.fixture
def admins(harness: Harness) -> tuple[Person, Person]:
    """Two administrators: the bootstrapped first one and a second added by the operator, its
    admin role asked for by the first and approved by the operator."""
    with harness.tx() as conn:
        first = harness.enrol(
            conn, harness.svc.accounts.bootstrap_admin(conn, "alice.ng", "alice@seller-tools.example", actor=OPERATOR)
        )
    harness.clock.advance(seconds=30)
    second = harness.person("bob.okafor")
    with harness.tx() as conn:  # the admin role is under the two-person rule too
        grant = harness.svc.grants.grant(conn, "bob.okafor", "admin", [ALL_TENANTS], actor=harness.as_principal(first))
        assert grant.status == "pending"
        harness.svc.grants.approve(conn, grant.id, actor=OPERATOR)
    return first, second
