"""The seam where access control decides. Every vault operation names its principal and, for
reads of PII, its purpose; the vault asks an `AccessGate` before it touches data.

`sagevault.access.AccessControl` is the real gate (scopes, tenant grants, purposes, allow-lists,
kill switches); the vault does not import it. `LocalOperatorGate` admits the local operator (who
already holds the master key file) and nobody else; it is what a vault built without an access
layer gets.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from sqlalchemy.engine import Connection

from sagevault.catalog import Purpose
from sagevault.errors import AccessDenied
from sagevault.identity import Principal, Scope


class AccessGate(Protocol):
    # SQL of a scalar subquery giving the version of the access rules now in force, or None. The
    # reveal reads it in the statement that reads the order's rows and hands it to `check` as
    # `state`: the gate decides at that version without a statement of its own, as fresh as the
    # rows it guards.
    state_query: str | None

    def check(
        self,
        conn: Connection,
        principal: Principal,
        scope: Scope,
        tenant_id: str | None,
        *,
        purpose: Purpose | None = None,
        fields: Collection[str] = (),
        state: int | None = None,
    ) -> None:
        """Return if allowed; raise AccessDenied otherwise."""
        ...


class HiddenRecords(Protocol):
    """Records that are not the seller's (canaries): left out of listings and counts."""

    def hidden(self, conn: Connection, tenant_id: str, record_ids: Sequence[int]) -> set[int]: ...

    def count(self, conn: Connection, tenant_id: str) -> int: ...


class LocalOperatorGate:
    """Admits operators on this machine; refuses every other principal."""

    state_query: str | None = None  # no rules that change

    def check(
        self,
        conn: Connection,
        principal: Principal,
        scope: Scope,
        tenant_id: str | None,
        *,
        purpose: Purpose | None = None,
        fields: Collection[str] = (),
        state: int | None = None,
    ) -> None:
        if principal.kind != "operator":
            raise AccessDenied(
                f"{principal.id} may not use {scope} here: this deployment has no access rules for "
                "people or services yet, so only the local operator is admitted"
            )
