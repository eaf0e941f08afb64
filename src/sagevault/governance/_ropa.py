"""Governance: the record of processing (ROPA), generated from the field catalog, the roles that
may reveal each field, and the assets that store it; never hand-written.

One row per catalogued field: its document and path, whether it is PII, its data category (the
catalog's, in Fides' taxonomy: `user.contact.address`, `system.operations`, ...), its purposes and
the Fides data uses they match (`DATA_USES`), its retention from the policy profile, the assets
that store it, the roles that can see it in clear, and whether and how it leaves SageVault.

Fides data uses (fideslang's default taxonomy) for SageVault's purposes:

| purpose | data use |
|---|---|
| fulfilment | essential.service.operations |
| tax_remittance, tax_invoicing | finance |
| legal | essential.legal_obligation |
| (none: a non-PII field kept to run the service) | essential.service.operations |
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from sagevault.access import ROLES
from sagevault.audit import AuditEvent, AuditSink, EventName, Gate, check_scope
from sagevault.catalog import Catalog, Purpose
from sagevault.errors import PayloadError
from sagevault.identity import Principal, Scope

from ._assets import Asset

DATA_USES: dict[str, str] = {
    Purpose.FULFILMENT: "essential.service.operations",
    Purpose.TAX_REMITTANCE: "finance",
    Purpose.TAX_INVOICING: "finance",
    Purpose.LEGAL: "essential.legal_obligation",
}
OPERATIONS_USE = "essential.service.operations"
FORMATS = ("json", "csv", "html")
COLUMNS = (
    "document",
    "path",
    "pii",
    "data_category",
    "purposes",
    "data_uses",
    "retention",
    "retention_days",
    "stored_in",
    "revealed_by",
    "exported_by",
    "leaves",
    "leaves_via",
)


def _roles_with(scopes: set[Scope], purposes: set[str]) -> list[str]:
    """Roles holding any of `scopes` for at least one of `purposes`."""
    return sorted(r.name for r in ROLES.values() if r.scopes & scopes and purposes & {str(p) for p in r.purposes})


def _cell(value: Any) -> str:
    """One CSV cell: lists joined; a cell a spreadsheet would run as a formula is quoted with '."""
    if isinstance(value, list):
        text = "; ".join(str(v) for v in value)
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    else:
        text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class Ropa:
    def __init__(
        self,
        *,
        catalog: Catalog,
        audit: AuditSink,
        gate: Gate,
        pii_days: int = 30,
        record_days: int = 548,
    ) -> None:
        self._catalog = catalog
        self._audit = audit
        self._gate = gate
        self.pii_days = pii_days
        self.record_days = record_days

    def _rows(self, assets: Sequence[Asset]) -> list[dict[str, Any]]:
        stores = sorted(a.name for a in assets if a.stores_amazon_data)
        record_readers = sorted(r.name for r in ROLES.values() if Scope.RECORDS_READ in r.scopes)
        rows = []
        for field in self._catalog.describe():
            purposes = set(field["purposes"])
            pii = bool(field["pii"])
            if pii:
                retention = f"PII purged {self.pii_days} days after delivery; the record kept {self.record_days} days"
                days = self.pii_days
                revealed = _roles_with({Scope.PII_REVEAL, Scope.PII_EXPORT}, purposes)
                exported = _roles_with({Scope.PII_EXPORT}, purposes)
            else:
                retention = f"kept {self.record_days} days (18 months)"
                days = self.record_days
                revealed = record_readers  # stored in clear: every role that reads records sees it
                exported = []
            via = ["return bundle (deletion or return request)"]
            if exported:
                via.insert(0, "export (pii:export: " + ", ".join(exported) + ")")
            rows.append(
                {
                    "document": field["document"],
                    "path": field["path"],
                    "pii": pii,
                    "data_category": field["category"],
                    "purposes": sorted(purposes),
                    "data_uses": sorted({DATA_USES[p] for p in purposes} or {OPERATIONS_USE}),
                    "retention": retention,
                    "retention_rule": field["retention"],
                    "retention_days": days,
                    "stored_in": stores,
                    "revealed_by": revealed,
                    "exported_by": exported,
                    "leaves": True,
                    "leaves_via": via,
                }
            )
        return rows

    def _record(self, principal: Principal, rows: list[dict[str, Any]], stores: int, operation: str) -> None:
        self._audit.record(
            AuditEvent(
                name=EventName.GOVERNANCE_ROPA_EXPORT,
                channel=principal.channel,
                actor=principal.id,
                operation=operation,
                counts={"fields": len(rows), "pii": sum(1 for r in rows if r["pii"]), "assets": stores},
            )
        )

    def generate(self, conn: Connection, *, principal: Principal, assets: list[Asset]) -> list[dict[str, Any]]:
        """The record of processing as rows (JSON-able), one per catalogued field; recorded as
        governance:ropa:export with its counts. `assets`: the inventory (active ones count)."""
        check_scope(self._gate, self._audit, conn, principal, Scope.GOVERNANCE_READ, "ropa")
        rows = self._rows(assets)
        self._record(principal, rows, sum(1 for a in assets if a.stores_amazon_data), "ropa generate")
        return rows

    def export(self, conn: Connection, *, principal: Principal, assets: list[Asset], fmt: str) -> str:
        """The record of processing rendered as `fmt` (json, csv or html), recorded once."""
        if fmt not in FORMATS:
            raise PayloadError(f"the format is one of {', '.join(FORMATS)}")
        check_scope(self._gate, self._audit, conn, principal, Scope.GOVERNANCE_READ, "ropa")
        rows = self._rows(assets)
        text = self.render(rows, fmt)
        self._record(principal, rows, sum(1 for a in assets if a.stores_amazon_data), f"ropa {fmt}")
        return text

    @staticmethod
    def render(rows: list[dict[str, Any]], fmt: str) -> str:
        """Rows as JSON, CSV (lists joined with '; ') or one self-contained HTML page."""
        if fmt == "json":
            return json.dumps(rows, indent=2) + "\n"
        if fmt == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(COLUMNS)
            for row in rows:
                writer.writerow([_cell(row[c]) for c in COLUMNS])
            return buffer.getvalue()
        if fmt == "html":
            return _html(rows)
        raise PayloadError(f"the format is one of {', '.join(FORMATS)}")


_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
    "th,td{border:1px solid #999;padding:3px 6px;text-align:left;vertical-align:top}th{background:#eee}"
    "tr.pii td{background:#fff6e0}"
)


def _html(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, list):
            return "<br>".join(html.escape(str(v)) for v in value) or "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return html.escape(str(value))

    pii = sum(1 for r in rows if r["pii"])
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in COLUMNS)
    body = "\n".join(
        f'<tr class="{"pii" if r["pii"] else "clear"}">' + "".join(f"<td>{cell(r[c])}</td>" for c in COLUMNS) + "</tr>"
        for r in rows
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>SageVault record of processing</title>"
        f"<style>{_STYLE}</style></head><body>\n"
        "<h1>Record of processing</h1>\n"
        f"<p>Generated from the field catalog: {len(rows)} fields, {pii} of them PII. "
        "Data categories and uses follow Fides' taxonomy (fideslang).</p>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>\n</body></html>\n"
    )
