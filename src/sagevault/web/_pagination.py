"""Pagination: `?limit=N&cursor=C` (`PageQuery`). A cursor is opaque to clients: the position after
the last item of the previous page, signed (HMAC-SHA256 under a key the deployment derives from its
access secret, the same in every worker), so a cursor the API did not give out is a 400."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from sagevault import errors

T = TypeVar("T")

MAX_PAGE = 500


# The key cursors are signed with: set for each request by the app (`web._app`), from the deployment.
CURSOR_KEY: ContextVar[bytes] = ContextVar("sagevault_cursor_key")
_NOT_OURS = "the cursor is not one this API gave out; start again without one"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: str) -> str:
    return _b64(hmac.digest(CURSOR_KEY.get(), b"sagevault-cursor\0" + payload.encode(), "sha256")[:16])


def encode_cursor(position: Any) -> str:
    payload = _b64(json.dumps(position, separators=(",", ":")).encode())
    return f"{payload}.{_mac(payload)}"


def decode_cursor(cursor: str | None) -> Any:
    if cursor is None:
        return None
    payload, _, mac = cursor.partition(".")
    if not hmac.compare_digest(mac.encode(), _mac(payload).encode()):
        raise errors.PayloadError(_NOT_OURS)
    try:
        return json.loads(_unb64(payload))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise errors.PayloadError(_NOT_OURS) from None


def checked_position(value: Any, kind: type[T]) -> T | None:
    if value is None:
        return None
    if kind is int:
        ok = type(value) is int and 0 <= value < 2**63
    elif kind is str:
        ok = type(value) is str and len(value) <= 256 and value.isprintable()  # no NUL, no lone surrogate
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise errors.PayloadError(_NOT_OURS)
    return value  # type: ignore[no-any-return]


class PageQuery(BaseModel):
    """`?limit=&cursor=`, validated (a bad one is a 400/422, never a 500), and no other query
    parameter: a mistyped filter is refused (422), not silently ignored. Routes with filters
    extend it. Answers are {"items": [...], "next_cursor": C or null}."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="Items per page.")
    cursor: str | None = Field(None, max_length=512, description="`next_cursor` of the previous page.")

    def position(self, kind: type[T]) -> T | None:
        """The decoded cursor, checked to be a value this API could have given out: a sequence
        number (an int the database can hold) or an id (short, encodable text without NUL)."""
        return checked_position(decode_cursor(self.cursor), kind)

    def keyset(self, fetched: Sequence[T], key: Callable[[T], Any], render: Callable[[T], Any]) -> dict[str, Any]:
        """The page of `fetched`: up to `limit + 1` items after `position()`, ordered by `key`
        (whose value is the next cursor); the extra item only says that there is more."""
        shown, more = fetched[: self.limit], len(fetched) > self.limit
        return {"items": [render(i) for i in shown], "next_cursor": encode_cursor(key(shown[-1])) if more else None}

    def of(self, items: Iterable[T], key: Callable[[T], Any], render: Callable[[T], Any]) -> dict[str, Any]:
        """One page of a whole list held in memory, sorted here by `key` (Python's order, whatever
        the database's collation was)."""
        after = decode_cursor(self.cursor)
        ordered = sorted(items, key=key)
        if after is not None:
            try:
                ordered = [i for i in ordered if key(i) > after]
            except TypeError:
                raise errors.PayloadError(_NOT_OURS) from None
        return self.keyset(ordered[: self.limit + 1], key, render)
