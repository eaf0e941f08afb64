"""`sagevault jobs list|run NAME`: the scheduled jobs, and running one by hand."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from sagevault.jobs import default_jobs

from ._app import deployment, group, out

jobs_app = group("jobs", "Scheduled work (`serve` runs it; these commands show and run it by hand).")


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else "-"


@jobs_app.command("list")
def jobs_list() -> None:
    """Every job: how often it runs, when it last ran and how that ended, when it is next due."""
    jobs = default_jobs()
    with deployment() as d:
        states = jobs.states(d)
    table = Table("job", "every", "last started", "last outcome", "next due", "runs", "what it does")
    for s in states:
        table.add_row(
            s.name, str(s.every), _when(s.started_at), s.outcome or "-", _when(s.next_due), str(s.runs), s.description
        )
    out.print(table)


@jobs_app.command("run")
def jobs_run(
    name: Annotated[str, typer.Argument(help="The job (see `sagevault jobs list`).")],
    due_only: Annotated[bool, typer.Option("--due-only", help="Only if it is due (as the scheduler runs it).")] = False,
) -> None:
    """Run a job now, once, unless another node is running it. Exit 1 if it fails."""
    jobs = default_jobs()
    jobs.get(name)  # an unknown name is an error before anything is opened
    with deployment() as d:
        ran = jobs.run(d, name, force=not due_only)
    if not ran.ran:
        out.print(f"{name} did not run: another node is running it, or it is not due yet")
        return
    if ran.error is not None:
        out.print(f"[red]{name} failed[/] ({ran.error}); recorded as scheduler:job:fail")
        raise typer.Exit(1)
    counts = " ".join(f"{k}={v}" for k, v in (ran.result.counts if ran.result else {}).items())
    out.print(f"[green]{name} ran[/] {counts}".rstrip())
