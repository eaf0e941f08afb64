"""The console's access-review pages: compliance people start a campaign in Chromium (Playwright, the
real TLS server), keep one item and revoke another (revoked in access at once), are refused their own
item with the reason on the page, close it and download the signed report, which verifies; in
process: the refusals (no scope, unknown ids, bad forms, out of order) answered as pages with nothing
changed."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import console_support
from test_console_browser import log_in, root

from conftest import OPERATOR, TENANT
from sagevault.audit import load_public_key
from sagevault.governance._reviews import verify_report
from webapi import Api

CONSOLE = "https://127.0.0.1/console"

# The console's fixtures (tests/console/console_support.py) and the browser test's page maker, for this module.
_log_in = console_support.log_in_form
browser = console_support.browser
module_tls = console_support.module_tls
settings = console_support.settings
page_of = console_support.page_of


def _campaign(api: Api, campaign_id: int) -> Any:
    with api.d.unit_of_work(read_only=True) as conn:
        return api.d.governance.reviews.get(conn, campaign_id, principal=OPERATOR)


def _item_of(api: Api, campaign_id: int, login: str) -> int:
    subject = api.admin_person.id if login == api.admin_person.login else api._people[login].id
    [item] = [i.id for i in _campaign(api, campaign_id).items if i.subject == subject]
    return item


def _decide(page: Any, item: int, decision: str, why: str) -> None:
    row = page.locator(f"#item-{item}")
    row.locator("input[name=justification]").fill(why)
    row.get_by_role("button", name=decision).click()


def _public_key(api: Api) -> Any:
    return load_public_key(api.d.settings.resolved_audit_signing_key_file.with_suffix(".pub"))


def test_a_campaign_decided_in_the_browser_revokes_refuses_self_review_and_gives_a_signed_report(
    served_api: Api, page_of: Any
) -> None:
    api = served_api
    cora = api.person("cora.comply", "compliance", ["*"])
    dan = api.person("dan.comply", "compliance", ["*"])
    api.person("vic.viewer", "viewer", [TENANT])
    page = page_of()
    log_in(page, api, "cora.comply", cora)
    page.click("nav >> text=Access reviews")
    assert "No campaign was started yet." in page.locator("#campaigns").inner_text()
    page.fill("#due_days", "30")
    page.select_option("#default_decision", "none")
    page.get_by_role("button", name="Start the campaign").click()
    assert re.fullmatch(rf"{re.escape(root(api))}/reviews/\d+", page.url), page.content()
    campaign_id = int(page.url.rsplit("/", 1)[1])
    assert page.locator("#state").inner_text() == "open"
    assert page.locator("#due time").get_attribute("datetime").endswith("Z")
    assert "30 h" not in page.locator("#due").inner_text() and "720 h 00 min left" in page.locator("#due").inner_text()
    alice, own, dans, vics = (
        _item_of(api, campaign_id, n) for n in ("alice.ng", "cora.comply", "dan.comply", "vic.viewer")
    )
    assert page.locator(f"#item-{own} .subject").inner_text().endswith("(you)")
    assert page.locator(f"#item-{vics} .access").inner_text().startswith("grant")
    assert "viewer on " + TENANT in page.locator(f"#item-{vics} .access").inner_text()
    assert page.locator(f"#item-{vics} .recommendation").inner_text().startswith(("keep", "revoke"))

    _decide(page, alice, "Keep", "the deployment's administrator")
    assert page.locator(f"#item-{alice} .decided").inner_text() == "keep"
    _decide(page, vics, "Revoke", "moved to another team")
    assert page.locator(f"#item-{vics} .decided").inner_text() == "revoke"
    assert "revoked in access" in page.locator(f"#item-{vics} .decision").inner_text()
    assert page.locator(f"#item-{vics} form.decide").count() == 0  # a revocation is not undone by a review
    with api.d.unit_of_work(read_only=True) as conn:
        assert api.d.access.grants.list(conn, actor=OPERATOR, login="vic.viewer") == []
    viewer = api.login("vic.viewer")
    assert api.client.get(f"{api.base}/tenants/{TENANT}/orders/{api.order_id}", headers=viewer).status_code == 403
    assert len(list(api.d.audit.search(name="access:grant:revoke", actor="job:access-review-campaigns"))) == 1

    with page.expect_response(lambda r: r.url.endswith(f"/items/{own}")) as answered:
        _decide(page, own, "Keep", "I review access")
    assert answered.value.status == 403
    message = page.locator("#message").inner_text()
    assert message.startswith(f"Item #{own}: ") and "your own access" in message and "another reviewer" in message
    assert page.locator(f"#item-{own}.refused .decided").count() == 0  # still undecided, and marked on the page
    cora_id = api._people["cora.comply"].id
    decisions = list(api.d.audit.search(actor=cora_id, name="governance:review:decide"))
    assert [(e["outcome"], e["counts"]["item"]) for e in decisions] == [
        ("success", alice),
        ("success", vics),
        ("denied", own),
    ]

    page.get_by_role("button", name="Close the campaign").click()  # two items undecided, no default: refused
    assert "undecided" in page.locator("#message").inner_text()
    assert _campaign(api, campaign_id).state == "open"

    other = page_of()  # dan decides cora's item; she decides his
    log_in(other, api, "dan.comply", dan)
    other.goto(f"{root(api)}/reviews/{campaign_id}")
    _decide(other, own, "Keep", "reviews access for the team")
    assert other.locator(f"#item-{own} .decided").inner_text() == "keep"
    page.goto(f"{root(api)}/reviews/{campaign_id}")
    _decide(page, dans, "Keep", "reviews access for the team")
    assert page.locator("#counts").inner_text().startswith("4: 4 decided, 0 undecided")
    page.get_by_role("button", name="Close the campaign").click()
    assert page.locator("#state").inner_text() == "closed"
    assert page.locator("#verified").inner_text().startswith("Signature verified")
    shown_sha = page.locator("#report-sha256").inner_text()
    with page.expect_download() as downloading:
        page.click("#download")
    download = downloading.value
    assert download.suggested_filename == f"access-review-{campaign_id}-report.json"
    data = Path(download.path()).read_bytes()

    signed = json.loads(data)
    assert verify_report(signed, _public_key(api))
    with api.d.unit_of_work(read_only=True) as conn:
        assert signed == api.d.governance.reviews.export(conn, campaign_id, principal=OPERATOR)
    assert signed["report"]["counts"]["revoke"] == 1 and signed["report"]["counts"]["keep"] == 3
    decided = {i["id"]: (i["decision"], i["decided_by"]) for i in signed["report"]["items"]}
    assert decided[own] == ("keep", api._people["dan.comply"].id) and decided[vics] == ("revoke", cora_id)
    closes = list(api.d.audit.search(actor=cora_id, name="governance:review:close"))
    assert [e["outcome"] for e in closes] == ["failure", "success"]  # refused (items undecided), then closed
    closed = closes[-1]
    assert closed["fingerprint"] == hashlib.sha256(data).hexdigest() == shown_sha
    signed["report"]["counts"]["revoke"] = 0
    assert not verify_report(signed, _public_key(api))
    page.click("nav >> text=Access reviews")
    row = page.locator(f"#campaign-{campaign_id}")
    assert row.locator(".state").inner_text() == "closed" and row.locator(".undecided").inner_text() == "0"


# --- in process ----------------------------------------------------------------------------------


def _start(api: Api) -> int:
    with api.d.unit_of_work() as conn:
        return api.d.governance.reviews.start(conn, principal=OPERATOR, due_days=30, default_decision="keep").id


def test_without_the_governance_scopes_every_review_page_and_form_is_refused(api_on_backend: Api) -> None:
    api = api_on_backend
    api.person("vic.viewer", "viewer", [TENANT])
    api.person("sam.officer", "security-officer", ["*"])
    campaign_id = _start(api)
    item = _item_of(api, campaign_id, "sam.officer")
    csrf = _log_in(api, "vic.viewer")
    for path in ("/reviews", f"/reviews/{campaign_id}", f"/reviews/{campaign_id}/report"):
        assert api.client.get(f"{CONSOLE}{path}").status_code == 403, path
    for path, form in (
        ("/reviews", {"due_days": "30", "default_decision": "keep"}),
        (f"/reviews/{campaign_id}/items/{item}", {"decision": "revoke", "justification": "not needed"}),
        (f"/reviews/{campaign_id}/close", {"default_decision": "revoke"}),
    ):
        answer = api.client.post(f"{CONSOLE}{path}", data={"csrf": csrf, **form})
        assert answer.status_code == 403 and 'id="message"' in answer.text, path
    campaign = _campaign(api, campaign_id)
    assert campaign.state == "open" and campaign.counts["undecided"] == campaign.counts["items"]
    assert len(list(api.d.audit.search(actor=api._people["vic.viewer"].id, name="access:permission:deny"))) == 6
    with api.d.unit_of_work(read_only=True) as conn:
        assert [c.id for c in api.d.governance.reviews.list_campaigns(conn, principal=OPERATOR)] == [campaign_id]


def test_unknown_campaigns_and_items_are_404_pages_and_bad_forms_400_pages(api_on_backend: Api) -> None:
    api = api_on_backend
    api.person("cora.comply", "compliance", ["*"])
    api.person("vic.viewer", "viewer", [TENANT])
    csrf = _log_in(api, "cora.comply")
    for path in ("/reviews/999", "/reviews/999/report", "/reviews/0", "/reviews/abc"):
        answer = api.client.get(f"{CONSOLE}{path}")
        assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html"), path
    for form in (
        {"due_days": "abc"},
        {"due_days": "0"},
        {"due_days": "91"},
        {"unused_days": "-1"},
        {"default_decision": "maybe"},
    ):
        answer = api.client.post(f"{CONSOLE}/reviews", data={"csrf": csrf, **form})
        assert answer.status_code == 400 and "1 to 90" in answer.text, form
    assert api.client.post(f"{CONSOLE}/reviews", json={"due_days": 30}).status_code == 400
    with api.d.unit_of_work(read_only=True) as conn:
        assert api.d.governance.reviews.list_campaigns(conn, principal=OPERATOR) == []

    made = api.client.post(f"{CONSOLE}/reviews", data={"csrf": csrf, "due_days": "30", "default_decision": "keep"})
    assert made.status_code == 303
    campaign_id = int(made.headers["location"].rsplit("/", 1)[1])
    again = api.client.post(f"{CONSOLE}/reviews", data={"csrf": csrf, "due_days": "30"})
    assert again.status_code == 409 and f"campaign {campaign_id} is open" in again.text
    vics = _item_of(api, campaign_id, "vic.viewer")
    for path in (f"/reviews/999/items/{vics}", f"/reviews/{campaign_id}/items/999", "/reviews/999/close"):
        answer = api.client.post(f"{CONSOLE}{path}", data={"csrf": csrf, "decision": "keep", "justification": "ok"})
        assert answer.status_code == 404, path
    for form, status, words in (
        ({"decision": "maybe", "justification": "ok"}, 400, "Choose keep, revoke or change"),
        ({"decision": "revoke", "justification": "x" * 501}, 400, "at most 500 characters"),
        ({"decision": "revoke", "justification": " "}, 400, "give a justification"),
        ({"decision": "revoke", "justification": "call him on +1 206 555 0100"}, 400, "phone number"),
    ):
        answer = api.client.post(f"{CONSOLE}/reviews/{campaign_id}/items/{vics}", data={"csrf": csrf, **form})
        assert answer.status_code == status and words in answer.text, (form, answer.text)
        assert "555 0100" not in answer.text
    alice = _item_of(api, campaign_id, "alice.ng")
    last = api.client.post(
        f"{CONSOLE}/reviews/{campaign_id}/items/{alice}",
        data={"csrf": csrf, "decision": "revoke", "justification": "x"},
    )
    assert last.status_code == 409 and "last active administrator" in last.text
    odd = api.client.post(f"{CONSOLE}/reviews/{campaign_id}/close", data={"csrf": csrf, "default_decision": "maybe"})
    assert odd.status_code == 400 and "default" in odd.text
    early = api.client.post(f"{CONSOLE}/reviews/{campaign_id}/close", data={"csrf": csrf})
    assert early.status_code == 409 and "has not passed" in early.text
    report = api.client.get(f"{CONSOLE}/reviews/{campaign_id}/report")
    assert report.status_code == 409 and "is open" in report.text
    stale = api.client.post(
        f"{CONSOLE}/reviews/{campaign_id}/items/{vics}",
        data={"csrf": "0" * 64, "decision": "revoke", "justification": "x"},
    )
    assert stale.status_code == 403 and "nothing was changed" in stale.text
    campaign = _campaign(api, campaign_id)
    assert campaign.state == "open" and campaign.counts["undecided"] == campaign.counts["items"]
    with api.d.unit_of_work(read_only=True) as conn:
        assert [g.role for g in api.d.access.grants.list(conn, actor=OPERATOR, login="vic.viewer")] == ["viewer"]
