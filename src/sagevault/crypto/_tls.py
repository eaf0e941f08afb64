"""TLS material and contexts: a local CA and server certificate for the embedded deployment, and
the one server context SageVault listens with (TLS 1.2 or later, ECDHE with AEAD ciphers only).

`sagevault init` makes `tls/ca.pem` + `tls/ca.key` (the CA's key stays 0600 beside the other
keys' directory) and a server certificate for localhost, 127.0.0.1 and ::1 signed by it. A real
certificate and key can be configured instead; clients of the embedded deployment trust `ca.pem`.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sagevault.config import make_private_dir
from sagevault.errors import ConfigError

from ._secret_files import write_secret_file

# TLS 1.2 suites: forward secrecy (ECDHE) and authenticated encryption only; TLS 1.3 suites are
# all of that kind already. Stricter than Mozilla's "intermediate" profile (no DHE, no CBC).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1"
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
_SERVER_DAYS = 366  # Mozilla "intermediate" allows at most 366 (public CAs 397): we keep to the stricter


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


def tls_files(directory: Path) -> TlsFiles:
    return TlsFiles(directory / "ca.pem", directory / "ca.key", directory / "server.pem", directory / "server.key")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def create_local_tls(directory: Path, names: tuple[str, ...] = LOCAL_NAMES, *, now: datetime | None = None) -> TlsFiles:
    """A new CA (10 years) and a server certificate for `names` (366 days), ECDSA P-256."""
    files = tls_files(directory)
    if files.ca_key.exists() or files.key.exists():
        raise ConfigError(f"{directory} already holds TLS keys; remove them first to make new ones")
    make_private_dir(directory)
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SageVault local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
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
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=_SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_secret_file(files.ca_key, _key_pem(ca_key), what="the local CA key", exists_error=ConfigError)
    write_secret_file(files.key, _key_pem(key), what="the TLS server key", exists_error=ConfigError)
    # Certificates are public, but they live in the data dir, which is private whole (0600 files).
    write_secret_file(
        files.ca_cert,
        ca_cert.public_bytes(serialization.Encoding.PEM),
        what="the local CA certificate",
        exists_error=ConfigError,
    )
    write_secret_file(
        files.cert,
        cert.public_bytes(serialization.Encoding.PEM),
        what="the TLS server certificate",
        exists_error=ConfigError,
    )
    return files


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The only way SageVault listens: TLS 1.2 minimum, ECDHE + AEAD suites, no compression,
    no renegotiation, server's cipher order. With `client_ca`, mutual TLS: every client must
    present a certificate that CA signed, or the handshake fails."""
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
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the client CA certificate {client_ca} ({type(exc).__name__}); "
                "tls_client_ca_file must be a PEM certificate"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def issue_client_certificate(
    ca_cert: Path, ca_key: Path, name: str, out: Path, *, days: int = 365
) -> tuple[Path, Path]:
    """A client certificate for `name` (a service account's login), signed by the CA at
    `ca_cert`/`ca_key`, written to `out/<name>.pem` and `out/<name>.key` (0600)."""
    try:
        ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the CA {ca_cert} and its key ({type(exc).__name__})") from None
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{ca_key} is not an EC key; sign client certificates with the local CA")
    if not re.fullmatch(r"[a-z][a-z0-9._-]{1,62}", name):
        raise ConfigError(
            "a client certificate is named after a service account's login: lower-case letters, digits, '.', '_' or '-'"
        )
    make_private_dir(out)
    cert_path, key_path = out / f"{name}.pem", out / f"{name}.key"
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.now(UTC) - timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        .sign(signer, hashes.SHA256())
    )
    write_secret_file(key_path, _key_pem(key), what=f"the client key of {name}", exists_error=ConfigError)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def client_context(ca_cert: Path) -> ssl.SSLContext:
    """A client that trusts `ca_cert`, checks the host name and speaks TLS 1.2 or later."""
    context = ssl.create_default_context(cafile=str(ca_cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
