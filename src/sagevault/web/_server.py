"""`sagevault serve`: uvicorn on SageVault's own TLS context. There is no plaintext listener and
no redirect port: the one socket speaks TLS 1.2+ (ECDHE + AEAD) or nothing."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from sagevault.crypto import server_context
from sagevault.deployment import Deployment

from ._app import create_app


def make_server(
    d: Deployment, host: str = "127.0.0.1", port: int = 8443, *, app: FastAPI | None = None
) -> uvicorn.Server:
    """The server for `d`'s API (or for `app`, which a benchmark may extend), TLS only."""
    tls = server_context(d.settings.resolved_tls_cert_file, d.settings.resolved_tls_key_file,
                         d.settings.resolved_tls_client_ca_file)  # fmt: skip

    def ours(_config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return tls  # uvicorn's own context is never built

    config = uvicorn.Config(app or create_app(d), host=host, port=port, ssl_context_factory=ours, log_config=None,
                            access_log=False, server_header=False, proxy_headers=False)  # fmt: skip
    return uvicorn.Server(config)
