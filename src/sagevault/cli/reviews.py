"""`sagevault reviews`: access-review campaigns (at least every 90 days): every grant and API key,
decided by someone who is not its subject; revocations through access; a signed report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sagevault.audit import load_public_key
from sagevault.errors import PayloadError
from sagevault.governance._reviews import verify_report

from ._app import deployment, group, out, principal, settings

reviews_app = group("reviews", "Access-review campaigns: every grant and API key, decided by someone else.")

_JSON = typer.Option("--json", help="JSON instead of a table.")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _day(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "-"


@reviews_app.command("start")
def reviews_start(
    due_days: Annotated[
        int | None, typer.Option(help="Days until the due date (at most 90; default the policy's).")
    ] = None,
    default: Annotated[
        str, typer.Option(help="What undecided items become at the due date: keep, revoke or none.")
    ] = "keep",
    unused_days: Annotated[
        int | None, typer.Option(help="Recommend revoking what was unused this long (default the policy's).")
    ] = None,
) -> None:
    """Start a campaign over every person's and service account's grants and API keys."""
    with deployment() as d, d.unit_of_work() as conn:
        campaign = d.governance.reviews.start(
            conn, principal=principal(), due_days=due_days, default_decision=default, unused_days=unused_days
        )
    c = campaign.counts
    out.print(
        f"[green]campaign {campaign.id} started[/]: {c['items']} items, {c['recommended_revoke']} recommended to "
        f"revoke; due {campaign.due_at:%Y-%m-%d %H:%M} UTC (default {campaign.default_decision}); "
        f"`sagevault reviews show {campaign.id}` lists them"
    )


@reviews_app.command("list")
def reviews_list(as_json: Annotated[bool, _JSON] = False) -> None:
    """Campaigns, newest first, with their counts."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        found = d.governance.reviews.list_campaigns(conn, principal=principal())
        now = d.governance.reviews.now()
    rows = [c.summary(now) for c in found]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        out.print("no campaigns; `sagevault reviews start` starts one")
        return
    table = Table("id", "state", "started", "due", "default", "items", "undecided", "revoked", "closed")
    for r in rows:
        c = r["counts"]
        due = _day(r["due_at"]) + (" OVERDUE" if r["overdue"] else "")
        table.add_row(
            str(r["id"]),
            r["state"],
            _day(r["started_at"]),
            due,
            r["default_decision"],
            str(c["items"]),
            str(c["undecided"]),
            str(c["revoke"] + c["change"]),
            _day(r["closed_at"]),
        )
    out.print(table)


@reviews_app.command("show")
def reviews_show(campaign_id: int, as_json: Annotated[bool, _JSON] = False) -> None:
    """One campaign with its items: subject, grant or key, last log-in and reveal, recommendation, decision."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        campaign = d.governance.reviews.get(conn, campaign_id, principal=principal())
        now = d.governance.reviews.now()
    payload = campaign.payload(now)
    if as_json:
        _print_json(payload)
        return
    overdue = " [red]OVERDUE[/]" if payload["overdue"] else ""
    out.print(
        f"campaign {campaign.id}: {campaign.state}, due {campaign.due_at:%Y-%m-%d %H:%M} UTC{overdue}, "
        f"default {campaign.default_decision}, unused after {campaign.unused_days} days"
    )
    table = Table("item", "subject", "kind", "access", "last log-in", "last reveal", "recommend", "decision")
    for i in payload["items"]:
        access = (
            f"{i['role']} on {','.join(i['tenants'] or [])}" if i["item_kind"] == "grant" else f"key {i['item_ref']}"
        )
        decision = i["decision"] or "-"
        if i["by_default"]:
            decision += " (default)"
        if i["note"]:
            decision += f" ({i['note']})"
        table.add_row(
            str(i["id"]),
            f"{i['subject']} ({i['subject_status']})",
            i["subject_kind"],
            access,
            _day(i["last_login_at"]),
            _day(i["last_reveal_at"]),
            f"{i['recommendation']} ({i['reason']})",
            decision,
        )
    out.print(table)


@reviews_app.command("decide")
def reviews_decide(
    item_id: int,
    decision: Annotated[str, typer.Argument(help="keep, revoke, or change (the current grant is revoked).")],
    justification: Annotated[str, typer.Option(help="Why (one line, up to 500 characters, no personal data).")],
) -> None:
    """Decide one item; a revoke or change is applied at once through access."""
    with deployment() as d, d.unit_of_work() as conn:
        item = d.governance.reviews.decide(conn, item_id, decision, justification, principal=principal())
    done = " and revoked" if item.applied else ""
    out.print(f"[green]item {item.id} decided {item.decision}[/]{done}")
    if item.decision == "change":
        out.print("the changed access is a new grant: `sagevault grants add --login LOGIN --role ROLE --tenant ...`")


@reviews_app.command("close")
def reviews_close(
    campaign_id: int,
    default: Annotated[
        str | None, typer.Option(help="Set the default for undecided items first (keep or revoke).")
    ] = None,
) -> None:
    """Close a campaign: after its due date the default applies to undecided items (never revoking
    the last admin; recorded as decided by `default`); its report is signed. With undecided items of
    your own access (or a service you own) only the default revoke closes it. The daily job closes a
    campaign whose default is keep or revoke at its due date."""
    with deployment() as d, d.unit_of_work() as conn:
        campaign = d.governance.reviews.close(conn, campaign_id, principal=principal(), default=default)
    c = campaign.counts
    out.print(
        f"[green]campaign {campaign.id} closed[/]: {c['keep']} kept, {c['revoke']} revoked, {c['change']} changed, "
        f"{c['by_default']} by default; report SHA-256 {campaign.report_sha256}; "
        f"`sagevault reviews export {campaign.id} --out FILE` writes it"
    )


@reviews_app.command("export")
def reviews_export(
    campaign_id: int,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the signed JSON report here.")] = None,
) -> None:
    """The signed report of a closed campaign (JSON on standard output, or --out FILE)."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        signed = d.governance.reviews.export(conn, campaign_id, principal=principal())
    text = json.dumps(signed, indent=2, sort_keys=True) + "\n"
    if out_file is None:
        sys.stdout.write(text)
        return
    try:
        with out_file.open("x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise PayloadError(f"{out_file} exists; give another --out (nothing is overwritten)") from None
    out.print(f"report written to {out_file}; `sagevault reviews verify {out_file}` checks it")


@reviews_app.command("verify")
def reviews_verify(
    file: Path,
    public_key: Annotated[
        Path | None, typer.Option(help="The signer's public key (default: this data dir's audit-signing.pub).")
    ] = None,
) -> None:
    """Check a campaign report offline with the public key alone: exit 0 if it is intact and
    signed by that key, 1 if not."""
    key = load_public_key(public_key or settings().resolved_audit_signing_key_file.with_suffix(".pub"))
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise PayloadError(f"{file} is not a JSON report; give the file `sagevault reviews export` wrote") from None
    if not verify_report(document, key):
        out.print("[red]INVALID[/]: not a campaign report signed by this key, or changed after it was signed")
        raise typer.Exit(1)
    campaign = document["report"].get("campaign", {})
    out.print(f"[green]valid[/]: campaign {campaign.get('id')}, closed {campaign.get('closed_at')}")
