"""The incident response plan as versioned data (DPP 8): the shipped default, edits that wait
for approval, approval by a named principal, six-monthly reviews and reviews after a major
change, the IMPOC; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import tomli_w

from conftest import OPERATOR
from sagevault.deployment import Deployment
from sagevault.errors import AccessDenied, Conflict, PayloadError
from sagevault.identity import Principal
from sagevault.incidents import REQUIRED_ROLES, REQUIRED_TYPES, default_plan_text, parse_plan
from sagevault.jobs import Watch
from sagevault.testing import ManualClock

INFRA = {"master_key": "local:aaaa", "database": "sqlite", "schema": "0008"}


def _plan_data() -> dict:
    return parse_plan(default_plan_text(), "test").data


def test_the_shipped_plan_has_every_role_type_procedure_and_an_escalation_path_to_amazon() -> None:
    plan = parse_plan(default_plan_text(), "shipped")
    assert set(REQUIRED_ROLES) <= set(plan.roles) and set(REQUIRED_TYPES) <= set(plan.types)
    assert all(len(t.procedure) >= 3 for t in plan.types.values())
    assert plan.types["legal-request"].amazon.value == "yes"
    assert plan.data["escalation"][-1]["role"] == "impoc" and plan.data["escalation"][-1]["within_hours"] == 24
    assert plan.impoc == ("", "")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["types"].pop(3), "missing: bulk-exfiltration"),
        (lambda d: d["roles"].pop(0), "roles incident-commander"),
        (lambda d: d.update(surprise=1), "surprise is not a setting"),
        (lambda d: d["types"][0].update(severity="urgent"), "severity must be low"),
        (lambda d: d["types"][0].update(procedure=[]), "at least one step"),
        (lambda d: d["types"][0]["procedure"].append("Call the buyer on +1 206 555 0100"), "phone number"),
        (lambda d: d["roles"][0].update(assignee="dana@seller-tools.example"), "e-mail address"),
        (lambda d: d["escalation"].pop(), "IMPOC notifying Amazon within 24 hours"),
        (lambda d: d["escalation"][1].update(within_hours=0), "never decreases"),
        (lambda d: d.update(impoc={"name": "Dana", "email": "not an address"}), "impoc.email"),
    ],
)
def test_a_plan_that_misses_what_the_policy_asks_or_holds_personal_data_is_refused(change, message) -> None:
    data = _plan_data()
    change(data)
    with pytest.raises(PayloadError, match=message):
        parse_plan(tomli_w.dumps(data), "edit")


def test_edit_waits_for_approval_which_sets_the_next_review_six_months_on(deployment_at) -> None:
    clock = ManualClock()
    d: Deployment = deployment_at(clock=clock)
    plans = d.incidents.plans
    with d.unit_of_work() as conn:
        status = plans.status(conn, INFRA)
        assert status.in_force.version == 0 and [k for k, _ in status.reasons] == ["unapproved"]
        data = _plan_data()
        data["types"][0]["procedure"].append("Tell the data protection officer")
        draft = plans.edit(conn, tomli_w.dumps(data), principal=OPERATOR, note="DPO step")
        assert draft.version == 1 and not draft.approved
        assert plans.status(conn, INFRA).in_force.version == 1  # nothing approved yet: the newest is what there is
        with pytest.raises(Conflict, match="unchanged"):
            plans.edit(conn, tomli_w.dumps(data), principal=OPERATOR)
        diff = plans.diff(conn, 0, 1, principal=OPERATOR)
        assert '+    "Tell the data protection officer",' in diff and diff.startswith("--- version 0")
        approved = plans.approve(conn, INFRA, principal=OPERATOR)
        assert (approved.version, approved.approved_by) == (1, OPERATOR.id)
        assert approved.next_review_due == clock() + timedelta(days=183)
        assert plans.status(conn, INFRA).reasons == []

        data["types"][1]["procedure"].append("Rotate the LWA client secret")
        plans.edit(conn, tomli_w.dumps(data), principal=OPERATOR)
        status = plans.status(conn, INFRA)
        assert status.in_force.version == 1 and status.draft is not None and status.draft.version == 2
    events = [e["name"] for e in d.audit.search() if e["name"].startswith("incident:plan")]
    assert events == ["incident:plan:edit", "incident:plan:approve", "incident:plan:edit"]


def test_a_review_after_six_months_and_after_a_master_key_rotation_is_raised_as_an_alarm(deployment_at) -> None:
    clock = ManualClock()
    d: Deployment = deployment_at(clock=clock, event_clock=clock)
    plans = d.incidents.plans
    with d.unit_of_work() as conn:
        plans.set_impoc(conn, "Dana Smith", "ir-lead@seller-tools.example", principal=OPERATOR)
        plans.approve(conn, d.infrastructure(conn), principal=OPERATOR)
        assert plans.notify_due(conn, d.infrastructure(conn)) == []
    clock.advance(days=183, seconds=1)
    with d.unit_of_work() as conn:
        [reason] = plans.notify_due(conn, d.infrastructure(conn))
        assert "six-monthly review was due" in reason
        assert plans.notify_due(conn, d.infrastructure(conn)) == []  # given once
    Watch(d).catch_up()
    with d.unit_of_work(read_only=True) as conn:
        [alarm] = [a for a in d.monitor.list_alarms(conn, principal=OPERATOR) if a.rule == "irp-review-due"]
    assert (alarm.severity, alarm.clause) == ("high", "8")

    with d.unit_of_work() as conn:  # the review: approved again, due six months on
        reviewed = plans.approve(conn, d.infrastructure(conn), principal=OPERATOR, note="no change")
        assert (reviewed.version, reviewed.approval) == (1, 2)  # the same version, approved again
        assert plans.status(conn, d.infrastructure(conn)).reasons == []
    with d.unit_of_work() as conn:
        rotated = {**d.infrastructure(conn), "master_key": "local:bbbb"}  # as `keys rotate-master` leaves it
        [reason] = plans.notify_due(conn, rotated)
    assert "master key changed" in reason
    with d.unit_of_work() as conn:
        moved = {**d.infrastructure(conn), "database": "postgresql" if d.engine.dialect.name == "sqlite" else "sqlite"}
        [reason] = plans.notify_due(conn, moved)
    assert "the database changed" in reason


def test_the_impoc_is_contact_data_set_without_a_new_review_and_only_by_incident_managers(deployment_at) -> None:
    d: Deployment = deployment_at()
    plans = d.incidents.plans
    with d.unit_of_work() as conn:
        plans.approve(conn, d.infrastructure(conn), principal=OPERATOR)
        due = plans.in_force(conn).next_review_due
        saved = plans.set_impoc(
            conn, "Dana Smith", "ir-lead@seller-tools.example", principal=OPERATOR, organisation="Pixpie LLC"
        )
        assert saved.approved and saved.next_review_due == due and saved.plan.organisation == "Pixpie LLC"
        assert plans.in_force(conn).plan.impoc == ("Dana Smith", "ir-lead@seller-tools.example")
        with pytest.raises(Conflict):
            plans.set_impoc(conn, "Dana Smith", "ir-lead@seller-tools.example", principal=OPERATOR)
        with pytest.raises(PayloadError, match=r"impoc\.email"):
            plans.set_impoc(conn, "Dana Smith", "not-an-address", principal=OPERATOR)
    stranger = Principal(id="p:nobody", kind="person")
    with d.unit_of_work() as conn, pytest.raises(AccessDenied):
        plans.approve(conn, INFRA, principal=stranger)
    refused = [e for e in d.audit.search(name="access:permission:deny") if e["actor"] == "p:nobody"]
    assert refused and refused[-1]["operation"] == "irp approve"


def test_approval_is_of_the_version_the_approver_read_and_a_contact_change_raises_no_second_alarm(
    deployment_at,
) -> None:
    clock = ManualClock()
    d: Deployment = deployment_at(clock=clock, event_clock=clock)
    plans = d.incidents.plans
    with d.unit_of_work() as conn:
        plans.approve(conn, INFRA, principal=OPERATOR)
        data = _plan_data()
        data["types"][0]["procedure"].append("Call the insurer")
        plans.edit(conn, tomli_w.dumps(data), principal=OPERATOR)
        data["types"][0]["procedure"].append("Call the insurer again")
        plans.edit(conn, tomli_w.dumps(data), principal=OPERATOR)  # saved after the approver read version 2
        with pytest.raises(Conflict, match="neither the newest"):
            plans.approve(conn, INFRA, principal=OPERATOR, version=2)
        assert plans.approve(conn, INFRA, principal=OPERATOR, version=3).version == 3
    clock.advance(days=184)
    with d.unit_of_work() as conn:
        assert len(plans.notify_due(conn, INFRA)) == 1
        plans.set_impoc(conn, "Dana Smith", "ir-lead@seller-tools.example", principal=OPERATOR)
        assert plans.notify_due(conn, INFRA) == []  # the same overdue review: not announced again
        assert plans.status(conn, INFRA).due
