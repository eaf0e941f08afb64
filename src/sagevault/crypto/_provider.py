"""Master-key providers. The master key never enters the database."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sagevault.errors import KeyProviderError

from ._secret_files import read_secret_file, write_secret_file

_FILE_HEADER = "sagevault-master-key-v1"
_WRAP_FORMAT = b"\x01"


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps tenant key material under a master key it never exposes."""

    @property
    def key_id(self) -> str:
        """A non-secret name of the master key, stored beside each wrapped key."""
        ...

    def wrap(self, plaintext: bytes, context: Mapping[str, str]) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes: ...


def _context_bytes(context: Mapping[str, str]) -> bytes:
    return "\x1f".join(f"{k}={context[k]}" for k in sorted(context)).encode()


class _AesGcmMasterKey:
    """Shared logic of the providers that hold a 256-bit master key in process memory."""

    in_process = True  # unwrapping makes no call outside this process (`held_in_process`)

    def __init__(self, key: bytes, key_id: str) -> None:
        if len(key) != 32:
            raise KeyProviderError("the master key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)
        self._key_id = key_id

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        nonce = os.urandom(12)
        return _WRAP_FORMAT + nonce + self._aead.encrypt(nonce, plaintext, _context_bytes(context))

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        if wrapped[:1] != _WRAP_FORMAT or len(wrapped) < 29:
            raise KeyProviderError("a wrapped tenant key is malformed; the database may be damaged")
        try:
            return self._aead.decrypt(wrapped[1:13], wrapped[13:], _context_bytes(context))
        except InvalidTag:
            raise KeyProviderError(
                f"master key {self._key_id} cannot unwrap the keys of tenant {context.get('tenant', '?')}: "
                "the key file is not the one these keys were created with; restore the right key file"
            ) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self._key_id!r}, key=<redacted>)"


def held_in_process(keys: KeyProvider) -> bool:
    """Whether `keys` unwraps in this process (a key file, a key in memory), with no network call
    that could wait: providers say so themselves, and one that does not is taken as remote."""
    return getattr(keys, "in_process", False) is True


def _fingerprint(key: bytes) -> str:
    return hashlib.sha256(b"sagevault master key id\x00" + key).hexdigest()[:16]


class InMemoryKeyProvider(_AesGcmMasterKey):
    """A master key that lives only in this process: for tests and throwaway runs."""

    def __init__(self, key: bytes | None = None) -> None:
        key = key if key is not None else AESGCM.generate_key(bit_length=256)
        super().__init__(key, f"memory:{_fingerprint(key)}")


class LocalKeyFileProvider(_AesGcmMasterKey):
    """The master key in a file of its own (mode 0600), outside the database."""

    def __init__(self, path: Path) -> None:
        key = _read_key_file(path)
        super().__init__(key, f"local:{_fingerprint(key)}")
        self.path = path


def create_local_key_file(path: Path) -> None:
    """Write a new random master key with mode 0600 in a 0700 directory; never overwrite one."""
    key = AESGCM.generate_key(bit_length=256)
    body = f"{_FILE_HEADER}\n{base64.b64encode(key).decode()}\n".encode()
    write_secret_file(path, body, what="a master key file", exists_error=KeyProviderError)


def _read_key_file(path: Path) -> bytes:
    raw = read_secret_file(
        path,
        what="master key file",
        missing_error=KeyProviderError,
        advice="restore it from your key backup (or run `sagevault init` on a new data dir)",
    )
    lines = raw.decode("ascii", errors="replace").split("\n")
    try:
        if lines[0] != _FILE_HEADER:
            raise ValueError
        key = base64.b64decode(lines[1], validate=True)
        if len(key) != 32:
            raise ValueError
    except (ValueError, IndexError):
        raise KeyProviderError(
            f"master key file {path} is not a SageVault master key; restore the right file"
        ) from None
    return key


class AwsKmsKeyProvider:
    """The master key is an AWS KMS key; wrap and unwrap are KMS Encrypt/Decrypt calls with the
    tenant context as the KMS encryption context."""

    def __init__(self, key_id: str, *, region: str, endpoint_url: str | None = None, client: Any = None) -> None:
        if client is None:
            import boto3  # imported here: only KMS deployments pay for boto3's import time

            client = boto3.client("kms", region_name=region, endpoint_url=endpoint_url)
        self._client = client
        self._kms_key_id = key_id

    @property
    def client(self) -> Any:
        return self._client

    @property
    def key_id(self) -> str:
        return f"aws-kms:{self._kms_key_id}"

    def wrap(self, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        try:
            out = self._client.encrypt(KeyId=self._kms_key_id, Plaintext=plaintext, EncryptionContext=dict(context))
        except Exception as exc:
            raise KeyProviderError(f"AWS KMS refused to wrap a tenant key: {type(exc).__name__}") from None
        return bytes(out["CiphertextBlob"])

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        try:
            out = self._client.decrypt(CiphertextBlob=wrapped, KeyId=self._kms_key_id, EncryptionContext=dict(context))
        except Exception as exc:
            raise KeyProviderError(
                f"AWS KMS key {self._kms_key_id} cannot unwrap the keys of tenant "
                f"{context.get('tenant', '?')} ({type(exc).__name__}); check the key id and permissions"
            ) from None
        return bytes(out["Plaintext"])

    def __repr__(self) -> str:
        return f"AwsKmsKeyProvider(key_id={self._kms_key_id!r})"
