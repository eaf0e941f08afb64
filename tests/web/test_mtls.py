"""Optional mutual TLS: with `tls_client_ca_file` set, the API server completes a handshake only
with clients that present a certificate from that CA. Real server, real client, 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest

from commands import run
from sagevault.config import Settings
from sagevault.crypto import (
    InMemoryKeyProvider,
    client_context,
    create_local_tls,
    issue_client_certificate,
    server_context,
)
from sagevault.deployment import init_deployment
from sagevault.errors import ConfigError
from sagevault.web import API, make_server


def _client(ca: Path, cert: Path | None = None, key: Path | None = None) -> httpx.Client:
    context = client_context(ca)
    if cert and key:
        context.load_cert_chain(cert, key)
    return httpx.Client(verify=context, timeout=5)


def test_with_a_client_ca_only_clients_holding_its_certificates_get_through(settings: Settings, tmp_path: Path) -> None:
    mutual = settings.model_copy(update={"tls_client_ca_file": settings.tls_dir / "ca.pem"})
    d = init_deployment(mutual, keys=InMemoryKeyProvider())
    ca = mutual.tls_dir / "ca.pem"
    cert, key = issue_client_certificate(ca, mutual.tls_dir / "ca.key", "order-sync", tmp_path / "certs")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    stranger = create_local_tls(tmp_path / "other-ca")  # a CA the server does not trust
    wrong_cert, wrong_key = issue_client_certificate(stranger.ca_cert, stranger.ca_key, "order-sync", tmp_path / "x")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = make_server(d, "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    url = f"https://127.0.0.1:{port}{API}/tenants"
    try:
        with _client(ca, cert, key) as holder:
            answer = holder.get(url)
        assert answer.status_code == 401  # through TLS; the API key or session is still required
        for client in (_client(ca), _client(ca, wrong_cert, wrong_key)):
            with client, pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                client.get(url)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        d.close()


def test_client_certificates_are_named_after_a_login_and_need_a_readable_ca(tmp_path: Path) -> None:
    files = create_local_tls(tmp_path / "tls")
    with pytest.raises(ConfigError, match="lower-case letters"):
        issue_client_certificate(files.ca_cert, files.ca_key, "../etc/passwd", tmp_path)
    with pytest.raises(ConfigError, match="cannot read the CA"):
        issue_client_certificate(tmp_path / "missing.pem", files.ca_key, "order-sync", tmp_path)
    bad_ca = tmp_path / "bad-ca.pem"
    bad_ca.write_text("not a certificate")
    with pytest.raises(ConfigError, match="tls_client_ca_file must be a PEM certificate"):
        server_context(files.cert, files.key, bad_ca)


def test_the_cli_issues_a_client_certificate_from_the_local_ca(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    done = run(tmp_path, "tls", "client-cert", "order-sync", "--out", "certs")
    assert done.returncode == 0, done.stderr
    context = ssl.create_default_context(cafile=str(tmp_path / "var" / "tls" / "ca.pem"))
    context.load_cert_chain(tmp_path / "certs" / "order-sync.pem", tmp_path / "certs" / "order-sync.key")
    again = run(tmp_path, "tls", "client-cert", "order-sync", "--out", "certs")
    assert again.returncode != 0 and "exists" in again.stderr and "Traceback" not in again.stderr
