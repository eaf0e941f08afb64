"""`sagevault retention`: what goes when, legal holds, and the purge by hand (the `retention`
job runs it every hour)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sagevault.deletion import LegalHold, RetentionStatus

from ._app import deployment, group, heading, out, principal

retention_app = group("retention", "Retention: PII 30 days after delivery, records after 18 months; legal holds.")
hold_app = typer.Typer(
    no_args_is_help=True, pretty_exceptions_enable=False, help="Legal holds: keep records past their dates."
)
retention_app.add_typer(hold_app, name="hold")

_JSON = typer.Option("--json", help="JSON instead of a table.")
_TENANT = typer.Option("--tenant", help="The selling partner (tenant id).")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC" if at is not None else "-"


def _scope(hold: LegalHold) -> str:
    return "whole tenant" if hold.order_id == "*" else f"order {hold.order_id}"


@retention_app.command("status")
def retention_status(
    tenant: Annotated[str | None, _TENANT] = None,
    order: Annotated[str | None, typer.Option("--order", help="One order of --tenant: its dates and holds.")] = None,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """What goes when: per tenant, records whose PII goes (past due, within 7 days, within 30
    days, later), records that go whole, and what legal holds keep and why."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        status = d.retention.status(conn, principal=principal(), tenant_id=tenant, order_id=order)
    if as_json:
        _print_json(status.payload())
        return
    _render(status)


def _render(status: RetentionStatus) -> None:
    now = status.now
    table = Table("tenant", "PII past due", "≤ 7 days", "≤ 30 days", "later", "PII purged", "held", "records due")
    for t in status.tenants:
        table.add_row(
            t.tenant_id,
            str(t.pii.overdue),
            str(t.pii.within_7_days),
            str(t.pii.within_30_days),
            str(t.pii.later),
            str(t.pii_purged),
            str(t.held),
            str(t.records.overdue),
        )
    out.print(f"as of {_when(now)} (past due: the next `retention run` purges them)")
    out.print(table)
    holds = [h for t in status.tenants for h in t.holds]
    if holds:
        heading("legal holds in force")
        for h in holds:
            out.print(
                f"hold {h.hold.id} on {h.hold.tenant_id} {_scope(h.hold)} until {_when(h.hold.until)}: "
                f"keeps the PII of {h.records} record(s), {h.overdue} past due; reason: {h.hold.reason}",
                markup=False,
                soft_wrap=True,
            )
    if (o := status.order) is not None:
        heading(f"order {o.order_id}")
        out.print(
            f"state: {o.state}; PII goes {_when(o.pii_expires_at)}, the record {_when(o.expires_at)}",
            soft_wrap=True,
        )
        if o.pii_purged_at is not None:
            out.print(f"PII purged {_when(o.pii_purged_at)}")
        for hold in o.held_by:
            out.print(
                f"held by hold {hold.id} ({_scope(hold)}) until {_when(hold.until)}: {hold.reason}",
                markup=False,
                soft_wrap=True,
            )


@retention_app.command("run")
def retention_run(
    limit: Annotated[int, typer.Option(min=1, max=1_000_000, help="Records per kind per step.")] = 50_000,
) -> None:
    """Purge now what is past its date (as the hourly `retention` job does), step by step until
    nothing is left, each step its own transaction; then the freed pages are scrubbed."""
    pii = gone = 0
    with deployment() as d:
        while True:
            with d.unit_of_work() as conn:
                ran = d.retention.run(conn, principal=principal(), limit=limit)
            pii, gone = pii + ran.pii, gone + ran.records
            if not ran.more:
                break
        d.release_deleted_pages()
    out.print(f"[green]retention run[/]: PII purged from {pii} records, {gone} records deleted whole")


@hold_app.command("add")
def hold_add(
    tenant: Annotated[str, _TENANT],
    reason: Annotated[str, typer.Option(help="Why: the matter, case or authority (no personal data).")],
    until: Annotated[str, typer.Option(help="When the hold ends, with its UTC offset, e.g. 2027-06-30T00:00:00Z.")],
    order: Annotated[str | None, typer.Option("--order", help="One order (default: the whole tenant).")] = None,
) -> None:
    """Hold an order's records (or a whole tenant's) past their retention dates."""
    with deployment() as d, d.unit_of_work() as conn:
        hold = d.retention.add_hold(
            conn, tenant_id=tenant, order_id=order, reason=reason, until=until, principal=principal()
        )
    out.print(f"[green]hold {hold.id} placed[/] on {hold.tenant_id} {_scope(hold)} until {_when(hold.until)}")


@hold_app.command("list")
def hold_list(
    tenant: Annotated[str | None, _TENANT] = None,
    active: Annotated[bool, typer.Option("--active", help="Only holds in force.")] = False,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Legal holds, newest first: scope, reason, end, state."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        holds = d.retention.holds(conn, principal=principal(), tenant_id=tenant, active_only=active)
        now = d.retention.now()
    if as_json:
        _print_json([h.payload(now) for h in holds])
        return
    if not holds:
        out.print("no legal holds; `sagevault retention hold add --tenant T --reason ... --until ...` places one")
        return
    table = Table("id", "tenant", "scope", "until", "state", "by", "reason")
    for h in holds:
        table.add_row(str(h.id), h.tenant_id, _scope(h), _when(h.until), h.state(now), h.created_by, escape(h.reason))
    out.print(table)


@hold_app.command("release")
def hold_release(hold_id: Annotated[int, typer.Argument(help="The hold (see `retention hold list`).")]) -> None:
    """End a hold now: its records' dates apply again at the next run."""
    with deployment() as d, d.unit_of_work() as conn:
        hold = d.retention.release_hold(conn, hold_id, principal=principal())
    out.print(f"[green]hold {hold.id} released[/] ({hold.tenant_id} {_scope(hold)})")
