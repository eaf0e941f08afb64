"""TLS material and contexts: a local CA and server certificate for the embedded deployment, and
the one server context SageVault listens with (TLS 1.2 or later, ECDHE with AEAD ciphers only).

`sagevault init` makes `tls/ca.pem` + `tls/ca.key` (the CA's key stays 0600 beside the other
keys' directory) and a server certificate for localhost, 127.0.0.1 and ::1 signed by it. A real
certificate and key can be configured instead; clients of the embedded deployment trust `ca.pem`.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sagevault.errors import ConfigError

from ._secret_files import write_secret_file

# TLS 1.2 suites: forward secrecy (ECDHE) and authenticated encryption only; TLS 1.3 suites are
# all of that kind already. Stricter than Mozilla's "intermediate" profile (no DHE, no CBC).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1"
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
_SERVER_DAYS = 397  # the longest a publicly trusted certificate may live; we keep to it


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


def tls_files(directory: Path) -> TlsFiles:
    return TlsFiles(directory / "ca.pem", directory / "ca.key", directory / "server.pem", directory / "server.key")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def create_local_tls(directory: Path, names: tuple[str, ...] = LOCAL_NAMES, *, now: datetime | None = None) -> TlsFiles:
    """A new CA (10 years) and a server certificate for `names` (397 days), ECDSA P-256."""
    files = tls_files(directory)
    if files.ca_key.exists() or files.key.exists():
        raise ConfigError(f"{directory} already holds TLS keys; remove them first to make new ones")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SageVault local CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + timedelta(days=_SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    write_secret_file(files.ca_key, _key_pem(ca_key), what="the local CA key", exists_error=ConfigError)
    write_secret_file(files.key, _key_pem(key), what="the TLS server key", exists_error=ConfigError)
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The only way SageVault listens: TLS 1.2 minimum, ECDHE + AEAD suites, no compression,
    no renegotiation, server's cipher order."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate {cert} and key {key} ({type(exc).__name__}); check both files "
            "(PEM), or run `sagevault init` on a new data dir to make a local CA"
        ) from None
    return context


def client_context(ca_cert: Path) -> ssl.SSLContext:
    """A client that trusts `ca_cert`, checks the host name and speaks TLS 1.2 or later."""
    context = ssl.create_default_context(cafile=str(ca_cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
