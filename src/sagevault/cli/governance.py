"""`sagevault assets`, `sagevault ropa` and `sagevault policies`: the asset inventory, the record
of processing (generated) and the policy register (docs/governance.md)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sagevault.errors import PayloadError
from sagevault.governance import KINDS, METHODS, Asset

from ._app import app, deployment, group, out, principal

assets_app = group("assets", "The asset inventory: what holds or reaches Amazon Information.")
policies_app = group("policies", "The policy register: company documents, versions, approvals, reviews.")

_JSON = typer.Option("--json", help="JSON instead of a table.")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d}" if at is not None else "-"


def _yes(value: bool | None) -> str:
    return "unknown" if value is None else "yes" if value else "no"


def _write_new(path: Path, text: str) -> None:
    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise PayloadError(f"{path} exists; give another --out (nothing is overwritten)") from None


# --- assets ------------------------------------------------------------------------------------


@assets_app.command("add")
def assets_add(
    name: Annotated[str, typer.Argument(help="A name unique in the inventory, e.g. 'packing-station-3'.")],
    kind: Annotated[str, typer.Option(help=f"One of: {', '.join(KINDS)}.")],
    owner: Annotated[str | None, typer.Option(help="The person or team answerable for it (required).")] = None,
    environment: Annotated[str, typer.Option(help="production, staging, ...")] = "production",
    region: Annotated[str | None, typer.Option(help="Where it is (a cloud region or a site).")] = None,
    amazon_data: Annotated[
        bool, typer.Option("--amazon-data/--no-amazon-data", help="Holds or reaches Amazon Information.")
    ] = True,
    encrypted: Annotated[
        bool | None, typer.Option("--encrypted/--not-encrypted", help="Encrypted at rest (default: unknown).")
    ] = None,
    mfa: Annotated[bool | None, typer.Option("--mfa/--no-mfa", help="Access needs MFA (default: unknown).")] = None,
    notes: Annotated[str | None, typer.Option(help="Anything a reviewer should know (no personal data).")] = None,
) -> None:
    """Add an asset to the inventory; its first review is due in a year."""
    with deployment() as d, d.unit_of_work() as conn:
        asset = d.governance.assets.add(
            conn,
            name=name,
            kind=kind,
            owner=owner,
            principal=principal(),
            environment=environment,
            region=region,
            amazon_data=amazon_data,
            encrypted_at_rest=encrypted,
            mfa=mfa,
            notes=notes,
        )
    out.print(f"[green]asset {asset.id} added[/]: {escape(asset.name)}; review due {_when(asset.next_review_at)}")


@assets_app.command("list")
def assets_list(
    include_disposed: Annotated[bool, typer.Option("--all", help="Disposed assets too.")] = False,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """The inventory (the deployment's own parts are registered first, if new)."""
    with deployment() as d, d.unit_of_work() as conn:
        d.governance.assets.sync_deployment(conn, d.own_assets(), principal=principal())
        found = d.governance.assets.list_assets(conn, principal=principal(), include_disposed=include_disposed)
        now = d.governance.assets.now()
    if as_json:
        _print_json([a.payload() for a in found])
        return
    table = Table("id", "name", "kind", "owner", "env", "Amazon data", "encrypted", "MFA", "source", "state", "review")
    for a in found:
        review = _when(a.next_review_at) + (" DUE" if a.review_due(now) else "")
        table.add_row(
            str(a.id),
            escape(a.name),
            a.kind,
            escape(a.owner),
            escape(a.environment),
            _yes(a.amazon_data),
            _yes(a.encrypted_at_rest),
            _yes(a.mfa),
            a.source,
            a.state,
            review if a.state == "active" else "-",
        )
    out.print(table)


def _asset_lines(a: Asset) -> list[str]:
    lines = [
        f"asset {a.id}: {a.name} ({a.kind}, {a.state}, {a.source})",
        f"owner: {a.owner}; environment: {a.environment}; region: {a.region or '-'}",
        f"Amazon data: {_yes(a.amazon_data)}; encrypted at rest: {_yes(a.encrypted_at_rest)}; MFA: {_yes(a.mfa)}",
        f"added {_when(a.created_at)} by {a.created_by}; last reviewed {_when(a.last_reviewed_at)}"
        + (f" by {a.last_reviewed_by}" if a.last_reviewed_by else ""),
        f"next review due {_when(a.next_review_at)}",
    ]
    if a.notes:
        lines.append(f"notes: {a.notes}")
    if a.disposal:
        r = a.disposal
        lines.append(
            f"disposed {r['at']} ({r['standard']}): method {r['method']}, media {r['media']}, "
            f"verified by {r['verified_by']}, recorded by {r['recorded_by']}"
        )
    return lines


@assets_app.command("show")
def assets_show(asset_id: int, as_json: Annotated[bool, _JSON] = False) -> None:
    """One asset, with its disposal record if it was disposed of."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        asset = d.governance.assets.get(conn, asset_id, principal=principal())
    if as_json:
        _print_json(asset.payload())
        return
    for line in _asset_lines(asset):
        out.print(line, markup=False, soft_wrap=True)


@assets_app.command("review")
def assets_review(
    asset_id: int,
    notes: Annotated[str | None, typer.Option(help="What was checked (replaces the notes).")] = None,
    owner: Annotated[str | None, typer.Option(help="A new owner, if it changed.")] = None,
) -> None:
    """Record that the entry was checked; the next review is due in a year."""
    with deployment() as d, d.unit_of_work() as conn:
        asset = d.governance.assets.review(conn, asset_id, principal=principal(), notes=notes, owner=owner)
    out.print(f"[green]asset {asset.id} reviewed[/]; next review due {_when(asset.next_review_at)}")


@assets_app.command("dispose")
def assets_dispose(
    asset_id: int,
    method: Annotated[str, typer.Option(help=f"NIST SP 800-88: {', '.join(METHODS)}.")],
    media: Annotated[str, typer.Option(help="What was sanitised, e.g. '2 x NVMe SSD, serials in ticket 42'.")],
    verified_by: Annotated[str, typer.Option("--verified-by", help="Who verified the sanitisation.")],
) -> None:
    """Retire an asset with its sanitisation record (once; it is neither reviewed nor disposed of again)."""
    with deployment() as d, d.unit_of_work() as conn:
        asset = d.governance.assets.dispose(
            conn, asset_id, principal=principal(), method=method, media=media, verified_by=verified_by
        )
    out.print(f"[green]asset {asset.id} disposed of[/] ({method}); `sagevault assets show {asset.id}` shows the record")


# --- the record of processing --------------------------------------------------------------------


@app.command("ropa")
def ropa(
    fmt: Annotated[str, typer.Option("--format", help="json, csv or html.")] = "json",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write it to this new file.")] = None,
) -> None:
    """The record of processing, generated from the field catalog, the roles and the asset
    inventory: for every field its category, purposes, retention, where it is stored, who can
    reveal it and how it leaves."""
    if out_file is not None and out_file.exists():
        raise PayloadError(f"{out_file} exists; give another --out (nothing is overwritten)")
    with deployment() as d, d.unit_of_work() as conn:
        d.governance.assets.sync_deployment(conn, d.own_assets(), principal=principal())
        found = d.governance.assets.list_assets(conn, principal=principal())
        text = d.governance.ropa.export(conn, principal=principal(), assets=found, fmt=fmt)
    if out_file is None:
        sys.stdout.write(text)
        return
    _write_new(out_file, text)
    out.print(f"record of processing written to {escape(str(out_file))}")


# --- the policy register -------------------------------------------------------------------------


@policies_app.command("add")
def policies_add(
    name: Annotated[str, typer.Argument(help="The document, e.g. 'Data Protection Policy'.")],
    version: Annotated[str, typer.Option(help="Its version, e.g. 2.1.")],
    owner: Annotated[str | None, typer.Option(help="The person or team answerable for it (required).")] = None,
    file: Annotated[Path | None, typer.Option(help="The document's file (its SHA-256 is registered).")] = None,
    sha256: Annotated[str | None, typer.Option(help="The document's SHA-256, instead of --file.")] = None,
) -> None:
    """Register a version of a company document by its SHA-256."""
    content = None
    if file is not None:
        try:
            content = file.read_bytes()
        except OSError:
            raise PayloadError(f"cannot read {file}; give a readable file or --sha256") from None
    with deployment() as d, d.unit_of_work() as conn:
        policy = d.governance.policies.add(
            conn, name=name, version=version, owner=owner, principal=principal(), sha256=sha256, content=content
        )
    out.print(
        f"[green]policy {policy.id} registered[/]: {escape(policy.name)} {escape(policy.version)} "
        f"(sha256 {policy.sha256}); approve it with `sagevault policies approve {policy.id}`"
    )


@policies_app.command("approve")
def policies_approve(
    policy_id: int,
    review_days: Annotated[int, typer.Option(min=1, max=365, help="Days to the next review.")] = 365,
) -> None:
    """Approve a version (again: its periodic review); the next review is due in --review-days."""
    with deployment() as d, d.unit_of_work() as conn:
        policy = d.governance.policies.approve(conn, policy_id, principal=principal(), review_days=review_days)
    out.print(f"[green]policy {policy.id} approved[/]; next review due {_when(policy.next_review_at)}")


@policies_app.command("list")
def policies_list(as_json: Annotated[bool, _JSON] = False) -> None:
    """Every registered version; the newest of each document is in force."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        found = d.governance.policies.list_policies(conn, principal=principal())
        now = d.governance.policies.now()
    if as_json:
        _print_json([p.payload(now) for p in found])
        return
    if not found:
        out.print("no policies; `sagevault policies add NAME --version V --owner O --file PATH` registers one")
        return
    table = Table("id", "name", "version", "owner", "state", "approved", "by", "next review", "sha256")
    for p in found:
        table.add_row(
            str(p.id),
            escape(p.name),
            escape(p.version),
            escape(p.owner),
            p.state(now).upper() if p.state(now) == "overdue" else p.state(now),
            _when(p.approved_at),
            escape(p.approved_by or "-"),
            _when(p.next_review_at),
            p.sha256[:16],
        )
    out.print(table)
