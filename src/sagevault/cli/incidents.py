"""`sagevault irp|incidents`: the incident response plan, and incidents from opening to report."""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.table import Table

from sagevault.errors import PayloadError
from sagevault.incidents import NIST_PHASE, Case, Document, Incident, PlanStatus, PlanVersion, State, parse_time

from ._app import deployment, group, heading, out, principal

irp_app = group("irp", "The incident response plan: versions, approval, review dates, the IMPOC.")
incidents_app = group("incidents", "Security incidents: open, work, notify Amazon within 24 hours, close.")
evidence_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help="Evidence and its custody.")
incidents_app.add_typer(evidence_app, name="evidence")

_JSON = typer.Option("--json", help="JSON instead of a table.")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _time(where: str, text: str | None) -> datetime | None:
    return parse_time(where, text) if text is not None else None


# --- the plan -------------------------------------------------------------------------------


def _status_lines(status: PlanStatus) -> list[str]:
    v = status.in_force
    lines = [f"plan version {v.version}" + (" (the shipped default, never saved)" if v.version == 0 else "")]
    if v.approved:
        lines.append(f"approved by {v.approved_by} at {v.approved_at:%Y-%m-%d %H:%M} UTC")
        lines.append(f"next review due {v.next_review_due:%Y-%m-%d %H:%M} UTC")
    else:
        lines.append("NOT APPROVED")
    name, email = v.plan.impoc
    lines.append(f"IMPOC: {name} <{email}>" if email else "IMPOC: none named (`sagevault irp set-impoc`)")
    if status.draft is not None:
        lines.append(f"version {status.draft.version} waits for approval (`sagevault irp diff`, `irp approve`)")
    lines += [f"REVIEW DUE: {reason}" for _, reason in status.reasons]
    return lines


@irp_app.command("show")
def irp_show(
    version: Annotated[int | None, typer.Option(help="A version (default: the one in force).")] = None,
    versions: Annotated[bool, typer.Option("--versions", help="List every version.")] = False,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """The plan in force (or `--version N`): status, review dates, IMPOC, roles, incident types
    with their procedures, the escalation path."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        if versions:
            found = d.incidents.plans.versions(conn, principal=principal())
            if as_json:
                _print_json([v.summary() for v in found])
                return
            table = Table("version", "author", "created", "approved by", "approved", "next review", "note")
            for v in found:
                table.add_row(*_version_row(v))
            out.print(table)
            return
        shown = d.incidents.plans.version(conn, version, principal=principal())
        status = d.incidents.plans.status(conn, d.infrastructure(conn))
    if as_json:
        _print_json(
            {
                **shown.summary(),
                "in_force": shown.version == status.in_force.version,
                "review_due": status.due if shown.version == status.in_force.version else None,
                "review_reasons": [r for _, r in status.reasons] if shown.version == status.in_force.version else [],
                "plan": shown.plan.data,
            }
        )
        return
    for line in _status_lines(status) if shown.version == status.in_force.version else [f"version {shown.version}"]:
        out.print(line, soft_wrap=True)
    plan = shown.plan
    heading("roles")
    for role in plan.roles.values():
        who = f" ({role['assignee']})" if role.get("assignee") else ""
        out.print(f"{role['id']}{who}: {role['responsibilities']}", soft_wrap=True, markup=False)
    heading("incident types and procedures")
    for kind in plan.types.values():
        out.print(
            f"{kind.id} [{kind.severity.value}, Amazon involved: {kind.amazon.value}]: {kind.title}",
            soft_wrap=True,
            markup=False,
        )
        for n, step in enumerate(kind.procedure, 1):
            out.print(f"  {n}. {step}", soft_wrap=True, markup=False)
    heading("escalation")
    for step in plan.data["escalation"]:
        out.print(f"within {step['within_hours']} h, {step['role']}: {step['action']}", soft_wrap=True, markup=False)


def _version_row(v: PlanVersion) -> list[str]:
    return [
        str(v.version),
        v.author,
        f"{v.created_at:%Y-%m-%d %H:%M}" if v.created_at else "-",
        v.approved_by or "-",
        f"{v.approved_at:%Y-%m-%d %H:%M}" if v.approved_at else "-",
        f"{v.next_review_due:%Y-%m-%d}" if v.next_review_due else "-",
        v.note or "",
    ]


@irp_app.command("edit")
def irp_edit(
    file: Annotated[Path | None, typer.Option("--file", help="The new plan (TOML); default: open $EDITOR.")] = None,
    note: Annotated[str, typer.Option(help="What changed and why.")] = "",
) -> None:
    """Write a new version of the plan (it waits for `irp approve`). Without --file the newest
    version opens in $EDITOR."""
    with deployment() as d:
        if file is None:
            with d.unit_of_work(read_only=True) as conn:
                current = d.incidents.plans.version(conn, None, principal=principal())
                latest = d.incidents.plans.versions(conn, principal=principal())[-1]
            text = click.edit((latest if latest.version >= current.version else current).plan.text(), extension=".toml")
            if text is None:
                out.print("no change; nothing saved")
                return
        else:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise PayloadError(f"{file} cannot be read ({type(exc).__name__}); give a TOML file") from None
        with d.unit_of_work() as conn:
            saved = d.incidents.plans.edit(conn, text, principal=principal(), note=note)
    out.print(f"[green]saved plan version {saved.version}[/]; it takes effect when approved (`sagevault irp approve`)")


@irp_app.command("approve")
def irp_approve(
    note: Annotated[str, typer.Option(help="Kept with the approval.")] = "",
    version: Annotated[
        int | None, typer.Option(help="The version you read (refused if a newer one was saved).")
    ] = None,
) -> None:
    """Approve the newest version, or the one in force again (a review). The next review is due
    six months on (the policy's ir_plan_review_days)."""
    with deployment() as d:
        infrastructure = d.infrastructure()
        with d.unit_of_work() as conn:
            approved = d.incidents.plans.approve(
                conn, infrastructure, principal=principal(), note=note, version=version
            )
    out.print(
        f"[green]plan version {approved.version} approved[/] by {approved.approved_by}; next review due "
        f"{approved.next_review_due:%Y-%m-%d} UTC"
    )


@irp_app.command("diff")
def irp_diff(
    old: Annotated[int | None, typer.Argument(help="From this version (default: the one in force).")] = None,
    new: Annotated[int | None, typer.Argument(help="To this version (default: the newest).")] = None,
) -> None:
    """What changed between two versions (unified diff of their TOML)."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        text = d.incidents.plans.diff(conn, old, new, principal=principal())
    sys.stdout.write(text or "no differences\n")


@irp_app.command("set-impoc")
def irp_set_impoc(
    name: Annotated[str, typer.Option(help="The IMPOC's name.")],
    email: Annotated[str, typer.Option(help="The address Amazon writes to.")],
    organisation: Annotated[str | None, typer.Option(help="The company's name, as Amazon knows it.")] = None,
) -> None:
    """Name the Incident Management Point of Contact (staff contact data, kept in the plan and
    put on each notification to Amazon)."""
    with deployment() as d, d.unit_of_work() as conn:
        saved = d.incidents.plans.set_impoc(conn, name, email, principal=principal(), organisation=organisation)
    out.print(f"[green]IMPOC set[/] in plan version {saved.version}")


# --- incidents ------------------------------------------------------------------------------


def _clock_text(incident: Incident, now: datetime) -> str:
    clock = incident.clock(now)
    if not clock["running"]:
        return clock["state"] if clock["due"] is None else f"{clock['state']} (due {clock['due']})"
    left = clock["seconds_left"]
    if left <= 0:
        return (
            f"OVERDUE by {-left // 3600} h {-left % 3600 // 60} min (was due {incident.notify_due:%Y-%m-%d %H:%M} UTC)"
        )
    return f"{left // 3600} h {left % 3600 // 60} min left (due {incident.notify_due:%Y-%m-%d %H:%M} UTC)"


@incidents_app.command("open")
def incidents_open(
    type_id: Annotated[str, typer.Option("--type", help="An incident type of the plan (`sagevault irp show`).")],
    title: Annotated[str | None, typer.Option(help="One line (default: the type's title); no personal data.")] = None,
    severity: Annotated[str | None, typer.Option(help="low, medium, high or critical (default: the type's).")] = None,
    detected_at: Annotated[str | None, typer.Option(help="When it was detected, with its UTC offset.")] = None,
    amazon: Annotated[str | None, typer.Option(help="Amazon Information involved: yes, possible or no.")] = None,
    tenant: Annotated[list[str] | None, typer.Option("--tenant", help="An affected tenant (repeat).")] = None,
    category: Annotated[list[str] | None, typer.Option("--category", help="A data category (repeat).")] = None,
    records: Annotated[int | None, typer.Option(min=0, help="Estimated records affected.")] = None,
    description: Annotated[str | None, typer.Option(help="What happened, as known now.")] = None,
) -> None:
    """Open an incident by hand. Its type's procedure becomes its tasks; the 24-hour clock to
    notify Amazon starts at --detected-at (default now) when Amazon Information is or may be involved."""
    with deployment() as d, d.unit_of_work() as conn:
        incident = d.incidents.open(
            conn,
            type=type_id,
            principal=principal(),
            title=title,
            severity=severity,
            detected_at=_time("--detected-at", detected_at),
            amazon=amazon,
            tenants=tenant or [],
            categories=category or [],
            records=records,
            description=description,
        )
        now = d.incidents.now()
    out.print(f"[green]incident {incident.id} opened[/] ({incident.type}, {incident.severity})")
    out.print(f"notify Amazon: {_clock_text(incident, now)}", soft_wrap=True)


@incidents_app.command("list")
def incidents_list(
    state: Annotated[str | None, typer.Option(help="Only incidents in this state.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only incidents not closed.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Incidents, newest first, with the Amazon clock of each."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        found = d.incidents.list(conn, principal=principal(), state=state, open_only=open_only, limit=limit)
        now = d.incidents.now()
    if as_json:
        _print_json([i.summary() for i in found])
        return
    if not found:
        out.print("no incidents; `sagevault incidents open --type ...` opens one")
        return
    table = Table("id", "type", "severity", "state", "detected", "amazon", "notify Amazon", "title")
    for i in found:
        table.add_row(
            str(i.id),
            i.type,
            i.severity,
            i.state,
            f"{i.detected_at:%Y-%m-%d %H:%M}",
            i.amazon,
            _clock_text(i, now),
            i.title,
        )
    out.print(table)


def _show(case: Case, now: datetime) -> None:
    i = case.incident
    out.print(f"incident {i.id}: {i.title}", soft_wrap=True, markup=False)
    out.print(f"type {i.type}, severity {i.severity}, state {i.state} ({NIST_PHASE[State(i.state)]})", markup=False)
    out.print(
        f"detected {i.detected_at:%Y-%m-%d %H:%M} UTC, opened by {i.opened_by}, plan version {i.plan_version}",
        markup=False,
    )
    out.print(
        f"Amazon Information involved: {i.amazon}; notify Amazon: {_clock_text(i, now)}", soft_wrap=True, markup=False
    )
    if i.notified_at:
        out.print(f"Amazon notified {i.notified_at:%Y-%m-%d %H:%M} UTC, reference {i.notify_reference}", markup=False)
    out.print(
        f"tenants: {', '.join(i.tenants) or '-'}; data categories: {', '.join(i.categories) or '-'}", markup=False
    )
    out.print(f"records affected: {i.records_affected if i.records_affected is not None else 'unknown'}", markup=False)
    out.print(
        f"roles: {', '.join(f'{k}: {v}' for k, v in sorted(i.roles.items())) or '-'}", soft_wrap=True, markup=False
    )
    out.print(f"alarms: {', '.join(map(str, case.alarms)) or '-'}", markup=False)
    for key in ("description", "root_cause", "remediation", "corrective_controls"):
        out.print(f"{key.replace('_', ' ')}: {getattr(i, key) or '-'}", soft_wrap=True, markup=False)
    heading("tasks")
    for t in case.tasks:
        out.print(
            f"[{t.id}] {'x' if t.state == 'done' else '-' if t.state == 'skipped' else ' '} {t.text}", soft_wrap=True
        )
    heading("evidence")
    for e in case.evidence:
        out.print(
            f"[{e.id}] {e.label}: sha256 {e.sha256}, held by {e.holder}, at {e.location}", soft_wrap=True, markup=False
        )
    heading("containment actions")
    for a in case.actions:
        out.print(
            f"{a.at:%Y-%m-%d %H:%M} {a.action} {a.target or ''} by {a.actor}: {a.result}", soft_wrap=True, markup=False
        )
    heading("timeline")
    for entry in case.timeline:
        detail = ", ".join(f"{k}={v}" for k, v in entry.detail.items())
        out.print(f"{entry.at:%Y-%m-%d %H:%M:%S} {entry.kind} by {entry.actor}: {detail}", soft_wrap=True, markup=False)


@incidents_app.command("show")
def incidents_show(incident_id: int, as_json: Annotated[bool, _JSON] = False) -> None:
    """One incident: facts, the Amazon clock, tasks, evidence, actions, timeline."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        case = d.incidents.get(conn, incident_id, principal=principal())
        now = d.incidents.now()
    if as_json:
        _print_json(case.payload(now))
        return
    _show(case, now)


def _roles(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    roles = {}
    for value in values:
        role, sep, who = value.partition("=")
        if not sep:
            raise PayloadError("give a role as ROLE=NAME, e.g. --role incident-commander='Dana Smith'")
        roles[role.strip()] = who.strip()
    return roles


_DOC = {
    "description": "What happened.",
    "root_cause": "Why it happened.",
    "remediation": "What was done to remedy it.",
    "corrective_controls": "The controls that stop it happening again.",
}


@incidents_app.command("update")
def incidents_update(
    incident_id: int,
    state: Annotated[str | None, typer.Option(help="Move to this phase (e.g. triage, containment).")] = None,
    type_id: Annotated[str | None, typer.Option("--type", help="Another type of the plan.")] = None,
    title: Annotated[str | None, typer.Option()] = None,
    severity: Annotated[str | None, typer.Option()] = None,
    amazon: Annotated[str | None, typer.Option(help="yes, possible or no.")] = None,
    tenant: Annotated[list[str] | None, typer.Option("--tenant", help="Affected tenants (replaces the list).")] = None,
    category: Annotated[list[str] | None, typer.Option("--category", help="Data categories (replaces).")] = None,
    records: Annotated[int | None, typer.Option(min=0)] = None,
    role: Annotated[list[str] | None, typer.Option("--role", help="ROLE=NAME (repeat; empty NAME unassigns).")] = None,
    description: Annotated[str | None, typer.Option(help=_DOC["description"])] = None,
    root_cause: Annotated[str | None, typer.Option(help=_DOC["root_cause"])] = None,
    remediation: Annotated[str | None, typer.Option(help=_DOC["remediation"])] = None,
    corrective_controls: Annotated[str | None, typer.Option(help=_DOC["corrective_controls"])] = None,
    note: Annotated[str | None, typer.Option(help="A note on the timeline.")] = None,
) -> None:
    """Change an open incident's facts, roles or documentation, add a note, or move it to another phase."""
    with deployment() as d, d.unit_of_work() as conn:
        incident = d.incidents.update(
            conn,
            incident_id,
            principal=principal(),
            state=state,
            type=type_id,
            title=title,
            severity=severity,
            amazon=amazon,
            tenants=tenant,
            categories=category,
            records=records,
            roles=_roles(role),
            note=note,
            description=description,
            root_cause=root_cause,
            remediation=remediation,
            corrective_controls=corrective_controls,
        )
    out.print(f"incident {incident.id} updated; state {incident.state}")


@incidents_app.command("task")
def incidents_task(
    incident_id: int,
    task_id: int,
    state: Annotated[str, typer.Argument(help="done, skipped or open.")],
    note: Annotated[str, typer.Option(help="Why (required to skip).")] = "",
) -> None:
    """Mark a task of the incident's procedure done or skipped (or open again)."""
    with deployment() as d, d.unit_of_work() as conn:
        task = d.incidents.task(conn, incident_id, task_id, state, principal=principal(), note=note)
    out.print(f"task {task.id} is {task.state}")


def _sha256_of(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise PayloadError(f"{path} cannot be read ({type(exc).__name__})") from None
    return digest.hexdigest(), size


@evidence_app.command("add")
def evidence_add(
    incident_id: int,
    file: Annotated[Path | None, typer.Argument(help="The item, hashed here (it is not stored).")] = None,
    label: Annotated[str, typer.Option(help="What it is, e.g. 'security events 02:00-04:00'.")] = "",
    location: Annotated[str, typer.Option(help="Where the item is kept.")] = "",
    collected_by: Annotated[str, typer.Option(help="Who collected it (name or role).")] = "",
    collected_at: Annotated[str | None, typer.Option(help="When, with its UTC offset (default now).")] = None,
    sha256: Annotated[str | None, typer.Option(help="The SHA-256 the collector recorded.")] = None,
) -> None:
    """Record an evidence item by its SHA-256 (of FILE, or --sha256; with both they must match)."""
    if file is None and sha256 is None:
        raise PayloadError("give the item (FILE) or its --sha256")
    computed, size = _sha256_of(file) if file is not None else (None, None)
    with deployment() as d, d.unit_of_work() as conn:
        item = d.incidents.evidence.add(
            conn,
            incident_id,
            principal=principal(),
            label=label,
            sha256=sha256 or computed or "",
            location=location,
            collected_by=collected_by,
            collected_at=_time("--collected-at", collected_at),
            size=size,
            computed=computed,
        )
    out.print(f"[green]evidence {item.id} recorded[/]: sha256 {item.sha256}, held by {item.holder}")


@evidence_app.command("handover")
def evidence_handover(
    incident_id: int,
    evidence_id: int,
    from_party: Annotated[str, typer.Option("--from", help="Who hands it over (its holder).")],
    to_party: Annotated[str, typer.Option("--to", help="Who takes it.")],
    purpose: Annotated[str, typer.Option(help="Why.")],
    at: Annotated[str | None, typer.Option(help="When, with its UTC offset (default now).")] = None,
) -> None:
    """Record a change of hands in the item's chain of custody."""
    with deployment() as d, d.unit_of_work() as conn:
        item = d.incidents.evidence.handover(
            conn,
            incident_id,
            evidence_id,
            principal=principal(),
            from_party=from_party,
            to_party=to_party,
            purpose=purpose,
            at=_time("--at", at),
        )
    out.print(f"evidence {item.id} is now held by {item.holder}")


@evidence_app.command("verify")
def evidence_verify(incident_id: int, evidence_id: int, file: Path) -> None:
    """Check an item against its recorded SHA-256 (exit 1 when it differs)."""
    computed, _ = _sha256_of(file)
    with deployment() as d, d.unit_of_work() as conn:
        same = d.incidents.evidence.verify(conn, incident_id, evidence_id, computed, principal=principal())
    if not same:
        out.print(f"[red]MISMATCH[/]: {file} has SHA-256 {computed}, not the one recorded for evidence {evidence_id}")
        raise typer.Exit(1)
    out.print(f"[green]match[/]: {file} is evidence {evidence_id}")


@incidents_app.command("contain")
def incidents_contain(
    incident_id: int,
    action: Annotated[str, typer.Argument(help="kill-switch, lock-account, revoke-sessions or revoke-key.")],
    target: Annotated[str, typer.Argument(help="The switch (pii-access, exports, ...), login or API key id.")],
    tenant: Annotated[str | None, typer.Option(help="The tenant a kill switch is for (default: every tenant).")] = None,
) -> None:
    """Take a containment action for the incident, with your own permissions; access control
    records it naming the incident, and the incident records it."""
    with deployment() as d, d.unit_of_work() as conn:
        done = d.incidents.contain(conn, incident_id, action, target, principal=principal(), tenant_id=tenant)
    out.print(f"[green]{done.action}[/]: {done.result}")


def _write(document: Document, path: Path) -> None:
    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(document.text)
    except FileExistsError:
        raise PayloadError(f"{path} exists; give another --out (nothing is overwritten)") from None


@incidents_app.command("notify-draft")
def incidents_notify_draft(
    incident_id: int,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write it to this new file.")] = None,
) -> None:
    """Draft the notification to Amazon (security@amazon.com, from the IMPOC) with the facts known
    so far and no personal data."""
    with deployment() as d, d.unit_of_work() as conn:
        draft = d.incidents.amazon.draft(conn, incident_id, principal=principal())
    if out_file is not None:
        _write(draft, out_file)
        out.print(f"draft written to {out_file} (sha256 {draft.sha256})")
        return
    sys.stdout.write(draft.text)


@incidents_app.command("notified")
def incidents_notified(
    incident_id: int,
    at: Annotated[str, typer.Option(help="When it was sent, with its UTC offset, e.g. 2026-12-06T09:30:00Z.")],
    reference: Annotated[str, typer.Option(help="The message id or Amazon's case reference.")],
) -> None:
    """Record that the notification was sent to Amazon: the clock stops."""
    with deployment() as d, d.unit_of_work() as conn:
        incident = d.incidents.amazon.notified(
            conn, incident_id, at=parse_time("--at", at), reference=reference, principal=principal()
        )
        now = d.incidents.now()
    out.print(f"[green]Amazon notified[/] of incident {incident.id}: {_clock_text(incident, now)}")


def _report_paths(incident_id: int, where: Path | None) -> dict[str, Path]:
    """Where `close --out` writes the report; refused before anything is done if a file is there."""
    if where is None:
        return {}
    paths = {
        "json": where / f"incident-{incident_id}-report.json",
        "markdown": where / f"incident-{incident_id}-report.md",
    }
    taken = [str(p) for p in paths.values() if p.exists()]
    if taken:
        raise PayloadError(f"{', '.join(taken)} exists; give another --out (nothing is overwritten)")
    if not where.is_dir():
        raise PayloadError(f"{where} is not a directory; give an existing one as --out")
    return paths


@incidents_app.command("close")
def incidents_close(
    incident_id: int,
    description: Annotated[str | None, typer.Option(help=_DOC["description"])] = None,
    root_cause: Annotated[str | None, typer.Option(help=_DOC["root_cause"])] = None,
    remediation: Annotated[str | None, typer.Option(help=_DOC["remediation"])] = None,
    corrective_controls: Annotated[str | None, typer.Option(help=_DOC["corrective_controls"])] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write the report (JSON, Markdown) here.")] = None,
) -> None:
    """Close an incident in post-incident. It needs its description, root cause, remediation and
    corrective controls, and Amazon notified when Amazon Information is or may be involved. The
    report's SHA-256s go into the security log."""
    paths = _report_paths(incident_id, out_dir)
    with deployment() as d, d.unit_of_work() as conn:
        documents = d.incidents.close(
            conn,
            incident_id,
            principal=principal(),
            description=description,
            root_cause=root_cause,
            remediation=remediation,
            corrective_controls=corrective_controls,
        )
    out.print(f"[green]incident {incident_id} closed[/]")
    for document in documents:  # written once the close is committed
        out.print(f"report ({document.format}) sha256 {document.sha256}")
        if document.format in paths:
            _write(document, paths[document.format])
    if paths:
        out.print(f"written to {out_dir}")


@incidents_app.command("report")
def incidents_report(
    incident_id: int,
    fmt: Annotated[str, typer.Option("--format", help="markdown or json.")] = "markdown",
) -> None:
    """A closed incident's report, as written when it closed."""
    if fmt not in ("markdown", "json"):
        raise PayloadError("--format is markdown or json")
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        as_json, as_markdown = d.incidents.report(conn, incident_id, principal=principal())
    sys.stdout.write((as_json if fmt == "json" else as_markdown).text)
