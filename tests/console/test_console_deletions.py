"""The console's deletion pages: a privacy officer records Amazon's request in Chromium (Playwright, the
real TLS server), runs it, sees it done within its 72 hours and downloads the signed certificate the
domain holds; in process: the 72-hour clock of a notice received earlier, and the refusals (no scope,
unknown ids, bad forms) answered as pages with nothing changed."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import console_support
import pytest
from test_console_browser import log_in, root

from conftest import OPERATOR, TENANT
from sagevault import errors
from sagevault.deletion import verify_certificate
from sagevault.deployment import Deployment
from webapi import Api

FIELD = "ShippingAddress.Name"
CONSOLE = "https://127.0.0.1/console"

# The console's fixtures (tests/console/console_support.py) and the browser test's page maker, for this module.
_log_in = console_support.log_in_form
browser = console_support.browser
module_tls = console_support.module_tls
settings = console_support.settings
page_of = console_support.page_of


def _public_key(d: Deployment) -> Path:
    return d.settings.resolved_audit_signing_key_file.with_suffix(".pub")


def _requests(api: Api) -> list[Any]:
    with api.d.unit_of_work(read_only=True) as conn:
        return api.d.deletion.list_requests(conn, principal=OPERATOR)


def test_an_officer_records_amazons_request_runs_it_and_downloads_the_certificate(
    served_api: Api, page_of: Any
) -> None:
    api = served_api
    officer = api.person("pat.privacy", "privacy-officer", ["*"])
    page = page_of()
    log_in(page, api, "pat.privacy", officer)
    page.click("nav >> text=Deletion")
    assert page.title() == "Deletion requests · SageVault console"
    assert "No deletion request was recorded." in page.locator("#requests").inner_text()
    page.fill("#tenant", TENANT)
    page.check("#scope-tenant")
    page.select_option("#source", "amazon-notice")
    page.get_by_role("button", name="Record the request").click()

    assert re.fullmatch(rf"{re.escape(root(api))}/deletions/\d+", page.url), page.content()
    request_id = int(page.url.rsplit("/", 1)[1])
    assert page.locator("#state").inner_text() == "received"
    assert page.locator("#clock").inner_text() == "72 h 00 min left"
    assert page.locator("#due time").get_attribute("datetime").endswith("Z")
    assert page.locator("#certificate").count() == 0
    page.get_by_role("button", name="Run now").click()

    assert page.url == f"{root(api)}/deletions/{request_id}"
    assert page.locator("#state").inner_text() == "done"
    assert "within its deadline" in page.locator("#clock").inner_text()
    assert page.locator("#stage-done .mark").inner_text() == "(reached)"
    assert page.locator("#verified").inner_text().startswith("Signature verified")
    assert page.locator("#within").inner_text() == "yes"
    assert page.locator("#certifies").inner_text().startswith(f"the whole tenant {TENANT}: cryptographic erase")
    shown_sha = page.locator("#cert-sha256").inner_text()
    with page.expect_download() as downloading:
        page.click("#download")
    download = downloading.value
    assert download.suggested_filename == f"deletion-certificate-{request_id}.json"
    data = Path(download.path()).read_bytes()

    # The file is the certificate the domain holds, it verifies offline, and its hash is the one recorded.
    with api.d.unit_of_work(read_only=True) as conn:
        held = api.d.deletion.certificate(conn, request_id, principal=OPERATOR)
        request = api.d.deletion.get(conn, request_id, principal=OPERATOR)
    document = json.loads(data)
    assert document == held
    cert = verify_certificate(document, _public_key(api.d))
    assert cert["method_code"] == "cryptographic erase" and cert["within_deadline"] is True
    assert cert["scope"] == {"kind": "tenant", "tenant": TENANT} and cert["counts"]["records"] == 2
    assert request.state == "done" and request.done_at is not None and request.done_at <= request.due_at
    digest = hashlib.sha256(data).hexdigest()
    officer_id = api._people["pat.privacy"].id
    [issued] = api.d.audit.search(actor=officer_id, name="deletion:certificate:issue")
    assert issued["fingerprint"] == digest == shown_sha

    # The tenant is crypto-shredded: a reveal now fails.
    with pytest.raises(errors.TenantShredded), api.d.unit_of_work(read_only=True) as conn:
        api.d.vault.reveal(conn, TENANT, api.order_id, [FIELD], "fulfilment", principal=OPERATOR)
    [received] = api.d.audit.search(actor=officer_id, name="deletion:request:receive")
    assert received["counts"]["request"] == request_id and received["operation"] == "delete tenant amazon-notice"
    steps = [e["operation"] for e in api.d.audit.search(actor=officer_id, name="deletion:request:step")]
    assert steps == ["scoped", "deleting", "verifying", "done"]

    page.click("nav >> text=Deletion")
    row = page.locator(f"#request-{request_id}")
    assert row.locator(".state").inner_text() == "done" and "done" in row.locator(".left").inner_text()


# --- in process ----------------------------------------------------------------------------------


def _record(api: Api, **facts: Any) -> int:
    with api.d.unit_of_work() as conn:
        return api.d.deletion.request(conn, principal=OPERATOR, **{"tenant_id": TENANT, **facts}).id


def test_a_notice_received_seventy_hours_ago_shows_two_hours_left_and_orders_are_deleted(api_on_backend: Api) -> None:
    api = api_on_backend
    api.person("pat.privacy", "privacy-officer", ["*"])
    csrf = _log_in(api, "pat.privacy")
    notice = _record(api, received_at=api.d.deletion.now() - timedelta(hours=70))
    listed = api.client.get(f"{CONSOLE}/deletions")
    assert listed.status_code == 200
    row = re.search(rf'<tr class="request" id="request-{notice}">(.*?)</tr>', listed.text, re.S)
    assert row is not None and "2 h 00 min left" in row[1] and "amazon-notice" in row[1]
    made = api.client.post(
        f"{CONSOLE}/deletions",
        data={
            "csrf": csrf,
            "tenant": TENANT,
            "scope": "orders",
            "orders": api.order_id,
            "kind": "delete",
            "source": "seller-offboarding",
            "received_at": "",
        },
    )
    assert made.status_code == 303
    orders_id = int(made.headers["location"].rsplit("/", 1)[1])
    ran = api.client.post(f"{CONSOLE}/deletions/{orders_id}/run", data={"csrf": csrf})
    assert ran.status_code == 303 and ran.headers["location"] == f"/console/deletions/{orders_id}"
    shown = api.client.get(f"{CONSOLE}/deletions/{orders_id}").text
    assert f"1 orders of tenant {TENANT}: logical delete" in shown and "Signature verified" in shown
    got = api.client.get(f"{CONSOLE}/deletions/{orders_id}/certificate")
    assert got.status_code == 200
    assert got.headers["content-disposition"] == f'attachment; filename="deletion-certificate-{orders_id}.json"'
    assert verify_certificate(got.json(), _public_key(api.d))["scope"]["orders"] == [api.order_id]
    with pytest.raises(errors.RecordNotFound), api.d.unit_of_work(read_only=True) as conn:
        api.d.vault.reveal(conn, TENANT, api.order_id, [FIELD], "fulfilment", principal=OPERATOR)


def test_without_the_deletion_scopes_everything_is_refused_and_nothing_changes(api_on_backend: Api) -> None:
    api = api_on_backend
    api.person("pia.packer", "fulfilment", [TENANT])
    api.person("cora.comply", "compliance", ["*"])  # deletion:read, not deletion:manage
    waiting = _record(api)
    csrf = _log_in(api, "pia.packer")
    assert api.client.get(f"{CONSOLE}/deletions").status_code == 403
    assert api.client.get(f"{CONSOLE}/deletions/{waiting}").status_code == 403
    assert api.client.get(f"{CONSOLE}/deletions/{waiting}/certificate").status_code == 403
    recorded = api.client.post(
        f"{CONSOLE}/deletions",
        data={"csrf": csrf, "tenant": TENANT, "scope": "tenant", "kind": "delete", "source": "amazon-notice"},
    )
    assert recorded.status_code == 403 and "Refused" in recorded.text
    ran = api.client.post(f"{CONSOLE}/deletions/{waiting}/run", data={"csrf": csrf})
    assert ran.status_code == 403
    packer_id = api._people["pia.packer"].id
    assert len(list(api.d.audit.search(actor=packer_id, name="access:permission:deny"))) == 5

    csrf = _log_in(api, "cora.comply")
    page = api.client.get(f"{CONSOLE}/deletions")
    assert page.status_code == 200 and "Record a request" not in page.text and "Run now" not in page.text
    refused = api.client.post(
        f"{CONSOLE}/deletions",
        data={"csrf": csrf, "tenant": TENANT, "scope": "tenant", "kind": "delete", "source": "amazon-notice"},
    )
    assert refused.status_code == 403 and 'role="alert"' in refused.text and "deletion:manage" in refused.text
    assert api.client.post(f"{CONSOLE}/deletions/{waiting}/run", data={"csrf": csrf}).status_code == 403
    assert [(r.id, r.state) for r in _requests(api)] == [(waiting, "received")]
    assert not list(api.d.audit.search(name="deletion:request:step"))


def test_unknown_requests_are_404_pages_and_bad_forms_400_pages(api_on_backend: Api) -> None:
    api = api_on_backend
    api.person("pat.privacy", "privacy-officer", ["*"])
    csrf = _log_in(api, "pat.privacy")
    waiting = _record(api)
    for path in ("/deletions/999", "/deletions/999/certificate", "/deletions/0", "/deletions/abc"):
        answer = api.client.get(f"{CONSOLE}{path}")
        assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html"), path
    assert api.client.post(f"{CONSOLE}/deletions/999/run", data={"csrf": csrf}).status_code == 404
    not_done = api.client.get(f"{CONSOLE}/deletions/{waiting}/certificate")
    assert not_done.status_code == 404 and "once it is done" in not_done.text

    good = {"csrf": csrf, "tenant": TENANT, "scope": "tenant", "kind": "delete", "source": "amazon-notice"}
    for changed, words in (
        ({"tenant": ""}, "Give the tenant"),
        ({"scope": "everything"}, "Choose what is deleted"),
        ({"source": "a-rumour"}, "Choose what is deleted"),
        ({"scope": "orders"}, "Give order ids with the scope orders"),
        ({"orders": api.order_id}, "neither for a tenant"),
        ({"scope": "buyer", "email": "x" * 321}, "too long"),
        ({"received_at": "2026-12-06T08:00:00"}, "UTC offset"),  # the domain's refusal, on the list page
        ({"received_at": "yesterday"}, "is not a time"),
        ({"kind": "return"}, "recipient"),
        ({"tenant": "not a tenant!"}, "is not a selling partner id"),
    ):
        answer = api.client.post(f"{CONSOLE}/deletions", data={**good, **changed})
        assert answer.status_code == 400 and words in answer.text, (changed, answer.text)
        assert "x" * 321 not in answer.text
    buyer = {"scope": "buyer", "email": "dana@buyer.example", "received_at": "2026-12-06T08:00:00"}
    again = api.client.post(f"{CONSOLE}/deletions", data={**good, **buyer})  # refused: filled in again but the buyer
    assert again.status_code == 400 and "UTC offset" in again.text and f'value="{TENANT}"' in again.text
    assert 'value="buyer" checked' in again.text and "dana@buyer.example" not in again.text
    odd = api.client.post(f"{CONSOLE}/deletions", json={"tenant": TENANT, "scope": "tenant"})
    assert odd.status_code == 400 and odd.headers["content-type"].startswith("text/html")
    stale = api.client.post(f"{CONSOLE}/deletions", data={**good, "csrf": "0" * 64})
    assert stale.status_code == 403 and "nothing was changed" in stale.text
    assert [r.id for r in _requests(api)] == [waiting]
