"""`sagevault audit ...`: verify, export, search and purge the security event log. These commands
open only the audit log (no master key): an auditor can run them without being able to decrypt."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.table import Table

from sagevault.access import parse_time
from sagevault.audit import Asker, EventName, SyslogTlsSink, to_jsonl, to_syslog
from sagevault.errors import PayloadError

from ._app import audit_only, err, group, out, principal, settings

audit_app = group("audit", "The security event log.")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the whole chain, the head, purge anchors, every signed digest and the newest group
    seal. The verdict comes first, always; exit 1 if anything is wrong, 2 if the check could not
    be recorded."""
    with audit_only() as log:
        report = log.verify(Asker(principal()))
    tail = (
        f"sealed through event {report.sealed_through}; {report.undigested} events after the last signed digest "
        "(a truncation of those alone would go unseen)"
    )
    if report.ok:
        out.print(f"[green]audit log verified:[/] {report.events} events, {report.digests} signed digests; {tail}")
    else:
        where = "" if report.first_bad_seq is None else f" first bad sequence number {report.first_bad_seq}"
        err.print(f"[red]audit log NOT verified:[/]{where}", soft_wrap=True)
        for problem in report.problems:
            err.print(f"  {problem}", soft_wrap=True)
    if report.unrecorded is not None:
        err.print(f"[red]error:[/] this check could not be recorded: {report.unrecorded}", soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
    if report.unrecorded is not None:
        raise typer.Exit(2)


@audit_app.command("export")
def audit_export(
    since: Annotated[str | None, typer.Option(help="Only events at or after this time (ISO 8601).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or syslog (RFC 5424).")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    syslog_tls: Annotated[str | None, typer.Option(help="Send to a syslog collector over TLS: HOST:PORT.")] = None,
    ca: Annotated[Path | None, typer.Option(help="CA certificate that signed the collector's certificate.")] = None,
) -> None:
    """Every event (or those since a time) for a SIEM: JSON lines, syslog lines, or syslog over TLS.
    The export is recorded before anything is written."""
    if fmt not in ("jsonl", "syslog"):
        raise PayloadError(f"--format {fmt!r} is not supported; use jsonl or syslog")
    host, _, port = (syslog_tls or "").rpartition(":")
    if syslog_tls and (not host or not port.isdigit()):
        raise PayloadError("--syslog-tls must be HOST:PORT, for example siem.internal:6514")
    with audit_only() as log:
        export = log.export(Asker(principal()), since=parse_time(since, "--since"))
        if syslog_tls:
            n = SyslogTlsSink(host, int(port), cafile=str(ca) if ca else None).send(export.events())
        elif output is not None:
            with output.open("w", encoding="utf-8") as fh:
                n = _write_events(export.events(), fmt, fh)
        else:
            n = _write_events(export.events(), fmt, sys.stdout)
    if output is not None or syslog_tls:
        err.print(f"exported {n} events")


def _write_events(events: Iterator[dict[str, Any]], fmt: str, fh: IO[str]) -> int:
    if fmt == "jsonl":
        return to_jsonl(events, fh)
    n = 0
    for event in events:
        fh.write(to_syslog(event).decode() + "\n")
        n += 1
    return n


def _print_events(events: Iterable[dict[str, Any]]) -> None:
    table = Table("seq", "at", "event", "outcome", "reason", "actor", "tenant", "operation", "records", "counts")
    for e in events:
        table.add_row(
            str(e["seq"]),
            e["at"][:19],
            e["name"],
            e["outcome"],
            e["reason"],
            e["actor"] or "",
            e["tenant_id"] or "",
            e["operation"] or "",
            ",".join(map(str, e["record_ids"][:5])) + ("…" if len(e["record_ids"]) > 5 else ""),
            " ".join(f"{k}={v}" for k, v in e["counts"].items()),
        )
    out.print(table)


@audit_app.command("tail")
def audit_tail(n: Annotated[int, typer.Option("-n", min=1, max=10000, help="How many events.")] = 20) -> None:
    """The newest events."""
    with audit_only() as log:
        _print_events(reversed(log.read(Asker(principal()), limit=n, newest_first=True)))


@audit_app.command("search")
def audit_search(
    actor: Annotated[str | None, typer.Option()] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    event: Annotated[str | None, typer.Option(help="Event name, e.g. vault:field:reveal.")] = None,
    since: Annotated[str | None, typer.Option()] = None,
    until: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 200,
) -> None:
    """Events by actor, tenant, event name and time."""
    if event is not None and event not in {e.value for e in EventName}:
        raise PayloadError(f"{event!r} is not an event name; see the list in `sagevault audit events`")
    with audit_only() as log:
        _print_events(
            log.read(
                Asker(principal()),
                actor=actor,
                tenant_id=tenant,
                name=event,
                since=parse_time(since, "--since"),
                until=parse_time(until, "--until"),
                limit=limit,
            )
        )


@audit_app.command("events")
def audit_events() -> None:
    """The event vocabulary."""
    table = Table("event", "meaning")
    for e in EventName:
        table.add_row(e.value, e.description)
    out.print(table)


@audit_app.command("digest")
def audit_digest() -> None:
    """Sign the current chain head into the digest file now."""
    with audit_only() as log:
        digest = log.digest(Asker(principal()))
    out.print(f"signed digest at seq {digest.seq}: {digest.hash.hex()}")


@audit_app.command("purge")
def audit_purge() -> None:
    """Delete whole months of events older than the retention period (policy
    security_log_retention_days); the chain keeps a signed anchor and still verifies."""
    days = settings().policy.security_log_retention_days
    cutoff = datetime.now(UTC) - timedelta(days=days)
    with audit_only() as log:
        n = log.purge_before(cutoff, Asker(principal()))
    out.print(f"purged {n} events from before {cutoff:%Y-%m} (retention {days} days)")
