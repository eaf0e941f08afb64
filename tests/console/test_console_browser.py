"""The console in Debian's Chromium (Playwright) against the real TLS server on 127.0.0.1: log-in with
TOTP, an alarm acknowledged, a kill switch and the reveal it stops, what a fulfilment user cannot reach,
CSRF, an idle session, and what a reveal leaves in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import console_support
import pyotp
import pytest
from playwright.sync_api import Error as PlaywrightError

from conftest import OPERATOR, TENANT
from factories import PASSWORD
from sagevault import errors
from sagevault.jobs import Watch
from webapi import Api

OTHER = "A2OTHERSELLER02"
FIELD = "ShippingAddress.Name"


# The console's fixtures (tests/console/console_support.py), for this module.
page_of = console_support.page_of
browser = console_support.browser
module_tls = console_support.module_tls
settings = console_support.settings


def root(api: Api) -> str:
    return api.base.removesuffix("/api/v1") + "/console"


def log_in(page: Any, api: Api, login: str, totp: pyotp.TOTP) -> None:
    page.goto(f"{root(api)}/login")
    page.fill("#login", login)
    page.fill("#password", PASSWORD)
    page.fill("#code", api.next_code(totp))
    with page.expect_navigation():
        page.click("form.login button")
    assert page.url == root(api), page.content()


def raise_alarm(api: Api) -> Any:
    """Twenty refused reveals by a viewer: one denied-calls alarm."""
    viewer = api.people.person("vic.viewer", "viewer", tenants=[TENANT])
    for _ in range(20):
        with pytest.raises(errors.AccessDenied), api.d.unit_of_work() as conn:
            api.d.vault.reveal(conn, TENANT, api.order_id, [FIELD], "fulfilment", principal=viewer.principal())
    Watch(api.d).catch_up()
    with api.d.unit_of_work(read_only=True) as conn:
        [alarm] = api.d.monitor.list_alarms(conn, principal=OPERATOR, state="open")
    return alarm


def engaged(api: Api, name: str) -> bool:
    with api.d.unit_of_work(read_only=True) as conn:
        return any(row[0] == name and row[2] for row in api.d.access.switches.list(conn, actor=OPERATOR))


def alarm_state(api: Api, alarm_id: int) -> str:
    with api.d.unit_of_work(read_only=True) as conn:
        return str(api.d.monitor.get(conn, alarm_id, principal=OPERATOR).state)


def test_log_in_with_totp_shows_the_alarm_by_severity_and_acknowledges_it(served_api: Api, page_of: Any) -> None:
    api = served_api
    officer = api.person("sam.officer", "security-officer", ["*"])
    alarm = raise_alarm(api)
    page = page_of()
    page.goto(f"{root(api)}/login")
    page.fill("#login", "sam.officer")
    page.fill("#password", "not-the-password")
    page.fill("#code", api.next_code(officer))
    page.click("form.login button")
    assert page.locator("#message").inner_text().startswith("Log-in failed.")  # one message, whatever was wrong
    with page.expect_response(f"{root(api)}") as answered:
        log_in(page, api, "sam.officer", officer)
    headers = answered.value.headers
    assert headers["content-security-policy"] == (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    [cookie] = [c for c in page.context.cookies() if c["name"] == "__Host-sv_console"]
    assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, True, "Strict", "/")
    row = page.locator(f"#alarm-{alarm.id}")
    assert alarm.severity in row.locator(".sev").inner_text()
    assert row.locator(".state").inner_text() == "open"
    assert page.title() == "Dashboard · SageVault console"
    row.get_by_role("button", name="Acknowledge").click()
    assert page.locator(f"#alarm-{alarm.id} .state").inner_text() == "acknowledged"
    assert alarm_state(api, alarm.id) == "acknowledged"
    officer_id = api._people["sam.officer"].id
    assert [e["name"] for e in api.d.audit.search(actor=officer_id, name="monitor:alarm:ack")] == ["monitor:alarm:ack"]


def test_a_kill_switch_engaged_refuses_the_fulfilment_reveal_right_after(served_api: Api, page_of: Any) -> None:
    api = served_api
    officer = api.person("sam.officer", "security-officer", ["*"])
    packer = api.person("pia.packer", "fulfilment", [TENANT])
    officer_page, packer_page = page_of(), page_of()
    log_in(officer_page, api, "sam.officer", officer)
    log_in(packer_page, api, "pia.packer", packer)
    packer_page.goto(f"{root(api)}/tenants/{TENANT}/orders")
    officer_page.click("nav >> text=Kill switches")
    officer_page.select_option("#name", "pii-access")
    officer_page.click("button[value=engage]")
    assert officer_page.locator("tr.switch .state").inner_text() == "engaged"
    reveal = packer_page.locator(f"#order-{api.order_id} form.reveal")
    reveal.locator("select[name=field]").select_option(FIELD)
    reveal.locator("select[name=purpose]").select_option("fulfilment")
    with packer_page.expect_response(lambda r: r.url.endswith("/reveal")) as answered:
        reveal.get_by_role("button", name="Reveal").click()
    assert answered.value.status == 403
    assert "kill switch is engaged" in packer_page.locator("#message").inner_text()
    packer_id = api._people["pia.packer"].id
    assert not list(api.d.audit.search(actor=packer_id, name="vault:field:reveal"))


def test_a_fulfilment_user_reaches_no_admin_page_and_no_tenant_without_a_grant(served_api: Api, page_of: Any) -> None:
    api = served_api
    with api.d.unit_of_work() as conn:
        api.d.vault.add_tenant(conn, OTHER, ["ATVPDKIKX0DER"], principal=OPERATOR)
    packer = api.person("pia.packer", "fulfilment", [TENANT])
    page = page_of()
    log_in(page, api, "pia.packer", packer)
    assert [a.inner_text() for a in page.locator("nav a").all()] == ["Dashboard", f"Orders {TENANT}"]
    assert page.locator("#alarms").count() == 0 and page.locator("#report").count() == 0
    assert page.goto(f"{root(api)}/killswitches").status == 403
    assert page.title() == "Refused · SageVault console"
    answers = []
    for tenant in (OTHER, "A9NOSUCHSELLER9"):  # one the person has no grant for, one that does not exist
        answer = page.goto(f"{root(api)}/tenants/{tenant}/orders")
        answers.append((answer.status, answer.text().replace(tenant, "X")))
    assert answers[0][0] == 404 and answers[0] == answers[1]  # the same answer
    assert page.goto(f"{root(api)}/tenants/{TENANT}/orders").status == 200


def test_a_post_with_a_wrong_csrf_token_is_refused_and_changes_nothing(served_api: Api, page_of: Any) -> None:
    api = served_api
    officer = api.person("sam.officer", "security-officer", ["*"])
    alarm = raise_alarm(api)
    page = page_of()
    log_in(page, api, "sam.officer", officer)
    form = page.locator(f"#alarm-{alarm.id} form")
    form.locator("input[name=csrf]").evaluate("input => { input.value = 'f'.repeat(64) }")
    with page.expect_response(lambda r: r.url.endswith("/ack")) as answered:
        form.get_by_role("button", name="Acknowledge").click()
    assert answered.value.status == 403
    assert "nothing was changed" in page.locator("#message").inner_text()
    [cookie] = [c for c in page.context.cookies() if c["name"] == "__Host-sv_console"]
    no_token = api.client.post(  # a form posted from elsewhere with the session's cookie, and no token
        f"{root(api)}/alarms/{alarm.id}/ack",
        data={"note": "x"},
        headers={"Cookie": f"{cookie['name']}={cookie['value']}"},
    )
    assert "nothing was changed" in no_token.text
    assert no_token.status_code == 403
    assert alarm_state(api, alarm.id) == "open"
    refused = list(api.d.audit.search(actor=api._people["sam.officer"].id, name="api:request:refuse"))
    assert len(refused) == 2


def test_an_idle_session_lands_on_the_log_in_page_with_the_message(served_api: Api, page_of: Any) -> None:
    api = served_api
    officer = api.person("sam.officer", "security-officer", ["*"])
    page = page_of()
    log_in(page, api, "sam.officer", officer)
    [cookie] = [c for c in page.context.cookies() if c["name"] == "__Host-sv_console"]
    api.clock.advance(minutes=14)
    assert page.goto(root(api)).url == root(api)  # used within 15 minutes: still in
    api.clock.advance(minutes=16)
    page.goto(f"{root(api)}/killswitches")
    assert page.url == f"{root(api)}/login?expired=1&next=%2Fconsole%2Fkillswitches"
    assert page.locator("#notice").inner_text() == "Your session ended; log in again."
    assert not [c for c in page.context.cookies() if c["name"] == "__Host-sv_console"]
    bearer = {"Authorization": f"Bearer {cookie['value']}"}  # the access session ended with it
    assert api.client.get(f"{api.base}/killswitches", headers=bearer).status_code == 401
    page.fill("#login", "sam.officer")
    page.fill("#password", PASSWORD)
    page.fill("#code", api.next_code(officer))
    with page.expect_navigation():
        page.click("form.login button")
    assert page.url == f"{root(api)}/killswitches"  # back where they were


def test_a_form_sent_after_the_session_ended_survives_the_log_in_and_is_sent_again(
    served_api: Api, page_of: Any
) -> None:
    api = served_api
    officer = api.person("sam.officer", "security-officer", ["*"])
    page = page_of()
    log_in(page, api, "sam.officer", officer)
    page.click("nav >> text=Kill switches")
    page.select_option("#name", "sp-api-sync")
    api.clock.advance(minutes=16)  # the person was away with the form filled in
    page.click("button[value=engage]")
    assert "nothing was changed" in page.locator("#notice").inner_text()
    assert not engaged(api, "sp-api-sync")
    page.fill("#login", "sam.officer")
    page.fill("#password", PASSWORD)
    page.fill("#code", api.next_code(officer))
    page.click("form.login button")
    page.wait_for_selector("form.resume")
    assert page.title() == "Send your form again · SageVault console"
    assert "sp-api-sync" in page.locator("form.resume dl").inner_text()
    page.get_by_role("button", name="Send again").click()
    page.wait_for_url(f"{root(api)}/killswitches")
    assert engaged(api, "sp-api-sync")


def test_a_reveal_is_shown_in_place_not_stored_and_answered_no_store(served_api: Api, page_of: Any) -> None:
    api = served_api
    packer = api.person("pia.packer", "fulfilment", [TENANT])
    with api.d.unit_of_work(read_only=True) as conn:
        [expected] = api.d.vault.reveal(
            conn, TENANT, api.order_id, [FIELD], "fulfilment", principal=api._people["pia.packer"].principal()
        )
    page = page_of()
    log_in(page, api, "pia.packer", packer)
    page.click(f"nav >> text=Orders {TENANT}")
    reveal = page.locator(f"#order-{api.order_id} form.reveal")
    reveal.locator("select[name=field]").select_option(FIELD)
    reveal.locator("select[name=purpose]").select_option("fulfilment")
    with page.expect_response(lambda r: r.url.endswith("/reveal")) as answered:
        reveal.get_by_role("button", name="Reveal").click()
    assert answered.value.status == 200 and answered.value.headers["cache-control"] == "no-store"
    assert page.locator("#revealed output").inner_text() == expected.value
    assert expected.value not in page.url and expected.value not in page.title()
    assert page.evaluate("() => [localStorage.length, sessionStorage.length]") == [0, 0]
    reveals = list(api.d.audit.search(actor=api._people["pia.packer"].id, name="vault:field:reveal"))
    assert len(reveals) == 2  # the test's own and the console's: each one recorded


def test_an_alarm_is_resolved_with_a_note_from_its_page(served_api: Api, page_of: Any) -> None:
    api = served_api
    officer = api.person("sam.officer", "security-officer", ["*"])
    auditor = api.person("cai.compliance", "compliance", ["*"])
    alarm = raise_alarm(api)
    page = page_of()
    log_in(page, api, "cai.compliance", auditor)  # alarms:read without alarms:manage: no decision to take
    page.goto(f"{root(api)}/alarms/{alarm.id}")
    assert page.locator("#alarm-state").inner_text() == "open" and page.locator("form.alarm-change").count() == 0
    officer_page = page_of()
    log_in(officer_page, api, "sam.officer", officer)
    officer_page.goto(f"{root(api)}/alarms/{alarm.id}")
    assert alarm.rule in officer_page.content()
    officer_page.fill("#note", "viewer role mis-granted; grant fixed")
    officer_page.get_by_role("button", name="Resolve").click()
    assert officer_page.locator("#alarm-state").inner_text() == "resolved"
    assert "viewer role mis-granted" in officer_page.locator("dl.facts").inner_text()
    assert alarm_state(api, alarm.id) == "resolved"
    [event] = api.d.audit.search(actor=api._people["sam.officer"].id, name="monitor:alarm:resolve")
    assert event["name"] == "monitor:alarm:resolve"
    assert page.goto(f"{root(api)}/alarms/{2**31 - 1}").status == 404


def test_after_a_reveal_the_browser_profile_holds_no_pii_on_disk(
    served_api: Api, browser: Any, module_tls: Path, tmp_path: Path
) -> None:
    """Chromium's own profile on disk (HTTP cache, history, session restore, local storage, cookies)
    after a reveal and the browser closed: the value is nowhere; the tenant's page is (the scan reads
    what the browser kept)."""
    api = served_api
    packer = api.person("pia.packer", "fulfilment", [TENANT])
    with api.d.unit_of_work(read_only=True) as conn:
        [expected] = api.d.vault.reveal(
            conn, TENANT, api.order_id, [FIELD], "fulfilment", principal=api._people["pia.packer"].principal()
        )
    profile = tmp_path / "profile"
    context = browser.browser_type.launch_persistent_context(
        str(profile), executable_path=str(console_support.CHROMIUM), args=console_support.chromium_args(module_tls)
    )
    try:
        page = context.new_page()
        log_in(page, api, "pia.packer", packer)
        page.click(f"nav >> text=Orders {TENANT}")
        reveal = page.locator(f"#order-{api.order_id} form.reveal")
        reveal.locator("select[name=field]").select_option(FIELD)
        reveal.locator("select[name=purpose]").select_option("fulfilment")
        reveal.get_by_role("button", name="Reveal").click()
        assert page.locator("#revealed output").inner_text() == expected.value
        page.go_back()
        with pytest.raises(PlaywrightError, match="ERR_CACHE_MISS"):  # the answer was not kept to show again
            page.go_forward()
    finally:
        context.close()
    kept = b"".join(p.read_bytes() for p in profile.rglob("*") if p.is_file())
    assert f"/console/tenants/{TENANT}/orders".encode() in kept  # history was written and read
    for encoded in (expected.value.encode(), expected.value.encode("utf-16-le")):
        assert encoded not in kept


def test_a_link_from_another_site_opens_the_page_in_the_live_session(served_api: Api, page_of: Any) -> None:
    """A SameSite=Strict cookie does not come with a navigation from another site (a link in an e-mail);
    the console looks again from its own site instead of ending the session."""
    api = served_api
    officer = api.person("sam.officer", "security-officer", ["*"])
    page = page_of()
    log_in(page, api, "sam.officer", officer)
    target = f"{root(api)}/killswitches"
    page.goto(f"data:text/html,<a id='go' href='{target}'>the kill switches</a>")  # an opaque, other site
    with page.expect_navigation(url=target):
        page.click("#go")
    assert page.title() == "Kill switches · SageVault console"
    assert [c["name"] for c in page.context.cookies() if c["name"] == "__Host-sv_console"] == ["__Host-sv_console"]
