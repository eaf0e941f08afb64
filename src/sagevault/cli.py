"""The `sagevault` command line (Typer + Rich). Each command owns its unit of work."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import typer.main
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sagevault.access import parse_time
from sagevault.audit import (
    AuditEvent,
    AuditLog,
    Channel,
    DigestFile,
    EventName,
    Outcome,
    Reason,
    SyslogTlsSink,
    load_public_key,
    outcome_of,
    public_path,
    to_jsonl,
    to_syslog,
    verify,
)
from sagevault.config import Settings, load_settings
from sagevault.crypto import issue_client_certificate
from sagevault.deployment import Deployment, init_deployment, open_audit, open_deployment
from sagevault.errors import AuditError, ConfigError, NotInitialized, PayloadError, SageVaultError, shown
from sagevault.logs import configure_logging, get_logger
from sagevault.vault import IngestResult, Operation, Principal, SourceDocument

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="SageVault: Amazon Information, protected.",
)  # fmt: skip
# pretty_exceptions_enable=False: rich tracebacks print local variables, which may hold PII.
tenants_app = typer.Typer(
    no_args_is_help=True, pretty_exceptions_enable=False, help="Selling partners whose data the vault holds."
)
keys_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help="Tenant key status and rotation.")
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
audit_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help="The security event log.")
app.add_typer(audit_app, name="audit")
tls_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help="Certificates for mutual TLS.")
app.add_typer(tls_app, name="tls")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
_state: dict[str, Any] = {}

SAMPLE_TENANT = "A3SAMPLESELLER"
T = TypeVar("T")


@app.callback()
def _root(
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data directory (default: $SAGEVAULT_DATA_DIR or ./var).")
    ] = None,
) -> None:
    _state["overrides"] = {"data_dir": data_dir} if data_dir else {}
    _state.pop("actor", None)  # each command starts as the local operator


def _settings() -> Settings:
    settings = load_settings(**_state.get("overrides", {}))
    if not _state.get("logging"):
        configure_logging(settings.resolved_data_dir / "logs" / "sagevault.log")
        _state["logging"] = True
    return settings


def _command_name(argv: list[str] | None = None) -> str:
    """The command being run (`keys rotate`), from the command line matched against the
    command tree; arguments and option values are never included."""
    group: Any = typer.main.get_command(app)
    names: list[str] = []
    tokens = iter(sys.argv[1:] if argv is None else argv)
    for token in tokens:
        commands = getattr(group, "commands", None)
        if commands is None:
            break
        if token.startswith("-"):
            takes_value = any(token in p.opts and not getattr(p, "is_flag", False) for p in group.params)
            if takes_value and "=" not in token:
                next(tokens, None)
            continue
        if token not in commands:
            break
        names.append(token)
        group = commands[token]
    return " ".join(names) or "sagevault"


def _record_command(audit: AuditLog, error: BaseException | None) -> None:
    """cli:command:run or cli:command:fail, naming the command (never its arguments)."""
    get_logger("sagevault.cli").info(
        "command", command=_command_name(), outcome="success" if error is None else "failure",
        error=type(error).__name__ if error else None, actor=_principal().id,
    )  # fmt: skip
    outcome, reason = (Outcome.SUCCESS, Reason.NONE) if error is None else outcome_of(error)
    audit.record(
        AuditEvent(
            name=EventName.CLI_COMMAND_RUN if error is None else EventName.CLI_COMMAND_FAIL, channel=Channel.CLI,
            outcome=outcome, reason=reason,
            actor=_principal().id, operation=_command_name(),
        )
    )  # fmt: skip


@contextmanager
def _deployment() -> Iterator[Deployment]:
    deployment = open_deployment(_settings())
    try:
        yield deployment
    except SageVaultError as exc:
        if not isinstance(exc, AuditError):
            _record_command(deployment.audit, exc)
        raise
    else:
        _record_command(deployment.audit, None)
    finally:
        deployment.close()


def _principal() -> Principal:
    """Who the command's events name: the local operator, unless `--as` logged a person in."""
    actor = _state.get("actor")
    return actor if isinstance(actor, Principal) else Principal.local_operator(Channel.CLI)


def set_actor(principal: Principal) -> None:
    _state["actor"] = principal


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=out, transient=False,
    )  # fmt: skip


@app.command()
def init() -> None:
    """Create a new embedded deployment: data dir, master key file (0600) and database schema."""
    deployment = init_deployment(_settings())
    _record_command(deployment.audit, None)
    s = deployment.settings
    out.print(f"[green]initialised[/] SageVault in {s.resolved_data_dir}")
    if s.key_provider == "local":
        out.print(f"master key: {s.resolved_master_key_file} (mode 0600; back it up apart from the database)")
    if s.tls_cert_file is None:
        out.print(f"TLS: local CA {s.tls_dir / 'ca.pem'} (clients trust it), server certificate for localhost")
    out.print("next: sagevault tenants add SELLER_ID --marketplace ATVPDKIKX0DER")
    deployment.close()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8443,
    init_if_new: Annotated[bool, typer.Option("--init", help="Initialise the data dir first if it is new.")] = False,
    workers: Annotated[int, typer.Option(min=1, max=32, help="Server processes, each with its own socket on the "
                                         "port. More than one needs rate_limit_storage_url = redis://.")] = 1,
    worker_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Serve the HTTPS API under /api/v1 (TLS 1.2+ only; there is no plaintext port). Ctrl-C stops it."""
    from sagevault.web import API, listen, make_server

    settings = _settings()
    if workers > 1 and settings.rate_limit_storage_url.startswith("memory://"):
        # Per-process counters would let each worker count failed log-ins on its own: N workers,
        # N times the lockout threshold. Fail closed rather than serve with weaker limits.
        raise ConfigError(f"--workers {workers} needs rate counters the workers share: with rate_limit_storage_url "
                          "= memory:// each worker would count failed log-ins, refusals and requests on its own, "
                          f"allowing up to {workers} times the lockout threshold and every rate. Set "
                          "rate_limit_storage_url to redis://127.0.0.1:6379/0 (rediss:// for another host), "
                          "or serve with one worker")  # fmt: skip
    if worker_fd is not None:  # one worker of `serve --workers N`: its socket was bound by the parent
        d = open_deployment(settings)
        try:
            make_server(d, host, port).run(sockets=[socket.socket(fileno=worker_fd)])
        finally:
            d.close()
        return
    try:
        d = open_deployment(settings)
    except NotInitialized:
        if not init_if_new:
            raise
        d = init_deployment(settings)
        out.print(f"[green]initialised[/] a new deployment in {settings.resolved_data_dir}")
    try:
        sockets = listen(host, port, workers)
        base = f"https://{f'[{host}]' if ':' in host else host}:{port}{API}"
        ca = d.settings.tls_dir / "ca.pem"
        trust = f"--cacert {ca}" if d.settings.tls_cert_file is None else ""
        out.print(f"serving {base} over TLS only (OpenAPI: {base}/openapi.json)", soft_wrap=True)
        if d.settings.tls_cert_file is None:
            out.print(f"clients trust the local CA certificate: {ca}", soft_wrap=True)
        with d.engine.connect() as conn:
            people = d.access.count_people(conn)
        if not people:
            out.print("no accounts yet. Create the first admin (in another terminal), then log in:\n"
                      "  .venv/bin/sagevault users bootstrap-admin --login LOGIN --email EMAIL\n"
                      "  .venv/bin/sagevault users enrol --login LOGIN\n"
                      f"  curl {trust} -X POST {base}/sessions -H 'content-type: application/json' \\\n"
                      "       -d '{\"login\": \"LOGIN\", \"password\": \"...\", \"code\": \"TOTP\"}'",
                      soft_wrap=True)  # fmt: skip
        out.print("see docs/api.md; Ctrl-C stops the server")
        _record_command(d.audit, None)
        if workers == 1:
            make_server(d, host, port).run(sockets=sockets)
            return
    finally:
        d.close()
    _run_workers(host, port, sockets, settings.resolved_data_dir)


def _run_workers(host: str, port: int, sockets: list[socket.socket], data_dir: Path) -> None:
    """One process per socket, each opening the same deployment (its data dir is passed on, the
    environment and working directory are inherited); Ctrl-C or SIGTERM stops them all, and so
    does a worker that ends on its own (the command then fails)."""
    argv = [sys.executable, "-c", "from sagevault.cli import main; main()", "--data-dir", str(data_dir), "serve",
            "--host", host, "--port", str(port)]  # fmt: skip
    children = [subprocess.Popen([*argv, "--worker-fd", str(sock.fileno())], pass_fds=(sock.fileno(),))  # noqa: S603
                for sock in sockets]  # fmt: skip
    for sock in sockets:
        sock.close()  # the workers hold them now

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    failed = None
    try:
        while failed is None:
            failed = next((c for c in children if c.poll() is not None), None)
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    # Ctrl-C in a terminal reaches the workers too; give them a moment, then stop the rest once.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(c.poll() is None for c in children):
        time.sleep(0.1)
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
    if failed is not None:
        raise SageVaultError(f"a server worker ended on its own (exit code {failed.returncode}); the others were "
                          "stopped. Its error is above")  # fmt: skip


@app.command()
def openapi(
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the document here (default: stdout).")] = None,
) -> None:
    """Print (or write) the API's OpenAPI document, as `serve` serves it at /api/v1/openapi.json.
    Needs no data dir: docs/openapi.json is made with it."""
    from sagevault.web import openapi_document

    text = json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"
    if out_file is None:
        sys.stdout.write(text)
        return
    out_file.write_text(text, encoding="utf-8")
    out.print(f"wrote the OpenAPI document to {out_file}", soft_wrap=True)


@tls_app.command("client-cert")
def tls_client_cert(
    name: Annotated[str, typer.Argument(help="The service account's login (the certificate's common name).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for NAME.pem and NAME.key.")] = Path("."),
    days: Annotated[int, typer.Option(min=1, max=397)] = 365,
) -> None:
    """Issue a client certificate from the local CA, for a deployment with mutual TLS
    (tls_client_ca_file = tls/ca.pem): the service presents it besides its API key."""
    with _deployment() as d:
        ca = d.settings.tls_dir
        cert, key = issue_client_certificate(ca / "ca.pem", ca / "ca.key", name, out_dir, days=days)
    out.print(f"client certificate {cert} and key {key} (mode 0600) for {name}, valid {days} days", soft_wrap=True)


@tenants_app.command("add")
def tenants_add(
    tenant_id: Annotated[str, typer.Argument(help="The selling partner id.")],
    marketplace: Annotated[list[str], typer.Option("--marketplace", "-m", help="Marketplace id (repeatable).")],
) -> None:
    """Add a tenant and create its keys."""
    with _deployment() as d, d.engine.begin() as conn:
        tenant = d.vault.add_tenant(conn, tenant_id, marketplace, principal=_principal())
    out.print(f"[green]added[/] tenant {tenant.id} ({tenant.region}, {', '.join(tenant.marketplaces)})")


@tenants_app.command("list")
def tenants_list() -> None:
    """List tenants with their region, record count and state."""
    with _deployment() as d, d.engine.connect() as conn:
        rows = [
            (t, d.vault.record_count(conn, t.id, principal=_principal()))
            for t in d.vault.list_tenants(conn, principal=_principal())
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
    with d.engine.begin() as conn, _progress() as progress:  # one transaction: all or nothing
        task = progress.add_task(f"ingest {shown(tenant)}", total=len(docs))
        for i in range(0, len(docs), size):
            part = d.vault.ingest_documents(conn, tenant, docs[i : i + size], principal=_principal())
            for name in ("records", "replaced", "pii_fields", "unknown_fields"):
                setattr(total, name, getattr(total, name) + getattr(part, name))
            total.documents.update(part.documents)
            total.unknown_paths.update(part.unknown_paths)
            progress.advance(task, len(docs[i : i + size]))
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
    with _deployment() as d:
        docs = _prepare_files(d, files, op)
        _print_ingest(_ingest(d, tenant, docs))


@app.command()
def show(
    tenant: Annotated[str, typer.Option("--tenant", "-t")],
    order: Annotated[str, typer.Option("--order", "-o", help="Amazon order id.")],
) -> None:
    """Show every stored document of an order with PII masked."""
    with _deployment() as d, d.engine.connect() as conn:
        view = d.vault.get(conn, tenant, order, principal=_principal())
    out.print(f"order {view.order_id} of tenant {view.tenant_id}")
    for rec in view.records:
        out.rule(f"{rec.document}  (record {rec.record_id})")
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
    with _deployment() as d, d.engine.connect() as conn:
        ids = (
            [tenant]
            if tenant
            else [t.id for t in d.vault.list_tenants(conn, principal=_principal()) if not t.shredded_at]
        )
        table = Table("tenant", "key", "version", "status", "created", "records")
        for tid in ids:
            for k in d.vault.key_status(conn, tid, principal=_principal()):
                table.add_row(
                    tid, k.purpose, str(k.version), k.status, f"{k.created_at:%Y-%m-%d %H:%M}", str(k.records)
                )
    out.print(table)


@keys_app.command("rotate")
def keys_rotate(
    tenant: Annotated[str, typer.Option("--tenant", "-t")],
    batch_size: Annotated[int, typer.Option(min=1, max=10000)] = 500,
) -> None:
    """Add a new primary key version, re-encrypt every record in batches, retire the old version.
    Reads and writes keep working throughout; an interrupted rotation resumes when run again."""
    p = _principal()
    with _deployment() as d:
        with d.engine.begin() as conn:
            target = d.vault.begin_rotation(conn, tenant, principal=p)
            remaining = d.vault.rotation_remaining(conn, tenant, target, principal=p)
        with _progress() as progress:
            task = progress.add_task(f"re-encrypt {shown(tenant)} to v{target}", total=remaining)
            while True:
                with d.engine.begin() as conn:
                    moved = d.vault.reencrypt_batch(conn, tenant, target, principal=p, limit=batch_size)
                if not moved:
                    break
                progress.advance(task, moved)
        with d.engine.begin() as conn:
            retired = d.vault.finish_rotation(conn, tenant, principal=p)
        d.release_deleted_pages()
    retired_names = ", ".join(f"v{v}" for v in retired) or "none"
    out.print(f"[green]rotated[/] tenant {tenant}: primary key v{target}; retired {retired_names}")


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
    p = _principal()
    with _deployment() as d:
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
        purged = _repeat(lambda: _in_tx(d, lambda conn: d.vault.purge_shredded(conn, tenant, principal=p)))
    out.print(f"{purged} unreadable records purged")
    out.print_json(data=receipt)


def _in_tx(d: Deployment, fn: Callable[[Any], T]) -> T:
    with d.engine.begin() as conn:
        return fn(conn)


def _repeat(step: Callable[[], int]) -> int:
    total = 0
    while n := step():
        total += n
    return total


@app.command()
def demo() -> None:
    """The main job of `make run`: ingest the bundled sample orders and print a masked summary."""
    settings = _settings()
    try:
        d = open_deployment(settings)
    except NotInitialized:
        d = init_deployment(settings)
        out.print(f"[green]initialised[/] a new deployment in {settings.resolved_data_dir}")
    p = _principal()
    try:
        with d.engine.begin() as conn:
            if SAMPLE_TENANT not in {t.id for t in d.vault.list_tenants(conn, principal=p)}:
                d.vault.add_tenant(conn, SAMPLE_TENANT, ["ATVPDKIKX0DER"], principal=p)
        samples = resources.files("sagevault") / "samples"
        files = sorted(Path(str(f)) for f in samples.iterdir() if f.name.endswith(".json"))
        _print_ingest(_ingest(d, SAMPLE_TENANT, _prepare_files(d, files, None)))
        with d.engine.connect() as conn:
            count = d.vault.record_count(conn, SAMPLE_TENANT, principal=p)
            order_id = "902-1845936-5435065"
            view = d.vault.get(conn, SAMPLE_TENANT, order_id, principal=p)
        out.rule(f"masked view of order {order_id} ({count} records in the vault)")
        for rec in view.records:
            out.print(f"[bold]{rec.document}[/] · {len(rec.pii_paths)} PII fields encrypted (key v{rec.key_version})")
            if rec.pii_paths:
                out.print_json(data=rec.data)
        out.print("try: .venv/bin/sagevault show --tenant A3SAMPLESELLER --order 902-1845936-5435065")
        _record_command(d.audit, None)
    finally:
        d.close()


@app.command()
def catalog(
    pii_only: Annotated[bool, typer.Option("--pii", help="Only PII fields.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, for the record of processing.")] = False,
) -> None:
    """The field catalog: every SP-API field SageVault knows, PII or not, purpose and retention."""
    from sagevault.catalog import CATALOG

    rows = [r for r in CATALOG.describe() if r["pii"] or not pii_only]
    if as_json:
        for r in rows:
            out.print(json.dumps(r), soft_wrap=True)
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


@contextmanager
def _audit_only() -> Iterator[AuditLog]:
    log = open_audit(_settings())
    try:
        yield log
    finally:
        log.close()


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the whole chain, the head, purge anchors and every signed digest. Exit 1 if anything is wrong."""
    settings = _settings()
    with _audit_only() as log:
        try:
            key = load_public_key(public_path(settings.resolved_audit_signing_key_file))
            digests = DigestFile(settings.digest_file).read()
        except AuditError as exc:
            err.print(f"[red]audit log NOT verified:[/] {exc}", soft_wrap=True)
            raise typer.Exit(1) from None
        report = verify(log.engine, key, digests)
        log.record(AuditEvent(
            name=EventName.AUDIT_LOG_VERIFY, channel=Channel.CLI, actor=_principal().id,
            outcome=Outcome.SUCCESS if report.ok else Outcome.FAILURE,
            reason=Reason.NONE if report.ok else Reason.INTEGRITY_FAILURE,
            counts={"events": report.events, "digests": report.digests}, operation="audit verify",
        ))  # fmt: skip
    if report.ok:
        out.print(f"[green]audit log verified:[/] {report.events} events, {report.digests} signed digests")
        return
    err.print(f"[red]audit log NOT verified:[/] first bad sequence number {report.first_bad_seq}", soft_wrap=True)
    for problem in report.problems:
        err.print(f"  {problem}", soft_wrap=True)
    raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    since: Annotated[str | None, typer.Option(help="Only events at or after this time (ISO 8601).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or syslog (RFC 5424).")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    syslog_tls: Annotated[str | None, typer.Option(help="Send to a syslog collector over TLS: HOST:PORT.")] = None,
    ca: Annotated[Path | None, typer.Option(help="CA certificate that signed the collector's certificate.")] = None,
) -> None:
    """Every event (or those since a time) for a SIEM: JSON lines, syslog lines, or syslog over TLS."""
    if fmt not in ("jsonl", "syslog"):
        raise PayloadError(f"--format {fmt!r} is not supported; use jsonl or syslog")
    with _audit_only() as log:
        events = log.search(since=parse_time(since, "--since"))
        if syslog_tls:
            host, _, port = syslog_tls.rpartition(":")
            if not host or not port.isdigit():
                raise PayloadError("--syslog-tls must be HOST:PORT, for example siem.internal:6514")
            n = SyslogTlsSink(host, int(port), cafile=str(ca) if ca else None).send(events)
        elif output is not None:
            with output.open("w", encoding="utf-8") as fh:
                n = _write_events(events, fmt, fh)
        else:
            n = _write_events(events, fmt, sys.stdout)
        log.record(AuditEvent(name=EventName.AUDIT_LOG_EXPORT, channel=Channel.CLI, actor=_principal().id,
                              counts={"events": n}, operation="audit export"))  # fmt: skip
    if output is not None or syslog_tls:
        err.print(f"exported {n} events")


def _write_events(events: Iterator[dict[str, Any]], fmt: str, fh: Any) -> int:
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
            str(e["seq"]), e["at"][:19], e["name"], e["outcome"], e["reason"], e["actor"] or "", e["tenant_id"] or "",
            e["operation"] or "", ",".join(map(str, e["record_ids"][:5])) + ("…" if len(e["record_ids"]) > 5 else ""),
            " ".join(f"{k}={v}" for k, v in e["counts"].items()),
        )  # fmt: skip
    out.print(table)


@audit_app.command("tail")
def audit_tail(n: Annotated[int, typer.Option("-n", min=1, max=10000, help="How many events.")] = 20) -> None:
    """The newest events."""
    with _audit_only() as log:
        _print_events(reversed(list(log.search(limit=n, newest_first=True))))


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
    with _audit_only() as log:
        _print_events(log.search(actor=actor, tenant_id=tenant, name=event, since=parse_time(since, "--since"),
                                 until=parse_time(until, "--until"), limit=limit))  # fmt: skip


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
    with _audit_only() as log:
        log.record(AuditEvent(name=EventName.AUDIT_DIGEST_WRITE, channel=Channel.CLI, actor=_principal().id,
                              reason=Reason.ON_DEMAND, operation="audit digest"))  # fmt: skip
        digest = log.write_digest()
    if digest is None:
        raise AuditError("no digest written: the audit signing key is missing or the log is empty")
    out.print(f"signed digest at seq {digest.seq}: {digest.hash.hex()}")


@audit_app.command("purge")
def audit_purge() -> None:
    """Delete whole months of events older than the retention period (policy
    security_log_retention_days); the chain keeps a signed anchor and still verifies."""
    settings = _settings()
    cutoff = datetime.now(UTC) - timedelta(days=settings.policy.security_log_retention_days)
    with _audit_only() as log:
        n = log.purge_before(cutoff, actor=_principal().id)
    days = settings.policy.security_log_retention_days
    out.print(f"purged {n} events from before {cutoff:%Y-%m} (retention {days} days)")


def main() -> None:
    try:
        code = app(standalone_mode=False)  # typer.Exit(n) comes back as a return value here
    except SageVaultError as exc:
        err.print(f"[red]error:[/] {exc}", soft_wrap=True)
        raise SystemExit(2) from None
    except typer.Abort:
        err.print("aborted")
        raise SystemExit(1) from None
    except Exception as exc:  # click usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "show"):
            exc.show()
            raise SystemExit(code) from None
        raise
    if isinstance(code, int) and code:
        raise SystemExit(code)


# The identity-and-access commands register themselves on `app` (they use the helpers above).
from sagevault import cli_access  # noqa: E402,F401
