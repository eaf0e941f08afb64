"""The console in process (no browser): headers, the log-in form's own CSRF, bad input as 4xx pages,
the absolute lifetime, and the API left as it was."""

from __future__ import annotations

import re

import console_support

from factories import PASSWORD
from sagevault.web import create_app, openapi_document
from sagevault.web.console._session import COOKIE
from webapi import Api, InProcessClient

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_log_in = console_support.log_in_form
CONSOLE = "https://127.0.0.1/console"


def test_console_pages_carry_the_console_headers_and_the_api_keeps_its_own(api: Api) -> None:
    page = api.client.get(f"{CONSOLE}/login")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    # One script, our own file (no inline script: the CSP would refuse it anyway).
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/console/static/console.js" defer>']
    assert "__Host-sv_login=" in page.headers["set-cookie"] and "samesite=strict" in page.headers["set-cookie"].lower()
    css = api.client.get(f"{CONSOLE}/static/console.css")
    assert css.status_code == 200 and css.headers["content-security-policy"] == CSP
    missing = api.client.get(f"{CONSOLE}/no/such/page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert api.client.get(f"{CONSOLE}/alarms/not-a-number/ack").status_code in (404, 405)
    assert api.client.get(f"{api.base}/alarms").headers["content-security-policy"] == (
        "default-src 'none'; frame-ancestors 'none'"
    )
    assert not [p for p in openapi_document()["paths"] if p.startswith("/console")]


def test_a_log_in_form_without_its_token_or_unreadable_is_refused_before_any_password_check(api: Api) -> None:
    code = api.next_code(api.admin_person.totp)
    stale = api.client.post(
        f"{CONSOLE}/login", data={"csrf": "0" * 64, "login": "alice.ng", "password": PASSWORD, "code": code}
    )
    assert stale.status_code == 403 and "stale" in stale.text
    assert not list(api.d.audit.search(name="access:login:success"))
    bad = api.client.post(f"{CONSOLE}/login", content=b"\xff\xfe", headers={"content-type": "text/plain"})
    assert bad.status_code == 400 and "Log-in failed." in bad.text


def test_no_session_goes_to_the_log_in_page_and_a_session_ends_after_eight_hours_however_busy(api: Api) -> None:
    first = api.client.get(CONSOLE)  # no session was there to end: the log-in page, no "ended" notice
    assert first.status_code == 303 and first.headers["location"] == "/console/login"
    _log_in(api, "alice.ng")
    for _ in range(34):  # used every 14 minutes: never idle, but 8 h after the log-in it ends
        assert api.client.get(CONSOLE).status_code == 200
        api.clock.advance(minutes=14)
    assert api.client.get(CONSOLE).status_code == 200  # 7 h 56 min
    api.clock.advance(minutes=5)
    ended = api.client.get(CONSOLE)
    assert ended.status_code == 303 and ended.headers["location"] == "/console/login?expired=1"
    assert list(api.d.audit.search(name="access:session:end"))  # the access session is revoked with it


def test_the_admin_sees_no_alarm_block_and_a_form_posted_as_json_is_a_400_page(api: Api) -> None:
    _log_in(api, "alice.ng")
    board = api.client.get(CONSOLE)
    assert board.status_code == 200 and 'id="alarms"' not in board.text and "Kill switches" in board.text
    odd = api.client.post(f"{CONSOLE}/killswitches", json={"name": "pii-access"})
    assert odd.status_code == 400 and odd.headers["content-type"].startswith("text/html")


def test_a_console_session_holds_on_every_node_and_an_api_session_is_not_one(api: Api) -> None:
    _log_in(api, "alice.ng")
    cookie = {"Cookie": f"{COOKIE}={api.client._client.cookies[COOKIE]}"}
    other_node = InProcessClient(create_app(api.d), "https://127.0.0.1")  # another worker: its own memory
    try:
        assert other_node.get(CONSOLE, headers=cookie).status_code == 200
        api.clock.advance(minutes=10)
        assert other_node.get(CONSOLE, headers=cookie).status_code == 200  # used here ...
        api.clock.advance(minutes=10)
        assert api.client.get(CONSOLE).status_code == 200  # ... so not idle on the first node either
        api.clock.advance(minutes=16)
        assert other_node.get(CONSOLE, headers=cookie).headers["location"] == "/console/login?expired=1"
        bearer = api.login("alice.ng")["Authorization"].removeprefix("Bearer ")  # a session of the API
        refused = other_node.get(CONSOLE, headers={"Cookie": f"{COOKIE}={bearer}"})
        assert refused.status_code == 303 and refused.headers["location"] == "/console/login?expired=1"
    finally:
        other_node.close()


def test_the_log_in_returns_only_to_a_console_page(api: Api) -> None:
    landed = []
    for target in ("/console/killswitches", "//evil.example/x", "https://evil.example", "/console/../api/v1", "/x"):
        api.client._client.cookies.clear()  # a new browser each time
        form = api.client.get(f"{CONSOLE}/login", params={"next": target, "checked": "1"})
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text)
        assert csrf is not None
        code = api.next_code(api.admin_person.totp)
        data = {"csrf": csrf[1], "login": "alice.ng", "password": PASSWORD, "code": code, "next": target}
        done = api.client.post(f"{CONSOLE}/login", data=data)
        landed.append(done.headers["location"])
    assert landed == ["/console/killswitches", "/console", "/console", "/console", "/console"]
