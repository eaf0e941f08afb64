"""The console's main pages as people see them, in Chromium against the real TLS server on a seeded
deployment (an alarm, an incident, a deletion request, an access review, a vulnerability, orders): each
page renders its sections, and its screenshot is taken. With SAGEVAULT_SCREENSHOTS=DIR the screenshots
are written there (`SAGEVAULT_SCREENSHOTS=docs/img make test-screenshots` refreshes docs/console.md's)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import console_support
import pytest
from test_console_browser import log_in, raise_alarm, root

from conftest import OPERATOR, TENANT
from webapi import Api

browser = console_support.browser
module_tls = console_support.module_tls
settings = console_support.settings

DATA = Path(__file__).parents[1] / "data"
JPEG = b"\xff\xd8\xff"


@pytest.fixture
def context(browser: Any) -> Any:
    opened = browser.new_context(viewport={"width": 1280, "height": 800})
    yield opened
    opened.close()


def test_the_main_pages_render_their_sections_and_are_photographed(
    served_api: Api, context: Any, tmp_path: Path
) -> None:
    api = served_api
    d = api.d
    officer = api.person("sam.officer", "security-officer", ["*"])
    lead = api.person("cai.compliance", "compliance", ["*"])
    packer = api.person("pia.packer", "fulfilment", [TENANT])
    alarm = raise_alarm(api)
    with d.unit_of_work() as conn:
        incident = d.incidents.open(
            conn, type="unauthorized-access", amazon="yes", principal=OPERATOR, title="Viewer probing reveals"
        )
        deletion = d.deletion.request(conn, tenant_id=TENANT, principal=OPERATOR)
        d.governance.vulns.scan(conn, json.loads((DATA / "pip-audit-recorded.json").read_text()), principal=OPERATOR)
        campaign = d.governance.reviews.start(conn, principal=OPERATOR, due_days=30, default_decision="keep")
    api.clock.advance(hours=5)
    out = Path(os.environ.get("SAGEVAULT_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    shots = {
        "sam.officer": (
            officer,
            {
                "dashboard": ("", "#alarms"),
                "alarm": (f"/alarms/{alarm.id}", "dl.facts"),
                "incidents": ("/incidents", "table"),
                "incident": (f"/incidents/{incident.id}", "form"),
                "security-log": ("/audit", "table"),
                "kill-switches": ("/killswitches", "form"),
            },
        ),
        "cai.compliance": (
            lead,
            {
                "dashboard-compliance": ("", "#report"),
                "deletion": (f"/deletions/{deletion.id}", "dl"),
                "review": (f"/reviews/{campaign.id}", "table"),
                "report": ("/report", "table"),
            },
        ),
        "pia.packer": (packer, {"orders": (f"/tenants/{TENANT}/orders", f"#order-{api.order_id}")}),
    }
    taken = []
    for login, (totp, pages) in shots.items():
        page = context.new_page()
        log_in(page, api, login, totp)
        for name, (path, section) in pages.items():
            answer = page.goto(f"{root(api)}{path}")
            assert answer is not None and answer.status == 200, (name, answer and answer.status)
            assert page.locator(section).count() >= 1, name
            target = out / f"console-{name}.jpg"
            page.screenshot(path=str(target), type="jpeg", quality=60)  # the first screen
            assert target.read_bytes().startswith(JPEG)
            taken.append(name)
        page.close()
        context.clear_cookies()
    assert len(taken) == 11
