"""The console's incident pages: an officer works an incident from open to closed in Chromium (the 24-hour
clock, a note, the tasks, evidence, the notification draft, Amazon notified, the phases, close and its
report); in process, a compliance reader sees everything and can change nothing, and unknown ids, bad
input and a refused close answer 4xx pages with what to do."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import console_support
import pytest
from test_console_browser import log_in, root

from conftest import OPERATOR, TENANT
from sagevault.incidents import Case
from webapi import Api

# The console's fixtures (tests/console/console_support.py), for this module.
_log_in = console_support.log_in_form
browser = console_support.browser
module_tls = console_support.module_tls
settings = console_support.settings
page_of = console_support.page_of

CONSOLE = "https://127.0.0.1/console"
ITEM = b"security events 2026-12-06 export"
REFERENCE = "<sv-1.notice@seller-tools.example>"
DOCUMENTATION = {
    "root_cause": "A support account kept the records:read grant after its role changed.",
    "remediation": "The account was locked and the grant revoked; the events were reviewed.",
    "corrective_controls": "Grants now end with the role change; quarterly access reviews check it.",
}


def _impoc(api: Api) -> None:
    with api.d.unit_of_work() as conn:
        api.d.incidents.plans.set_impoc(conn, "Dana Smith", "ir-lead@seller-tools.example", principal=OPERATOR)


def _case(api: Api, incident_id: int) -> Case:
    with api.d.unit_of_work(read_only=True) as conn:
        return api.d.incidents.get(conn, incident_id, principal=OPERATOR)


def _names(api: Api, login: str, name: str) -> list[dict[str, Any]]:
    return list(api.d.audit.search(actor=api._people[login].id, name=name))


# --- in Chromium ------------------------------------------------------------------------------------------


def test_an_officer_works_an_incident_from_open_to_closed(served_api: Api, page_of: Any, tmp_path: Path) -> None:
    api = served_api
    officer = api.person("sam.officer", "security-officer", ["*"])
    _impoc(api)
    page = page_of()
    log_in(page, api, "sam.officer", officer)
    page.click("nav >> text=Incidents")
    assert page.title() == "Incidents · SageVault console"
    assert page.locator("#open-incidents").inner_text().endswith("No open incidents.")

    # Open (declare) one: the type's procedure becomes the tasks, the Amazon clock starts at detection.
    form = page.locator("#open-form")
    form.locator("#type").select_option("unauthorized-access")
    form.locator("#title").fill("Support account read orders of another seller")
    form.locator("#severity").select_option("critical")
    form.locator("#tenants").fill(TENANT)
    detected = api.d.now().replace(microsecond=0) - timedelta(hours=2, minutes=30)  # found in the logs
    form.locator("#detected_at").fill(detected.strftime("%Y-%m-%dT%H:%M:%SZ"))
    form.locator("#description").fill("A support account listed orders it has no need to know.")
    form.get_by_role("button", name="Open the incident").click()
    assert re.fullmatch(rf"{root(api)}/incidents/\d+", page.url), page.content()
    incident_id = int(page.url.rsplit("/", 1)[1])
    case = _case(api, incident_id)
    incident = case.incident
    assert (incident.state, incident.severity, incident.tenants) == ("new", "critical", [TENANT])
    assert incident.detected_at == detected and incident.notify_due == detected + timedelta(hours=24)
    due = incident.notify_due.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert page.locator("#clock time").get_attribute("datetime") == due
    assert page.locator("#clock .clock-left").inner_text() == "21 h 30 min left"
    assert page.locator("#state").inner_text() == "new"
    [opened] = _names(api, "sam.officer", "incident:case:open")
    assert opened["operation"] == "unauthorized-access" and opened["counts"]["incident"] == incident_id
    page.click("text=All incidents")
    row = page.locator(f"#incident-{incident_id}")
    assert row.locator(".due time").get_attribute("datetime") == due
    assert row.locator(".clock-left").inner_text() == "21 h 30 min left"
    row.locator("a").click()

    # A note on the timeline.
    page.fill("#note", "Support lead confirms the account was moved to billing last week.")
    page.get_by_role("button", name="Add the note").click()
    assert page.locator("#timeline .entry-note .said").last.inner_text() == (
        "Support lead confirms the account was moved to billing last week."
    )
    assert _case(api, incident_id).timeline[-1].kind == "note"
    assert [e["operation"] for e in _names(api, "sam.officer", "incident:case:update")] == ["note"]

    # Every task of the plan's procedure done.
    tasks = case.tasks
    assert len(tasks) == 7 and page.locator("#tasks-h").inner_text() == "Tasks (7 open)"
    for task in tasks:
        page.locator(f"#task-{task.id}").get_by_role("button", name="Done").click()
        assert page.locator(f"#task-{task.id} .state").inner_text() == "done"
    assert page.locator("#tasks-h").inner_text() == "Tasks (0 open)"
    assert {t.state for t in _case(api, incident_id).tasks} == {"done"}
    assert len(_names(api, "sam.officer", "incident:task:update")) == 7

    # Evidence, by its SHA-256.
    digest = hashlib.sha256(ITEM).hexdigest()
    page.fill("#ev-label", "Security events of the window")
    page.fill("#ev-sha256", digest)
    page.fill("#ev-location", "Evidence locker 2, case SV-1")
    page.fill("#ev-collected-by", "Investigator Lee")
    page.get_by_role("button", name="Record the evidence").click()
    [item] = _case(api, incident_id).evidence
    assert (item.sha256, item.collected_by) == (digest, "Investigator Lee")
    assert page.locator(f"#evidence-{item.id} code").inner_text() == digest
    assert [e["fingerprint"] for e in _names(api, "sam.officer", "incident:evidence:add")] == [digest]

    # The notification to Amazon, drafted and shown to copy.
    api.clock.advance(minutes=10)  # within the console's 15-minute idle timeout
    with page.expect_response(lambda r: r.url.endswith("/notification-draft")) as answered:
        page.get_by_role("button", name="Draft the notification to Amazon").click()
    assert answered.value.status == 200 and answered.value.headers["cache-control"] == "no-store"
    text = page.locator("#draft-text").input_value()
    assert page.locator("#draft-text").get_attribute("readonly") is not None
    assert text.startswith("To: security@amazon.com\nFrom: Dana Smith <ir-lead@seller-tools.example>")
    assert f"- Incident reference: SV-{incident_id}" in text and f"({TENANT})" in text
    sha = hashlib.sha256(text.encode()).hexdigest()
    assert page.locator("#draft-sha").inner_text() == sha == _case(api, incident_id).incident.draft_sha256
    assert [e["fingerprint"] for e in _names(api, "sam.officer", "incident:notification:draft")] == [sha]
    assert page.locator("#clock .clock-left").inner_text() == "21 h 20 min left"

    # Amazon notified: the clock stops.
    page.fill("#reference", REFERENCE)
    page.get_by_role("button", name="Record that Amazon was notified").click()
    assert page.locator("#clock .clock-left").inner_text() == "notified in time"
    assert page.locator("#notified-form").count() == 0
    notified = _case(api, incident_id).incident
    assert notified.notify_reference == REFERENCE and notified.clock(api.d.now())["running"] is False
    [record] = _names(api, "sam.officer", "incident:notification:record")
    assert record["operation"] == "in time"

    # Close is refused before post-incident: the domain's message, nothing changed.
    with page.expect_response(lambda r: r.url.endswith("/close")) as answered:
        page.get_by_role("button", name="Close the incident").click()
    assert answered.value.status == 400
    assert "closes from post-incident" in page.locator("#message").inner_text()
    page.go_back()
    page.reload()

    # Through the phases the plan allows.
    for phase in ("triage", "containment", "eradication", "recovery", "post-incident"):
        page.get_by_role("button", name=f"Move to {phase}").click()
        assert page.locator("#state").inner_text() == phase
    moves = [e["operation"] for e in _names(api, "sam.officer", "incident:case:transition")]
    assert moves == ["triage", "containment", "eradication", "recovery", "post-incident"]

    # Close without a root cause: refused with what is missing.
    assert page.locator("#doc-description").input_value() == "A support account listed orders it has no need to know."
    page.fill("#doc-remediation", DOCUMENTATION["remediation"])
    page.fill("#doc-corrective_controls", DOCUMENTATION["corrective_controls"])
    with page.expect_response(lambda r: r.url.endswith("/close")) as answered:
        page.get_by_role("button", name="Close the incident").click()
    assert answered.value.status == 400
    assert "cannot close without root cause" in page.locator("#message").inner_text()
    assert _case(api, incident_id).incident.state == "post-incident"
    page.go_back()
    for name, value in DOCUMENTATION.items():
        page.fill(f"#doc-{name}", value)
    page.get_by_role("button", name="Close the incident").click()
    assert page.url == f"{root(api)}/incidents/{incident_id}"
    assert page.locator("#state").inner_text() == "closed"
    assert page.locator("form").count() == 1  # only the log-out: a closed record changes no more
    closed = _case(api, incident_id).incident
    assert closed.state == "closed" and closed.root_cause == DOCUMENTATION["root_cause"]
    assert closed.closed_by == api._people["sam.officer"].id
    assert len(_names(api, "sam.officer", "incident:case:close")) == 1
    written = {e["operation"]: e["fingerprint"] for e in _names(api, "sam.officer", "incident:report:write")}
    assert set(written) == {"report json", "report markdown"}

    # The report, downloaded: the one whose SHA-256 is in the security log.
    with page.expect_download() as downloaded:
        page.click("#report-link")
    assert downloaded.value.suggested_filename == f"incident-{incident_id}-report.md"
    saved = tmp_path / "report.md"
    downloaded.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == written["report markdown"]
    page.click("text=All incidents")
    assert page.locator("#open-incidents").inner_text().endswith("No open incidents.")
    assert page.locator(f"#closed-incidents #incident-{incident_id}").count() == 1


def test_the_incident_pages_pass_axe(served_api: Api, page_of: Any) -> None:
    from test_console_accessibility import violations  # axe-playwright-python, with the accessibility tests

    api = served_api
    officer = api.person("sam.officer", "security-officer", ["*"])
    _impoc(api)
    case = _opened(api)
    with api.d.unit_of_work() as conn:
        api.d.incidents.evidence.add(
            conn,
            case.incident.id,
            principal=OPERATOR,
            label="disk image",
            sha256=hashlib.sha256(ITEM).hexdigest(),
            location="locker 1",
            collected_by="Lee",
        )
    page = page_of()
    log_in(page, api, "sam.officer", officer)
    page.goto(f"{root(api)}/incidents/{case.incident.id}")
    assert violations(page) == []
    page.get_by_role("button", name="Draft the notification to Amazon").click()
    assert page.locator("#draft-text").count() == 1
    assert violations(page) == []


# --- in process ---------------------------------------------------------------------------------------------


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', text)
    assert found is not None
    return found[1]


def _opened(api: Api) -> Case:
    with api.d.unit_of_work() as conn:
        incident = api.d.incidents.open(conn, type="credential-compromise", principal=OPERATOR, tenants=[TENANT])
    return _case(api, incident.id)


def test_a_compliance_reader_sees_the_incident_and_no_form_and_a_post_is_refused(api: Api) -> None:
    api.person("cora.compliance", "compliance", ["*"])
    case = _opened(api)
    one = f"{CONSOLE}/incidents/{case.incident.id}"
    _log_in(api, "cora.compliance")
    listed = api.client.get(f"{CONSOLE}/incidents")
    assert listed.status_code == 200 and f"#{case.incident.id} Compromised credential" in listed.text
    assert 'id="open-form"' not in listed.text and "Open an incident" not in listed.text
    shown = api.client.get(one)
    assert shown.status_code == 200
    assert case.tasks[0].text in shown.text and re.search(r"\d+ h \d\d min left", shown.text)
    assert re.findall(r"<form [^>]*>", shown.text) == ['<form method="post" action="/console/logout" class="logout">']
    before = _case(api, case.incident.id)
    csrf = _csrf(shown.text)
    for path, form in (
        ("/note", {"note": "looked at it"}),
        (f"/tasks/{case.tasks[0].id}", {"state": "done"}),
        ("/state", {"state": "triage"}),
        ("/notification-draft", {}),
        ("/close", DOCUMENTATION),
    ):
        refused = api.client.post(one + path, data={"csrf": csrf, **form})
        assert refused.status_code == 403, (path, refused.text)
        assert "lacks incidents:manage" in refused.text, refused.text
    opened = api.client.post(f"{CONSOLE}/incidents", data={"csrf": csrf, "type": "malware"})
    assert opened.status_code == 403
    assert _case(api, case.incident.id) == before
    with api.d.unit_of_work(read_only=True) as conn:
        assert len(api.d.incidents.list(conn, principal=OPERATOR)) == 1
    denied = [e["operation"] for e in _names(api, "cora.compliance", "access:permission:deny")]
    assert denied == [
        "incidents update",
        "incidents task",
        "incidents update",
        "incidents notify-draft",
        "incidents close",
        "incidents open",
    ]


def test_unknown_and_malformed_ids_answer_404_pages(api: Api) -> None:
    api.person("sam.officer", "security-officer", ["*"])
    case = _opened(api)
    _log_in(api, "sam.officer")
    csrf = _csrf(api.client.get(f"{CONSOLE}/incidents").text)
    missing = api.client.get(f"{CONSOLE}/incidents/999")
    assert missing.status_code == 404 and "no incident 999" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    assert api.client.post(f"{CONSOLE}/incidents/999/note", data={"csrf": csrf, "note": "x"}).status_code == 404
    task = api.client.post(f"{CONSOLE}/incidents/{case.incident.id}/tasks/99999", data={"csrf": csrf, "state": "done"})
    assert task.status_code == 404 and "has no task 99999" in task.text
    for path in ("/incidents/abc", "/incidents/0", f"/incidents/{2**31}", "/incidents/1.5/report"):
        answer = api.client.get(CONSOLE + path)
        assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html"), path
    posted = api.client.post(f"{CONSOLE}/incidents/abc/note", data={"csrf": csrf, "note": "x"})
    assert posted.status_code == 404 and posted.headers["content-type"].startswith("text/html")
    report = api.client.get(f"{CONSOLE}/incidents/{case.incident.id}/report")
    assert report.status_code == 404 and "not closed" in report.text


@pytest.mark.parametrize(
    ("path", "form", "words"),
    [
        ("", {"type": "malware", "severity": "urgent"}, "Severity is low, medium, high or critical"),
        ("", {"type": ""}, "Choose the incident type"),
        ("", {"type": "alien-invasion"}, "incident type must be one of"),
        ("", {"type": "malware", "detected_at": "yesterday"}, "not a time"),
        ("", {"type": "malware", "description": "Call the buyer on +1 206 555 0100"}, "phone number"),
        ("/{id}/note", {"note": "   "}, "Write the note first"),
        ("/{id}/state", {"state": "closing"}, "Choose the phase"),
        ("/{id}/state", {"state": "eradication"}, "can move to triage"),
        ("/{id}/tasks/{task}", {"state": "finished"}, "marked done, skipped"),
        ("/{id}/tasks/{task}", {"state": "skipped", "note": ""}, "say why the task is skipped"),
        ("/{id}/evidence", {"label": "dump", "sha256": "abc", "location": "l", "collected_by": "Lee"}, "64 hex"),
        (
            "/{id}/evidence",
            {"label": "d", "sha256": "a" * 64, "location": "l", "collected_by": "L", "size": "ten"},
            "size",
        ),
        ("/{id}/notified", {"at": "", "reference": "case 1"}, "Give the time"),
        ("/{id}/notified", {"at": "2026-12-06T09:30:00", "reference": "case 1"}, "UTC offset"),
        ("/{id}/actions", {"action": "nuke", "target": "x"}, "Choose a containment action"),
        ("/{id}/documentation", {}, "Nothing changed in the documentation"),
    ],
)
def test_bad_form_input_is_a_400_page_saying_what_to_do_and_changes_nothing(
    api: Api, path: str, form: dict[str, str], words: str
) -> None:
    api.person("sam.officer", "security-officer", ["*"])
    case = _opened(api)
    _log_in(api, "sam.officer")
    csrf = _csrf(api.client.get(f"{CONSOLE}/incidents").text)
    url = f"{CONSOLE}/incidents" + path.format(id=case.incident.id, task=case.tasks[0].id)
    answer = api.client.post(url, data={"csrf": csrf, **form})
    assert answer.status_code == 400, answer.text
    assert words in answer.text and answer.headers["content-type"].startswith("text/html")
    assert _case(api, case.incident.id) == case
    with api.d.unit_of_work(read_only=True) as conn:
        assert len(api.d.incidents.list(conn, principal=OPERATOR)) == 1


def test_a_json_body_or_a_missing_token_changes_nothing(api: Api) -> None:
    api.person("sam.officer", "security-officer", ["*"])
    case = _opened(api)
    _log_in(api, "sam.officer")
    one = f"{CONSOLE}/incidents/{case.incident.id}"
    unread = api.client.post(f"{one}/note", json={"note": "x"})
    assert unread.status_code == 400 and "could not be read" in unread.text
    stale = api.client.post(f"{one}/note", data={"note": "x"})
    assert stale.status_code == 403 and "nothing was changed" in stale.text
    assert _case(api, case.incident.id) == case


def test_containment_from_the_incident_page_engages_the_kill_switch_and_is_on_the_incident(api: Api) -> None:
    api.person("sam.officer", "security-officer", ["*"])
    case = _opened(api)
    _log_in(api, "sam.officer")
    one = f"{CONSOLE}/incidents/{case.incident.id}"
    csrf = _csrf(api.client.get(one).text)
    taken = api.client.post(
        f"{one}/actions", data={"csrf": csrf, "action": "kill-switch", "target": "pii-access", "tenant": TENANT}
    )
    assert taken.status_code == 303 and taken.headers["location"] == f"/console/incidents/{case.incident.id}#actions"
    shown = api.client.get(one)
    assert "kill-switch" in shown.text and "pii-access" in shown.text
    [action] = _case(api, case.incident.id).actions
    assert (action.action, action.target, action.tenant) == ("kill-switch", "pii-access", TENANT)
    [event] = _names(api, "sam.officer", "incident:action:take")
    assert event["operation"] == "kill-switch"
    engaged = _names(api, "sam.officer", "access:killswitch:engage")
    assert [e["operation"] for e in engaged] == [f"incident {case.incident.id}"]


def test_the_flow_in_process_on_each_backend(api_on_backend: Api) -> None:
    api = api_on_backend
    api.person("sam.officer", "security-officer", ["*"])
    _impoc(api)
    _log_in(api, "sam.officer")
    csrf = _csrf(api.client.get(f"{CONSOLE}/incidents").text)

    def post(path: str, **form: str) -> Any:
        answer = api.client.post(f"{CONSOLE}/incidents{path}", data={"csrf": csrf, **form})
        assert answer.status_code in (200, 303), (path, answer.text)
        return answer

    opened = post("", type="malware", severity="medium", amazon="possible", description="A build host ran a miner.")
    incident_id = int(opened.headers["location"].rsplit("/", 1)[1])
    case = _case(api, incident_id)
    post(f"/{incident_id}/note", note="The host holds no Amazon Information.")
    for task in case.tasks:
        post(f"/{incident_id}/tasks/{task.id}", state="done")
    digest = hashlib.sha256(ITEM).hexdigest()
    post(f"/{incident_id}/evidence", label="disk image", sha256=digest, location="locker 1", collected_by="Lee")
    [item] = _case(api, incident_id).evidence
    post(f"/{incident_id}/evidence/{item.id}/handover", **{"from": "Lee", "to": "Counsel Ito", "purpose": "hold"})
    drafted = post(f"/{incident_id}/notification-draft")
    assert drafted.status_code == 200 and "Incident reference: SV-" in drafted.text
    post(f"/{incident_id}/notified", at=api.d.now().strftime("%Y-%m-%dT%H:%M:%SZ"), reference="Amazon case 4242A")
    for phase in ("triage", "containment", "eradication", "recovery", "post-incident"):
        post(f"/{incident_id}/state", state=phase)
    post(f"/{incident_id}/documentation", **DOCUMENTATION)
    post(f"/{incident_id}/close")
    done = _case(api, incident_id)
    assert done.incident.state == "closed" and {t.state for t in done.tasks} == {"done"}
    assert done.evidence[0].holder == "Counsel Ito" and done.incident.notify_reference == "Amazon case 4242A"
    assert done.incident.description == "A build host ran a miner." and done.incident.remediation
    report = api.client.get(f"{CONSOLE}/incidents/{incident_id}/report")
    assert report.status_code == 200 and report.headers["content-disposition"] == (
        f'attachment; filename="incident-{incident_id}-report.md"'
    )
    names = [
        e["name"] for e in api.d.audit.search(actor=api._people["sam.officer"].id) if e["name"].startswith("incident:")
    ]
    assert names.count("incident:case:close") == 1 and names.count("incident:evidence:handover") == 1
