"""The backup file: an age file (X25519, through `pyrage`) whose plaintext is a tar archive of
three members: `manifest.json`, `manifest.sig` (the audit signing key's Ed25519 signature over the
manifest, base64) and the database image (`database.sqlite3`, an SQLite database; or
`database.sql`, `pg_dump --data-only` of the vault's tables).

Writing seals; reading refuses, before anything is restored, a file that the deployment's backup
identity cannot decrypt, a manifest whose signature does not verify, and an image whose SHA-256
is not the manifest's.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import pyrage
from cryptography.exceptions import InvalidSignature
from pyrage import x25519

from sagevault.audit import Signer, load_public_key
from sagevault.config import make_private_dir
from sagevault.crypto import read_secret_file, write_secret_file
from sagevault.errors import ConfigError, IntegrityError, PayloadError

FORMAT = "sagevault-backup/1"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
IMAGES = {"sqlite": "database.sqlite3", "postgresql": "database.sql"}
_SIGNED = b"sagevault-backup-manifest-v1\x00"
_MAX_MEMBER = 64 * 1024  # manifest and signature: small


@dataclass(frozen=True)
class Manifest:
    """What a backup holds, signed: when, which backend and schema revision, the image's
    SHA-256 and size, and the security log's last sequence number when it was taken."""

    format: str
    created_at: str
    backend: str
    schema_revision: str
    image: str
    image_sha256: str
    image_size: int
    audit_last_seq: int
    master_key_id: str
    recipient: str  # the deployment's backup identity (its public half)

    def encoded(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decoded(cls, data: bytes) -> Manifest:
        try:
            raw = json.loads(data)
            manifest = cls(**raw)
        except (ValueError, TypeError):
            raise IntegrityError(
                "the backup's manifest cannot be read; the file was not written by SageVault"
            ) from None
        if manifest.format != FORMAT:
            raise IntegrityError(f"the backup is in format {manifest.format!r}; this SageVault reads {FORMAT}")
        return manifest


def backup_identity(path: Path) -> x25519.Identity:
    """The deployment's backup identity (an age X25519 secret key), made 0600 on first use and
    refused when group or others can reach it."""
    if not path.exists():
        make_private_dir(path.parent)
        identity = x25519.Identity.generate()
        with suppress(ConfigError):  # another process made it first: read that one
            write_secret_file(path, f"{identity}\n".encode(), what="the backup key", exists_error=ConfigError)
    text = read_secret_file(
        path, what="backup key", missing_error=ConfigError, advice="restore it from your key backup"
    ).decode(errors="replace")
    try:
        return x25519.Identity.from_str(text.strip())
    except Exception:  # pyrage.IdentityError, and whatever else a damaged file makes it raise
        raise ConfigError(f"the backup key {path} is damaged; restore it from your key backup") from None


def recipients(extra: list[str]) -> list[x25519.Recipient]:
    """Further age recipients an operator names (`age1...`): an offline key that can also open
    the backup."""
    found = []
    for text in extra:
        try:
            found.append(x25519.Recipient.from_str(text.strip()))
        except Exception:  # pyrage.RecipientError
            raise PayloadError("a recipient is an age X25519 public key (age1...)") from None
    return found


def _member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, 0
    archive.addfile(info, io.BytesIO(data))


def seal(image: bytes, manifest: Manifest, signer: Signer, to: list[x25519.Recipient], path: Path) -> str:
    """Write the backup to `path` (a new file, 0600) and return the file's SHA-256."""
    signature = signer.sign(_SIGNED + manifest.encoded())
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _member(archive, MANIFEST, manifest.encoded())
        _member(archive, SIGNATURE, base64.b64encode(signature))
        _member(archive, manifest.image, image)
    plain.seek(0)
    sealed = io.BytesIO()
    pyrage.encrypt_io(plain, sealed, to)
    data = sealed.getvalue()
    make_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Opened:
    manifest: Manifest
    image: bytes
    sha256: str  # of the file


def open_backup(path: Path, identity: x25519.Identity, public_key: Path) -> Opened:
    """Decrypt and check a backup; IntegrityError says why one is refused."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PayloadError(f"{path} cannot be read ({type(exc).__name__})") from None
    plain = io.BytesIO()
    try:
        pyrage.decrypt_io(io.BytesIO(data), plain, [identity])
    except Exception:  # pyrage.DecryptError: another deployment's key, or a changed byte (age authenticates)
        raise IntegrityError(
            f"{path} cannot be decrypted with this deployment's backup key: it was made for another "
            "deployment, or it was changed or damaged"
        ) from None
    members = _members(plain)
    if set(members) - {MANIFEST, SIGNATURE, *IMAGES.values()} or not {MANIFEST, SIGNATURE} <= members.keys():
        raise IntegrityError("the backup does not hold a manifest, its signature and one database image")
    encoded = members[MANIFEST]
    try:
        signature = base64.b64decode(members[SIGNATURE], validate=True)
        load_public_key(public_key).verify(signature, _SIGNED + encoded)
    except (ValueError, InvalidSignature):
        raise IntegrityError(
            "the backup's manifest signature does not verify with this deployment's signing key: "
            "it was forged, changed, or signed by another deployment"
        ) from None
    manifest = Manifest.decoded(encoded)
    image = members.get(manifest.image)
    if image is None or manifest.image != IMAGES.get(manifest.backend):
        raise IntegrityError("the backup's manifest names no database image it holds")
    if len(image) != manifest.image_size or hashlib.sha256(image).hexdigest() != manifest.image_sha256:
        raise IntegrityError("the backup's database image does not match the SHA-256 its signed manifest gives")
    return Opened(manifest, image, hashlib.sha256(data).hexdigest())


def _members(plain: io.BytesIO) -> dict[str, bytes]:
    """The archive's regular files, read in memory (nothing is extracted to disk)."""
    plain.seek(0)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=plain, mode="r:") as archive:
            for info in archive:
                if not info.isfile() or info.name in found:
                    raise IntegrityError("the backup's archive holds something other than its three files")
                if info.name in (MANIFEST, SIGNATURE) and info.size > _MAX_MEMBER:
                    raise IntegrityError("the backup's manifest is too large")
                member = archive.extractfile(info)
                found[info.name] = member.read() if member is not None else b""
    except tarfile.TarError:
        raise IntegrityError("the backup's archive cannot be read; the file was not written by SageVault") from None
    return found
