"""Field-level AES-256-GCM with associated data binding tenant, record and field.

A record's PII is one blob of independent per-field ciphertexts:

    blob  = b"\\x01" entry*
    entry = path_len:u16le  ct_len:u32le  path:utf8  nonce:12  ciphertext+tag

Each field has its own random 96-bit nonce and is authenticated with
`"sv1" 0x1f tenant 0x1f record_id 0x1f path` as associated data, so a ciphertext copied to another
field, record or tenant fails to decrypt. Field paths are catalog paths with concrete indices
(`OrderItems[0].BuyerInfo.GiftMessageText`); they name schema fields, never values.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sagevault.errors import IntegrityError

_FORMAT = 1
_HEADER = struct.Struct("<HI")
_NONCE = 12


def encode_value(value: Any) -> bytes:
    """Plaintext bytes of a JSON value; strings (nearly all PII) skip the JSON encoder."""
    if type(value) is str:
        return b"s" + value.encode()
    return b"j" + json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def decode_value(data: bytes) -> Any:
    if data[:1] == b"s":
        return data[1:].decode()
    return json.loads(data[1:])


class PiiBlob:
    """Read the layout of a blob without decrypting anything."""

    @staticmethod
    def entries(blob: bytes) -> Iterator[tuple[str, bytes]]:
        if not blob:
            return
        if blob[0] != _FORMAT:
            raise IntegrityError("a record's PII blob has an unknown format; the database may be damaged")
        pos, end = 1, len(blob)
        unpack = _HEADER.unpack_from
        try:
            while pos < end:
                plen, clen = unpack(blob, pos)
                pos += 6
                if pos + plen + clen > end:
                    raise struct.error
                path = blob[pos : pos + plen].decode()
                pos += plen
                yield path, blob[pos : pos + clen]
                pos += clen
        except (struct.error, UnicodeDecodeError):
            raise IntegrityError("a record's PII blob is truncated or damaged") from None
        if pos != end:
            raise IntegrityError("a record's PII blob is truncated or damaged")

    @staticmethod
    def paths(blob: bytes) -> list[str]:
        return [path for path, _ in PiiBlob.entries(blob)]


class FieldCipher:
    """Seals and opens the PII fields of records of one tenant under one key version."""

    __slots__ = ("_aead", "_tenant_prefix", "version")

    def __init__(self, key: bytes, tenant_id: str, version: int) -> None:
        self._aead = AESGCM(key)
        self._tenant_prefix = b"sv1\x1f" + tenant_id.encode() + b"\x1f"
        self.version = version

    def seal(self, record_id: str, fields: Sequence[tuple[str, bytes]]) -> bytes:
        """One blob holding each (path, plaintext bytes) pair as its own ciphertext."""
        return self.seal_values(record_id, [(path, value) for path, value in fields], encoded=True)

    def seal_values(self, record_id: str, fields: Sequence[tuple[str, Any]], *, encoded: bool = False) -> bytes:
        """Like `seal`, for JSON values (encoded here with `encode_value`, inline for strings)."""
        n = len(fields)
        if n == 0:
            return b""
        nonces = os.urandom(_NONCE * n)  # one syscall per record, not per field
        ad_prefix = self._tenant_prefix + record_id.encode() + b"\x1f"
        encrypt = self._aead.encrypt
        pack = _HEADER.pack
        out: list[bytes] = [b"\x01"]
        at = 0
        for path, value in fields:
            if encoded:
                plaintext = value
            elif type(value) is str:
                plaintext = b"s" + value.encode()
            else:
                plaintext = encode_value(value)
            pb = path.encode()
            nonce = nonces[at : at + _NONCE]
            at += _NONCE
            ct = encrypt(nonce, plaintext, ad_prefix + pb)
            out += (pack(len(pb), len(ct) + _NONCE), pb, nonce, ct)
        return b"".join(out)

    def open(self, record_id: str, blob: bytes, paths: Collection[str] | None = None) -> dict[str, bytes]:
        """Plaintext of the fields in `paths` (all when None). A failed tag is an IntegrityError."""
        ad_prefix = self._tenant_prefix + record_id.encode() + b"\x1f"
        decrypt = self._aead.decrypt
        out: dict[str, bytes] = {}
        for path, sealed in PiiBlob.entries(blob):
            if paths is not None and path not in paths:
                continue
            try:
                out[path] = decrypt(sealed[:_NONCE], sealed[_NONCE:], ad_prefix + path.encode())
            except (InvalidTag, ValueError):
                raise IntegrityError(
                    f"field {path} of record {record_id} failed authentication: the ciphertext was "
                    "altered or copied from another record; restore the record from a backup or re-ingest it"
                ) from None
        return out

    def __repr__(self) -> str:
        return f"FieldCipher(version={self.version}, key=<redacted>)"
