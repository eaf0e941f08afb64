"""`sagevault init|tenants|ingest|show|keys|shred|demo|catalog`: the vault from the shell."""

from __future__ import annotations

import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sagevault.audit import AuditEvent, EventName
from sagevault.connector import rewrap_app
from sagevault.crypto import (
    MasterKeys,
    begin_local_rotation,
    destroy_retired_key,
    schedule_kms_deletion,
    swap_local_keys,
)
from sagevault.deployment import Deployment, init_deployment
from sagevault.errors import ConfigError, PayloadError, shown
from sagevault.identity import Principal
from sagevault.vault import IngestResult, Operation, RotationStep, SourceDocument

from ._app import app, deployment, group, heading, open_or_init, out, principal, progress, record_command, settings
from .connector import demo_sync

tenants_app = group("tenants", "Selling partners whose data the vault holds.")
keys_app = group("keys", "Tenant keys and the master key: status and rotation.")

SAMPLE_TENANT = "A3SAMPLESELLER"


@app.command()
def init() -> None:
    """Create a new embedded deployment: data dir, master key file (0600) and database schema."""
    d = init_deployment(settings(), actor=principal())
    try:
        record_command(d.audit, None)
        s = d.settings
        out.print(f"[green]initialised[/] SageVault in {s.resolved_data_dir}")
        if s.key_provider == "local":
            out.print(f"master key: {s.resolved_master_key_file} (mode 0600; back it up apart from the database)")
        if s.tls_cert_file is None:
            out.print(f"TLS: local CA {s.tls_dir / 'ca.pem'} (clients trust it), server certificate for localhost")
        out.print("next: sagevault tenants add SELLER_ID --marketplace ATVPDKIKX0DER")
    finally:
        d.close()


@tenants_app.command("add")
def tenants_add(
    tenant_id: Annotated[str, typer.Argument(help="The selling partner id.")],
    marketplace: Annotated[list[str], typer.Option("--marketplace", "-m", help="Marketplace id (repeatable).")],
) -> None:
    """Add a tenant and create its keys."""
    with deployment() as d, d.engine.begin() as conn:
        tenant = d.vault.add_tenant(conn, tenant_id, marketplace, principal=principal())
    out.print(f"[green]added[/] tenant {tenant.id} ({tenant.region}, {', '.join(tenant.marketplaces)})")


@tenants_app.command("list")
def tenants_list() -> None:
    """List tenants with their region, record count and state."""
    with deployment() as d, d.engine.connect() as conn:
        rows = [
            (t, d.vault.record_count(conn, t.id, principal=principal()))
            for t in d.vault.list_tenants(conn, principal=principal())
        ]
    table = Table("tenant", "region", "marketplaces", "records", "state")
    for t, count in rows:
        state = f"[red]shredded {t.shredded_at:%Y-%m-%d %H:%M}[/]" if t.shredded_at else "[green]active[/]"
        table.add_row(t.id, t.region, ", ".join(t.marketplaces), str(count), state)
    out.print(table if rows else "no tenants yet: sagevault tenants add SELLER_ID --marketplace MARKETPLACE_ID")


def _read_payloads(path: Path) -> list[Any]:
    """A JSON document (one SP-API response, or a list of them) or JSON lines of order objects."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PayloadError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PayloadError(f"{path}: cannot read it as UTF-8 text ({type(exc).__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise PayloadError(
                f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                "give an SP-API response as Amazon returns it, or JSON lines of order objects"
            ) from None
        return _read_json_lines(path, text)
    return data if isinstance(data, list) else [data]


def _read_json_lines(path: Path, text: str) -> list[Any]:
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise PayloadError(f"{path}: line {n} is not a JSON object ({exc.msg}); fix or remove it") from None
    return items


def _prepare_files(d: Deployment, files: list[Path], operation: Operation | None) -> list[SourceDocument]:
    docs: list[SourceDocument] = []
    for path in files:
        try:
            docs.extend(d.vault.prepare(_read_payloads(path), operation))
        except PayloadError as exc:
            msg = str(exc)
            raise PayloadError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    return docs


def _ingest(d: Deployment, tenant: str, docs: list[SourceDocument]) -> IngestResult:
    total = IngestResult()
    size = d.settings.ingest_batch_size
    with d.engine.begin() as conn, progress() as bar:  # one transaction: all or nothing
        task = bar.add_task(f"ingest {shown(tenant)}", total=len(docs))
        for i in range(0, len(docs), size):
            total.add(d.vault.ingest_documents(conn, tenant, docs[i : i + size], principal=principal()))
            bar.advance(task, len(docs[i : i + size]))
    total.orders = len({doc.order_id for doc in docs})
    return total


def _print_ingest(result: IngestResult) -> None:
    out.print(
        f"[green]stored[/] {result.records} records of {result.orders} orders "
        f"({result.replaced} replaced), {result.pii_fields} PII fields encrypted"
    )
    for document, count in sorted(result.documents.items()):
        out.print(f"  {document}: {count}")
    if result.unknown_fields:
        out.print(
            f"[yellow]warning:[/] {result.unknown_fields} fields are not in the catalog; "
            "they were stored encrypted as PII:"
        )
        for path, count in result.unknown_paths.most_common(20):
            out.print(f"  {path}: {count}")


@app.command()
def ingest(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="Tenant (selling partner id).")],
    files: Annotated[list[Path], typer.Argument(help="SP-API response JSON files, or JSON lines of orders.")],
    operation: Annotated[
        str | None, typer.Option("--operation", help="SP-API operation, when the shape is not enough.")
    ] = None,
) -> None:
    """Store SP-API order payloads: PII encrypted under the tenant's keys, the rest in clear."""
    op = Operation.parse(operation) if operation else None
    with deployment() as d:
        docs = _prepare_files(d, files, op)
        _print_ingest(_ingest(d, tenant, docs))


@app.command()
def show(
    tenant: Annotated[str, typer.Option("--tenant", "-t")],
    order: Annotated[str, typer.Option("--order", "-o", help="Amazon order id.")],
) -> None:
    """Show every stored document of an order with PII masked."""
    with deployment() as d, d.engine.connect() as conn:
        view = d.vault.get(conn, tenant, order, principal=principal())
    out.print(f"order {view.order_id} of tenant {view.tenant_id}")
    for rec in view.records:
        heading(f"{rec.document}  (record {rec.record_id})")
        out.print(
            f"origin {rec.origin} · {rec.operation} · marketplace {rec.marketplace_id or '-'} · "
            f"seller {rec.seller_id} · retrieved {rec.retrieved_at:%Y-%m-%d %H:%M:%S} UTC · key v{rec.key_version}"
        )
        out.print_json(data=rec.data)
        if rec.unknown_fields:
            out.print(f"[yellow]{rec.unknown_fields} uncatalogued fields stored encrypted[/]")


@keys_app.command("status")
def keys_status(tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None) -> None:
    """Key versions per tenant and how many records each protects."""
    with deployment() as d, d.engine.connect() as conn:
        ids = (
            [tenant]
            if tenant
            else [t.id for t in d.vault.list_tenants(conn, principal=principal()) if not t.shredded_at]
        )
        table = Table("tenant", "key", "version", "status", "created", "records")
        for tid in ids:
            for k in d.vault.keys.status(conn, tid, principal=principal()):
                table.add_row(
                    tid, k.purpose, str(k.version), k.status, f"{k.created_at:%Y-%m-%d %H:%M}", str(k.records)
                )
    out.print(table)


def _rotate(d: Deployment, tenant: str, batch_size: int, *, index: bool) -> RotationStep:
    """Run a data or index key rotation of `tenant` to its end, a unit of work per step."""
    p = principal()
    step_of = d.vault.keys.rotate_index_step if index else d.vault.keys.rotate_step
    with d.engine.begin() as conn:  # each step is a unit of work of its own
        step = step_of(conn, tenant, principal=p, limit=batch_size)
    what = "re-tokenise" if index else "re-encrypt"
    with progress() as bar:
        task = bar.add_task(f"{what} {shown(tenant)} to v{step.primary_version}", total=step.moved + step.remaining)
        bar.advance(task, step.moved)
        while not step.complete:  # the same rotation: never one another client began meanwhile
            with d.engine.begin() as conn:
                step = step_of(conn, tenant, principal=p, limit=batch_size, continuing=step.primary_version)
            bar.advance(task, step.moved)
    if step.retired:
        d.release_deleted_pages()  # the retired keys' erased pages out of the journal too
    return step


@keys_app.command("rotate")
def keys_rotate(
    tenant: Annotated[str, typer.Option("--tenant", "-t")],
    batch_size: Annotated[int, typer.Option(min=1, max=10000)] = 500,
) -> None:
    """Add a new primary key version, re-encrypt every record in batches, retire the old version.
    Reads and writes keep working throughout; an interrupted rotation resumes when run again."""
    with deployment() as d:
        step = _rotate(d, tenant, batch_size, index=False)
    retired_names = ", ".join(f"v{v}" for v in step.retired) or "none"
    out.print(f"[green]rotated[/] tenant {tenant}: primary key v{step.primary_version}; retired {retired_names}")


@keys_app.command("rotate-index")
def keys_rotate_index(
    tenant: Annotated[str, typer.Option("--tenant", "-t")],
    batch_size: Annotated[int, typer.Option(min=1, max=10000)] = 500,
) -> None:
    """Add a new blind-index key version, give every record new search tokens in batches, retire
    the old version. Searches find every record throughout (they ask with both versions); an
    interrupted rotation resumes when run again."""
    with deployment() as d:
        step = _rotate(d, tenant, batch_size, index=True)
    retired_names = ", ".join(f"v{v}" for v in step.retired) or "none"
    out.print(
        f"[green]rotated[/] the index key of tenant {tenant}: primary v{step.primary_version}; retired {retired_names}"
    )


@keys_app.command("rotate-master")
def keys_rotate_master(batch_size: Annotated[int, typer.Option(min=1, max=10000)] = 500) -> None:
    """Wrap every tenant key, the access secret, every TOTP secret and the SP-API client secret
    with a new master key, then destroy the old one. Local key file: the new key is made beside the
    old (`.next`). AWS KMS: name the new key as kms_next_key_id on every node first. Records are not
    re-encrypted (their keys stay); an interrupted rotation resumes when run again."""
    s = settings()
    old_kms = s.kms_key_id
    if s.key_provider == "aws-kms" and not s.kms_next_key_id:
        raise ConfigError(
            "set kms_next_key_id to the new KMS key on every node and restart them, then run this again; "
            "when it ends, make the new key kms_key_id and remove kms_next_key_id"
        )
    if s.key_provider == "local" and begin_local_rotation(s):
        out.print(f"new master key made beside the old one: {s.resolved_master_key_file}.next")
    p = principal()
    with deployment() as d:
        tenant_keys, secrets = _rewrap_all(d, p, batch_size)
        if s.key_provider == "local":
            swap_local_keys(s)  # the new key takes the file's name; the old one waits as .retired
            if isinstance(d.keys, MasterKeys):
                d.keys.refresh()
            more, more_secrets = _rewrap_all(d, p, batch_size)  # what another process wrapped meanwhile
            tenant_keys, secrets = tenant_keys + more, secrets + more_secrets
            destroyed = "the old key file was overwritten and deleted" if destroy_retired_key(s) else "no old key left"
        else:
            assert old_kms is not None
            schedule_kms_deletion(s, old_kms)
            destroyed = f"AWS KMS deletes the old key {old_kms} in 7 days"
        d.audit.record(
            AuditEvent(
                name=EventName.STORAGE_MASTERKEY_RETIRE,
                channel=p.channel,
                actor=p.id,
                operation="master retire",
                counts={"keys": tenant_keys, "secrets": secrets},
            )
        )
        current = d.keys.key_id
    out.print(
        f"[green]master key rotated[/] to {current}: {tenant_keys} tenant keys and {secrets} access secrets "
        f"re-wrapped; {destroyed}"
    )
    if s.key_provider == "aws-kms":
        out.print(f"now set kms_key_id = {s.kms_next_key_id} and remove kms_next_key_id on every node")


def _rewrap_all(d: Deployment, p: Principal, batch_size: int) -> tuple[int, int]:
    with d.engine.begin() as conn:
        step = d.vault.keys.rewrap_step(conn, principal=p, limit=batch_size)
    moved = step.moved
    with progress() as bar:
        task = bar.add_task(f"re-wrap tenant keys with {step.master_key_id}", total=step.moved + step.remaining)
        bar.advance(task, step.moved)
        while not step.complete:
            with d.engine.begin() as conn:
                step = d.vault.keys.rewrap_step(conn, principal=p, limit=batch_size)
            moved += step.moved
            bar.advance(task, step.moved)
    with d.engine.begin() as conn:
        secrets = d.access.core.rewrap_secrets(conn)
    secrets += rewrap_app(d.settings.resolved_sp_api_app_file, d.keys)  # the SP-API client secret
    return moved, secrets


@app.command()
def shred(
    tenant: Annotated[str, typer.Option("--tenant", "-t")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
) -> None:
    """Crypto-shred a tenant: destroy every copy of its keys, then purge its unreadable rows."""
    if not yes:
        raise PayloadError(
            f"shred makes every record of tenant {tenant} unreadable forever; run again with --yes to confirm"
        )
    p = principal()
    with deployment() as d:
        with d.engine.connect() as conn:
            already = d.vault.shred_receipt(conn, tenant, principal=p)
        if already is None:
            started = time.perf_counter()
            with d.engine.begin() as conn:
                receipt = d.vault.shred(conn, tenant, principal=p).as_json()
            elapsed = time.perf_counter() - started
            out.print(f"[green]shredded[/] tenant {tenant} in {elapsed * 1000:.1f} ms")
        else:  # an earlier run shredded but was stopped before its purge finished
            receipt = already
            out.print(f"tenant {tenant} was already shredded; finishing the purge of its unreadable rows")
        d.release_deleted_pages()
        purged = 0
        while True:
            with d.engine.begin() as conn:
                step = d.vault.purge_step(conn, tenant, principal=p)
            purged += step.purged
            if not step.remaining:
                break
    out.print(f"{purged} unreadable records purged")
    out.print_json(data=receipt)


def _at(data: dict[str, Any], *keys: str) -> str | None:
    """A masked value of a record's document (`[PII user.name]`), if it is there."""
    node: Any = data
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, str) else None


@app.command()
def demo() -> None:
    """The main job of `make run`: ingest the bundled sample orders and print a masked summary."""
    d = open_or_init(settings(), init_if_new=True)
    p = principal()
    try:
        with d.engine.begin() as conn:
            if SAMPLE_TENANT not in {t.id for t in d.vault.list_tenants(conn, principal=p)}:
                d.vault.add_tenant(conn, SAMPLE_TENANT, ["ATVPDKIKX0DER"], principal=p)
        samples = resources.files("sagevault") / "samples"
        files = sorted(Path(str(f)) for f in samples.iterdir() if f.name.endswith(".json"))
        _print_ingest(_ingest(d, SAMPLE_TENANT, _prepare_files(d, files, None)))
        with d.engine.connect() as conn:
            orders = d.vault.list_orders(conn, SAMPLE_TENANT, principal=p, limit=20)
            views = {o.order_id: d.vault.get(conn, SAMPLE_TENANT, o.order_id, principal=p) for o in orders}
        table = Table("order", "status", "purchased", "documents", "PII fields (encrypted)", "buyer")
        for o in orders:
            records = views[o.order_id].records
            names = [_at(r.data, "BuyerInfo", "BuyerName") or _at(r.data, "ShippingAddress", "Name") for r in records]
            table.add_row(
                o.order_id,
                o.order_status or "-",
                (o.purchased_at or "-")[:10],
                str(len(records)),
                str(sum(len(r.pii_paths) for r in records)),
                next((n for n in names if n), "-"),
            )
        out.print(table)
        out.print("every buyer name, address, phone and e-mail above is stored encrypted; nothing was decrypted")
        demo_sync(d, p)
        out.print("next:")
        out.print(
            f"  .venv/bin/sagevault show --tenant {SAMPLE_TENANT} --order {orders[0].order_id}   (one order, masked)"
        )
        out.print("  .venv/bin/sagevault report                  (the DPP report: every requirement and its evidence)")
        out.print("  .venv/bin/sagevault --help                  (every command)")
        out.print("  docs/api.md                                 (the HTTPS API `make run` serves next)")
        record_command(d.audit, None)
    finally:
        d.close()


@app.command()
def catalog(
    pii_only: Annotated[bool, typer.Option("--pii", help="Only PII fields.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document (a list), for the record of processing.")
    ] = False,
    as_jsonl: Annotated[bool, typer.Option("--jsonl", help="JSON lines, one field each.")] = False,
) -> None:
    """The field catalog: every SP-API field SageVault knows, PII or not, purpose and retention."""
    from sagevault.catalog import CATALOG

    rows = [r for r in CATALOG.describe() if r["pii"] or not pii_only]
    if as_json and as_jsonl:
        raise PayloadError("give --json (one document) or --jsonl (a line each), not both")
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if as_jsonl:
        sys.stdout.writelines(json.dumps(r) + "\n" for r in rows)
        return
    table = Table("document", "path", "PII", "category", "purposes", "search")
    for r in rows:
        table.add_row(
            r["document"],
            r["path"],
            "yes" if r["pii"] else "",
            r["category"],
            ", ".join(r["purposes"]),
            r["search"] or "",
        )
    out.print(table)
