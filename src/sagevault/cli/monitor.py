"""`sagevault rules|alarms|canary|monitor`: detection rules, alarms, canary records, the detector."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sagevault.errors import PayloadError, RecordNotFound
from sagevault.jobs import Watch, leader
from sagevault.monitor import Alarm, Detector, Seen, fake_orders, load_rules

from ._app import deployment, group, out, principal, settings

rules_app = group("rules", "Detection rules: the shipped ones and those in <data_dir>/rules.")
alarms_app = group("alarms", "Alarms the detection rules raised, and their handling.")
canary_app = group("canary", "Canary records: fake orders that raise a critical alarm when touched.")
monitor_app = group("monitor", "The detector (`serve` runs it; this runs it by hand).")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@rules_app.command("list")
def rules_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False) -> None:
    """Every rule: id, version, DPP clause, severity, kind, whether it is on, where it comes from."""
    rules = load_rules(settings().rules_dir)
    if as_json:
        _print_json([r.summary() for r in rules])
        return
    table = Table("rule", "version", "clause", "severity", "kind", "enabled", "from", "title")
    for r in rules:
        table.add_row(
            r.id,
            str(r.version),
            r.clause,
            r.severity.value,
            r.kind.value,
            "yes" if r.enabled else "no",
            "shipped" if r.source.startswith("package:") else r.source,
            r.title,
        )
    out.print(table)


def _replayed(path: Path) -> list[Seen]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PayloadError(
            f"{path} cannot be read ({type(exc).__name__}); give an `audit export` JSON-lines file"
        ) from None
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append(Seen.from_export(json.loads(line)))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise PayloadError(
                f"{path} line {number} is not an exported event; make the file with "
                "`sagevault audit export --format jsonl`"
            ) from None
    return events


@rules_app.command("test")
def rules_test(
    rule_id: Annotated[str, typer.Argument(help="The rule (see `sagevault rules list`).")],
    replay: Annotated[Path, typer.Option("--replay", help="Events from `sagevault audit export --format jsonl`.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, one per firing.")] = False,
) -> None:
    """Replay exported events against one rule and print what would fire (nothing is stored)."""
    loaded = settings()
    rules = {r.id: r for r in load_rules(loaded.rules_dir)}
    if rule_id not in rules:
        raise RecordNotFound(f"no rule {rule_id}; `sagevault rules list` shows them")
    rule = rules[rule_id]
    if rule.kind.value == "canary":
        raise PayloadError("a canary rule needs the deployment's canary key; it cannot be replayed from a file")
    detector = Detector(
        [dataclasses.replace(rule, enabled=True)],
        canaries=lambda _t, _ids: [],
        hours=loaded.policy.pii_access_hours,
        zone=loaded.policy.timezone,
    )
    events = _replayed(replay)
    fired = [f for e in events for f in detector.feed(e)]
    groups: dict[str, int] = {}
    for f in fired:
        groups[f.group_key] = groups.get(f.group_key, 0) + 1
    if as_json:
        for f in fired:
            line = {"rule": rule.id, "rule_version": rule.version, "group": f.group_key, "at": f.at}
            sys.stdout.write(json.dumps({**line, "seqs": f.seqs, "evidence": f.evidence}, default=str) + "\n")
        return
    out.print(f"{len(events)} events replayed against {rule.id} v{rule.version}: {len(fired)} firings")
    for key, n in sorted(groups.items()):
        out.print(f"  {key}: fired on {n} events (one alarm, counting them, within {rule.suppress_seconds} s)")


def _alarm_row(a: Alarm) -> list[str]:
    return [
        str(a.id),
        a.rule,
        str(a.rule_version),
        a.clause,
        a.severity,
        a.state,
        f"{a.first_at:%Y-%m-%d %H:%M:%S}",
        str(a.count),
        a.principal or "-",
        a.tenant or "-",
    ]


@alarms_app.command("list")
def alarms_list(
    state: Annotated[str | None, typer.Option(help="open, acknowledged, resolved or false_positive.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array of alarms.")] = False,
) -> None:
    """Alarms, newest first."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        found = d.monitor.list_alarms(conn, principal=principal(), state=state, limit=limit)
    if as_json:
        _print_json([a.payload() for a in found])
        return
    if not found:
        out.print(f"no {state or ''} alarms".replace("  ", " ") + "; `sagevault rules list` shows what is watched")
        return
    table = Table("id", "rule", "v", "clause", "severity", "state", "first", "events", "principal", "tenant")
    for a in found:
        table.add_row(*_alarm_row(a))
    out.print(table)


@alarms_app.command("show")
def alarms_show(alarm_id: Annotated[int, typer.Argument(help="The alarm's id.")]) -> None:
    """One alarm in full: rule and version, clause, evidence (event seqs, counts, baseline), responses."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        alarm = d.monitor.get(conn, alarm_id, principal=principal())
    _print_json(alarm.payload())


def _change(alarm_id: int, to: str, note: str) -> None:
    with deployment() as d, d.unit_of_work() as conn:
        alarm = d.monitor.change(conn, alarm_id, to, principal=principal(), note=note)
    out.print(f"alarm {alarm.id} is {alarm.state}")


_NOTE = typer.Option("--note", help="Why (kept with the alarm; no personal data).")


@alarms_app.command("ack")
def alarms_ack(alarm_id: int, note: Annotated[str, _NOTE] = "") -> None:
    """Acknowledge an open alarm: someone is on it."""
    _change(alarm_id, "acknowledged", note)


@alarms_app.command("resolve")
def alarms_resolve(alarm_id: int, note: Annotated[str, _NOTE] = "") -> None:
    """Resolve an alarm (handled)."""
    _change(alarm_id, "resolved", note)


@alarms_app.command("false-positive")
def alarms_false_positive(alarm_id: int, note: Annotated[str, _NOTE] = "") -> None:
    """Close an alarm as a false positive."""
    _change(alarm_id, "false_positive", note)


@canary_app.command("seed")
def canary_seed(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant to plant them in.")],
    count: Annotated[int, typer.Option(min=1, max=100, help="How many canary orders.")] = 3,
) -> None:
    """Plant realistic fake orders through the normal ingest path and register them as canaries
    (keyed, so neither the API nor the database tells them apart). Any read, search hit or reveal
    of one raises a critical alarm; sellers' listings and counts leave them out."""
    p = principal()
    with deployment() as d, d.unit_of_work() as conn:
        planted = d.monitor.plant(conn, d.vault, tenant, list(fake_orders(count)), principal=p)
    out.print(f"[green]planted {planted} canary records[/] in {tenant} (which ones is known only to the canary key)")


@monitor_app.command("run")
def monitor_run(
    once: Annotated[bool, typer.Option("--once", help="Evaluate what is there and deliver, then stop.")] = False,
    poll: Annotated[float, typer.Option(min=0.05, max=10, help="Seconds between looks at the log.")] = 0.5,
) -> None:
    """Follow the security event log and raise alarms (`serve` runs this beside the server). One
    process per deployment leads; others started stand by and take over when it stops."""
    with deployment() as d:
        watch = Watch(d, poll=poll)
        if once:
            with leader(d.engine, "monitor") as leads:
                if not leads:
                    out.print("another detector leads this deployment (serve runs one); nothing done")
                    return
                n = watch.catch_up()
                sent = watch.deliver()
            out.print(f"{n} events evaluated, {sent} alarm deliveries made")
            return
        out.print("following the security event log; Ctrl-C stops")
        try:
            with watch.running():
                watch._stop.wait()
        except KeyboardInterrupt:
            out.print("stopped")
