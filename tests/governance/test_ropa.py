"""The record of processing, generated from the catalog, the roles and the asset inventory: every
catalogued field once, PII with its purposes, Fides data uses, 30-day retention, the roles that can
reveal it and the assets that store it; CSV safe for spreadsheets, HTML escaped and self-contained;
each export a security event with counts. On SQLite and PostgreSQL, the command line and HTTPS."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from commands import run
from conftest import OPERATOR, TENANT
from sagevault.catalog import CATALOG
from sagevault.deployment import Deployment
from sagevault.errors import PayloadError
from webapi import Api


@pytest.fixture
def d(deployment_at: Callable[..., Deployment]) -> Deployment:
    return deployment_at()


def _row(rows: list[dict], path: str, document: str = "orders-v0:OrderAddress") -> dict:
    return next(r for r in rows if r["path"] == path and r["document"] == document)


def test_every_catalogued_field_is_in_the_record_with_where_it_is_stored_and_who_reveals_it(d: Deployment) -> None:
    with d.unit_of_work() as conn:
        d.governance.assets.sync_deployment(conn, d.own_assets(), principal=OPERATOR)
        d.governance.assets.add(
            conn, name="label <b>printer</b>", kind="workstation", owner="Warehouse", principal=OPERATOR
        )
        d.governance.assets.add(conn, name="=HYPERLINK(1)", kind="other", owner="IT", principal=OPERATOR)
        d.governance.assets.add(
            conn, name="status page", kind="saas", owner="IT", principal=OPERATOR, amazon_data=False
        )
        found = d.governance.assets.list_assets(conn, principal=OPERATOR)
        rows = d.governance.ropa.generate(conn, principal=OPERATOR, assets=found)
    described = CATALOG.describe()
    assert [(r["document"], r["path"]) for r in rows] == [(f["document"], f["path"]) for f in described]
    assert json.loads(json.dumps(rows)) == rows  # JSON-able

    street = _row(rows, "ShippingAddress.AddressLine1")
    assert street["pii"] is True and street["data_category"].startswith("user.contact.address")
    assert street["retention_days"] == 30 and "30 days after delivery" in street["retention"]
    assert "fulfilment" in street["revealed_by"] and "tax" in street["revealed_by"]
    assert "viewer" not in street["revealed_by"] and "compliance" not in street["revealed_by"]
    assert "essential.service.operations" in street["data_uses"] and street["leaves"] is True
    database = next(a.name for a in found if a.kind == "database" and a.amazon_data)
    assert database in street["stored_in"] and "label <b>printer</b>" in street["stored_in"]
    assert "status page" not in street["stored_in"]  # holds no Amazon Information
    assert not any("master key" in s or "security log" in s for s in street["stored_in"])

    order_id = _row(rows, "AmazonOrderId", "orders-v0:Order")
    assert order_id["pii"] is False and order_id["retention_days"] == 548 and order_id["exported_by"] == []
    tax_only = [r for r in rows if r["pii"] and "fulfilment" not in r["purposes"]]
    assert tax_only and all("fulfilment" not in r["revealed_by"] for r in tax_only)
    assert all(r["data_uses"] for r in rows)
    [event] = d.audit.search(name="governance:ropa:export")
    assert event["counts"] == {"fields": len(rows), "pii": sum(r["pii"] for r in rows), "assets": 5}

    page = d.governance.ropa.render(rows, "html")
    assert "label <b>printer</b>" not in page and "label &lt;b&gt;printer&lt;/b&gt;" in page
    assert "src=" not in page and "href=" not in page and "<script" not in page
    table = list(csv.DictReader(io.StringIO(d.governance.ropa.render(rows, "csv"))))
    assert len(table) == len(rows) and table[0]["stored_in"].startswith("'=HYPERLINK(1); ")
    with pytest.raises(PayloadError, match="json, csv, html"):
        d.governance.ropa.render(rows, "xml")


def test_the_record_on_the_command_line(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    rows = json.loads(run(tmp_path, "ropa").stdout)
    assert len(rows) == len(CATALOG.describe()) and all(r["stored_in"] for r in rows)
    made = run(tmp_path, "ropa", "--format", "html", "--out", "ropa.html")
    assert made.returncode == 0 and "<h1>Record of processing</h1>" in (tmp_path / "ropa.html").read_text()
    again = run(tmp_path, "ropa", "--format", "csv", "--out", "ropa.html")
    assert again.returncode == 2 and "nothing is overwritten" in again.stderr
    wrong = run(tmp_path, "ropa", "--format", "xml")
    assert wrong.returncode == 2 and "json, csv, html" in wrong.stderr


def test_the_record_over_https_needs_governance_read(api: Api) -> None:
    lead = api.login("cam.compliance", api.person("cam.compliance", "compliance", ["*"]))
    packer = api.login("pia.packer", api.person("pia.packer", "fulfilment", [TENANT]))
    url = f"{api.base}/ropa"
    assert api.client.get(url, headers=packer).status_code == 403
    rows = api.client.get(url, headers=lead)
    assert rows.status_code == 200 and rows.headers["content-type"].startswith("application/json")
    assert len(rows.json()) == len(CATALOG.describe())
    sheet = api.client.get(url, headers=lead, params={"format": "csv"})
    assert sheet.headers["content-type"].startswith("text/csv") and sheet.text.startswith("document,path,pii")
    page = api.client.get(url, headers=lead, params={"format": "html"})
    assert page.headers["content-type"].startswith("text/html") and "<table>" in page.text
    assert api.client.get(url, headers=lead, params={"format": "xml"}).status_code == 422
    exports = [e["operation"] for e in api.d.audit.search(name="governance:ropa:export")]
    assert exports == ["ropa json", "ropa csv", "ropa html"]
