"""Unwrapped key objects, kept in memory for a bounded time."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class KeyCache(Generic[V]):
    """A small LRU cache whose entries expire after `ttl` seconds.

    Holding `AESGCM` objects (not raw bytes) both bounds how long a key stays in memory and
    saves the key schedule on every call. `evict_tenant` is how a shred drops every copy.
    """

    def __init__(self, ttl: float, maxsize: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._maxsize = maxsize
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._gone: set[Hashable] = set()  # shredded tenants: never cached again in this process
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] <= self._clock():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            if isinstance(key, tuple) and key and key[0] in self._gone:
                return  # a reader whose snapshot predates the shred must not bring the key back
            self._items[key] = (self._clock() + self._ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self._maxsize:
                self._items.popitem(last=False)

    def evict_tenant(self, tenant_id: str, *, forever: bool = False) -> None:
        """Drop every entry whose key is a tuple starting with `tenant_id`; with `forever` (a
        shred), refuse to cache that tenant's keys from now on, in the same lock, so no put racing
        the shred can land after it."""
        with self._lock:
            if forever:
                self._gone.add(tenant_id)
            for key in [k for k in self._items if isinstance(k, tuple) and k and k[0] == tenant_id]:
                del self._items[key]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"KeyCache(entries={len(self._items)}, ttl={self._ttl}, values=<redacted>)"
