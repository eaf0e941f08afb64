"""The seam where access control decides. Every vault operation names its principal and, for
reads of PII, its purpose; the vault asks an `AccessGate` before it touches data.

`sagevault.access.AccessControl` is the real gate (scopes, tenant grants, purposes, allow-lists,
kill switches). `LocalOperatorGate` admits the local operator (who already holds the master key
file) and nobody else; it is what a vault built without an access layer gets.
"""

from __future__ import annotations

import getpass
import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from sqlalchemy.engine import Connection

from sagevault.audit import Channel
from sagevault.catalog import Purpose
from sagevault.errors import AccessDenied

_POSIX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_DIGIT_RUN = re.compile(r"\d[\d_-]{5,}")
_LETTERS = "bcdfghjkmnpqrstvwxz"


class Action(StrEnum):
    TENANTS_ADMIN = "tenants:admin"
    RECORDS_INGEST = "records:ingest"
    RECORDS_READ = "records:read"
    RECORDS_SEARCH = "records:search"
    PII_REVEAL = "pii:reveal"
    KEYS_READ = "keys:read"
    KEYS_ROTATE = "keys:rotate"
    TENANTS_SHRED = "tenants:shred"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who acts: a pseudonymous id (never an e-mail address), a kind, the channel, and for
    requests from the network the source address and the most its credential may do."""

    id: str
    kind: Literal["operator", "person", "service"]
    channel: Channel = Channel.LIBRARY
    source_ip: str | None = None
    scopes: frozenset[str] | None = None  # an API key's scopes; None = what the grants give

    @classmethod
    def local_operator(cls, channel: Channel = Channel.CLI) -> Principal:
        """The operator at this machine's shell: `operator:<login>` when the login is a plain
        POSIX name, else a pseudonym derived from it (a login could be an e-mail address, or
        hold a run of digits that reads like a phone number)."""
        user = getpass.getuser()
        if not _POSIX_USER.fullmatch(user) or _DIGIT_RUN.search(user):
            # Letters only: an id with a run of digits could look like a phone number, and the
            # security log refuses those.
            digest = hashlib.sha256(user.encode()).digest()
            user = "u" + "".join(_LETTERS[b % len(_LETTERS)] for b in digest[:12])
        return cls(id=f"operator:{user}", kind="operator", channel=channel)


class AccessGate(Protocol):
    def check(
        self,
        conn: Connection,
        principal: Principal,
        action: Action,
        tenant_id: str | None,
        *,
        purpose: Purpose | None = None,
        fields: Collection[str] = (),
    ) -> None:
        """Return if allowed; raise AccessDenied otherwise."""
        ...


class LocalOperatorGate:
    """Admits operators on this machine; refuses every other principal."""

    def check(
        self,
        conn: Connection,
        principal: Principal,
        action: Action,
        tenant_id: str | None,
        *,
        purpose: Purpose | None = None,
        fields: Collection[str] = (),
    ) -> None:
        if principal.kind != "operator":
            raise AccessDenied(
                f"{principal.id} may not {action} here: this deployment has no access rules for "
                "people or services yet, so only the local operator is admitted"
            )
