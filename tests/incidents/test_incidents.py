"""Incidents from opening to report (DPP 8), on SQLite and PostgreSQL: phases and the refusals
of invalid moves, documentation, evidence with SHA-256 and chain of custody, containment taken
from the incident and recorded on both sides, the 24-hour Amazon clock with its warnings, the
notification draft without personal data, and the report whose SHA-256 is in the security log."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from conftest import OPERATOR, TENANT
from sagevault.deployment import Deployment
from sagevault.errors import AccessDenied, Conflict, PayloadError, RecordNotFound
from sagevault.incidents import Incidents
from sagevault.jobs import Watch
from sagevault.testing import ManualClock

CLOSING = {
    "description": "A support account revealed shipping addresses outside any ticket.",
    "root_cause": "The fulfilment role was granted to support staff by a template.",
    "remediation": "Account disabled, grants revoked, the template fixed.",
    "corrective_controls": "Grants of fulfilment need a second approver; monthly grant review.",
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 12, 6, 9, 0, tzinfo=UTC))


@pytest.fixture
def d(deployment_at, clock: ManualClock) -> Deployment:
    made: Deployment = deployment_at(clock=clock, event_clock=clock)
    with made.unit_of_work() as conn:
        made.vault.add_tenant(conn, TENANT, ["ATVPDKIKX0DER"], principal=OPERATOR)
        made.incidents.plans.set_impoc(conn, "Dana Smith", "ir-lead@seller-tools.example", principal=OPERATOR)
        made.incidents.plans.approve(conn, made.infrastructure(conn), principal=OPERATOR)
    return made


def _open(d: Deployment, **facts) -> int:
    with d.unit_of_work() as conn:
        return d.incidents.open(conn, principal=OPERATOR, **{"type": "unauthorized-access", **facts}).id


def _move(d: Deployment, incident_id: int, *states: str) -> None:
    for state in states:
        with d.unit_of_work() as conn:
            d.incidents.update(conn, incident_id, principal=OPERATOR, state=state)


def _events(d: Deployment, prefix: str = "incident:") -> list[dict]:
    return [e for e in d.audit.search() if e["name"].startswith(prefix)]


def test_an_incident_opens_with_its_types_procedure_and_moves_only_along_the_phases(d: Deployment) -> None:
    incident_id = _open(d, tenants=[TENANT], categories=["user.contact.address"], records=12, amazon="yes")
    with d.unit_of_work(read_only=True) as conn:
        case = d.incidents.get(conn, incident_id, principal=OPERATOR)
    assert case.tasks[0].text.startswith("Confirm the access from the security event log")
    assert len(case.tasks) == 7 and case.incident.state == "new" and case.incident.plan_version == 1
    assert case.incident.notify_due == case.incident.detected_at + timedelta(hours=24)

    for bad, message in (
        ("closed", "closed with `sagevault incidents close`"),
        ("eradication", "from there it can move to triage"),
        ("finished", "state must be one of"),
    ):
        with d.unit_of_work() as conn, pytest.raises(PayloadError, match=message):
            d.incidents.update(conn, incident_id, principal=OPERATOR, state=bad)
    _move(d, incident_id, "triage")
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="closes from post-incident"):
        d.incidents.close(conn, incident_id, principal=OPERATOR, **CLOSING)
    _move(d, incident_id, "containment", "eradication", "containment", "eradication", "recovery", "post-incident")
    with d.unit_of_work(read_only=True) as conn:
        states = [
            e.detail["now"]
            for e in d.incidents.get(conn, incident_id, principal=OPERATOR).timeline
            if e.kind == "state"
        ]
    assert states == ["triage", "containment", "eradication", "containment", "eradication", "recovery", "post-incident"]
    assert [e["operation"] for e in _events(d, "incident:case:transition")] == states


def test_bad_input_is_refused_with_what_to_do_and_nothing_changes(d: Deployment) -> None:
    naive = datetime(2026, 12, 6, 8, 0)
    cases = [
        ({"detected_at": naive}, "no UTC offset"),
        ({"type": "alien-invasion"}, "incident type must be one of"),
        ({"severity": "urgent"}, "severity must be"),
        ({"amazon": "maybe"}, "amazon must be yes, possible or no"),
        ({"tenants": ["not a tenant"]}, "selling partner id"),
        ({"categories": ["user.shoe_size"]}, "not one the catalog knows"),
        ({"description": "Buyer jane.doe@example.com complained"}, "e-mail address or phone number"),
        ({"detected_at": datetime(2027, 1, 1, tzinfo=UTC)}, "in the future"),
    ]
    for facts, message in cases:
        with d.unit_of_work() as conn, pytest.raises(PayloadError, match=message):
            d.incidents.open(conn, principal=OPERATOR, **{"type": "unauthorized-access", **facts})
    with d.unit_of_work(read_only=True) as conn:
        assert d.incidents.list(conn, principal=OPERATOR) == []
    incident_id = _open(d)
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="nothing to change"):
        d.incidents.update(conn, incident_id, principal=OPERATOR)
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="role janitor is not in the plan"):
        d.incidents.update(conn, incident_id, principal=OPERATOR, roles={"janitor": "Pat"})
    with d.unit_of_work() as conn, pytest.raises(RecordNotFound, match="no incident 999"):
        d.incidents.update(conn, 999, principal=OPERATOR, note="x")
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="say why the task is skipped"):
        d.incidents.task(conn, incident_id, 1, "skipped", principal=OPERATOR)


def test_evidence_is_kept_by_sha256_with_a_chain_of_custody_that_only_its_holder_extends(
    d: Deployment, clock: ManualClock
) -> None:
    incident_id = _open(d)
    item = b"seq,name\n1,access:permission:deny\n"
    digest = hashlib.sha256(item).hexdigest()
    wrong = hashlib.sha256(b"something else").hexdigest()
    evidence = d.incidents.evidence
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="it is not the item that was collected"):
        evidence.add(
            conn,
            incident_id,
            principal=OPERATOR,
            label="events",
            sha256=wrong,
            location="s3://ir/1",
            collected_by="Investigator Lee",
            computed=digest,
        )
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="64 hexadecimal"):
        evidence.add(
            conn, incident_id, principal=OPERATOR, label="events", sha256="abc", location="vault", collected_by="Lee"
        )
    with d.unit_of_work() as conn:
        added = evidence.add(
            conn,
            incident_id,
            principal=OPERATOR,
            label="security events 02:00-04:00",
            sha256=digest.upper(),
            location="evidence locker 3",
            collected_by="Investigator Lee",
            size=len(item),
            computed=digest,
        )
    assert added.sha256 == digest and added.holder == "Investigator Lee"
    clock.advance(minutes=30)
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="held by Investigator Lee, not Counsel Ito"):
        evidence.handover(
            conn,
            incident_id,
            added.id,
            principal=OPERATOR,
            from_party="Counsel Ito",
            to_party="Investigator Lee",
            purpose="review",
        )
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="before the item's last change of hands"):
        evidence.handover(
            conn,
            incident_id,
            added.id,
            principal=OPERATOR,
            from_party="Investigator Lee",
            to_party="Counsel Ito",
            purpose="legal review",
            at=clock() - timedelta(hours=2),
        )
    with d.unit_of_work() as conn:
        evidence.handover(
            conn,
            incident_id,
            added.id,
            principal=OPERATOR,
            from_party="Investigator Lee",
            to_party="Counsel Ito",
            purpose="legal review",
        )
        later = evidence.handover(
            conn,
            incident_id,
            added.id,
            principal=OPERATOR,
            from_party="Counsel Ito",
            to_party="Investigator Lee",
            purpose="returned",
        )
        assert [h.to_party for h in later.custody] == ["Counsel Ito", "Investigator Lee"]
        assert evidence.verify(conn, incident_id, added.id, digest, principal=OPERATOR)
        assert not evidence.verify(conn, incident_id, added.id, wrong, principal=OPERATOR)
    verified = [e["outcome"] for e in _events(d, "incident:evidence:verify")]
    assert verified == ["success", "failure"]
    adds = _events(d, "incident:evidence:add")
    assert [e["outcome"] for e in adds] == ["failure", "success"] and adds[-1]["fingerprint"] == digest


def test_containment_taken_from_an_incident_is_recorded_by_access_control_and_by_the_incident(d: Deployment) -> None:
    incident_id = _open(d, tenants=[TENANT])
    with d.unit_of_work() as conn:
        d.access.accounts.add_person(conn, "sue.support", "sue@seller-tools.example", manager=None, actor=OPERATOR)
        done = d.incidents.contain(conn, incident_id, "kill-switch", "pii-access", principal=OPERATOR, tenant_id=TENANT)
        locked = d.incidents.contain(conn, incident_id, "lock-account", "sue.support", principal=OPERATOR)
        with pytest.raises(PayloadError, match="a containment action is one of"):
            d.incidents.contain(conn, incident_id, "nuke", "everything", principal=OPERATOR)
        switches = d.access.switches.list(conn, actor=OPERATOR)
    assert done.result == f"pii-access engaged for {TENANT}" and "account disabled" in locked.result
    assert ("pii-access", TENANT, True) in [(n, t, e) for n, t, e, _ in switches]
    engaged = list(d.audit.search(name="access:killswitch:engage"))
    disabled = list(d.audit.search(name="access:account:disable"))
    assert (
        engaged[-1]["operation"] == f"incident {incident_id}" and disabled[-1]["operation"] == f"incident {incident_id}"
    )
    with d.unit_of_work(read_only=True) as conn:
        case = d.incidents.get(conn, incident_id, principal=OPERATOR)
    assert [(a.action, a.target) for a in case.actions] == [
        ("kill-switch", "pii-access"),
        ("lock-account", "sue.support"),
    ]
    assert [e["operation"] for e in _events(d, "incident:action:take")] == ["kill-switch", "lock-account"]


def test_the_amazon_clock_warns_at_12_and_20_hours_then_alarms_when_overdue_until_notified(
    d: Deployment, clock: ManualClock
) -> None:
    detected = clock() - timedelta(hours=1)
    incident_id = _open(d, amazon="possible", detected_at=detected)
    marks = []
    for hours in (11.9, 12, 19.9, 20, 23.9, 24, 30):
        clock.advance(seconds=(detected + timedelta(hours=hours) - clock()).total_seconds())
        with d.unit_of_work() as conn:
            marks.append((hours, d.incidents.amazon.clocks(conn)))
    assert [(h, [n for _, n in m]) for h, m in marks] == [
        (11.9, []),
        (12, ["incident:clock:warn"]),
        (19.9, []),
        (20, ["incident:clock:warn"]),
        (23.9, []),
        (24, ["incident:clock:overdue"]),
        (30, []),
    ]
    Watch(d).catch_up()
    with d.unit_of_work(read_only=True) as conn:
        alarms = [a for a in d.monitor.list_alarms(conn, principal=OPERATOR) if a.rule.startswith("incident-notify")]
        incident = d.incidents.get(conn, incident_id, principal=OPERATOR).incident
    assert sorted((a.rule, a.severity) for a in alarms) == [
        ("incident-notify-overdue", "critical"),
        ("incident-notify-warning", "high"),
        ("incident-notify-warning", "high"),
    ]
    assert incident.clock(clock())["state"] == "overdue" and incident.clock(clock())["seconds_left"] == -6 * 3600

    with d.unit_of_work() as conn:
        with pytest.raises(PayloadError, match="no UTC offset"):
            d.incidents.amazon.notified(
                conn, incident_id, at=datetime(2026, 12, 7, 8, 0), reference="x", principal=OPERATOR
            )
        with pytest.raises(PayloadError, match="before the incident was detected"):
            d.incidents.amazon.notified(
                conn, incident_id, at=detected - timedelta(minutes=1), reference="x", principal=OPERATOR
            )
        after = d.incidents.amazon.notified(conn, incident_id, at=clock(), reference="AMZ-SEC-4471", principal=OPERATOR)
        with pytest.raises(Conflict, match="was recorded as notified"):
            d.incidents.amazon.notified(conn, incident_id, at=clock(), reference="again", principal=OPERATOR)
    assert after.clock(clock()) == {
        "running": False,
        "due": after.notify_due.isoformat(),
        "seconds_left": None,
        "state": "notified late",
    }
    clock.advance(hours=10)
    with d.unit_of_work() as conn:
        assert d.incidents.amazon.clocks(conn) == []  # a stopped clock says nothing more


def test_no_clock_runs_when_amazon_is_not_involved_and_one_starts_from_detection_when_it_becomes_so(
    d: Deployment, clock: ManualClock
) -> None:
    incident_id = _open(d, type="malware", amazon="no", detected_at=clock() - timedelta(hours=21))
    with d.unit_of_work() as conn:
        assert d.incidents.amazon.clocks(conn) == []
        d.incidents.update(conn, incident_id, principal=OPERATOR, amazon="possible")
        assert [n for _, n in d.incidents.amazon.clocks(conn)] == ["incident:clock:warn"]  # 20 h passed already
    legal = _open(d, type="legal-request")  # a government request runs the same 24 hours
    with d.unit_of_work(read_only=True) as conn:
        assert d.incidents.get(conn, legal, principal=OPERATOR).incident.notify_due == clock() + timedelta(hours=24)


def test_the_notification_holds_the_facts_and_the_impoc_and_no_personal_data(deployment_at, clock) -> None:
    d: Deployment = deployment_at(clock=clock, event_clock=clock)
    with d.unit_of_work() as conn:
        d.vault.add_tenant(conn, TENANT, ["ATVPDKIKX0DER"], principal=OPERATOR)
    incident_id = _open(d, type="canary-access", tenants=[TENANT], categories=["user.contact"], records=3)
    with d.unit_of_work() as conn:
        with pytest.raises(PayloadError, match="names no IMPOC"):
            d.incidents.amazon.draft(conn, incident_id, principal=OPERATOR)
        with pytest.raises(PayloadError, match="names no IMPOC"):
            d.incidents.amazon.notified(conn, incident_id, at=clock(), reference="x", principal=OPERATOR)
        d.incidents.plans.set_impoc(
            conn, "Dana Smith", "ir-lead@seller-tools.example", principal=OPERATOR, organisation="Pixpie LLC"
        )
        d.incidents.update(conn, incident_id, principal=OPERATOR, note="Ticket from Jane Doe about her parcel")
        draft = d.incidents.amazon.draft(conn, incident_id, principal=OPERATOR)
    text = draft.text
    assert text.startswith("To: security@amazon.com\nFrom: Dana Smith <ir-lead@seller-tools.example>\n")
    for fact in (
        "SV-",
        "canary-access",
        "critical",
        "2026-12-06 09:00 UTC",
        "2026-12-07 09:00 UTC",
        TENANT,
        "user.contact",
        "Estimated records affected: 3",
        "Pixpie LLC",
    ):
        assert fact in text, fact
    assert "Jane Doe" not in text  # nothing a person typed goes into it
    assert hashlib.sha256(text.encode()).hexdigest() == draft.sha256
    [event] = _events(d, "incident:notification:draft")
    assert event["fingerprint"] == draft.sha256


def test_closing_needs_the_documentation_and_the_notification_and_writes_a_report_hashed_into_the_log(
    d: Deployment, clock: ManualClock
) -> None:
    incident_id = _open(d, amazon="yes", tenants=[TENANT])
    _move(d, incident_id, "triage", "containment", "eradication", "recovery", "post-incident")
    without_controls = {k: v for k, v in CLOSING.items() if k != "corrective_controls"}
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="cannot close without corrective controls"):
        d.incidents.close(conn, incident_id, principal=OPERATOR, **without_controls)
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="Amazon has not been notified"):
        d.incidents.close(conn, incident_id, principal=OPERATOR, **CLOSING)
    with d.unit_of_work() as conn:
        d.incidents.amazon.draft(conn, incident_id, principal=OPERATOR)
        d.incidents.amazon.notified(conn, incident_id, at=clock(), reference="AMZ-1", principal=OPERATOR)
        d.incidents.task(conn, incident_id, 1, "done", principal=OPERATOR)
        as_json, as_markdown = d.incidents.close(conn, incident_id, principal=OPERATOR, **CLOSING)
    report = json.loads(as_json.text)["incident"]
    assert report["state"] == "closed" and report["corrective_controls"] == CLOSING["corrective_controls"]
    assert report["notify_reference"] == "AMZ-1" and report["clock"]["state"] == "notified in time"
    assert [t["state"] for t in report["tasks"]][:2] == ["done", "open"]
    assert "## Corrective controls" in as_markdown.text and CLOSING["root_cause"] in as_markdown.text
    written = {e["operation"]: e["fingerprint"] for e in _events(d, "incident:report:write")}
    assert written == {"report json": as_json.sha256, "report markdown": as_markdown.sha256}
    assert as_json.sha256 == hashlib.sha256(as_json.text.encode()).hexdigest()
    with d.unit_of_work(read_only=True) as conn:
        again = d.incidents.report(conn, incident_id, principal=OPERATOR)
    assert again == (as_json, as_markdown)
    with d.unit_of_work() as conn, pytest.raises(Conflict, match="is closed"):
        d.incidents.update(conn, incident_id, principal=OPERATOR, note="late thought")


def test_reading_and_working_incidents_needs_their_scopes(d: Deployment, clock: ManualClock) -> None:
    from factories import People

    people = People(d.access, d.engine, clock)
    admin = people.bootstrap_admin()
    packer = people.person("vic.viewer", "viewer")
    officer = people.person("sam.officer", "security-officer", tenants=["*"], approver=admin)
    incident_id = _open(d)
    with d.unit_of_work() as conn:
        assert d.incidents.get(conn, incident_id, principal=officer.principal()).incident.id == incident_id
        d.incidents.update(conn, incident_id, principal=officer.principal(), state="triage")
    for call in (
        lambda conn: d.incidents.list(conn, principal=packer.principal()),
        lambda conn: d.incidents.update(conn, incident_id, principal=packer.principal(), note="hi"),
    ):
        with d.unit_of_work() as conn, pytest.raises(AccessDenied):
            call(conn)
    # the officer works incidents but does not administer accounts: locking one is refused by access control
    with d.unit_of_work() as conn, pytest.raises(AccessDenied):
        d.incidents.contain(conn, incident_id, "lock-account", "vic.viewer", principal=officer.principal())
    assert isinstance(d.incidents, Incidents)


def test_a_legal_request_always_runs_the_clock(d: Deployment) -> None:
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="always involves it"):
        d.incidents.open(conn, type="legal-request", amazon="no", principal=OPERATOR)
    quiet = _open(d, type="malware", amazon="no")
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="always involves it"):
        d.incidents.update(conn, quiet, principal=OPERATOR, type="legal-request")
    legal = _open(d, type="legal-request")
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="always involves it"):
        d.incidents.update(conn, legal, principal=OPERATOR, amazon="no")


def test_the_clock_cannot_be_switched_off_once_it_has_run_and_only_with_a_reason_before(
    d: Deployment, clock: ManualClock
) -> None:
    early = _open(d, type="malware", amazon="possible")
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="say why"):
        d.incidents.update(conn, early, principal=OPERATOR, amazon="no")
    with d.unit_of_work() as conn:
        d.incidents.update(conn, early, principal=OPERATOR, amazon="no", note="Test host, no Amazon data on it")
    late = _open(d, type="canary-access", detected_at=clock() - timedelta(hours=25))
    with d.unit_of_work() as conn:
        assert [n for _, n in d.incidents.amazon.clocks(conn)] == ["incident:clock:overdue"]
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="clock to notify Amazon has run"):
        d.incidents.update(conn, late, principal=OPERATOR, amazon="no", note="never mind")
    _move(d, late, "triage", "containment", "eradication", "recovery", "post-incident")
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="Amazon has not been notified"):
        d.incidents.close(conn, late, principal=OPERATOR, **CLOSING)


def test_times_references_and_texts_people_really_write_are_taken_and_impossible_ones_refused(
    d: Deployment, clock: ManualClock
) -> None:
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="outside the calendar"):
        d.incidents.open(
            conn, type="malware", principal=OPERATOR, detected_at=datetime.fromisoformat("0001-01-01T00:00:00+00:01")
        )
    incident_id = _open(
        d, description="Seen 2026-12-05T23:10:00Z from 203.0.113.7 at 23:10, again on 2026-12-06 at 01:02"
    )
    evidence = d.incidents.evidence
    with d.unit_of_work() as conn, pytest.raises(PayloadError, match="in the future"):
        evidence.add(
            conn,
            incident_id,
            principal=OPERATOR,
            label="dump",
            sha256="a" * 64,
            location="locker",
            collected_by="Lee",
            collected_at=clock() + timedelta(days=365),
        )
    with d.unit_of_work() as conn:
        for bad in ("2065550100", "dana@seller-tools.example"):
            with pytest.raises(PayloadError, match="Message-ID"):
                d.incidents.amazon.notified(conn, incident_id, at=clock(), reference=bad, principal=OPERATOR)
        done = d.incidents.amazon.notified(
            conn, incident_id, at=clock(), reference="<CAF1234.5678@mail.seller-tools.example>", principal=OPERATOR
        )
    assert done.notify_reference == "<CAF1234.5678@mail.seller-tools.example>"
    other = _open(d)
    with d.unit_of_work() as conn:
        case = d.incidents.amazon.notified(
            conn, other, at=clock(), reference="Amazon case 12345678901", principal=OPERATOR
        )
    assert case.notify_reference == "Amazon case 12345678901"


def test_the_report_names_the_impoc_amazon_was_written_from(d: Deployment, clock: ManualClock) -> None:
    incident_id = _open(d, amazon="yes")
    with d.unit_of_work() as conn:
        d.incidents.amazon.draft(conn, incident_id, principal=OPERATOR)
        d.incidents.amazon.notified(conn, incident_id, at=clock(), reference="AMZ-9", principal=OPERATOR)
        d.incidents.plans.set_impoc(conn, "Robin Vale", "new-lead@seller-tools.example", principal=OPERATOR)
    _move(d, incident_id, "triage", "containment", "eradication", "recovery", "post-incident")
    with d.unit_of_work() as conn:
        as_json, _ = d.incidents.close(conn, incident_id, principal=OPERATOR, **CLOSING)
    assert json.loads(as_json.text)["impoc"] == {"name": "Dana Smith", "email": "ir-lead@seller-tools.example"}


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_record_of_plans_and_incidents_cannot_be_rewritten_by_the_service_role_on_postgresql(
    backend: str, pg_service_engine, deployment_at
) -> None:
    from sqlalchemy import text

    d: Deployment = deployment_at()
    incident_id = _open(d)
    with d.unit_of_work() as conn:
        d.incidents.plans.approve(conn, {}, principal=OPERATOR)
        d.incidents.evidence.add(
            conn, incident_id, principal=OPERATOR, label="x", sha256="b" * 64, location="l", collected_by="Lee"
        )
    for statement in (
        "UPDATE incident_evidence SET sha256 = 'c'",
        "DELETE FROM incident_actions",
        "UPDATE incident_timeline SET kind = 'x'",
        "DELETE FROM irp_approvals",
        "UPDATE irp_versions SET body = 'x'",
        "DELETE FROM incidents",
    ):
        with pg_service_engine.begin() as conn, pytest.raises(Exception, match="permission denied"):
            conn.execute(text(statement))
    with pg_service_engine.begin() as conn:  # the facts of an open incident do change
        assert conn.execute(text("UPDATE incidents SET severity = 'low'")).rowcount == 1


def test_a_second_alarm_of_the_same_attack_joins_the_open_incident_and_says_so(d: Deployment, clock) -> None:
    from sagevault.monitor import Alarm

    def alarm(alarm_id: int) -> Alarm:
        return Alarm(
            id=alarm_id,
            rule="read-volume",
            rule_version=2,
            clause="4",
            severity="high",
            title="More than 10 000 000 records read in 10 minutes",
            state="open",
            first_at=clock(),
            last_at=clock(),
            count=3,
            principal="p:mallory",
            tenant=TENANT,
            evidence={},
            responses=["lock-principal: p:mallory disabled (2 credentials ended)"],
            changed_by=None,
            changed_at=None,
            note=None,
        )

    with d.unit_of_work() as conn:
        first = d.incidents.open_from_alarm(conn, alarm(7), "bulk-exfiltration")
        second = d.incidents.open_from_alarm(conn, alarm(8), "bulk-exfiltration")
        case = d.incidents.get(conn, 1, principal=OPERATOR)
    assert (first, second) == ("incident 1 opened", "joined incident 1")
    assert case.alarms == [7, 8] and case.incident.title.startswith("Alarm 7: More than 10 000 000")
    assert [a.action for a in case.actions] == ["lock-principal", "lock-principal"]
    joined = [e for e in _events(d, "incident:case:update") if e["operation"] == "alarm joined"]
    assert len(joined) == 1 and joined[0]["counts"]["alarm"] == 8
