"""TLS material from `sagevault init` and the server context, with real handshakes on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from sslyze import (
    CertificateInfoExtraArgument,
    RobotScanResultEnum,
    ScanCommand,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanResult,
    ServerScanStatusEnum,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationAsJson,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)

from conftest import plaintext_answer
from sagevault.config import Settings
from sagevault.crypto import InMemoryKeyProvider, client_context, create_local_tls, server_context, tls_files
from sagevault.deployment import init_deployment
from sagevault.errors import ConfigError
from webapi import Api


@pytest.fixture
def api(served_api: Api) -> Api:
    """The API over a real socket and TLS: what this module proves is about the wire."""
    return served_api


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
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
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
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 366  # Mozilla "intermediate"
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


# --- sslyze against the served API ------------------------------------------------------------------

# Curves beyond Mozilla's list that the server also offers: Python's ssl module sets one curve at
# most (`set_ecdh_curve`), so the list cannot be narrowed without losing X25519; both are stronger
# than P-256, so the one difference from "intermediate" is accepted here, and nothing else.
EXTRA_STRONG_CURVES = {"X448", "secp521r1"}


def _scan(api: Api) -> ServerScanResult:
    """sslyze over the real API server on 127.0.0.1: every protocol and cipher, the known attacks,
    the certificate (checked against the local CA only) and the HSTS header. The address is given,
    so sslyze resolves no name and connects nowhere else."""
    port = int(api.base.split(":")[2].split("/")[0])
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname="127.0.0.1", port=port, ip_address="127.0.0.1"),
        scan_commands={*SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER, ScanCommand.HTTP_HEADERS},
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=api.d.settings.tls_dir / "ca.pem")
        ),
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = scanner.get_results()
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    return result


# sslyze reads its bundled trust stores, where an old root has a serial number that cryptography
# warns about; that is sslyze's data, not our certificate (whose serial is random and positive).
@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
def test_sslyze_finds_tls_12_and_13_only_ecdhe_aead_no_known_attack_and_mozilla_intermediate(api: Api) -> None:
    result = _scan(api)
    scans = result.scan_result
    assert scans is not None
    for name in SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER | {ScanCommand.HTTP_HEADERS}:
        attempt = getattr(scans, name.value)
        assert attempt.result is not None, (name, attempt.error_reason, attempt.error_trace)

    for old in (
        scans.ssl_2_0_cipher_suites,
        scans.ssl_3_0_cipher_suites,
        scans.tls_1_0_cipher_suites,
        scans.tls_1_1_cipher_suites,
    ):
        assert not old.result.is_tls_version_supported and not old.result.accepted_cipher_suites
    tls12 = [c.cipher_suite.name for c in scans.tls_1_2_cipher_suites.result.accepted_cipher_suites]
    assert tls12 and all(
        name.startswith("TLS_ECDHE_") and ("_GCM_" in name or "_CHACHA20_POLY1305_" in name) for name in tls12
    ), tls12
    tls13 = {c.cipher_suite.name for c in scans.tls_1_3_cipher_suites.result.accepted_cipher_suites}
    assert scans.tls_1_3_cipher_suites.result.is_tls_version_supported
    assert tls13 and tls13 <= {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}

    assert not scans.heartbleed.result.is_vulnerable_to_heartbleed
    assert scans.robot.result.robot_result in (
        RobotScanResultEnum.NOT_VULNERABLE_NO_ORACLE,
        RobotScanResultEnum.NOT_VULNERABLE_RSA_NOT_SUPPORTED,
    )
    assert not scans.openssl_ccs_injection.result.is_vulnerable_to_ccs_injection
    assert scans.tls_fallback_scsv.result.supports_fallback_scsv
    assert not scans.tls_compression.result.supports_compression
    renegotiation = scans.session_renegotiation.result
    assert renegotiation.supports_secure_renegotiation and not renegotiation.is_vulnerable_to_client_renegotiation_dos
    assert scans.tls_extended_master_secret.result.supports_ems_extension
    deployment = scans.certificate_info.result.certificate_deployments[0]
    assert deployment.verified_certificate_chain and not deployment.verified_chain_has_sha1_signature

    intermediate = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    hsts = scans.http_headers.result.strict_transport_security_header
    assert hsts is not None and hsts.max_age is not None and hsts.max_age >= intermediate.hsts_min_age
    offered = {curve.name for curve in scans.elliptic_curves.result.supported_curves or []}
    assert offered - intermediate.tls_curves <= EXTRA_STRONG_CURVES, offered
    assert set(_departures(result, intermediate)) <= {"tls_curves"}  # the certificate, versions, suites, attacks


def _departures(result: ServerScanResult, profile: TlsConfigurationAsJson) -> dict[str, str]:
    """What sslyze's own checker says departs from `profile` (nothing: an empty dict)."""
    try:
        check_server_against_tls_configuration(result, profile)
    except ServerNotCompliantWithTlsConfiguration as exc:
        return exc.issues
    return {}
