"""Blind index: equality search on normalised PII without storing it.

token = HMAC-SHA256(K_kind, normalise(kind, value))[:16], where K_kind is derived per search kind
from the tenant's blind-index key, so a token of one kind never matches another kind and
tokens of different tenants never match each other.
"""

from __future__ import annotations

import hmac
import re
import unicodedata

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
    raise ValueError(f"unknown search kind {kind!r}; use one of {', '.join(SEARCH_KINDS)}")


class BlindIndex:
    __slots__ = ("_keys",)

    def __init__(self, key: bytes) -> None:
        self._keys = {
            kind: hmac.digest(key, b"sagevault blind index\x00" + kind.encode(), "sha256") for kind in SEARCH_KINDS
        }

    def token(self, kind: str, value: str) -> bytes:
        return hmac.digest(self._keys[kind], normalise(kind, value).encode(), "sha256")[:TOKEN_BYTES]

    def __repr__(self) -> str:
        return "BlindIndex(key=<redacted>)"
