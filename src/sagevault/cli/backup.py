"""`sagevault backup`: encrypted backups of the vault's database, tracked as live copies until
they are destroyed (at the latest at their expiry, 90 days), and a restore that re-applies every
deletion recorded since the backup before anything can read the restored data."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sagevault.errors import ConfigError
from sagevault.jobs import leader

from ._app import deployment, group, out, principal

backup_app = group("backup", "Encrypted backups, tracked until they expire; a restore re-applies every deletion.")


@backup_app.command("create")
def backup_create(
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Directory to write it to (default: <data_dir>/backups).")
    ] = None,
    recipient: Annotated[
        list[str] | None,
        typer.Option("--recipient", help="A further age public key (age1...) that can open it; repeatable."),
    ] = None,
    days: Annotated[
        int | None, typer.Option("--days", min=1, help="Keep it this many days (default and most: the policy's 90).")
    ] = None,
) -> None:
    """Write an encrypted, signed backup of the vault's database (never the security log) and
    register it as a live copy with its expiry. It is encrypted to the deployment's backup key
    (<data_dir>/keys/backup.key) and to every --recipient."""
    with deployment() as d, d.unit_of_work() as conn:
        made = d.backups.create(
            conn, principal=principal(), out_dir=out_dir, extra_recipients=recipient or [], days=days
        )
    c = made.copy
    out.print(f"[green]backup {c.id} written[/] to {c.location}", soft_wrap=True)
    out.print(f"  sha256 {c.sha256} · {c.size} bytes · expires {c.expires_at:%Y-%m-%d %H:%M} UTC")


@backup_app.command("list")
def backup_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
    live: Annotated[bool, typer.Option("--live", help="Only backups not destroyed.")] = False,
) -> None:
    """Backups, newest first: where, SHA-256, size, when made, when they expire, when destroyed."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        found = d.backups.list_backups(conn, principal=principal(), live_only=live)
    if as_json:
        sys.stdout.write(json.dumps([c.payload() for c in found], indent=2) + "\n")
        return
    if not found:
        out.print("no backups; `sagevault backup create` writes one")
        return
    table = Table("id", "created", "expires", "destroyed", "bytes", "file")
    for c in found:
        table.add_row(
            str(c.id),
            f"{c.created_at:%Y-%m-%d %H:%M}",
            f"{c.expires_at:%Y-%m-%d %H:%M}",
            f"{c.destroyed_at:%Y-%m-%d %H:%M}" if c.destroyed_at else "-",
            str(c.size),
            c.location,
        )
    out.print(table)


@backup_app.command("restore")
def backup_restore(
    file: Annotated[Path, typer.Argument(help="The backup file (.age).")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Replace the vault's database with a backup. Stop the service first (`serve`, jobs): on
    SQLite the database file is replaced. Refused, with nothing changed, if the file does not
    decrypt with this deployment's backup key, its manifest's signature does not verify, or its
    image is not the one the manifest names. Every shred and deletion recorded in the security log
    is applied to the restored copy (and the retention purge run on it) before it is swapped in.
    Accounts, API keys and grants are those of the backup: revoke again what was revoked since."""
    if not yes:
        typer.confirm(
            f"Restore {file}? The vault's database is replaced (the security log is kept); the service must be stopped",
            abort=True,
        )
    with deployment() as d, leader(d.engine, "monitor") as alone:  # `serve` holds it while it runs
        if not alone:
            raise ConfigError("`sagevault serve` is running on this deployment (its detector leads); stop it first")
        done = d.backups.restore(file, principal=principal())
    m = done.manifest
    out.print(f"[green]restored[/] the backup of {m.created_at} ({m.backend}, schema {m.schema_revision})")
    r = done.replayed
    out.print(
        f"  re-applied: {r.tenants} tenants shredded again ({r.tenant_records} of their records deleted), "
        f"{r.records} deleted records deleted again"
    )
    if done.retention_ran:
        out.print(
            f"  retention: PII purged from {done.retention_pii} records, {done.retention_records} records deleted"
        )
    else:
        out.print("[yellow]  retention: not run on the restored copy; run `sagevault jobs run retention` now[/]")
    if not r.registers:
        out.print("[yellow]  the live database could not be read: copies, requests and holds are the backup's[/]")


@backup_app.command("destroy")
def backup_destroy(
    copy_id: Annotated[int, typer.Argument(help="The backup's id (`sagevault backup list`).")],
    missing_ok: Annotated[
        bool, typer.Option("--missing-ok", help="The file is not here (an offline copy destroyed elsewhere).")
    ] = False,
) -> None:
    """Overwrite and delete a backup's file and record the copy destroyed."""
    with deployment() as d, d.unit_of_work() as conn:
        gone = d.backups.destroy(conn, copy_id, principal=principal(), missing_ok=missing_ok)
    out.print(f"[green]backup {gone.id} destroyed[/] ({gone.location})", soft_wrap=True)
