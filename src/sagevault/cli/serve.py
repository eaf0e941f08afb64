"""`sagevault serve|openapi|tls`: the HTTPS service, its OpenAPI document, client certificates."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from sagevault.crypto import issue_client_certificate
from sagevault.deployment import Deployment
from sagevault.errors import ConfigError, SageVaultError
from sagevault.jobs import Scheduler, default_jobs

from ._app import app, deployment, err, group, open_or_init, out, record_command, settings

tls_app = group("tls", "Certificates for mutual TLS.")


def _serve_here(d: Deployment, host: str, port: int, sockets: list[socket.socket]) -> None:
    """This process serves the API on `sockets`, with the scheduler running beside it."""
    from sagevault.web import make_server

    with Scheduler(d, default_jobs()).running():
        make_server(d, host, port).run(sockets=sockets)


def _this_command(data_dir: Path) -> list[str]:
    """`sagevault --data-dir DIR` as a child process runs it (the interpreter of this one)."""
    return [sys.executable, "-c", "from sagevault.cli import main; main()", "--data-dir", str(data_dir)]


@contextlib.contextmanager
def _detector(data_dir: Path) -> Iterator[None]:
    """The detector (`sagevault monitor run`) in a process of its own beside the server: in the
    server's process it would take the interpreter from the request threads (bench/detect.py:
    appends 3.2-3.5x slower than alone; 1.08x from its own process). Started again if it stops."""
    argv = [*_this_command(data_dir), "monitor", "run", "--poll", "0.1"]
    stopping = threading.Event()
    child: list[subprocess.Popen[bytes]] = []

    def keep() -> None:
        while not stopping.is_set():
            child[:] = [subprocess.Popen(argv, stdout=subprocess.DEVNULL)]  # noqa: S603
            while child[0].poll() is None and not stopping.wait(0.5):
                pass
            if not stopping.is_set():
                err.print(f"[yellow]the detector stopped (exit code {child[0].returncode}); starting it again[/]")
                stopping.wait(2.0)

    keeper = threading.Thread(target=keep, name="sagevault-detector", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stopping.set()
        keeper.join(timeout=5)
        for c in child:
            if c.poll() is None:
                c.terminate()
                try:
                    c.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    c.kill()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8443,
    init_if_new: Annotated[bool, typer.Option("--init", help="Initialise the data dir first if it is new.")] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=32,
            help="Server processes, each with its own socket on the "
            "port. More than one needs rate_limit_storage_url = redis://.",
        ),
    ] = 1,
    worker_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Serve the HTTPS API under /api/v1 (TLS 1.2+ only; there is no plaintext port), and run the
    scheduled jobs (`sagevault jobs list`). Ctrl-C stops it."""
    from sagevault.web import API, listen

    loaded = settings()
    if workers > 1 and loaded.rate_limit_storage_url.startswith("memory://"):
        # Per-process counters would let each worker count failed log-ins on its own: N workers,
        # N times the lockout threshold. Fail closed rather than serve with weaker limits.
        raise ConfigError(
            f"--workers {workers} needs rate counters the workers share: with rate_limit_storage_url "
            "= memory:// each worker would count failed log-ins, refusals and requests on its own, "
            f"allowing up to {workers} times the lockout threshold and every rate. Set "
            "rate_limit_storage_url to redis://127.0.0.1:6379/0 (rediss:// for another host), "
            "or serve with one worker"
        )
    if worker_fd is not None:  # one worker of `serve --workers N`: its socket was bound by the parent
        with deployment(record=False) as d:
            _serve_here(d, host, port, [socket.socket(fileno=worker_fd)])
        return
    d = open_or_init(loaded, init_if_new)
    try:
        sockets = listen(host, port, workers)
        base = f"https://{f'[{host}]' if ':' in host else host}:{port}{API}"
        ca = d.settings.tls_dir / "ca.pem"
        trust = f"--cacert {ca}" if d.settings.tls_cert_file is None else ""
        out.print(f"serving {base} over TLS only (OpenAPI: {base}/openapi.json)", soft_wrap=True)
        console = base.removesuffix(API) + "/console"
        out.print(f"the web console: {console} (log in with a password and TOTP)", soft_wrap=True)
        if d.settings.tls_cert_file is None:
            out.print(f"clients trust the local CA certificate: {ca}", soft_wrap=True)
        with d.engine.connect() as conn:
            people = d.access.accounts.count_people(conn)
        if not people:
            out.print(
                "no accounts yet. Create the first admin (in another terminal), then log in:\n"
                "  .venv/bin/sagevault users bootstrap-admin --login LOGIN --email EMAIL\n"
                "  .venv/bin/sagevault users enrol --login LOGIN\n"
                f"  curl {trust} -X POST {base}/sessions -H 'content-type: application/json' \\\n"
                '       -d \'{"login": "LOGIN", "password": "...", "code": "TOTP"}\'',
                soft_wrap=True,
            )
        out.print("see docs/api.md; Ctrl-C stops the server")
        record_command(d.audit, None)
        if workers == 1:
            with _detector(loaded.resolved_data_dir):
                _serve_here(d, host, port, sockets)
            return
    finally:
        d.close()
    with _detector(loaded.resolved_data_dir):
        _run_workers(host, port, sockets, loaded.resolved_data_dir)


def _run_workers(host: str, port: int, sockets: list[socket.socket], data_dir: Path) -> None:
    """One process per socket, each opening the same deployment (its data dir is passed on, the
    environment and working directory are inherited); Ctrl-C or SIGTERM stops them all, and so
    does a worker that ends on its own (the command then fails)."""
    argv = [
        *_this_command(data_dir),
        "serve",
        "--host",
        host,
        "--port",
        str(port),
    ]
    children = [
        subprocess.Popen([*argv, "--worker-fd", str(sock.fileno())], pass_fds=(sock.fileno(),))  # noqa: S603
        for sock in sockets
    ]
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
        raise SageVaultError(
            f"a server worker ended on its own (exit code {failed.returncode}); the others were "
            "stopped. Its error is above"
        )


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
    with deployment() as d:
        ca = d.settings.tls_dir
        cert, key = issue_client_certificate(ca / "ca.pem", ca / "ca.key", name, out_dir, days=days)
    out.print(f"client certificate {cert} and key {key} (mode 0600) for {name}, valid {days} days", soft_wrap=True)
