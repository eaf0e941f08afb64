"""`sagevault connect` (the SP-API application and each seller's authorisation) and `sagevault
sync` (status, and a run by hand with a progress bar; the `sp-api-sync` job runs it every few
minutes). No secret is ever taken from the command line: the client secret and refresh tokens
come from standard input, a hidden prompt or a file only this user can read."""

from __future__ import annotations

import json
import stat
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from sagevault.connector import API_V0, LWA_TOKEN_URL, AppCredentials, Page, SpApiClient, SyncStatus, load_app, save_app
from sagevault.deployment import Deployment
from sagevault.errors import ConfigError, PayloadError, UnknownTenant
from sagevault.identity import Principal
from sagevault.jobs import SyncReport, sync_tenant
from sagevault.sandbox import Sandbox, SandboxConfig, SellerSpec, new_refresh_token, serve

from ._app import deployment, group, heading, out, principal, settings

connect_app = group(
    "connect", "Connect SageVault to SP-API: the application's credentials, each seller's authorisation."
)
sync_app = group("sync", "The SP-API orders sync: status per seller and marketplace, a run by hand.")


def _secret_input(label: str, file: Path | None) -> str:
    """A secret from a private file, the terminal (hidden) or the first line of standard input."""
    if file is not None:
        try:
            mode = file.stat().st_mode
        except FileNotFoundError:
            raise ConfigError(f"{file} does not exist") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"refusing to read {label} from {file}: others can read it; run `chmod 600 {file}`")
        value = file.read_text().strip()
    elif sys.stdin.isatty():
        value = str(typer.prompt(label, hide_input=True)).strip()
    else:
        value = sys.stdin.readline().strip()
    if not value:
        raise PayloadError(f"no {label} given; pipe it on standard input or pass a private file")
    return value


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError("--since takes a date or time in ISO 8601 (2026-11-01 or 2026-11-01T00:00:00Z)") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


@connect_app.command("app")
def connect_application(
    client_id: Annotated[str | None, typer.Option("--client-id", help="The LWA client identifier.")] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from", help="Import a TOML file (client_id, client_secret, endpoint, token_url, ca_file; 0600)."
        ),
    ] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="One SP-API endpoint for every region.")] = None,
    token_url: Annotated[str | None, typer.Option("--token-url", help="The LWA token endpoint.")] = None,
    ca_file: Annotated[Path | None, typer.Option("--ca-file", help="The CA to trust for them (PEM).")] = None,
) -> None:
    """Store the application's LWA credentials, the client secret wrapped by the master key
    (local key file or KMS). The secret is read from standard input (or hidden prompt), never an
    option."""
    loaded = settings()
    if from_file is not None:
        raw = _secret_input("application file", from_file)
        try:
            data = tomllib.loads(raw)
        except tomllib.TOMLDecodeError:
            raise ConfigError(f"{from_file} is not valid TOML") from None
        client_id = client_id or data.get("client_id")
        secret = data.get("client_secret")
        endpoint = endpoint or data.get("endpoint")
        token_url = token_url or data.get("token_url")
        ca = data.get("ca_file")
        ca_file = ca_file or (Path(ca) if isinstance(ca, str) else None)
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"{from_file} has no client_secret")
    else:
        secret = None
    if not isinstance(client_id, str) or not client_id:
        raise PayloadError("give the LWA client identifier: --client-id ID (or --from FILE)")
    if secret is None:
        secret = _secret_input("LWA client secret", None)
    with deployment() as d:
        app = AppCredentials(
            client_id,
            secret,
            endpoint,
            token_url or LWA_TOKEN_URL,
            ca_file.resolve() if ca_file else None,
        )
        save_app(loaded.resolved_sp_api_app_file, app, d.keys)
        load_app(loaded.resolved_sp_api_app_file, d.keys)  # what was written opens again
    out.print(f"stored the SP-API application's credentials in {loaded.resolved_sp_api_app_file} (secret wrapped)")


@connect_app.command("seller")
def connect_seller(
    tenant: Annotated[str, typer.Argument(help="The selling partner id (tenant id).")],
    refresh_token_file: Annotated[
        Path | None,
        typer.Option("--refresh-token-file", help="A file (0600) holding the refresh token; else standard input."),
    ] = None,
    marketplace: Annotated[
        list[str] | None,
        typer.Option("--marketplace", help="Marketplaces to sync (the tenant's; a new tenant is made with them)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Where the first backfill starts (default 30 days).")
    ] = None,
    api: Annotated[str, typer.Option("--api", help="orders-v0 (getOrders) or orders-2026 (searchOrders).")] = API_V0,
    restricted_data: Annotated[
        bool,
        typer.Option("--restricted-data/--no-restricted-data", help="Fetch buyer and shipping data with an RDT."),
    ] = True,
) -> None:
    """Connect a seller with a refresh token (a self-authorised private app, or one from the
    website flow): it is tried against LWA, then sealed under the tenant's keys."""
    token = _secret_input("refresh token", refresh_token_file)
    me = principal()
    with deployment() as d:
        with d.unit_of_work(read_only=True) as conn:
            known = tenant in d.vault.tenant_states(conn, [tenant])
        if not known and not marketplace:
            raise UnknownTenant(
                f"no tenant {tenant}; add it with --marketplace MARKETPLACE_ID (or `sagevault tenants add`)"
            )
        d.connector.verify(tenant, token, principal=me)  # LWA first: no write lock waits on Amazon
        with d.unit_of_work() as conn:
            if not known:
                d.vault.add_tenant(conn, tenant, marketplace or [], principal=me)
            found = d.connector.connect(
                conn,
                tenant,
                token,
                principal=me,
                api=api,
                restricted_data=restricted_data,
                since=_date(since),
                marketplaces=marketplace or (),
                verify=False,
            )
    out.print(
        f"connected seller {found.tenant_id} ({found.region}, {found.api}, "
        f"{'with' if found.restricted_data else 'without'} restricted data); "
        f"orders from {found.since:%Y-%m-%d %H:%M} UTC sync every {settings().sp_api_sync_minutes} minutes "
        f"(`sagevault sync run --tenant {found.tenant_id}` now)",
        markup=False,
    )


@connect_app.command("url")
def connect_url(
    tenant: Annotated[str, typer.Argument(help="The selling partner id (tenant id).")],
    application_id: Annotated[str, typer.Option("--application-id", help="The SP-API application id.")],
    redirect_uri: Annotated[str | None, typer.Option("--redirect-uri", help="Your registered redirect URI.")] = None,
) -> None:
    """The website authorisation flow, first step: the consent page to send the seller to (its
    state is good for 30 minutes)."""
    with deployment() as d, d.unit_of_work() as conn:
        url = d.connector.authorization_url(
            conn, tenant, application_id, principal=principal(), redirect_uri=redirect_uri
        )
    out.print(url, markup=False, soft_wrap=True)


@connect_app.command("finish")
def connect_finish(
    tenant: Annotated[str, typer.Argument(help="The selling partner id (tenant id).")],
    selling_partner_id: Annotated[
        str, typer.Option("--selling-partner-id", help="The selling_partner_id Amazon sent to the redirect URI.")
    ],
    redirect_uri: Annotated[str | None, typer.Option("--redirect-uri", help="The redirect URI of the flow.")] = None,
) -> None:
    """The website flow, last step: reads the `state` and the `spapi_oauth_code` Amazon sent to
    the redirect URI from standard input (two lines), checks the state and the seller, exchanges
    the code and stores the authorisation."""
    state = _secret_input("state", None)
    code = _secret_input("spapi_oauth_code", None)
    me = principal()
    with deployment() as d:
        with d.unit_of_work(read_only=True) as conn:
            d.connector.check_state(conn, tenant, state, selling_partner_id, principal=me)
        refresh = d.connector.exchange_code(tenant, code, redirect_uri)  # outside any unit of work
        with d.unit_of_work() as conn:
            found = d.connector.finish_authorization(conn, tenant, state, selling_partner_id, refresh, principal=me)
    out.print(f"connected seller {found.tenant_id} through the website authorisation flow", markup=False)


@connect_app.command("remove")
def connect_remove(tenant: Annotated[str, typer.Argument(help="The selling partner id (tenant id).")]) -> None:
    """Forget a seller's authorisation (its sealed refresh token); its stored orders stay."""
    with deployment() as d, d.unit_of_work() as conn:
        had = d.connector.disconnect(conn, tenant, principal=principal())
    out.print(f"{'removed' if had else 'there was no'} authorisation of seller {tenant}", markup=False)


def _status_json(s: SyncStatus) -> dict[str, object]:
    return {
        "tenant_id": s.tenant_id,
        "marketplace_id": s.marketplace_id,
        "state": s.state,
        "checkpoint": s.checkpoint.isoformat(),
        "in_window": s.in_window,
        "lag_seconds": s.lag_seconds,
        "pages": s.pages,
        "orders": s.orders,
        "errors": s.errors,
        "last_success_at": s.last_success_at.isoformat() if s.last_success_at else None,
        "last_attempt_at": s.last_attempt_at.isoformat() if s.last_attempt_at else None,
        "last_error": s.last_error,
    }


@sync_app.command("status")
def sync_status(
    tenant: Annotated[str | None, typer.Option("--tenant", help="One seller only.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Per seller and marketplace: state, checkpoint, lag, pages, orders, errors."""
    with deployment() as d, d.unit_of_work(read_only=True) as conn:
        found = d.connector.status(conn, principal=principal(), tenant_id=tenant)
    if as_json:
        sys.stdout.write(json.dumps([_status_json(s) for s in found], indent=2) + "\n")
        return
    if not found:
        out.print("no seller is connected; `sagevault connect seller TENANT` connects one")
        return
    table = Table(
        "tenant", "marketplace", "state", "stored up to (UTC)", "lag", "pages", "orders", "errors", "last error"
    )
    for s in found:
        table.add_row(
            s.tenant_id,
            s.marketplace_id,
            s.state,
            f"{s.checkpoint:%Y-%m-%d %H:%M}" + (" (paging)" if s.in_window else ""),
            f"{s.lag_seconds // 60} min",
            str(s.pages),
            str(s.orders),
            str(s.errors),
            s.last_error or "-",
        )
    out.print(table)


@sync_app.command("run")
def sync_run(
    tenant: Annotated[str, typer.Option("--tenant", help="The seller to sync.")],
    max_pages: Annotated[int | None, typer.Option("--max-pages", min=1, help="Stop after this many pages.")] = None,
) -> None:
    """Sync one seller now, until its current window is read: a progress bar per window."""
    with (
        deployment() as d,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[orders]} orders, {task.fields[pages]} pages"),
            TimeElapsedColumn(),
            console=out,
            transient=False,
        ) as bar,
    ):
        tasks: dict[str, TaskID] = {}

        def on_page(page: Page, report: SyncReport) -> None:
            c = page.cursor
            start = c.after.timestamp()
            span = max(1.0, page.before.timestamp() - start)
            if c.marketplace_id not in tasks:
                tasks[c.marketplace_id] = bar.add_task(f"{tenant} {c.marketplace_id}", total=span, orders=0, pages=0)
            done = span if not page.next_token else ((page.reached.timestamp() - start) if page.reached else 0)
            bar.update(
                tasks[c.marketplace_id], completed=min(span, max(0.0, done)), orders=report.orders, pages=report.pages
            )

        report = sync_tenant(d, tenant, principal(), on_page=on_page, max_pages=max_pages)
    state = "up to date" if report.finished else "stopped early (--max-pages); run it again to go on"
    out.print(f"synced {report.orders} orders in {report.pages} pages for {tenant}: {state}", markup=False)


DEMO_SELLER = "A1SANDBOXDEMO1"


def demo_sync(d: Deployment, me: Principal) -> None:
    """`make run`'s second part: a seller connected to the local SP-API stand-in (HTTPS on
    127.0.0.1, fake orders), synced with RDTs, its orders shown masked. The stand-in lives for the
    demo only, so the seller's authorisation is removed at the end (its orders stay)."""
    heading(f"SP-API: seller {DEMO_SELLER} connected and synced from the local stand-in")
    spec = SellerSpec(seller_id=DEMO_SELLER, orders=250, refresh_token=new_refresh_token())
    sandbox = Sandbox(SandboxConfig(sellers={DEMO_SELLER: spec}, rate_scale=100.0))
    tls_dir = d.settings.resolved_data_dir / "sandbox" / "tls"
    with serve(sandbox, tls_dir=tls_dir) as server:
        app = AppCredentials(
            sandbox.config.client_id, sandbox.config.client_secret, server.url, server.token_url, server.ca_file
        )
        d.connector.use(SpApiClient(app))
        with d.unit_of_work() as conn:
            if DEMO_SELLER not in d.vault.tenant_states(conn, [DEMO_SELLER]):
                d.vault.add_tenant(conn, DEMO_SELLER, [spec.marketplace_id], principal=me)
            d.connector.connect(
                conn, DEMO_SELLER, spec.refresh_token, principal=me, since=datetime(2020, 1, 1, tzinfo=UTC)
            )
        report = sync_tenant(d, DEMO_SELLER, me)
        with d.unit_of_work() as conn:
            d.connector.disconnect(conn, DEMO_SELLER, principal=me)
    out.print(
        f"stand-in {server.url}: {report.orders} new or updated orders in {report.pages} pages, "
        f"{sandbox.calls['createRestrictedDataToken']} RDT(s) for buyerInfo and shippingAddress",
        markup=False,
    )
    with d.unit_of_work(read_only=True) as conn:
        orders = d.vault.list_orders(conn, DEMO_SELLER, principal=me, limit=5)
        views = [d.vault.get(conn, DEMO_SELLER, o.order_id, principal=me) for o in orders]
    table = Table("order", "status", "buyer (masked)", "ship to (masked)")
    for o, view in zip(orders, views, strict=True):
        data = view.records[0].data if view.records else {}
        buyer = data.get("BuyerInfo") or {}
        ship = data.get("ShippingAddress") or {}
        table.add_row(o.order_id, o.order_status or "-", str(buyer.get("BuyerName", "-")), str(ship.get("City", "-")))
    out.print(table)
    out.print("  .venv/bin/sagevault sync status   (the seller's checkpoint, pages and orders)")
    if orders:
        out.print(
            f"  .venv/bin/sagevault show --tenant {DEMO_SELLER} --order {orders[0].order_id}   (a synced order, masked)"
        )
