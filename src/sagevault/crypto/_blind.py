"""Blind index: equality search on normalised PII without storing it.

token = HMAC-SHA256(K_kind, normalise(kind, value))[:16], where K_kind is derived per search kind
from the tenant's blind-index key, so a token of one kind never matches another kind and
tokens of different tenants never match each other.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from typing import Any

from sagevault.errors import shown

SEARCH_KINDS = ("email", "phone", "postal_code", "name")
TOKEN_BYTES = 16

_NOT_DIGIT = re.compile(r"\D+")
_SPACE_DASH = re.compile(r"[\s\-]+")
_SPACES = re.compile(r"\s+")


def normalise(kind: str, value: str) -> str:
    """The canonical form two spellings of the same value share."""
    if kind == "email":
        return value.strip().lower()
    if kind == "phone":
        return _NOT_DIGIT.sub("", value)
    if kind == "postal_code":
        return _SPACE_DASH.sub("", value).upper()
    if kind == "name":
        return _SPACES.sub(" ", unicodedata.normalize("NFKC", value)).strip().casefold()
    raise ValueError(f"unknown search kind {shown(kind)}; use one of {', '.join(SEARCH_KINDS)}")


class BlindIndex:
    """HMAC-SHA256 (RFC 2104) with the inner and outer pads of each kind's key hashed once, so a
    token costs two SHA-256 state copies instead of a full HMAC key set-up."""

    __slots__ = ("_pads", "version")

    def __init__(self, key: bytes, version: int = 1) -> None:
        self.version = version  # the tenant's index key version: records say which made their tokens
        self._pads: dict[str, tuple[Any, Any]] = {}
        for kind in SEARCH_KINDS:
            sub = hmac.digest(key, b"sagevault blind index\x00" + kind.encode(), "sha256").ljust(64, b"\x00")
            self._pads[kind] = (
                hashlib.sha256(bytes(b ^ 0x36 for b in sub)),
                hashlib.sha256(bytes(b ^ 0x5C for b in sub)),
            )

    def token(self, kind: str, value: str) -> bytes:
        inner, outer = self._pads[kind]
        inner = inner.copy()
        inner.update(normalise(kind, value).encode())
        outer = outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TOKEN_BYTES]  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"BlindIndex(version={self.version}, key=<redacted>)"
