"""`sagevault deletion`: deletion and return requests (72 hours), a buyer's rights, certificates."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sagevault.db import is_sqlite
from sagevault.deletion import DeletionRequest, certificate_page, verify_certificate
from sagevault.errors import IntegrityError, PayloadError
from sagevault.incidents import parse_time
from sagevault.jobs import carry_out

from ._app import deployment, group, out, principal, settings

deletion_app = group("deletion", "Deletion and return requests (72 hours), buyers' rights, signed certificates.")

_JSON = typer.Option("--json", help="JSON instead of a table.")
_TENANT = typer.Option("--tenant", help="The selling partner (tenant id).")
_SOURCE = typer.Option(help="amazon-notice, seller-offboarding, authorisation-revoked or buyer-request.")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


_KINDS = ("email", "phone", "name", "postal_code")


def _buyer_from_stdin(kinds: list[str] | None) -> dict[str, str]:
    """The buyer's identifiers, one line of standard input per `--buyer KIND` in that order:
    never on the command line (shell history, the process list)."""
    if not kinds:
        return {}
    bad = [k for k in kinds if k not in _KINDS]
    if bad or len(set(kinds)) != len(kinds):
        raise PayloadError(f"--buyer is one of {', '.join(_KINDS)}, each once")
    values = {}
    for kind in kinds:
        line = sys.stdin.readline().rstrip("\n")
        if not line.strip():
            raise PayloadError(f"give the buyer's {kind} on standard input, one line per --buyer, in that order")
        values[kind] = line
    return values


def _left(request: DeletionRequest, now: datetime) -> str:
    if request.finished:
        late = request.done_at is not None and request.done_at > request.due_at
        return f"{request.state}{' (late)' if late else ''}"
    seconds = int((request.due_at - now).total_seconds())
    if seconds <= 0:
        return f"OVERDUE by {-seconds // 3600} h (was due {request.due_at:%Y-%m-%d %H:%M} UTC)"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min left (due {request.due_at:%Y-%m-%d %H:%M} UTC)"


def _deadline(request: DeletionRequest) -> str:
    """A done request against its deadline."""
    assert request.done_at is not None
    late = request.done_at > request.due_at
    return f"{'after' if late else 'within'} its deadline ({request.due_at:%Y-%m-%d %H:%M} UTC)"


@deletion_app.command("request")
def deletion_request(
    tenant: Annotated[str, _TENANT],
    order: Annotated[list[str] | None, typer.Option("--order", help="An order of the scope (repeat).")] = None,
    buyer: Annotated[
        list[str] | None,
        typer.Option("--buyer", help="email, phone, or name and postal_code: each value on a line of standard input."),
    ] = None,
    whole_tenant: Annotated[bool, typer.Option("--whole-tenant", help="The scope is the whole tenant.")] = False,
    kind: Annotated[str, typer.Option(help="delete, or return (a bundle first, then delete).")] = "delete",
    source: Annotated[str, _SOURCE] = "amazon-notice",
    received_at: Annotated[str | None, typer.Option(help="When it arrived, with its UTC offset (default now).")] = None,
    recipient: Annotated[str | None, typer.Option(help="For a return: the recipient's age public key.")] = None,
) -> None:
    """Record a request: --whole-tenant, --order ... or one --buyer (identified on standard
    input). Its 72-hour deadline runs from --received-at. Carry it out with `sagevault deletion run ID`."""
    chosen = [
        name for name, given in (("--whole-tenant", whole_tenant), ("--order", order), ("--buyer", buyer)) if given
    ]
    if len(chosen) != 1:
        raise PayloadError("give exactly one scope: --whole-tenant, --order ORDER ..., or --buyer KIND")
    identifiers = _buyer_from_stdin(buyer)
    scope = "buyer" if buyer else "orders" if order else "tenant"
    with deployment() as d, d.unit_of_work() as conn:
        request = d.deletion.request(
            conn,
            tenant_id=tenant,
            principal=principal(),
            scope=scope,
            orders=order or [],
            buyer=identifiers,
            kind=kind,
            source=source,
            received_at=parse_time("--received-at", received_at) if received_at else None,
            recipient=recipient,
        )
        now = d.deletion.now()
    if request.linked_to is not None:
        out.print(f"request {request.id} recorded and linked to request {request.linked_to} (the same scope)")
        return
    found = request.scope.get("orders")
    what = f"{len(found)} orders" if found is not None else "the whole tenant"
    out.print(f"[green]request {request.id} recorded[/]: {request.kind} {what}; {_left(request, now)}")


@deletion_app.command("list")
def deletion_list(
    state: Annotated[str | None, typer.Option(help="Only requests in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Requests, newest first, with their 72-hour clocks."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        found = d.deletion.list_requests(conn, principal=principal(), state=state, limit=limit)
        now = d.deletion.now()
    if as_json:
        _print_json([r.summary() for r in found])
        return
    if not found:
        out.print("no requests; `sagevault deletion request --tenant ...` records one")
        return
    table = Table("id", "tenant", "scope", "kind", "source", "state", "received", "deadline")
    for r in found:
        table.add_row(
            str(r.id),
            r.tenant_id,
            r.scope_kind,
            r.kind,
            r.source,
            r.state,
            f"{r.received_at:%Y-%m-%d %H:%M}",
            _left(r, now),
        )
    out.print(table)


@deletion_app.command("show")
def deletion_show(request_id: int, as_json: Annotated[bool, _JSON] = False) -> None:
    """One request: scope, state, counts, deadline."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        request = d.deletion.get(conn, request_id, principal=principal())
        now = d.deletion.now()
    if as_json:
        _print_json(request.payload(now))
        return
    out.print(f"request {request.id}: {request.kind} of {request.scope_kind} {request.tenant_id} ({request.source})")
    out.print(f"state {request.state}; {_left(request, now)}", soft_wrap=True)
    if request.reason:
        out.print(f"reason: {request.reason}", markup=False)
    out.print(f"counts: {json.dumps(request.counts, sort_keys=True)}", markup=False, soft_wrap=True)


@deletion_app.command("run")
def deletion_run(
    request_id: int,
    retry: Annotated[bool, typer.Option("--retry", help="Go on with a failed request (after fixing why).")] = False,
) -> None:
    """Carry out a request to its end: return bundle (if asked), crypto-shred or delete, verify,
    certificate. Interrupted, it goes on where it stopped when run again."""
    p = principal()
    with deployment() as d:
        request = carry_out(d, request_id, p, on_step=lambda r: out.print(f"request {r.id}: {r.state}"), retry=retry)
    if request.state == "done":
        out.print(
            f"[green]request {request.id} done[/] {_deadline(request)}; `sagevault deletion certificate "
            f"{request.id}` writes its certificate"
        )
    else:
        out.print(f"request {request.id} is {request.state}: {request.reason or ''}", markup=False)
        raise typer.Exit(1)


def _write_new(path: Path, text: str) -> None:
    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise PayloadError(f"{path} exists; give another --out (nothing is overwritten)") from None


@deletion_app.command("certificate")
def deletion_certificate(
    request_id: int,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the JSON here (and the HTML beside it).")
    ] = None,
) -> None:
    """The signed certificate of a done request (JSON on standard output, or --out FILE.json and
    FILE.html for printing)."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        signed = d.deletion.certificate(conn, request_id, principal=principal())
    text = json.dumps(signed, indent=2, sort_keys=True) + "\n"
    if out_file is None:
        sys.stdout.write(text)
        return
    _write_new(out_file, text)
    _write_new(out_file.with_suffix(".html"), certificate_page(signed))
    out.print(f"certificate written to {out_file} and {out_file.with_suffix('.html')}")


@deletion_app.command("verify-certificate")
def deletion_verify_certificate(
    file: Path,
    public_key: Annotated[
        Path | None, typer.Option(help="The signer's public key (default: this data dir's audit-signing.pub).")
    ] = None,
) -> None:
    """Check a certificate offline with the public key alone: exit 0 if it is intact and signed
    by that key, 1 if not."""
    key = public_key or settings().resolved_audit_signing_key_file.with_suffix(".pub")
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise PayloadError(f"{file} is not a JSON certificate (give the .json, not the .html)") from None
    try:
        certificate = verify_certificate(document, key)
    except IntegrityError as exc:
        out.print(f"[red]INVALID[/]: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    out.print(
        f"[green]valid[/]: {certificate.get('certificate_id')}, {certificate.get('method_code')}, "
        f"completed {certificate.get('completed_at')}"
    )


@deletion_app.command("rectify")
def deletion_rectify(
    tenant: Annotated[str, _TENANT],
    order: Annotated[str, typer.Option("--order", help="The order.")],
    field: Annotated[
        str, typer.Option(help="The PII field, e.g. ShippingAddress.Name (see `sagevault catalog --pii`).")
    ],
    source: Annotated[str, _SOURCE] = "buyer-request",
) -> None:
    """Correct a buyer's field. The new value is read from standard input (never the command
    line); recorded as a request with its certificate."""
    value = sys.stdin.readline().rstrip("\n")
    if not value:
        raise PayloadError("give the corrected value on standard input, e.g. `printf '%s\\n' VALUE | sagevault ...`")
    with deployment() as d:
        with d.unit_of_work() as conn:
            request = d.deletion.buyers.rectify(
                conn, tenant_id=tenant, order_id=order, field=field, value=value, principal=principal(), source=source
            )
        if is_sqlite(d.engine):
            d.release_deleted_pages()  # the old value's page images leave the write-ahead log
    out.print(f"[green]rectified[/] in {request.counts.get('records')} records (request {request.id})")


@deletion_app.command("restrict")
def deletion_restrict(
    tenant: Annotated[str, _TENANT],
    order: Annotated[list[str] | None, typer.Option("--order", help="An order (repeat).")] = None,
    buyer: Annotated[
        list[str] | None, typer.Option("--buyer", help="email or phone: the value on a line of standard input.")
    ] = None,
    lift: Annotated[bool, typer.Option("--lift", help="Allow processing again.")] = False,
    source: Annotated[str, _SOURCE] = "buyer-request",
) -> None:
    """Restrict processing of orders or a buyer's orders (nobody reads, finds, reveals or exports
    them), or --lift it; recorded as a request with its certificate."""
    if bool(buyer) == bool(order):
        raise PayloadError("name the orders (--order) or the buyer (--buyer email|phone), one of them")
    identifiers = _buyer_from_stdin(buyer)
    with deployment() as d, d.unit_of_work() as conn:
        request = d.deletion.buyers.restrict(
            conn,
            tenant_id=tenant,
            principal=principal(),
            orders=order or [],
            buyer=identifiers,
            lift=lift,
            source=source,
        )
    out.print(
        f"{'lifted' if lift else 'restricted'} for {request.counts.get('records')} records (request {request.id})"
    )
