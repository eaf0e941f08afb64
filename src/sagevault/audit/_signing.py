"""The Ed25519 key that signs each committed group of events (its seal), chain digests and purge
anchors, and the digest file.

Both live beside the master key, outside the database: someone who can rewrite the event table
cannot forge a signature, so an event appended or re-chained without the key carries no valid
seal, and a truncated table disagrees with the last signed digest.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sagevault.config import make_private_dir
from sagevault.crypto import read_secret_file, write_secret_file
from sagevault.errors import AuditError


def create_signing_key(private_path: Path) -> None:
    """A new Ed25519 key pair: `<name>.key` (0600) and `<name>.pub`; never overwrites."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_secret_file(private_path, pem, what="an audit signing key", exists_error=AuditError)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    # public, but in the data dir, which is private whole: auditors are given a copy
    write_secret_file(public_path(private_path), public, what="an audit verification key", exists_error=AuditError)


def public_path(private_path: Path) -> Path:
    return private_path.with_suffix(".pub")


class Signer:
    """Signs with the private key; refuses a key file that others can read."""

    def __init__(self, private_path: Path) -> None:
        pem = read_secret_file(
            private_path, what="audit signing key", missing_error=AuditError, advice="restore it from your key backup"
        )
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditError(f"{private_path} is not an Ed25519 key")
        self._key = key

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:
        return "Signer(key=<redacted>)"


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise AuditError(f"the audit verification key {path} is missing; restore it beside the signing key") from None
    except ValueError:
        raise AuditError(f"the audit verification key {path} is damaged; restore it from your key backup") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"{path} is not an Ed25519 public key")
    return key


def verify_signature(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True if `signature` is the signing key's over `message`."""
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def digest_message(seq: int, head_hash: bytes) -> bytes:
    return b"sagevault-audit-digest-v1\x00" + str(seq).encode() + b"\x00" + head_hash


def seal_message(seq: int, chain_hash: bytes) -> bytes:
    """What a group's seal signs: its last event's seq and chain hash (which covers every event
    before it)."""
    return b"sagevault-audit-seal-v1\x00" + str(seq).encode() + b"\x00" + chain_hash


def anchor_message(last_seq: int, head_hash: bytes) -> bytes:
    return b"sagevault-audit-anchor-v1\x00" + str(last_seq).encode() + b"\x00" + head_hash


@dataclass(frozen=True)
class Digest:
    seq: int
    hash: bytes
    at: str
    signature: bytes


class DigestFile:
    """Signed digests, one JSON line each, appended and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, digest: Digest) -> None:
        make_private_dir(self.path.parent)
        line = json.dumps(
            {
                "seq": digest.seq,
                "hash": digest.hash.hex(),
                "at": digest.at,
                "sig": base64.b64encode(digest.signature).decode(),
            },
            separators=(",", ":"),
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def last(self) -> Digest | None:
        """The newest digest (the file's last line), without reading the whole file."""
        if not self.path.exists():
            return None
        with self.path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 4096))
            tail = fh.read().decode(errors="replace").splitlines()
        return self._parse(tail[-1], -1) if tail else None

    def read(self) -> list[Digest]:
        """Every digest; a line that does not parse is an AuditError naming it."""
        if not self.path.exists():
            return []
        return [self._parse(line, n) for n, line in enumerate(self.path.read_text().splitlines(), 1)]

    def _parse(self, line: str, n: int) -> Digest:
        try:
            raw = json.loads(line)
            return Digest(
                int(raw["seq"]), bytes.fromhex(raw["hash"]), str(raw["at"]), base64.b64decode(raw["sig"], validate=True)
            )
        except (ValueError, KeyError, TypeError):
            where = "its last line" if n < 0 else f"line {n}"
            raise AuditError(f"digest file {self.path} {where} is corrupted; it cannot be read") from None
