"""`sagevault vulns` (the vulnerability register) and `sagevault report` (the DPP evidence report
and its signed pack)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sagevault.compliance import (
    Status,
    build_pack,
    embedded_key_sha256,
    evaluate,
    register_own_assets,
    render,
    verify_pack,
)
from sagevault.errors import PayloadError
from sagevault.governance._vulns import audit_installed

from ._app import app, deployment, group, out, principal, settings

vulns_app = group("vulns", "The vulnerability register: installed dependencies against known advisories.")

MAX_SCAN_BYTES = 20 * 1024 * 1024


@vulns_app.command("scan")
def vulns_scan(
    from_file: Annotated[
        Path | None,
        typer.Option("--from", help="pip-audit's JSON output (`pip-audit --format json`), instead of running it."),
    ] = None,
) -> None:
    """Check the installed dependencies against known advisories and record each finding with its
    fix deadline (critical 7 days, high 30, medium 90, low 180; unrated as critical). Without --from,
    runs `pip-audit --format json` on SageVault's environment (it asks PyPI's advisory service)."""
    if from_file is not None:
        if not from_file.is_file() or from_file.stat().st_size > MAX_SCAN_BYTES:
            raise PayloadError(f"--from must be a pip-audit JSON file of at most {MAX_SCAN_BYTES} bytes")
        try:
            data = json.loads(from_file.read_bytes())
        except ValueError:
            raise PayloadError("--from is not JSON; give the output of `pip-audit --format json`") from None
    else:
        data = audit_installed()
    with deployment() as d, d.unit_of_work() as conn:
        result = d.governance.vulns.scan(conn, data, principal=principal())
    r = result
    out.print(
        f"[green]scanned[/] {r.dependencies} dependencies ({r.skipped} skipped): {r.found} findings, "
        f"{r.opened} new, {r.reopened} back, {r.closed} closed; {r.open} open"
    )


@vulns_app.command("list")
def vulns_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Closed findings too.")] = False,
) -> None:
    """Findings, the nearest deadline first: package, version, advisory, severity, deadline."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        found = d.governance.vulns.list_vulns(conn, principal=principal(), open_only=not show_all)
        now = d.now()
    if as_json:
        sys.stdout.write(json.dumps([v.payload(now) for v in found], indent=2) + "\n")
        return
    if not found:
        out.print("no open vulnerabilities recorded" if not show_all else "no vulnerabilities recorded")
        return
    table = Table("id", "package", "version", "advisory", "severity", "due", "state", "fixed in")
    for v in found:
        state = "closed" if v.closed_at else ("[red]OVERDUE[/]" if v.overdue(now) else "open")
        table.add_row(
            str(v.id),
            escape(v.package),
            escape(v.version),
            escape(v.advisory),
            v.severity,
            f"{v.due_at:%Y-%m-%d}",
            state,
            escape(", ".join(v.fix_versions) or "-"),
        )
    out.print(table)


report_app = typer.Typer(
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    help="The DPP evidence report: every requirement evaluated on the live deployment; `report verify` checks a pack.",
)
app.add_typer(report_app, name="report")
FORMATS = ("html", "json", "md")


@report_app.callback()
def report(
    ctx: typer.Context,
    fmt: Annotated[str | None, typer.Option("--format", help="Write the report as html, json or md.")] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write it to this file (default: standard output).")
    ] = None,
    pack: Annotated[Path | None, typer.Option("--pack", help="Also write the signed evidence pack (zip) here.")] = None,
) -> None:
    """Evaluate every requirement (PASS, FAIL, ATTENTION) with its evidence. Exit code 0 even
    with FAILs: the summary says how many."""
    if ctx.invoked_subcommand is not None:
        return
    if fmt is not None and fmt not in FORMATS:
        raise PayloadError("--format is one of html, json, md")
    if out_file is not None and fmt is None:
        fmt = {".html": "html", ".json": "json", ".md": "md"}.get(out_file.suffix, "json")
    with deployment() as d:
        who = principal()
        with d.unit_of_work() as conn:  # the deployment's own parts in the inventory, as `assets list` does
            register_own_assets(d, conn, principal=who)
        with d.unit_of_work(read_only=True) as conn:
            made = build_pack(d, conn, pack, principal=who) if pack is not None else None
            result = made.report if made is not None else evaluate(d, conn, principal=who)
    if fmt is not None:
        text = render(result, fmt)
        if out_file is None:
            sys.stdout.write(text)
            return
        out_file.write_text(text)
        out.print(f"report written to {out_file}", soft_wrap=True)
    else:
        table = Table("id", "clause", "status", "evidence", "how to fix")
        for i in result.items:
            colour = {"PASS": "green", "FAIL": "red", "ATTENTION": "yellow"}[i.status.value]
            table.add_row(i.id, i.clause, f"[{colour}]{i.status.value}[/]", escape(i.summary), escape(i.fix or ""))
        out.print(table)
    c = result.counts
    fails = c[Status.FAIL.value]
    out.print(
        f"{len(result.items)} requirements: {c['PASS']} PASS, {fails} FAIL, {c['ATTENTION']} ATTENTION"
        + (" — the deployment does NOT meet the policy yet (fix the FAIL items)" if fails else "")
    )
    if made is not None:
        out.print(f"[green]evidence pack[/] {made.path} sha256 {made.sha256}", soft_wrap=True)
        for name, why in made.omitted.items():
            out.print(f"  left out {name}: {escape(why)}", soft_wrap=True)


@report_app.command("verify")
def report_verify(
    file: Annotated[Path, typer.Argument(help="The evidence pack (zip).")],
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="The signing public key you trust (PEM); default: this data dir's audit-signing.pub. "
            "The key inside the pack is never trusted.",
        ),
    ] = None,
) -> None:
    """Check an evidence pack offline against the public key you trust (never the key inside the
    pack): the embedded key is that key, the manifest's signature, every file's SHA-256, nothing
    missing or extra, no byte changed. Exit 0 when valid, 1 when not, 2 when no trusted key."""
    if not file.is_file():
        raise PayloadError(f"{file} is not a file")
    key_file = public_key or settings().resolved_audit_signing_key_file.with_suffix(".pub")
    if not key_file.is_file():
        raise PayloadError(
            f"no trusted public key to check the pack with: {key_file} is missing; give the signer's public key "
            "with --public-key (the key inside the pack is never trusted)"
        )
    try:
        ok, problems = verify_pack(file, key_file)
    except OSError:
        raise PayloadError(f"{file} or {key_file} cannot be read") from None
    embedded = embedded_key_sha256(file)
    if ok:
        out.print(f"[green]valid[/]: {file} is a signed SageVault evidence pack, unchanged", soft_wrap=True)
        out.print(f"  checked against the trusted key {key_file} (sha256 {embedded})", soft_wrap=True)
        return
    out.print(f"[red]INVALID[/]: {file}", soft_wrap=True)
    for p in problems:
        out.print(f"  {escape(p)}", soft_wrap=True)
    if embedded is not None:
        out.print(f"  the key inside the pack has sha256 {embedded} (never trusted)", soft_wrap=True)
    raise typer.Exit(1)
