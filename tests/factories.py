"""One way to make "a person with a role": enrolled (password and TOTP), granted roles on tenants,
sensitive grants approved by a second party. TOTP codes come from the deployment's clock, a
`ManualClock`, which the factory moves past every step it uses: no test waits for a 30-second
boundary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyotp
from sqlalchemy import Engine

from sagevault.access import AccessService
from sagevault.identity import Channel, Principal
from sagevault.testing import ManualClock

PASSWORD = "Quartz-Fjord-7-Lantern"
OPERATOR = Principal(id="operator:test", kind="operator")


@dataclass
class Person:
    login: str
    id: str
    password: str
    totp: pyotp.TOTP
    recovery: list[str]

    def code(self, clock: ManualClock) -> str:
        return self.totp.at(clock())

    def principal(self, source: str = "127.0.0.1", channel: Channel = Channel.API) -> Principal:
        return Principal(self.id, "person", channel, source)


class People:
    def __init__(self, access: AccessService, engine: Engine, clock: ManualClock, source: str = "127.0.0.1") -> None:
        self.access = access
        self.engine = engine
        self.clock = clock
        self.source = source  # where the people act from (inside the allow-lists of the test)

    def enrol(self, conn: Any, enrolment: Any, password: str = PASSWORD) -> Person:
        setup = self.access.enrolment.begin(conn, enrolment.login, enrolment.secret)
        totp = pyotp.TOTP(setup.secret)
        codes = self.access.enrolment.finish(conn, enrolment.login, enrolment.secret, password, totp.at(self.clock()))
        return Person(enrolment.login, enrolment.principal_id, password, totp, codes)

    def bootstrap_admin(self, login: str = "alice.ng") -> Person:
        with self.engine.begin() as conn:
            made = self.access.accounts.bootstrap_admin(conn, login, f"{login}@seller-tools.example", actor=OPERATOR)
            person = self.enrol(conn, made)
        self.clock.advance(seconds=30)  # the enrolment's TOTP step is used
        return person

    def person(
        self,
        login: str,
        *roles: str,
        tenants: tuple[str, ...] | list[str] = ("A1TESTSELLER01",),
        admin: Person | None = None,
        approver: Person | None = None,
    ) -> Person:
        """An enrolled person holding `roles` on `tenants`, added by the operator (or `admin`);
        roles under the two-person rule are approved by `approver`."""
        with self.engine.begin() as conn:
            actor = admin.principal(self.source) if admin else OPERATOR
            enrolment = self.access.accounts.add_person(
                conn, login, f"{login}@seller-tools.example", manager=None, actor=actor
            )
            person = self.enrol(conn, enrolment)
            for role in roles:
                g = self.access.grants.grant(conn, login, role, list(tenants), actor=OPERATOR)
                if g.status == "pending":
                    assert approver is not None, f"{role} needs a second admin"
                    self.access.grants.approve(conn, g.id, actor=approver.principal(self.source))
        self.clock.advance(seconds=30)
        return person

    def next_code(self, person: Person) -> str:
        """A code for the next log-in: newer than the last one used (each works once)."""
        self.clock.advance(seconds=30)
        return person.code(self.clock)
