"""The DPP report's words: a requirement's status, an item, the report, and its three renderings
(JSON, Markdown, a self-contained HTML page with every value escaped).

`REFERENCE` holds the numbers of `shared/reference/dpp-requirements.md` (the stricter of the seed
policy and Amazon's current DPP) as the report's own yardstick: the report compares the live
policy profile against them instead of trusting the settings' validator."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from sagevault.errors import PayloadError

FORMAT = "sagevault-dpp-report-v1"


class Status(StrEnum):
    PASS = "PASS"  # noqa: S105 (a status, not a password)
    FAIL = "FAIL"
    ATTENTION = "ATTENTION"  # needs a person, or the evidence could not be read


# Each number of the policy profile: the direction it may move and the reference limit.
REFERENCE: dict[str, tuple[Literal["max", "min"], int]] = {
    "deletion_sla_hours": ("max", 72),
    "live_copies_days": ("max", 90),
    "pii_retention_days_after_delivery": ("max", 30),
    "non_pii_retention_days": ("max", 548),
    "security_log_retention_days": ("min", 365),
    "lockout_threshold": ("max", 10),
    "password_min_length": ("min", 12),
    "password_max_age_days": ("max", 365),
    "password_min_age_days": ("min", 1),
    "password_history": ("min", 10),
    "access_review_days": ("max", 90),
    "leaver_disable_hours": ("max", 24),
    "api_key_max_age_days": ("max", 365),
    "inactive_account_days": ("max", 90),
    "ir_plan_review_days": ("max", 183),
    "amazon_notify_hours": ("max", 24),
    "critical_vuln_fix_days": ("max", 7),
    "high_vuln_fix_days": ("max", 30),
}


def numbers(policy: Any, names: tuple[str, ...]) -> tuple[dict[str, Any], list[str]]:
    """The policy profile's `names` as evidence, and what is looser than the reference."""
    facts: dict[str, Any] = {}
    loose: list[str] = []
    for name in names:
        direction, limit = REFERENCE[name]
        value = getattr(policy, name)
        facts[name] = value
        if not isinstance(value, int) or value <= 0 or (value > limit if direction == "max" else value < limit):
            loose.append(f"{name}={value} (the reference: {'at most' if direction == 'max' else 'at least'} {limit})")
    return facts, loose


@dataclass(frozen=True)
class Result:
    """What one check found."""

    status: Status
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str | None = None


@dataclass(frozen=True)
class Item:
    id: str
    clause: str  # "1".."9" (the seed policy's clause), or "Amazon" (Amazon's current DPP only)
    title: str
    status: Status
    summary: str
    evidence: dict[str, Any]
    fix: str | None  # how to fix a FAIL (and what to do for an ATTENTION)

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "clause": self.clause,
            "title": self.title,
            "status": self.status.value,
            "summary": self.summary,
            "evidence": self.evidence,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Report:
    generated_at: datetime
    generated_by: str
    deployment: dict[str, Any]  # the facts of the deployment (database kind, schema, key id)
    items: list[Item]

    @property
    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in Status}
        for item in self.items:
            out[item.status.value] += 1
        return out

    def item(self, item_id: str) -> Item:
        return next(i for i in self.items if i.id == item_id)

    def statuses(self) -> dict[str, str]:
        return {i.id: i.status.value for i in self.items}

    def payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "generated_at": self.generated_at.isoformat(),
            "generated_by": self.generated_by,
            "deployment": self.deployment,
            "counts": self.counts,
            "items": [i.payload() for i in self.items],
        }


def render_json(report: Report) -> str:
    return json.dumps(report.payload(), indent=2, sort_keys=False, default=str) + "\n"


def _fact(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_fact(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_fact(v)}" for k, v in value.items()) or "-"
    if value is None:
        return "-"
    return str(value)


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell: no pipes, no line breaks, no markup or HTML."""
    out = html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")
    for ch in "`*_[]":
        out = out.replace(ch, "\\" + ch)
    return out


def render_markdown(report: Report) -> str:
    c = report.counts
    lines = [
        "# DPP evidence report",
        "",
        f"Generated {_md(report.generated_at.isoformat())} by {_md(report.generated_by)} from the live deployment. "
        f"{c['PASS']} PASS, {c['FAIL']} FAIL, {c['ATTENTION']} ATTENTION.",
        "",
        "| id | clause | requirement | status | evidence | how to fix |",
        "|---|---|---|---|---|---|",
    ]
    for i in report.items:
        evidence = _md(i.summary + (" — " + _fact(i.evidence) if i.evidence else ""))
        cells = [_md(i.id), _md(i.clause), _md(i.title), f"**{i.status.value}**", evidence, _md(i.fix or "")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Deployment: " + _md(_fact(report.deployment)), ""]
    return "\n".join(lines)


_CSS = (
    "body{font-family:sans-serif;max-width:75rem;margin:2rem auto;color:#111}"
    "table{border-collapse:collapse;width:100%}th,td{border:1px solid #999;padding:.3rem .5rem;text-align:left;"
    "vertical-align:top}th{background:#eee}.PASS{color:#075e07}.FAIL{color:#a00;font-weight:bold}"
    ".ATTENTION{color:#8a5a00;font-weight:bold}dl{margin:0}dt{font-weight:bold}dd{margin:0 0 .2rem 1rem}"
)


def _evidence_html(evidence: Mapping[str, Any]) -> str:
    if not evidence:
        return ""
    rows = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(_fact(v))}</dd>" for k, v in evidence.items())
    return f"<dl>{rows}</dl>"


def render_html(report: Report) -> str:
    """One self-contained page: no script, no external link or style; every value escaped."""
    c = report.counts
    rows = "\n".join(
        "<tr>"
        f"<td>{html.escape(i.id)}</td><td>{html.escape(i.clause)}</td><td>{html.escape(i.title)}</td>"
        f'<td class="{i.status.value}">{i.status.value}</td>'
        f"<td>{html.escape(i.summary)}{_evidence_html(i.evidence)}</td><td>{html.escape(i.fix or '')}</td>"
        "</tr>"
        for i in report.items
    )
    facts = _evidence_html(report.deployment)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>DPP evidence report {html.escape(report.generated_at.isoformat())}</title>
<style>{_CSS}</style></head>
<body><h1>DPP evidence report</h1>
<p>Generated {html.escape(report.generated_at.isoformat())} by {html.escape(report.generated_by)} from the live
deployment: {c["PASS"]} PASS, {c["FAIL"]} FAIL, {c["ATTENTION"]} ATTENTION (needs a person, or the evidence could
not be read: never counted as a pass).</p>
<table>
<tr><th>id</th><th>clause</th><th>requirement</th><th>status</th><th>evidence</th><th>how to fix</th></tr>
{rows}
</table>
<h2>Deployment</h2>
{facts}
</body></html>
"""


RENDERERS = {"json": render_json, "md": render_markdown, "html": render_html}


def render(report: Report, fmt: str) -> str:
    if fmt not in RENDERERS:
        raise PayloadError("the report's format is one of json, md, html")
    return RENDERERS[fmt](report)
