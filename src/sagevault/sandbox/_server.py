"""`serve`: the stand-in on a loopback address over TLS (the local CA of `tls_dir`), in a thread
of this process: it starts in a few tens of milliseconds, so a test module may start several."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn

from sagevault.crypto import create_local_tls, server_context, tls_files
from sagevault.errors import ConfigError

from ._app import create_app
from ._state import Sandbox

_START_SECONDS = 15.0


def check_loopback(host: str) -> None:
    """Refuse any address but this machine's loopback: the stand-in serves fake sellers' tokens."""
    if host.lower() == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"the SP-API stand-in listens on a loopback address only (127.0.0.1, ::1 or localhost), not {host}"
        )


class _Server(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            if transport is not None and (cycle is None or cycle.response_complete):
                transport.abort()  # idle keep-alive: a TLS close would wait for the client's close_notify
        await super().shutdown(sockets)


class SandboxServer:
    """A running stand-in: `url` (https://127.0.0.1:PORT) and `ca_file` (the PEM clients trust).
    A context manager; `close()` stops it."""

    def __init__(self, sandbox: Sandbox, host: str, tls_dir: Path, port: int = 0) -> None:
        check_loopback(host)
        files = tls_files(tls_dir)
        if not (files.ca_cert.exists() and files.cert.exists() and files.key.exists()):
            files = create_local_tls(tls_dir)
        context = server_context(files.cert, files.key)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._socket = socket.create_server((host.strip("[]"), port), family=family, backlog=128)
        except OSError as exc:
            raise ConfigError(
                f"could not listen on {host}:{port} ({exc.strerror or 'refused'}); choose another port"
            ) from None
        self.sandbox = sandbox
        self.ca_file = files.ca_cert
        self.port = int(self._socket.getsockname()[1])
        shown = f"[{host.strip('[]')}]" if ":" in host else host
        self.url = f"https://{shown}:{self.port}"
        self.token_url = f"{self.url}/auth/o2/token"
        self.app = create_app(sandbox)

        def ours(_config: uvicorn.Config, _default: object) -> ssl.SSLContext:
            return context

        config = uvicorn.Config(
            self.app,
            ssl_context_factory=ours,
            log_config=None,
            access_log=False,  # query strings carry NextTokens; headers carry tokens: no access log
            server_header=False,
            proxy_headers=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=f"sp-api-sandbox-{self.port}", daemon=True
        )

    def start(self) -> SandboxServer:
        self._thread.start()
        deadline = time.monotonic() + _START_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise ConfigError(f"the SP-API stand-in did not start on {self.url}")
            time.sleep(0.005)
        return self

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C in the main thread raises KeyboardInterrupt here)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def close(self) -> None:
        self.app.state.stopping.set()
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with contextlib.suppress(OSError):
            self._socket.close()

    def __enter__(self) -> SandboxServer:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


def serve(sandbox: Sandbox, *, host: str = "127.0.0.1", port: int = 0, tls_dir: Path) -> SandboxServer:
    """Start the stand-in for `sandbox` on `host:port` (0: a free port) over TLS with the local
    CA and certificate in `tls_dir` (made there if missing, reused if present). Returns the
    running server; use it as a context manager or call `close()`. A host that is not a loopback
    address is refused (ConfigError)."""
    return SandboxServer(sandbox, host, tls_dir, port).start()
