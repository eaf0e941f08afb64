"""The security log and the DPP report in the console: in Chromium against the real TLS server, a
search of the log by event name, a verification, and the evidence pack downloaded from the report page
and verified against the deployment's public key; in process, the refusals (no audit:read, no
governance:read), bad search parameters as 400 pages, paging, and no PII on any of these pages."""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import console_support
import pytest
from test_console_accessibility import violations
from test_console_browser import log_in, raise_alarm, root

from conftest import OPERATOR, TENANT
from sagevault import errors
from sagevault.compliance import REQUIREMENTS, verify_pack
from sagevault.testing import generate_orders, get_orders_response
from sagevault.vault import Operation
from webapi import Api

CONSOLE = "https://127.0.0.1/console"
DATA = Path(__file__).parents[1] / "data"
FIELDS = ["ShippingAddress.Name", "ShippingAddress.AddressLine1", "ShippingAddress.City", "ShippingAddress.Phone"]

_log_in = console_support.log_in_form
page_of = console_support.page_of
browser = console_support.browser
module_tls = console_support.module_tls
settings = console_support.settings


def _reveal(api: Api, login: str, order_id: str) -> list[str]:
    """The packer reveals the order's name, address and phone (vault:field:reveal); the values."""
    with api.d.unit_of_work(read_only=True) as conn:
        shown = api.d.vault.reveal(
            conn, TENANT, order_id, FIELDS, "fulfilment", principal=api._people[login].principal()
        )
    return [str(f.value) for f in shown]


def _events(api: Api, name: str, actor: str) -> list[dict[str, Any]]:
    return list(api.d.audit.search(name=name, actor=actor))


def test_a_search_by_event_name_a_verification_and_an_evidence_pack_that_verifies(
    served_api: Api, page_of: Callable[[], Any], tmp_path: Path
) -> None:
    api = served_api
    lead = api.person("cai.compliance", "compliance", ["*"])
    api.person("pia.packer", "fulfilment", [TENANT])
    _reveal(api, "pia.packer", api.order_id)
    packer, lead_id = api._people["pia.packer"].id, api._people["cai.compliance"].id
    page = page_of()
    log_in(page, api, "cai.compliance", lead)

    page.click("nav >> text=Security log")
    assert page.title() == "Security log · SageVault console"
    page.fill("#name", "vault:field:reveal")
    page.fill("#since", "")
    page.get_by_role("button", name="Search").click()
    assert "name=vault%3Afield%3Areveal" in page.url
    rows = page.locator("#events tr.event")
    assert rows.count() == 1
    assert rows.locator("td.name").inner_text() == "vault:field:reveal"
    assert packer in rows.inner_text() and TENANT in rows.inner_text()
    assert rows.locator("td.outcome").inner_text() == "success"
    assert rows.locator("time + .local").count() == 1
    _opened, searched = _events(api, "audit:log:read", lead_id)  # the page opens on the last 24 hours
    assert searched["counts"] == {"events": 1}  # each search is recorded, with what it read

    page.get_by_role("button", name="Verify the log now").click()
    assert page.locator("#verify-result").inner_text().startswith("PASSED")
    [verified] = _events(api, "audit:log:verify", lead_id)
    assert verified["outcome"] == "success"

    page.click("nav >> text=DPP report")
    assert page.title() == "DPP report · SageVault console"
    assert page.locator("#items tr.item").count() == len(REQUIREMENTS)
    integrity = page.locator("#item-dpp-4-log-integrity")
    assert integrity.locator(".status").inner_text() == "PASS"  # verified just now, from the console
    with page.expect_download() as downloading:
        page.get_by_role("button", name="Download the signed evidence pack").click()
    download = downloading.value
    assert download.suggested_filename == "sagevault-evidence-pack.zip"
    saved = tmp_path / "pack.zip"
    download.save_as(saved)
    public = api.d.settings.resolved_audit_signing_key_file.with_suffix(".pub")
    assert verify_pack(saved.read_bytes(), public) == (True, [])
    [made] = _events(api, "compliance:pack:create", lead_id)
    assert made["fingerprint"] == hashlib.sha256(saved.read_bytes()).hexdigest()


def test_the_dashboard_the_log_and_the_report_of_a_compliance_person_pass_axe(
    served_api: Api, page_of: Callable[[], Any]
) -> None:
    api = served_api
    lead = api.person("cai.compliance", "compliance", ["*"])
    api.person("pia.packer", "fulfilment", [TENANT])
    _reveal(api, "pia.packer", api.order_id)
    with api.d.unit_of_work() as conn:
        api.d.governance.vulns.scan(
            conn, json.loads((DATA / "pip-audit-recorded.json").read_text()), principal=OPERATOR
        )
    raise_alarm(api)
    page = page_of()
    log_in(page, api, "cai.compliance", lead)
    found = {}
    for path in ("", "/report", "/audit?name=vault%3A&since="):
        assert page.goto(f"{root(api)}{path}").status == 200, path
        found[path] = violations(page)
    page.get_by_role("button", name="Verify the log now").click()
    found["verified"] = violations(page)
    assert found == {"": [], "/report": [], "/audit?name=vault%3A&since=": [], "verified": []}


# --- in process ------------------------------------------------------------------------------------------


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None
    return found[1]


def test_without_audit_read_or_governance_read_the_pages_are_refused_and_nothing_is_read(api: Api) -> None:
    api.person("pia.packer", "fulfilment", [TENANT])
    _log_in(api, "pia.packer")
    csrf = _csrf(api.client.get(CONSOLE).text)
    answers = {
        "search": api.client.get(f"{CONSOLE}/audit?name=vault:field:reveal"),
        "verify": api.client.post(f"{CONSOLE}/audit/verify", data={"csrf": csrf}),
        "report": api.client.get(f"{CONSOLE}/report"),
        "pack": api.client.post(f"{CONSOLE}/report/pack", data={"csrf": csrf}),
    }
    for what, answer in answers.items():
        assert answer.status_code == 403, what
        assert answer.headers["content-type"].startswith("text/html"), what
    packer = api._people["pia.packer"].id
    for name in ("audit:log:read", "audit:log:verify", "compliance:report:create", "compliance:pack:create"):
        assert not list(api.d.audit.search(name=name)), name
    assert len(_events(api, "access:permission:deny", packer)) == 4  # each refusal recorded
    assert "Security log" not in answers["search"].text  # the navigation hides it


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("since=2026-11-02T08:00&until=2026-11-01T08:00", "swap them"),
        ("since=2026-11-01T08:00&until=2026-11-01T08:00", "earlier than"),
        ("since=yesterday", "'From' is not a time"),
        ("until=2026-13-45", "'Until' is not a time"),
        ("name=vault:field:peek", "not one of the log's events"),
        ("actor=someone@example.com", "principal id"),
        ("tenant=not-a-tenant", "tenant id"),
        ("outcome=maybe", "the outcome is one of"),
        ("after=-3", "page link is broken"),
        ("buyer=x", "parameter the form does not have"),
    ],
)
def test_a_bad_search_is_a_400_page_that_says_what_to_fix_and_reads_nothing(api: Api, query: str, says: str) -> None:
    _log_in(api, api.admin_person.login)  # audit:read
    answer = api.client.get(f"{CONSOLE}/audit?{query}")
    assert answer.status_code == 400 and answer.headers["content-type"].startswith("text/html")
    assert says in html.unescape(answer.text) and "Nothing was searched" in answer.text
    assert "someone@example.com" not in answer.text
    assert not list(api.d.audit.search(name="audit:log:read"))


def test_search_pages_by_event_with_a_prefix_and_an_outcome(api_on_backend: Api) -> None:
    api = api_on_backend
    viewer = api.people.person("vic.viewer", "viewer", tenants=[TENANT])
    for _ in range(55):  # refused reveals: access:permission:deny, denied
        with pytest.raises(errors.AccessDenied), api.d.unit_of_work() as conn:
            api.d.vault.reveal(conn, TENANT, api.order_id, FIELDS[:1], "fulfilment", principal=viewer.principal())
    _log_in(api, api.admin_person.login)
    first = api.client.get(f"{CONSOLE}/audit", params={"name": "access:permission:deny", "actor": viewer.id})
    assert first.status_code == 200 and first.text.count('class="event"') == 50
    more = re.search(r'<a href="([^"]+)" rel="next"', first.text)
    assert more is not None
    second = api.client.get(more[1].replace("&amp;", "&"))
    assert second.text.count('class="event"') == 5 and 'rel="next"' not in second.text
    denied = api.client.get(f"{CONSOLE}/audit", params={"name": "access:", "outcome": "denied", "actor": viewer.id})
    assert denied.text.count('class="event"') == 50 and denied.text.count("access:permission:deny") >= 50
    none = api.client.get(
        f"{CONSOLE}/audit", params={"name": "access:permission:", "outcome": "success", "actor": viewer.id}
    )
    assert 'class="event"' not in none.text and 'id="no-events"' in none.text
    reads = [e["counts"]["events"] for e in _events(api, "audit:log:read", api.admin_person.id)]
    assert reads == [55, 5, 56, 56]  # each page recorded with how many events it read (the prefix: + enrol)


def test_no_page_of_the_log_the_report_or_the_dashboard_carries_pii(api_on_backend: Api) -> None:
    api = api_on_backend
    order = next(generate_orders(1, seed=404, prefix="SEED"))
    order["ShippingAddress"].update(
        {"Name": "Zebulon Quackenbush", "AddressLine1": "17 Marigold Crescent", "City": "Wolverhampton"}
    )
    order["ShippingAddress"]["Phone"] = "+44 7700 900123"
    with api.d.unit_of_work() as conn:
        api.d.vault.ingest(conn, TENANT, [get_orders_response([order])], Operation.GET_ORDERS, principal=OPERATOR)
    api.person("pia.packer", "fulfilment", [TENANT])
    api.person("cai.compliance", "compliance", ["*"])
    values = _reveal(api, "pia.packer", order["AmazonOrderId"])
    assert {"Zebulon Quackenbush", "17 Marigold Crescent", "Wolverhampton"} <= set(values)
    _log_in(api, "cai.compliance")
    pages = [
        api.client.get(f"{CONSOLE}/audit", params={"name": "vault:field:reveal"}),
        api.client.get(f"{CONSOLE}/audit", params={"name": "vault:", "tenant": TENANT}),
        api.client.get(f"{CONSOLE}/audit"),
        api.client.get(f"{CONSOLE}/report"),
        api.client.get(CONSOLE),
    ]
    assert pages[0].status_code == 200 and pages[0].text.count('class="event"') == 1
    for answer in pages:
        assert answer.status_code == 200
        for value in values:
            assert value not in answer.text
        for known in ("Zebulon", "Quackenbush", "Marigold", "Wolverhampton", "7700 900123", "@marketplace"):
            assert known not in answer.text, known
