"""`sagevault sandbox serve`: the local stand-in for Amazon's LWA and SP-API (`sagevault.sandbox`),
for demos and for tests that run it as a process of its own.

It writes what a client needs into its directory (0700): `app.toml` (the LWA client, the
endpoint, the token URL, the CA to trust), `seller-<ID>.token` (each seller's refresh token) and
`admin.token` (for the `/_sandbox/*` control endpoints), all 0600. A restart in the same
directory keeps the client and the refresh tokens, so a configured connector keeps working.
Nothing secret is printed.

This module imports nothing from `._app` (which registers it): the command group stands alone.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import tomli_w
import typer

from sagevault.config import load_settings, make_private_dir
from sagevault.crypto import read_secret_file
from sagevault.errors import ConfigError

sandbox_app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="A local stand-in for Amazon's LWA and SP-API Orders endpoints (tests and demos; fake data only).",
)

_SELLER_ID = re.compile(r"[A-Za-z0-9]{1,40}")


def _data_dir(ctx: typer.Context) -> Path:
    """The data dir the root command was given (--data-dir), else the settings' (env, TOML)."""
    given = ctx.find_root().params.get("data_dir")
    return load_settings(**({"data_dir": given} if given else {})).resolved_data_dir


def _write_private(path: Path, text: str) -> None:
    """`text` into `path`, readable by this user only, replacing it whole."""
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)
    os.replace(part, path)


def _kept(path: Path, what: str) -> str | None:
    """A secret kept from an earlier run in the same directory, if there is one."""
    if not path.exists():
        return None
    text = read_secret_file(path, what=what, missing_error=ConfigError, advice="").decode().strip()
    return text or None


def _kept_client(app_toml: Path) -> tuple[str | None, str | None]:
    if not app_toml.exists():
        return None, None
    try:
        kept = tomllib.loads(
            read_secret_file(app_toml, what="the stand-in's client file", missing_error=ConfigError, advice="").decode()
        )
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None, None
    client_id, client_secret = kept.get("client_id"), kept.get("client_secret")
    if isinstance(client_id, str) and isinstance(client_secret, str):
        return client_id, client_secret
    return None, None


@sandbox_app.command("serve")
def sandbox_serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Loopback address to listen on (127.0.0.1, ::1 or localhost).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8600,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where the client settings, tokens and TLS files go (default: <data dir>/sandbox)."),
    ] = None,
    sellers: Annotated[
        list[str] | None, typer.Option("--seller", help="A seller id (repeat for several; default A1SANDBOXDEMO1).")
    ] = None,
    orders: Annotated[int, typer.Option(min=0, help="Orders each seller starts with.")] = 250,
    marketplace: Annotated[str, typer.Option(help="The sellers' marketplace id.")] = "ATVPDKIKX0DER",
    rate_limits: Annotated[
        bool, typer.Option("--rate-limits/--no-rate-limits", help="Amazon's per-operation rate limits (429s).")
    ] = True,
    rate_scale: Annotated[
        float, typer.Option(min=0.0001, help="Multiplies every operation's rate (e.g. 200: fast, still throttled).")
    ] = 1.0,
    page_size: Annotated[int, typer.Option(min=1, max=100, help="The most orders a page holds.")] = 100,
) -> None:
    """Serve the stand-in over HTTPS until Ctrl-C: POST /auth/o2/token, createRestrictedDataToken,
    getOrders, getOrder, getOrderAddress, getOrderBuyerInfo, getOrderItems and searchOrders
    (2026-01-01), with generated orders whose buyers are all fake."""
    from sagevault.sandbox import Sandbox, SandboxConfig, SellerSpec, check_loopback, new_refresh_token, serve

    check_loopback(host)
    ids = sellers or ["A1SANDBOXDEMO1"]
    for seller_id in ids:
        if not _SELLER_ID.fullmatch(seller_id):
            raise ConfigError(f"a seller id is letters and digits only (like A1SANDBOXDEMO1), not {seller_id!r}")
    home = (directory or _data_dir(ctx) / "sandbox").expanduser().resolve()
    make_private_dir(home)
    client_id, client_secret = _kept_client(home / "app.toml")
    specs = {
        seller_id: SellerSpec(
            seller_id,
            marketplace,
            orders,
            _kept(home / f"seller-{seller_id}.token", f"the refresh token of {seller_id}") or new_refresh_token(),
        )
        for seller_id in ids
    }
    config = SandboxConfig(sellers=specs, rate_limits=rate_limits, rate_scale=rate_scale, page_size=page_size)
    if client_id and client_secret:
        config.client_id, config.client_secret = client_id, client_secret
    sandbox = Sandbox(config)
    with serve(sandbox, host=host, port=port, tls_dir=home / "tls") as server:
        settings = {
            "client_id": config.client_id,
            "client_secret": config.client_secret,
            "endpoint": server.url,
            "token_url": server.token_url,
            "ca_file": str(server.ca_file),
        }
        _write_private(home / "app.toml", tomli_w.dumps(settings))
        for seller_id, spec in specs.items():
            _write_private(home / f"seller-{seller_id}.token", spec.refresh_token + "\n")
        _write_private(home / "admin.token", sandbox.admin_token + "\n")
        limits = f"rate limits on (rates x{rate_scale:g})" if rate_limits else "no rate limits"
        typer.echo(f"SP-API stand-in serving {server.url} over TLS only (LWA: {server.token_url})")
        typer.echo(f"sellers: {', '.join(ids)} ({orders} orders each, {marketplace}); {limits}; pages of {page_size}")
        typer.echo(f"client settings (client_id, client_secret, endpoint, token_url, ca_file): {home / 'app.toml'}")
        for seller_id in ids:
            typer.echo(f"refresh token of {seller_id}: {home / f'seller-{seller_id}.token'}")
        typer.echo(f"admin token for /_sandbox/* (x-sandbox-admin): {home / 'admin.token'}")
        typer.echo(f"clients trust the local CA certificate: {server.ca_file}")
        typer.echo("Ctrl-C stops it.")
        _wait(server.wait)
        typer.echo("stopped")


def _stop(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _wait(wait: Callable[[], None]) -> None:
    """Run `wait` until Ctrl-C or SIGTERM (which stops the stand-in as Ctrl-C does)."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _stop) if main else None
    try:
        wait()
    except KeyboardInterrupt:
        pass
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)
