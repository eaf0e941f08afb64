"""What the console's sessions refuse, in process: a form posted from another site is never carried
through a log-in, a console session is no API session, the API's route rates hold in the console, a
POST after the session ended lands on a page that exists, and odd digits are 400s, not 500s."""

from __future__ import annotations

import re

import console_support

from conftest import OPERATOR, TENANT
from factories import PASSWORD
from sagevault.web.console._session import COOKIE
from webapi import Api

CONSOLE = "https://127.0.0.1/console"
_log_in = console_support.log_in_form


def _engaged(api: Api, name: str) -> bool:
    with api.d.unit_of_work(read_only=True) as conn:
        return any(row[0] == name and row[2] for row in api.d.access.switches.list(conn, actor=OPERATOR))


def _finish_log_in(api: Api, page: str, login: str = "alice.ng") -> object:
    """Send the log-in form `page` holds (with whatever it carries) as the person would."""
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    fields |= {"login": login, "password": PASSWORD, "code": api.next_code(api.admin_person.totp)}
    return api.client.post(f"{CONSOLE}/login", data=fields)


def test_a_form_posted_from_another_site_is_never_carried_through_the_log_in(api: Api) -> None:
    # Another site's page posts to the console: a SameSite=Strict cookie does not come with it.
    forged = {"csrf": "0" * 64, "name": "pii-access", "action": "engage"}
    landed = api.client.post(f"{CONSOLE}/killswitches", data=forged)
    assert landed.status_code == 200 and 'name="kept.' not in landed.text and "your form" not in landed.text
    done = _finish_log_in(api, landed.text)
    assert done.status_code == 303 and done.headers["location"] == "/console"  # the dashboard, nothing to resend
    assert not _engaged(api, "pii-access")
    # The same with the victim's session cookie but its session ended: the token is not that session's.
    _log_in(api, "alice.ng")
    api.clock.advance(minutes=16)
    landed = api.client.post(f"{CONSOLE}/killswitches", data=forged)
    assert 'name="kept.' not in landed.text and "Your session ended; log in again." in landed.text
    # Only a form of the session that just ended (its own token) is kept.
    _log_in(api, "alice.ng")
    board_csrf = console_support.csrf_of(api.client.get(CONSOLE).text)
    api.clock.advance(minutes=16)
    kept = api.client.post(f"{CONSOLE}/killswitches", data={**forged, "csrf": board_csrf})
    assert 'name="kept.name" value="pii-access"' in kept.text and board_csrf not in kept.text
    assert not _engaged(api, "pii-access")


def test_a_deletion_form_and_a_form_with_nothing_to_keep_go_to_pages_that_exist(api: Api) -> None:
    api.person("pat.privacy", "privacy-officer", ["*"])
    csrf = _log_in(api, "pat.privacy")
    api.clock.advance(minutes=16)
    buyer = {"csrf": csrf, "tenant": TENANT, "scope": "buyer", "name": "Jane Q. Buyer", "postal_code": "98101"}
    landed = api.client.post(f"{CONSOLE}/deletions", data=buyer)
    assert "Jane Q. Buyer" not in landed.text and "98101" not in landed.text  # a buyer is never carried
    csrf = _log_in(api, "alice.ng")
    api.clock.advance(minutes=16)
    landed = api.client.post(f"{CONSOLE}/audit/verify", data={"csrf": csrf})  # nothing in it to keep
    done = _finish_log_in(api, landed.text)
    assert done.status_code == 303 and done.headers["location"] == "/console"


def test_a_console_session_is_refused_by_the_api(api: Api) -> None:
    _log_in(api, "alice.ng")
    token = api.client._client.cookies[COOKIE]
    refused = api.client.get(f"{api.base}/killswitches", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and "belongs to the web console" in refused.json()["detail"]
    api.clock.advance(hours=9)  # and so the console's lifetime cannot be outlived there either
    refused = api.client.get(f"{api.base}/killswitches", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401


def test_the_apis_route_rates_hold_in_the_console(api: Api) -> None:
    csrf = _log_in(api, "alice.ng")  # POST /api/v1/audit/verify: 2 per minute
    answers = [api.client.post(f"{CONSOLE}/audit/verify", data={"csrf": csrf}).status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    assert api.client.post(f"{api.base}/audit/verify", headers=api.login("alice.ng")).status_code == 429


def test_digits_that_are_not_ascii_are_400_pages(api: Api) -> None:
    csrf = _log_in(api, "alice.ng")
    assert api.client.get(f"{CONSOLE}/audit", params={"after": "²"}).status_code == 400
    api.person("cai.compliance", "compliance", ["*"])
    csrf = _log_in(api, "cai.compliance")
    started = api.client.post(f"{CONSOLE}/reviews", data={"csrf": csrf, "due_days": "²", "default_decision": "keep"})
    assert started.status_code == 400 and started.headers["content-type"].startswith("text/html")


def test_a_tenant_kill_switch_does_not_tell_a_person_without_a_grant_that_the_tenant_exists(api: Api) -> None:
    with api.d.unit_of_work() as conn:
        api.d.vault.add_tenant(conn, "A2OTHERSELLER02", ["ATVPDKIKX0DER"], principal=OPERATOR)
        api.d.access.switches.set(conn, "pii-access", True, actor=OPERATOR, tenant_id=TENANT)
    api.person("pia.packer", "fulfilment", ["A2OTHERSELLER02"])
    csrf = _log_in(api, "pia.packer")
    answers = []
    for tenant in (TENANT, "A9NOSUCHSELLER9"):
        reveal = api.client.post(
            f"{CONSOLE}/tenants/{tenant}/orders/{api.order_id}/reveal",
            data={"csrf": csrf, "field": "ShippingAddress.Name", "purpose": "fulfilment"},
        )
        answers.append((reveal.status_code, reveal.text.replace(tenant, "X")))
    assert answers[0][0] == 404 and answers[0] == answers[1]
