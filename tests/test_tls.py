"""TLS material from `sagevault init` and the server context, with real handshakes on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from conftest import plaintext_answer
from sagevault.config import Settings
from sagevault.crypto import InMemoryKeyProvider, client_context, create_local_tls, server_context, tls_files
from sagevault.deployment import init_deployment
from sagevault.errors import ConfigError


@pytest.fixture
def tls_server(settings: Settings) -> Iterator[tuple[int, Path]]:
    """A TLS echo server on 127.0.0.1 with the context SageVault listens with."""
    d = init_deployment(settings, keys=InMemoryKeyProvider())
    d.close()
    context = server_context(settings.resolved_tls_cert_file, settings.resolved_tls_key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.sendall(tls.recv(64))
                except (ssl.SSLError, OSError):
                    continue  # a refused handshake: the client sees an alert or a closed socket

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, settings.tls_dir / "ca.pem"
    stop.set()
    socket.create_connection(("127.0.0.1", port)).close()  # wake the accept() so the thread ends
    thread.join(timeout=5)
    listener.close()


def _talk(port: int, context: ssl.SSLContext, host: str = "127.0.0.1") -> tuple[str | None, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:  # fmt: skip
        tls.sendall(b"ping")
        assert tls.recv(64) == b"ping"
        cipher = tls.cipher()
        return tls.version(), cipher[0] if cipher else ""


def test_init_makes_a_local_ca_and_a_server_certificate_for_this_machine(settings: Settings) -> None:
    init_deployment(settings, keys=InMemoryKeyProvider()).close()
    files = tls_files(settings.tls_dir)
    for key in (files.ca_key, files.key):
        assert oct(key.stat().st_mode & 0o777) == "0o600"
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert (cert.not_valid_after_utc - datetime.now(UTC)).days <= 397
    with pytest.raises(ConfigError, match="already holds TLS keys"):
        create_local_tls(settings.tls_dir)


def test_tls_12_and_13_with_strong_ciphers_work_and_the_name_is_checked(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    assert _talk(port, client_context(ca))[0] == "TLSv1.3"
    only_12 = client_context(ca)
    only_12.maximum_version = ssl.TLSVersion.TLSv1_2
    version, cipher = _talk(port, only_12, host="localhost")
    assert version == "TLSv1.2" and cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher)
    with pytest.raises(ssl.SSLCertVerificationError):
        _talk(port, client_context(ca), host="sagevault.example.com")  # not a name the certificate holds
    with pytest.raises(ssl.SSLCertVerificationError):
        _talk(port, ssl.create_default_context())  # a client that does not trust the local CA


def test_old_protocols_and_weak_ciphers_are_refused_by_the_server(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    weak = client_context(ca)
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-SHA:AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA")  # CBC, no AEAD
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):  # the server's alert: no shared cipher
        _talk(port, weak)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(ca)
    with warnings.catch_warnings():  # Python warns that these versions are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        old.set_ciphers("ALL:@SECLEVEL=0")
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):  # the server's alert
            _talk(port, old)


def test_plaintext_gets_no_answer(tls_server: tuple[int, Path]) -> None:
    port, _ = tls_server
    assert b"HTTP/" not in plaintext_answer(port)  # at most a TLS alert record, never an HTTP response


def test_a_bad_certificate_file_is_a_clear_refusal(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="cannot load the TLS certificate"):
        server_context(tmp_path / "cert.pem", tmp_path / "key.pem")
