"""What incident response writes: the notification to Amazon and the closing report.

The notification is built from the incident's structured facts only (type, times, counts,
tenant ids, data categories, the actions taken) and the IMPOC's staff contact: no text a
person typed goes into it, so no buyer's data can.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from ._model import NIST_PHASE, Case, Document, State, iso
from ._plan import AMAZON_SECURITY, Plan


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


def notification(case: Case, plan: Plan, now: datetime) -> Document:
    incident = case.incident
    kind = plan.types.get(incident.type)
    name, email = plan.impoc
    organisation = plan.organisation
    involved = {"yes": "yes", "possible": "possibly (under investigation)"}.get(incident.amazon, "no")
    tasks_done = sum(1 for t in case.tasks if t.state != "open")
    lines = [
        f"To: {AMAZON_SECURITY}",
        f"From: {name} <{email}>",
        f"Subject: Security incident notification: {f'{organisation}, ' if organisation else ''}"
        f"incident SV-{incident.id}",
        "",
        "Amazon Security team,",
        "",
        f"{organisation or 'We'} {'is' if organisation else 'are'} notifying Amazon of a security incident that "
        "involves or may involve Amazon Information, as Amazon's Data Protection Policy requires. The facts known "
        "at the time of writing follow; updates will follow as the investigation goes on.",
        "",
        f"- Incident reference: SV-{incident.id}",
        f"- Type: {kind.title if kind else incident.type} ({incident.type})",
        f"- Severity: {incident.severity}",
        f"- Detected: {_when(incident.detected_at)}",
        f"- Notification due: {_when(incident.notify_due)}",
        f"- Drafted: {_when(now)}",
        f"- Current phase: {incident.state} (NIST SP 800-61: {NIST_PHASE[State(incident.state)]})",
        f"- Amazon Information involved: {involved}",
        f"- Selling partner accounts affected: {len(incident.tenants) or 'being established'}"
        + (f" ({', '.join(incident.tenants)})" if incident.tenants else ""),
        f"- Data categories: {', '.join(incident.categories) or 'being established'}",
        "- Estimated records affected: "
        + (str(incident.records_affected) if incident.records_affected is not None else "being established"),
        f"- Containment actions taken: {len(case.actions)}",
    ]
    lines += [
        f"  - {_when(a.at)}: {a.action}" + (f" ({a.target})" if a.action == "kill-switch" else "") for a in case.actions
    ]
    lines += [
        f"- Response procedure: {tasks_done} of {len(case.tasks)} steps done",
        f"- Evidence items preserved (SHA-256 recorded, chain of custody kept): {len(case.evidence)}",
        "",
        f"Incident Management Point of Contact: {name}, {email}",
        "",
        "This notification holds no personal data of Amazon customers.",
    ]
    text = "\n".join(lines) + "\n"
    return Document(text, _sha(text), "text")


def report_data(case: Case, plan: Plan, now: datetime) -> dict[str, Any]:
    incident = case.incident
    name, email = plan.impoc
    if incident.impoc:  # the IMPOC Amazon was written from, whoever holds the role now
        name, _, email = incident.impoc.rpartition(" <")
        email = email.rstrip(">")
    return {
        "report": "incident",
        "generated_at": iso(now),
        "plan_version": incident.plan_version,
        "impoc": {"name": name, "email": email},
        "incident": case.payload(now),
    }


def report_json(data: dict[str, Any]) -> Document:
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return Document(text, _sha(text), "json")


def _section(title: str, text: str | None) -> list[str]:
    return [f"## {title}", "", (text or "-").strip(), ""]


def report_markdown(data: dict[str, Any]) -> Document:
    i = data["incident"]
    clock = i["clock"]
    lines = [
        f"# Incident SV-{i['id']}: {i['title']}",
        "",
        f"- Type: {i['type']}; severity: {i['severity']}; state: {i['state']} ({i['nist_phase']})",
        f"- Detected: {i['detected_at']}; opened {i['opened_at']} by {i['opened_by']}; closed {i['closed_at']}"
        f" by {i['closed_by']}",
        f"- Amazon Information involved: {i['amazon']}",
        f"- Notify Amazon by: {i['notify_amazon_due'] or 'not required'}; notified: {i['notified_at'] or '-'}"
        f" (reference {i['notify_reference'] or '-'}); clock: {clock['state']}",
        f"- Notification draft SHA-256: {i['notification_draft_sha256'] or '-'}",
        f"- IMPOC: {data['impoc']['name'] or '-'} {data['impoc']['email'] or ''}".rstrip(),
        f"- Plan version: {data['plan_version']}",
        f"- Tenants: {', '.join(i['tenants']) or '-'}; data categories: {', '.join(i['data_categories']) or '-'};"
        f" records affected: {i['records_affected'] if i['records_affected'] is not None else 'unknown'}",
        f"- Alarms: {', '.join(str(a) for a in i['alarms']) or '-'}",
        f"- Roles: {', '.join(f'{k}: {v}' for k, v in sorted(i['roles'].items())) or '-'}",
        "",
    ]
    lines += _section("Description", i["description"])
    lines += _section("Root cause", i["root_cause"])
    lines += _section("Remediation actions", i["remediation"])
    lines += _section("Corrective controls", i["corrective_controls"])
    lines += ["## Containment actions", ""]
    lines += [f"- {a['at']} {a['action']} {a['target'] or ''} by {a['actor']}: {a['result']}" for a in i["actions"]]
    lines += ["" if i["actions"] else "-", "", "## Procedure", ""]
    lines += [f"- [{'x' if t['state'] == 'done' else ' '}] {t['text']} ({t['state']})" for t in i["tasks"]]
    lines += ["", "## Evidence", ""]
    for e in i["evidence"]:
        lines.append(
            f"- {e['label']}: SHA-256 {e['sha256']}, kept at {e['location']}, collected by "
            f"{e['collected_by']} at {e['collected_at']}"
        )
        lines += [f"  - {h['at']}: {h['from']} to {h['to']} ({h['purpose']})" for h in e["custody"]]
    lines += ["" if i["evidence"] else "-", "", "## Timeline", ""]
    lines += [
        f"- {e['at']} {e['kind']} by {e['actor']}: {json.dumps(e['detail'], sort_keys=True)}" for e in i["timeline"]
    ]
    lines += ["", f"Generated {data['generated_at']}."]
    text = "\n".join(lines) + "\n"
    return Document(text, _sha(text), "markdown")
