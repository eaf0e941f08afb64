"""The dashboard's clocks and plots in Chromium against the real TLS server (an incident's 24-hour
clock, a deletion request's 72 hours, a vulnerability's fix deadline, in UTC and in the reader's local
time; alarms and reveals per day), and in process what a person's scopes keep off it: the plot of
reveals without audit:read, the kept DPP report without governance:read."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import console_support
from test_console_browser import log_in, raise_alarm

from conftest import OPERATOR, TENANT
from sagevault.testing import ManualClock
from sagevault.web.console._render import left, utc
from webapi import Api

DATA = Path(__file__).parents[1] / "data"
CONSOLE = "https://127.0.0.1/console"

_log_in = console_support.log_in_form
page_of = console_support.page_of
browser = console_support.browser
module_tls = console_support.module_tls
settings = console_support.settings


def _start() -> datetime:
    """A week ago at 08:00 UTC: every day of the test is a whole UTC day, and never in the future."""
    return (datetime.now(UTC) - timedelta(days=7)).replace(hour=8, minute=0, second=0, microsecond=0)


def _numbers(page: Any, plot: str) -> dict[str, str]:
    """A plot's table (in a closed <details>: its text, not what is shown): day → total."""
    rows = page.locator(f"#{plot} table.numbers tbody tr").all()
    return {str(r.locator("th").text_content()): str(r.locator("td.total").text_content()) for r in rows}


def test_the_clocks_show_time_left_and_deadlines_in_utc_and_local_time_and_the_plots_count(
    serve_watched: Callable[..., Api], page_of: Callable[[], Any]
) -> None:
    start = _start()
    api = serve_watched(ManualClock(start))
    d = api.d
    lead = api.person("cai.compliance", "compliance", ["*"])
    api.person("pia.packer", "fulfilment", [TENANT])
    packer = api._people["pia.packer"]
    with d.unit_of_work() as conn:  # found now: the critical finding's 7 days run from here
        d.governance.vulns.scan(conn, json.loads((DATA / "pip-audit-recorded.json").read_text()), principal=OPERATOR)
    revealed_at = api.clock()
    for field in ("ShippingAddress.Name", "ShippingAddress.City"):  # two reveals, on the first day
        with d.unit_of_work(read_only=True) as conn:
            d.vault.reveal(conn, TENANT, api.order_id, [field], "fulfilment", principal=packer.principal())
    api.clock.advance(days=6)
    alarm = raise_alarm(api)
    with d.unit_of_work() as conn:
        incident = d.incidents.open(conn, type="unauthorized-access", amazon="yes", principal=OPERATOR)
        deletion = d.deletion.request(conn, tenant_id=TENANT, principal=OPERATOR)
    api.clock.advance(hours=3)

    page = page_of()
    log_in(page, api, "cai.compliance", lead)
    now = api.clock()
    with d.unit_of_work(read_only=True) as conn:
        [critical] = [v for v in d.governance.vulns.list_vulns(conn, principal=OPERATOR) if v.package == "jinja2"]
    due = {
        "incident": incident.notify_due,
        "deletion": deletion.due_at,
        "vuln": critical.due_at,
    }
    assert due["incident"] - now == timedelta(hours=24) - (now - incident.detected_at)
    rows = {
        "incident": (page.locator("#incidents tbody tr", has_text=f"#{incident.id}"), 3, 4),
        "deletion": (page.locator("#deletions tbody tr", has_text=f"#{deletion.id}"), 4, 5),
        "vuln": (page.locator(f"#vuln-{critical.id}"), 3, 4),
    }
    for what, (row, at, clock) in rows.items():
        deadline = row.locator("td").nth(at)
        stamp = deadline.locator("time")
        assert stamp.inner_text() == utc(due[what]), what
        assert stamp.get_attribute("datetime") == due[what].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert re.fullmatch(r" \(.+ local\)", deadline.locator("time + .local").inner_text()), what
        assert row.locator("td").nth(clock).inner_text() == left(int((due[what] - now).total_seconds())), what
    assert "left" in page.locator(f"#vuln-{critical.id} td.left").inner_text()  # about 19 hours, not overdue
    assert page.locator(f"#alarm-{alarm.id}").count() == 1

    alarms = _numbers(page, "plot-alarms")
    assert len(alarms) == 14 and alarms[now.strftime("%m-%d")] == "1"
    assert sum(int(v) for v in alarms.values()) == 1
    reveals = _numbers(page, "plot-reveals")
    assert len(reveals) == 7 and reveals[revealed_at.strftime("%m-%d")] == "2"
    assert sum(int(v) for v in reveals.values()) == 2
    desc = page.locator("#plot-reveals svg desc").text_content()
    assert f"{revealed_at.strftime('%m-%d')}: 2" in desc and desc.endswith("Total 2.")
    assert page.locator("#plot-reveals svg[role=img] rect").count() == 1
    assert page.locator("#plot-reveals svg").get_attribute("aria-labelledby") == "plot-reveals-t plot-reveals-d"
    assert page.locator("#report-at time").get_attribute("datetime") == now.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "never been verified" in page.locator("#verify-last").inner_text()


# --- in process ------------------------------------------------------------------------------------------


def _reports(api: Api) -> int:
    return len(list(api.d.audit.search(name="compliance:report:create")))


def test_without_audit_read_no_reveal_plot_and_the_kept_report_is_never_shown_without_governance_read(
    api_on_backend: Api,
) -> None:
    api = api_on_backend
    api.person("cai.compliance", "compliance", ["*"])
    api.person("pat.privacy", "privacy-officer", ["*"])
    _log_in(api, "cai.compliance")
    first = api.client.get(CONSOLE)
    assert first.status_code == 200 and 'id="report"' in first.text and 'id="plot-reveals"' in first.text
    assert _reports(api) == 1
    again = api.client.get(CONSOLE)  # within the minute: the items kept, not evaluated again
    assert 'id="report"' in again.text and _reports(api) == 1
    api.clock.advance(seconds=61)
    assert 'id="report"' in api.client.get(CONSOLE).text and _reports(api) == 2

    _log_in(api, "pat.privacy")  # backups, retention, deletion: no audit:read, no governance:read
    board = api.client.get(CONSOLE)
    assert board.status_code == 200
    assert 'id="backups"' in board.text and 'id="retention"' in board.text and 'id="plot-retention"' in board.text
    for absent in ('id="plot-reveals"', 'id="verify"', 'id="report"', 'id="vulns"', "DPP report"):
        assert absent not in board.text, absent
    assert _reports(api) == 2

    _log_in(api, api.admin_person.login)  # audit:read, no governance:read
    board = api.client.get(CONSOLE)
    assert 'id="plot-reveals"' in board.text and 'id="verify"' in board.text
    assert 'id="report"' not in board.text and "dpp-" not in board.text and _reports(api) == 2
    denied = [e for e in api.d.audit.search(name="access:permission:deny") if e["actor"] == api.admin_person.id]
    assert not denied  # nothing was asked that the person's scopes do not cover


def test_a_person_whose_governance_grant_ends_sees_no_kept_report(api: Api) -> None:
    api.person("cai.compliance", "compliance", ["*"])
    _log_in(api, "cai.compliance")
    assert 'id="report"' in api.client.get(CONSOLE).text
    person = api._people["cai.compliance"]
    with api.d.unit_of_work() as conn:
        [grant] = api.d.access.grants.list(conn, actor=OPERATOR, login=person.login)
        api.d.access.grants.revoke(conn, grant.id, actor=OPERATOR)
    board = api.client.get(CONSOLE)  # within the minute of the kept report
    assert board.status_code == 200 and 'id="report"' not in board.text and "dpp-" not in board.text
