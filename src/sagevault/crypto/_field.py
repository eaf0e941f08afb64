"""Field-level AES-256-GCM with associated data binding tenant, record and field.

A record's PII is one blob of independent per-field ciphertexts:

    blob = 0x03  n:u16le  path_len:u16le * n  ct_len:u32le * n  path:utf8 * n  nonce:12 * n  (ciphertext+tag) * n

Each field has its own random 96-bit nonce and is authenticated with
`"sv1" 0x1f tenant 0x1f record_id 0x1f path` as associated data, so a ciphertext copied to another
field, record or tenant fails to decrypt. Field paths are catalog paths with concrete indices
(`OrderItems[0].BuyerInfo.GiftMessageText`); they name schema fields, never values. All lengths
sit in one header so that sealing and parsing are a few C-level calls per record, not per field.
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

_FORMAT = 3
_COUNT = struct.Struct("<H")
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
    def _layout(blob: bytes) -> tuple[int, tuple[int, ...]]:
        """(field count, path lengths then ciphertext lengths), the whole blob's size checked."""
        if blob[0] != _FORMAT:
            raise IntegrityError("a record's PII blob has an unknown format; the database may be damaged")
        try:
            (n,) = _COUNT.unpack_from(blob, 1)
            lens: tuple[int, ...] = struct.unpack_from(f"<{n}H{n}I", blob, 3)
        except struct.error:
            raise IntegrityError("a record's PII blob is truncated or damaged") from None
        if 3 + 6 * n + sum(lens) + _NONCE * n != len(blob):
            raise IntegrityError("a record's PII blob is truncated or damaged")
        return n, lens

    @staticmethod
    def entries(blob: bytes) -> Iterator[tuple[str, bytes]]:
        """(path, nonce + ciphertext) for each field."""
        if not blob:
            return
        n, lens = PiiBlob._layout(blob)
        pos = 3 + 6 * n
        nonce_at = pos + sum(lens[:n])
        at = nonce_at + _NONCE * n
        for path, clen in zip(PiiBlob._names(blob, n, lens), lens[n:], strict=True):
            yield path, blob[nonce_at : nonce_at + _NONCE] + blob[at : at + clen]
            nonce_at += _NONCE
            at += clen

    @staticmethod
    def paths(blob: bytes) -> list[str]:
        """The fields' paths, read from the header alone (checked as `entries` checks it)."""
        if not blob:
            return []
        n, lens = PiiBlob._layout(blob)
        return PiiBlob._names(blob, n, lens)

    @staticmethod
    def _names(blob: bytes, n: int, lens: tuple[int, ...]) -> list[str]:
        pos, out = 3 + 6 * n, []
        try:
            for plen in lens[:n]:
                out.append(blob[pos : pos + plen].decode())
                pos += plen
        except UnicodeDecodeError:
            raise IntegrityError("a record's PII blob is truncated or damaged") from None
        return out

    @staticmethod
    def build(entries: Sequence[tuple[str, bytes]]) -> bytes:
        """A blob from (path, nonce + ciphertext) pairs: the inverse of `entries`."""
        return PiiBlob._pack(
            [p.encode() for p, _ in entries], b"".join(s[:_NONCE] for _, s in entries), [s[_NONCE:] for _, s in entries]
        )

    @staticmethod
    def _pack(paths: list[bytes], nonces: bytes, cts: list[bytes]) -> bytes:
        n = len(paths)
        header = struct.pack(f"<BH{n}H{n}I", _FORMAT, n, *map(len, paths), *map(len, cts))
        return b"".join([header, *paths, nonces, *cts])


class FieldCipher:
    """Seals and opens the PII fields of records of one tenant under one key version."""

    __slots__ = ("_aead", "_tenant_prefix", "version")

    def __init__(self, key: bytes, tenant_id: str, version: int) -> None:
        self._aead = AESGCM(key)
        self._tenant_prefix = b"sv1\x1f" + tenant_id.encode() + b"\x1f"
        self.version = version

    def seal(self, record_id: str, fields: Sequence[tuple[str, bytes]]) -> bytes:
        """One blob holding each (path, plaintext bytes) pair as its own ciphertext."""
        return self._seal(record_id, [p for p, _ in fields], [v for _, v in fields])

    def seal_values(self, record_id: str, fields: Sequence[tuple[str, Any]]) -> bytes:
        """Like `seal`, for JSON values (encoded with `encode_value`, inline for strings)."""
        plain = [b"s" + v.encode() if type(v) is str else encode_value(v) for _, v in fields]
        return self._seal(record_id, [p for p, _ in fields], plain)

    def _seal(self, record_id: str, paths: list[str], plain: list[bytes]) -> bytes:
        n = len(paths)
        if n == 0:
            return b""
        raw = os.urandom(_NONCE * n)  # one syscall per record, not per field
        nonces = [raw[i : i + _NONCE] for i in range(0, _NONCE * n, _NONCE)]
        pbs = [p.encode() for p in paths]
        ad_prefix = self._tenant_prefix + record_id.encode() + b"\x1f"
        cts = list(map(self._aead.encrypt, nonces, plain, [ad_prefix + pb for pb in pbs]))
        return PiiBlob._pack(pbs, raw, cts)

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
