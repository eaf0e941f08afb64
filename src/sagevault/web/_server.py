"""`sagevault serve`: uvicorn on SageVault's own TLS context. There is no plaintext listener and
no redirect port: every socket speaks TLS 1.2+ (ECDHE + AEAD) or nothing.

With several workers, each process has a listening socket of its own bound to the same address
(SO_REUSEPORT, so the kernel spreads new connections over them): with one shared socket the
first worker to wake accepts every pending connection, and keep-alive clients then stay on it."""

from __future__ import annotations

import contextlib
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import uvicorn
from fastapi import FastAPI

from sagevault.crypto import server_context
from sagevault.deployment import Deployment
from sagevault.errors import ConfigError

from ._app import create_app

_GRACE_SECONDS = 30  # the longest a stop waits for requests in flight


class GracefulServer(uvicorn.Server):
    """uvicorn, stopped by SIGTERM (systemd, Docker, Kubernetes) as by SIGINT (Ctrl-C): it stops
    accepting, lets requests in flight finish (at most `_GRACE_SECONDS`), drops idle keep-alive
    connections at once (a TLS close would wait for the client's close_notify for 30 seconds),
    and returns, so that the caller closes the deployment (its shutdown digest) and exits 0.
    uvicorn itself raises the signal again once stopped, which kills the process before that."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            if transport is not None and (cycle is None or cycle.response_complete):
                transport.abort()  # idle: nothing in flight to finish
        await super().shutdown(sockets)


def make_server(
    d: Deployment, host: str = "127.0.0.1", port: int = 8443, *, app: FastAPI | None = None
) -> uvicorn.Server:
    """The server for `d`'s API (or for `app`, which a benchmark may extend), TLS only."""
    tls = server_context(
        d.settings.resolved_tls_cert_file, d.settings.resolved_tls_key_file, d.settings.resolved_tls_client_ca_file
    )

    def ours(_config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return tls  # uvicorn's own context is never built

    config = uvicorn.Config(
        app or create_app(d),
        host=host,
        port=port,
        ssl_context_factory=ours,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=_GRACE_SECONDS,
    )
    return GracefulServer(config)


def listen(host: str, port: int, workers: int = 1) -> list[socket.socket]:
    """Listening sockets on `host:port`, one per worker (bound here, so a busy port is a clear
    error before anything starts). Port 0: the first socket's free port, shared by the others."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(workers):
            bound = sockets[0].getsockname()[1] if sockets else port
            sockets.append(socket.create_server((host, bound), family=family, backlog=1024, reuse_port=workers > 1))
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ConfigError(
            f"could not listen on {host}:{port} ({exc.strerror or 'refused'}); the port may be in "
            "use or the address not this machine's: choose another with --host/--port"
        ) from None
    return sockets
