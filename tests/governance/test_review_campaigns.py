"""Access-review campaigns (DPP 6), on SQLite and PostgreSQL, with an injected clock: a 90-day
campaign end to end (the overdue alarm when none started, reminders, decisions by a reviewer who is
not the subject, the default applied by the job at the due date, the last admin never revoked,
revocations audited by access, the signed export verifying and a one-byte change not); bad input
refused clearly; the default "none" (left open and overdue); nobody reviewing access they own or
that owns them, nor closing over it; the cadence kept from one start to the next; two revocations at
once never removing the last admin; leavers recommended revoke."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from conftest import OPERATOR, TENANT
from factories import People, Person
from sagevault.access._schema import grants
from sagevault.audit import load_public_key
from sagevault.catalog import Purpose
from sagevault.deployment import Deployment
from sagevault.errors import AccessDenied, Conflict, NotFound, PayloadError
from sagevault.governance._reviews import BY_DEFAULT, verify_report
from sagevault.identity import Channel, Principal
from sagevault.jobs import BUILTIN, Jobs, Watch, _gov_reviews
from sagevault.testing import ManualClock, fast_password_hashing, generate_orders, get_orders_response
from sagevault.vault import Operation

ORDERS = list(generate_orders(2, seed=3))
JOB = "access-review-campaigns"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def d(deployment_at, clock: ManualClock) -> Deployment:
    made: Deployment = deployment_at(clock=clock, event_clock=clock, hasher=fast_password_hashing())
    with made.unit_of_work() as conn:
        made.vault.add_tenant(conn, TENANT, ["ATVPDKIKX0DER"], principal=OPERATOR)
        made.vault.ingest(conn, TENANT, [get_orders_response(ORDERS)], Operation.GET_ORDERS, principal=OPERATOR)
    return made


class Staff:
    """alice (the only admin), bob (compliance: the reviewer), carol (fulfilment, reveals PII),
    dave (viewer, idle), erin (viewer, a leaver: disabled), and the label-printer service with a key."""

    def __init__(self, d: Deployment, clock: ManualClock) -> None:
        people = People(d.access, d.engine, clock)
        self.alice = people.bootstrap_admin("alice.ng")
        self.bob = people.person("bob.review", "compliance", tenants=["*"], approver=self.alice)
        self.carol = people.person("carol.pack", "fulfilment", approver=self.alice)
        self.dave = people.person("dave.idle", "viewer")
        self.erin = people.person("erin.leaving", "viewer")
        with d.unit_of_work() as conn:
            d.access.accounts.disable(conn, "erin.leaving", actor=OPERATOR)
            self.service = d.access.accounts.add_service(
                conn, "label-printer", owner="alice.ng", purpose="prints labels", actor=OPERATOR
            )
            self.key = d.access.api_keys.issue(conn, "label-printer", scopes=["records:read"], actor=OPERATOR).key_id


def _items(d: Deployment, campaign_id: int) -> dict[tuple[str, str], object]:
    with d.unit_of_work(read_only=True) as conn:
        campaign = d.governance.reviews.get(conn, campaign_id, principal=OPERATOR)
    return {(i.subject, i.item_kind): i for i in campaign.items}


def _decide(d: Deployment, item_id: int, decision: str, why: str | None, who: Person):
    with d.unit_of_work() as conn:
        return d.governance.reviews.decide(conn, item_id, decision, why, principal=who.principal())


def test_a_90_day_campaign_runs_end_to_end(d: Deployment, clock: ManualClock) -> None:
    staff = Staff(d, clock)
    jobs = Jobs([*BUILTIN, *_gov_reviews.JOBS], clock)
    reviews = d.governance.reviews
    bob = staff.bob.principal()

    # 100 days on and no campaign yet: overdue, noticed once.
    clock.advance(days=100)
    with d.unit_of_work(read_only=True) as conn:
        late = reviews.overdue(conn)
    assert late is not None and late.kind == "none_started" and late.campaign_id is None
    assert jobs.run(d, JOB, force=True).result.counts["overdue_noted"] == 1
    assert jobs.run(d, JOB, force=True).result.counts["overdue_noted"] == 0

    with d.unit_of_work() as conn:  # carol works: her access is in use
        d.vault.reveal(
            conn,
            TENANT,
            ORDERS[0]["AmazonOrderId"],
            ["ShippingAddress.Name"],
            Purpose.FULFILMENT,
            principal=staff.carol.principal(),
        )
    with d.unit_of_work() as conn:
        campaign = reviews.start(conn, principal=bob, due_days=90, default_decision="revoke")
        with pytest.raises(Conflict, match="is open"):
            reviews.start(conn, principal=bob)
    assert campaign.state == "open" and (campaign.due_at - campaign.started_at).days == 90
    items = _items(d, campaign.id)
    assert set(items) == {
        (staff.alice.id, "grant"),
        (staff.bob.id, "grant"),
        (staff.carol.id, "grant"),
        (staff.dave.id, "grant"),
        (staff.erin.id, "grant"),
        (staff.service, "api_key"),
    }
    carol = items[(staff.carol.id, "grant")]
    assert (carol.recommendation, carol.reason) == ("keep", "in_use") and carol.last_reveal_at == clock()
    erin = items[(staff.erin.id, "grant")]
    assert (erin.recommendation, erin.reason, erin.subject_status) == ("revoke", "account_disabled", "disabled")
    dave = items[(staff.dave.id, "grant")]
    assert dave.recommendation == "revoke" and dave.reason in ("unused", "never_used")
    key = items[(staff.service, "api_key")]
    assert key.item_ref == staff.key and key.scopes == ["records:read"] and key.recommendation == "revoke"

    # Decisions: nobody decides their own access; a justification, without PII; never the last admin.
    with pytest.raises(AccessDenied, match="your own access"):
        _decide(d, items[(staff.bob.id, "grant")].id, "keep", "I still review access", staff.bob)
    for why, words in (
        ("", "give a justification"),
        ("ask bob.review@seller-tools.example", "e-mail"),
        ("x" * 501, "500"),
    ):
        with pytest.raises(PayloadError, match=words):
            _decide(d, dave.id, "revoke", why, staff.bob)
    with pytest.raises(PayloadError, match="keep, revoke, change"):
        _decide(d, dave.id, "delete", "no longer on the team", staff.bob)
    with pytest.raises(Conflict, match="last active administrator"):
        _decide(d, items[(staff.alice.id, "grant")].id, "revoke", "test the rule", staff.bob)
    with pytest.raises(NotFound):
        _decide(d, 99_999, "keep", "no such item", staff.bob)
    decided = _decide(d, dave.id, "revoke", "left the packing team in March", staff.bob)
    assert decided.applied and decided.decided_by == staff.bob.id
    with pytest.raises(Conflict, match="revoked already"):
        _decide(d, dave.id, "keep", "changed my mind", staff.bob)
    assert _decide(d, carol.id, "keep", "packs orders every day", staff.bob).applied is False
    assert _decide(d, key.id, "change", "new key with narrower scopes", staff.bob).applied

    # Reminders a week and a day before the due date; closing early is refused.
    due = campaign.due_at
    clock.advance(seconds=(due - clock()).total_seconds() - 8 * 86400)
    assert jobs.run(d, JOB, force=True).result.counts["reminders"] == 0
    clock.advance(days=1)
    assert jobs.run(d, JOB, force=True).result.counts["reminders"] == 1
    clock.advance(days=6)
    assert jobs.run(d, JOB, force=True).result.counts["reminders"] == 1
    with d.unit_of_work() as conn, pytest.raises(Conflict, match="has not passed"):
        reviews.close(conn, campaign.id, principal=bob)

    # 91 days after the start: past due. bob may not close it over his own undecided grant with
    # the default keep; the job closes it itself with the campaign's default (revoke).
    clock.advance(days=2)
    with d.unit_of_work() as conn, pytest.raises(AccessDenied, match="your own access"):
        reviews.close(conn, campaign.id, principal=bob, default="keep")
    with d.unit_of_work(read_only=True) as conn:
        late = reviews.overdue(conn)
        assert late is not None and late.kind == "past_due" and late.campaign_id == campaign.id
        assert reviews.list_campaigns(conn, principal=OPERATOR)[0].reminder_stage == 2
    ran = jobs.run(d, JOB, force=True).result.counts
    assert ran["closed"] == 1 and ran["overdue_noted"] == 1  # closed; and the next campaign is due now
    ran = jobs.run(d, JOB, force=True).result.counts
    assert ran["closed"] == 0 and ran["overdue_noted"] == 0
    Watch(d).catch_up()
    with d.unit_of_work(read_only=True) as conn:
        alarms = [a for a in d.monitor.list_alarms(conn, principal=OPERATOR) if a.rule == "access-review-overdue"]
        reminders = [a for a in d.monitor.list_alarms(conn, principal=OPERATOR) if a.rule == "access-review-reminder"]
        closed = reviews.get(conn, campaign.id, principal=OPERATOR)
    assert alarms and {a.severity for a in alarms} == {"high"}
    assert [a.severity for a in reminders] == ["low", "low"]  # a week, then a day, before the due date
    noted = [e["operation"] for e in d.audit.search(name="governance:review:overdue")]
    assert noted == ["no campaign started", "no campaign started"]  # before the first; 90 days after its start

    # Closed by the job: the default (revoke) for the undecided, except the last admin, each
    # decided by the default (never by whoever closed it); the report signed.
    assert closed.state == "closed" and closed.counts["undecided"] == 0 and closed.closed_by == f"job:{JOB}"
    assert {i.decided_by for i in closed.items if i.by_default} == {BY_DEFAULT}
    after = {i.subject: i for i in closed.items if i.item_kind == "grant"}
    alice = after[staff.alice.id]
    assert (alice.decision, alice.note, alice.applied, alice.by_default) == ("keep", "last_admin", False, True)
    assert after[staff.erin.id].decision == "revoke" and after[staff.erin.id].applied
    assert after[staff.bob.id].by_default and after[staff.bob.id].applied
    assert closed.counts["last_admin_kept"] == 1 and closed.counts["by_default"] == 3
    with d.unit_of_work(read_only=True) as conn:
        statuses = dict(conn.execute(select(grants.c.principal_id, grants.c.status)).all())
        summary = reviews.last_closed(conn)
        next_due = reviews.overdue(conn)  # the next campaign is due 90 days after this one started
    assert next_due is not None and next_due.kind == "none_started" and next_due.since == campaign.due_at
    assert statuses[staff.alice.id] == "active" and statuses[staff.carol.id] == "active"
    assert {statuses[p.id] for p in (staff.bob, staff.dave, staff.erin)} == {"revoked"}
    assert summary is not None and summary["id"] == campaign.id and summary["counts"]["revoke"] == 3

    revokes = list(d.audit.search(name="access:grant:revoke"))
    assert len(revokes) == 3 and {e["actor"] for e in revokes} == {f"job:{JOB}"}
    assert [e["operation"] for e in d.audit.search(name="access:apikey:revoke")] == [f"review item {key.id}"]
    decide_events = list(d.audit.search(name="governance:review:decide"))
    assert sum(e["outcome"] == "denied" for e in decide_events) == 1
    assert {e["actor"] for e in decide_events} == {staff.bob.id}
    closes = list(d.audit.search(name="governance:review:close"))
    assert [e["outcome"] for e in closes] == ["failure", "denied", "success"]  # too early, bob's own, the job
    assert [e["actor"] for e in closes] == [staff.bob.id, staff.bob.id, f"job:{JOB}"]
    assert closes[2]["fingerprint"] == closed.report_sha256 and closes[2]["counts"]["revoke"] == 3

    # The export verifies offline; one byte changed does not.
    with d.unit_of_work(read_only=True) as conn:
        with pytest.raises(AccessDenied, match="holds no grants"):  # bob's own idle grant went by default
            reviews.export(conn, campaign.id, principal=bob)
        signed = reviews.export(conn, campaign.id, principal=OPERATOR)
    public = load_public_key(d.settings.resolved_audit_signing_key_file.with_suffix(".pub"))
    text = json.dumps(signed, sort_keys=True)
    assert verify_report(json.loads(text), public)
    assert signed["report"]["counts"]["revoke"] == 3 and len(signed["report"]["items"]) == 6
    at = text.index('"last_admin"') + 2
    tampered = text[:at] + chr(ord(text[at]) ^ 1) + text[at + 1 :]
    assert len(tampered.encode()) == len(text.encode()) and not verify_report(json.loads(tampered), public)
    assert not verify_report({"report": signed["report"]}, public)
    assert not verify_report("not a report", public)
    with d.unit_of_work() as conn, pytest.raises(Conflict, match="closed already"):
        reviews.close(conn, campaign.id, principal=OPERATOR)


def test_bad_input_scopes_and_the_default_none(d: Deployment, clock: ManualClock) -> None:
    staff = Staff(d, clock)
    reviews = d.governance.reviews
    viewer = staff.dave.principal()
    with d.unit_of_work() as conn:
        with pytest.raises(AccessDenied):
            reviews.start(conn, principal=viewer)
        with pytest.raises(AccessDenied):
            reviews.list_campaigns(conn, principal=viewer)
    denied = [e for e in d.audit.search(name="access:permission:deny") if e["actor"] == staff.dave.id]
    assert [e["operation"] for e in denied] == ["reviews start", "reviews list"]
    for kwargs, words in (
        ({"due_days": 91}, "1 to 90"),
        ({"due_days": 0}, "1 to 90"),
        ({"default_decision": "maybe"}, "keep, revoke, none"),
        ({"unused_days": 0}, "1 to 3650"),
    ):
        with d.unit_of_work() as conn, pytest.raises(PayloadError, match=words):
            reviews.start(conn, principal=OPERATOR, **kwargs)
    with d.unit_of_work() as conn:
        campaign = reviews.start(conn, principal=OPERATOR, due_days=14, default_decision="none")
        with pytest.raises(Conflict, match="is open"):
            reviews.export(conn, campaign.id, principal=OPERATOR)
    # Fresh accounts: nothing unused yet, apart from the leaver.
    items = _items(d, campaign.id)
    assert {i.reason for i in items.values() if i.recommendation == "revoke"} == {"account_disabled"}
    clock.advance(days=15)
    ran = Jobs([*BUILTIN, *_gov_reviews.JOBS], clock).run(d, JOB, force=True).result.counts
    assert ran["closed"] == 0 and ran["overdue_noted"] == 1  # the default none: left open, and overdue
    with d.unit_of_work(read_only=True) as conn:
        assert reviews.get(conn, campaign.id, principal=OPERATOR).state == "open"
    assert [e["operation"] for e in d.audit.search(name="governance:review:overdue")] == [
        f"campaign {campaign.id} past due"
    ]
    with d.unit_of_work() as conn, pytest.raises(Conflict, match=r"decide them .* or set a default"):
        reviews.close(conn, campaign.id, principal=OPERATOR)
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="keep, revoke, none"):
        reviews.close(conn, campaign.id, principal=OPERATOR, default="drop")
    with d.unit_of_work() as conn:
        closed = reviews.close(conn, campaign.id, principal=OPERATOR, default="keep")
    assert closed.default_decision == "keep" and closed.counts["keep"] == len(items) and closed.counts["applied"] == 0
    assert {i.decided_by for i in closed.items} == {BY_DEFAULT} and closed.closed_by == OPERATOR.id
    with d.unit_of_work(read_only=True) as conn:
        assert reviews.export(conn, campaign.id, principal=OPERATOR)["report"]["campaign"]["default_decision"] == "keep"
        with pytest.raises(NotFound, match="reviews list"):
            reviews.get(conn, 42, principal=OPERATOR)
        assert reviews.overdue(conn) is None
    clock.advance(days=90)
    with d.unit_of_work(read_only=True) as conn:
        late = reviews.overdue(conn)
    assert late is not None and late.kind == "none_started" and late.campaign_id == campaign.id
    with d.unit_of_work() as conn:
        assert reviews.note_overdue(conn) is not None
        assert reviews.note_overdue(conn) is None  # once per occasion


def test_nobody_reviews_access_they_own_or_that_owns_them_nor_closes_over_it(d: Deployment, clock: ManualClock) -> None:
    staff = Staff(d, clock)
    reviews = d.governance.reviews
    scopes = ["governance:manage", "governance:read"]
    with d.unit_of_work() as conn:  # bob owns two services; bob-bot reviews with a governance:manage key
        bot = d.access.accounts.add_service(conn, "bob-bot", owner="bob.review", purpose="reviews", actor=OPERATOR)
        twin = d.access.accounts.add_service(conn, "bob-twin", owner="bob.review", purpose="reports", actor=OPERATOR)
        grant = d.access.grants.grant(conn, "bob-bot", "compliance", ["*"], actor=OPERATOR)
        if grant.status == "pending":
            d.access.grants.approve(conn, grant.id, actor=staff.alice.principal())
        d.access.api_keys.issue(conn, "bob-bot", scopes=scopes, actor=OPERATOR)
        d.access.api_keys.issue(conn, "bob-twin", scopes=["records:read"], actor=OPERATOR)
        campaign = reviews.start(conn, principal=OPERATOR, due_days=14, default_decision="keep")
    robot = Principal(bot, "service", Channel.API, "127.0.0.1", frozenset(scopes))
    items = _items(d, campaign.id)

    def decide(key: tuple[str, str], who: Principal) -> object:
        with d.unit_of_work() as conn:
            return reviews.decide(conn, items[key].id, "keep", "still needed for the job", principal=who)

    bob = staff.bob.principal()
    for key, who in (
        ((staff.bob.id, "grant"), robot),  # the service its owner's
        ((bot, "grant"), bob),  # the owner the service's
        ((bot, "api_key"), bob),
        ((twin, "api_key"), bob),
        ((twin, "api_key"), robot),  # a sibling service's
    ):
        with pytest.raises(AccessDenied, match="your own access"):
            decide(key, who)
    assert decide((staff.carol.id, "grant"), robot).decided_by == bot
    assert decide((staff.dave.id, "grant"), bob).decided_by == staff.bob.id
    refused = [e for e in d.audit.search(name="governance:review:decide") if e["outcome"] == "denied"]
    assert sorted(e["actor"] for e in refused) == sorted([bot, staff.bob.id, staff.bob.id, staff.bob.id, bot])

    # After the due date neither bob nor his service closes it with the default keep over their
    # own undecided items; with the default revoke they may, and the default decides, not the closer.
    clock.advance(days=15)
    for who in (bob, robot):
        with d.unit_of_work() as conn, pytest.raises(AccessDenied, match="your own access"):
            reviews.close(conn, campaign.id, principal=who)
    with d.unit_of_work() as conn:
        closed = reviews.close(conn, campaign.id, principal=bob, default="revoke")
    defaulted = [i for i in closed.items if i.by_default]
    assert closed.closed_by == staff.bob.id and {i.decided_by for i in defaulted} == {BY_DEFAULT}
    assert {(i.subject, i.decision) for i in defaulted if i.subject in (staff.bob.id, bot, twin)} == {
        (staff.bob.id, "revoke"),
        (bot, "revoke"),
        (twin, "revoke"),
    }
    closes = [e["outcome"] for e in d.audit.search(name="governance:review:close")]
    assert closes == ["denied", "denied", "success"]


def test_a_campaign_is_due_within_the_cadence_of_the_last_start(d: Deployment, clock: ManualClock) -> None:
    Staff(d, clock)
    reviews = d.governance.reviews
    first_start = clock()
    with d.unit_of_work() as conn:
        first = reviews.start(conn, principal=OPERATOR, due_days=30, default_decision="keep")
    clock.advance(days=31)
    with d.unit_of_work() as conn:
        reviews.close(conn, first.id, principal=OPERATOR)
        second = reviews.start(conn, principal=OPERATOR, due_days=90, default_decision="none")
    # Due 90 days after the first started, not 90 days after this one: reviews stay 90 days apart.
    assert second.due_at == first_start + timedelta(days=90)
    clock.advance(seconds=(second.due_at - clock()).total_seconds() - 60)
    with d.unit_of_work(read_only=True) as conn:
        assert reviews.overdue(conn) is None
    clock.advance(seconds=60)
    with d.unit_of_work(read_only=True) as conn:
        late = reviews.overdue(conn)
    assert late is not None and (late.kind, late.campaign_id, late.since) == ("past_due", second.id, second.due_at)
    with d.unit_of_work() as conn:
        reviews.close(conn, second.id, principal=OPERATOR, default="keep")
        assert reviews.overdue(conn) is None
    clock.advance(days=31)  # 90 days after the second started: the next one is due
    with d.unit_of_work() as conn:
        late = reviews.overdue(conn)
        assert late is not None and (late.kind, late.since) == ("none_started", second.started_at + timedelta(days=90))
        third = reviews.start(conn, principal=OPERATOR, due_days=60)  # late: no cap in the past
    assert third.due_at == clock() + timedelta(days=60)


def test_two_revocations_at_once_never_remove_the_last_admin(d: Deployment, clock: ManualClock) -> None:
    staff = Staff(d, clock)
    frank = People(d.access, d.engine, clock).person("frank.admin", "admin", tenants=["*"], approver=staff.alice)
    reviews = d.governance.reviews
    with d.unit_of_work() as conn:
        campaign = reviews.start(conn, principal=OPERATOR, due_days=14)
    items = _items(d, campaign.id)
    alice, other = items[(staff.alice.id, "grant")], items[(frank.id, "grant")]
    refused: list[BaseException] = []

    def second() -> None:
        try:
            _decide(d, other.id, "revoke", "frank moved to another team", staff.bob)
        except Conflict as exc:
            refused.append(exc)

    racer = threading.Thread(target=second)
    with d.unit_of_work() as conn:
        reviews.decide(conn, alice.id, "revoke", "alice left the company", principal=OPERATOR)
        racer.start()
        racer.join(1.5)
        assert racer.is_alive()  # waits for the first revocation to commit
    racer.join(30)
    assert not racer.is_alive() and len(refused) == 1 and "last active administrator" in str(refused[0])
    with d.unit_of_work(read_only=True) as conn:
        statuses = dict(conn.execute(select(grants.c.principal_id, grants.c.status)).all())
    assert (statuses[staff.alice.id], statuses[frank.id]) == ("revoked", "active")
