"""The two-person rule against a single administrator, by every ordering of the steps.

Two admins, alice and bob. Whoever adds or resets an account sees its enrolment secret and can
enrol as the person; whoever issues a service's API key holds it. Whatever the order of adding,
resetting, asking for a grant, approving it and enrolling, and whichever admin does each step,
the account's credential ends in one admin's hands, so it must never reach PII. The same with a
third party (the local operator) must work, or the rule would only be a wall."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from access_harness import PASSWORD, Harness
from conftest import OPERATOR, TENANT
from factories import Person
from sagevault.access._accounts import Enrolment
from sagevault.catalog import Purpose
from sagevault.errors import AccessDenied
from sagevault.identity import Principal, Scope


def _orderings() -> Iterator[tuple[str, ...]]:
    """Every order of the steps after the account is added, with and without a reset."""
    for steps in (("reset", "request", "approve", "enrol"), ("request", "approve", "enrol")):
        yield from itertools.permutations(steps)


class Scenario:
    """One ordering of the steps on a new account, each taken by `actors[step]`."""

    def __init__(self, h: Harness, admins: dict[str, Principal], login: str, actors: dict[str, str]) -> None:
        self.h, self.admins, self.login, self.actors = h, admins, login, actors
        self.enrolment: Enrolment | None = None
        self.holder: str | None = None  # who holds the live enrolment secret
        self.person: Person | None = None  # enrolled with the live secret (by its holder)
        self.grant_id: str | None = None
        self.refusals: list[str | None] = []  # reasons the steps were refused for
        self.enrolled = 0

    def by(self, step: str) -> Principal:
        return self.admins[self.actors[step]]

    def add(self, conn: Any) -> None:
        self.enrolment = self.h.svc.accounts.add_person(
            conn, self.login, f"{self.login}@seller-tools.example", manager=None, actor=self.by("add")
        )
        self.holder = self.actors["add"]

    def reset(self, conn: Any) -> None:
        self.enrolment = self.h.svc.accounts.reset(conn, self.login, actor=self.by("reset"))
        self.holder, self.person = self.actors["reset"], None

    def request(self, conn: Any) -> None:
        try:
            self.grant_id = self.h.svc.grants.grant(
                conn, self.login, "fulfilment", [TENANT], actor=self.by("request")
            ).id
        except AccessDenied as refused:
            self.refusals.append(refused.reason)

    def approve(self, conn: Any) -> None:
        if self.grant_id is None:
            return  # nothing asked for yet
        try:
            self.h.svc.grants.approve(conn, self.grant_id, actor=self.by("approve"))
        except AccessDenied as refused:
            self.refusals.append(refused.reason)

    def enrol(self, conn: Any) -> None:
        assert self.enrolment is not None
        self.enrolled += 1  # a new password each time (an old one is in the history), a step later
        self.h.clock.advance(seconds=30)
        self.person = self.h.enrol(conn, self.enrolment, password=f"{PASSWORD}-{self.enrolled}")

    def reaches_pii(self, conn: Any) -> bool:
        if self.person is None:
            return False
        try:
            self.h.svc.core.authorize(
                conn, self.h.as_principal(self.person), Scope.PII_REVEAL, TENANT, purpose=Purpose.FULFILMENT
            )
        except AccessDenied:
            return False
        return True


def _play(h: Harness, admins: dict[str, Principal], n: int, order: tuple[str, ...], actors: dict[str, str]) -> bool:
    scenario = Scenario(h, admins, f"new.hire{n}", actors)
    steps: dict[str, Callable[[Any], None]] = {
        "reset": scenario.reset,
        "request": scenario.request,
        "approve": scenario.approve,
        "enrol": scenario.enrol,
    }
    with h.d.engine.connect() as conn, conn.begin() as tx:  # rolled back: each scenario starts afresh
        scenario.add(conn)
        for step in order:
            steps[step](conn)
        assert set(scenario.refusals) <= {"two_person_rule"}
        reached = scenario.reaches_pii(conn)
        tx.rollback()
    return reached


# 432 scenarios: on SQLite only (the rule's queries are the same on both; the tests below run on
# PostgreSQL too).
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_no_ordering_of_steps_by_two_admins_lets_one_of_them_reach_pii(
    harness: Harness, admins: tuple[Person, Person]
) -> None:
    people = {"alice": harness.as_principal(admins[0]), "bob": harness.as_principal(admins[1])}
    played = 0
    for order in _orderings():
        steps = ("add", *(s for s in order if s != "enrol"))
        for who in itertools.product(people, repeat=len(steps)):
            actors = dict(zip(steps, who, strict=True))
            assert not _play(harness, people, played, order, actors), (order, actors)
            played += 1
    assert played == 24 * 16 + 6 * 8


def test_with_a_third_party_the_same_steps_give_the_new_hire_access(
    harness: Harness, admins: tuple[Person, Person]
) -> None:
    """The operator adds and alice asks, bob approves; or alice adds, bob asks and the operator
    approves: three parties, and the account reaches PII (the rule is not a wall)."""
    people = {
        "alice": harness.as_principal(admins[0]),
        "bob": harness.as_principal(admins[1]),
        "operator": OPERATOR,
    }
    order = ("request", "approve", "enrol")
    assert _play(harness, people, 0, order, {"add": "operator", "request": "alice", "approve": "bob"})
    assert _play(harness, people, 1, order, {"add": "alice", "request": "bob", "approve": "operator"})
    # ... and a reset by one admin after the grant takes it away until a party other than the
    # resetter and the asker approves again.
    assert not _play(
        harness,
        people,
        2,
        (*order, "reset", "enrol"),
        {"add": "operator", "request": "alice", "approve": "bob", "reset": "bob"},
    )


@pytest.mark.parametrize("order", list(itertools.permutations(("issue", "request", "approve"))))
def test_no_ordering_lets_the_admin_who_issued_a_services_key_use_it_for_pii(
    harness: Harness, admins: tuple[Person, Person], order: tuple[str, ...]
) -> None:
    people = {"alice": harness.as_principal(admins[0]), "bob": harness.as_principal(admins[1])}
    for n, who in enumerate(itertools.product(people, repeat=3)):
        actors = dict(zip(("issue", "request", "approve"), who, strict=True))
        login = f"label-printer{n}"
        key = None
        grant_id = None
        refusals: list[str | None] = []
        with harness.tx() as conn:
            harness.svc.accounts.add_service(
                conn, login, owner="alice.ng", purpose="prints shipping labels", actor=OPERATOR
            )
            for step in order:
                actor = people[actors[step]]
                try:
                    if step == "issue":
                        key = harness.svc.api_keys.issue(
                            conn, login, scopes=["pii:reveal", "records:read"], actor=actor
                        )
                    elif step == "request":
                        grant_id = harness.svc.grants.grant(conn, login, "fulfilment", [TENANT], actor=actor).id
                    elif grant_id is not None:
                        harness.svc.grants.approve(conn, grant_id, actor=actor)
                except AccessDenied as refused:
                    refusals.append(refused.reason)
            assert key is not None and set(refusals) <= {"two_person_rule"}
            service = harness.svc.api_keys.verify(conn, key.token, source="198.51.100.7")
            with pytest.raises(AccessDenied):
                harness.svc.core.authorize(conn, service, Scope.PII_REVEAL, TENANT, purpose=Purpose.FULFILMENT)
