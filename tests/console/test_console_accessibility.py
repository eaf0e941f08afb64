"""The console's pages checked by axe-core (the rules of WCAG 2.1 A and AA: labels, contrast, landmarks,
headings, table headers, keyboard focus) in Chromium, as a security officer and as a fulfilment user see
them, and the log-in reachable with the keyboard alone."""

from __future__ import annotations

from typing import Any

import console_support
import pytest
from axe_playwright_python.sync_playwright import Axe
from test_console_browser import log_in, raise_alarm, root

from conftest import TENANT
from factories import PASSWORD
from webapi import Api

browser = console_support.browser
module_tls = console_support.module_tls
settings = console_support.settings

WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def violations(page: Any) -> list[str]:
    found = Axe().run(page, options=WCAG).response["violations"]
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}" for v in found]


@pytest.fixture
def context(browser: Any) -> Any:
    opened = browser.new_context()
    yield opened
    opened.close()


def test_every_page_an_officer_uses_passes_axe(served_api: Api, context: Any) -> None:
    api = served_api
    officer = api.person("sam.officer", "security-officer", ["*"])
    raise_alarm(api)
    page = context.new_page()
    page.goto(f"{root(api)}/login")
    assert violations(page) == []
    log_in(page, api, "sam.officer", officer)
    links = [a.get_attribute("href") for a in page.locator("nav a").all()]
    assert len(links) >= 3
    found = {}
    for href in links:
        assert page.goto(f"{root(api).removesuffix('/console')}{href}").status == 200, href
        found[href] = violations(page)
    assert found == {href: [] for href in links}


def test_a_fulfilment_users_orders_page_passes_axe_and_the_log_in_works_from_the_keyboard(
    served_api: Api, context: Any
) -> None:
    api = served_api
    packer = api.person("pia.packer", "fulfilment", [TENANT])
    page = context.new_page()
    page.goto(f"{root(api)}/login")
    page.keyboard.press("Tab")  # the first thing the keyboard reaches is the log-in field
    for text in ("pia.packer", PASSWORD, api.next_code(packer)):
        page.keyboard.type(text)
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(root(api))
    page.goto(f"{root(api)}/tenants/{TENANT}/orders")
    assert violations(page) == []
