"""Roles and kill switches: the vocabulary of least privilege.

A scope (`sagevault.identity.Scope`) is one permission. A role is a named bundle of scopes made
for a job; the roles that reveal PII also name the purposes they reveal it for. A grant binds a
principal to one role for a set of tenants, optionally in a time window.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sagevault.catalog import Purpose
from sagevault.identity import Scope

# Scopes that act on no particular tenant: a grant must cover every tenant ("*") to give them.
DEPLOYMENT_SCOPES = frozenset(
    {
        Scope.USERS_ADMIN,
        Scope.AUDIT_READ,
        Scope.ALARMS_READ,
        Scope.ALARMS_MANAGE,
        Scope.INCIDENTS_READ,
        Scope.INCIDENTS_MANAGE,
        Scope.DELETION_READ,
        Scope.DELETION_MANAGE,
        Scope.RETENTION_READ,
        Scope.RETENTION_MANAGE,
        Scope.BACKUPS_READ,
        Scope.BACKUPS_MANAGE,
        Scope.GOVERNANCE_READ,
        Scope.GOVERNANCE_MANAGE,
    }
)

# Scopes that decrypt PII: they need a purpose the role allows (and the catalog, per field).
PURPOSE_SCOPES = frozenset({Scope.PII_REVEAL, Scope.PII_EXPORT, Scope.RECORDS_SEARCH})


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    description: str
    scopes: frozenset[Scope]
    purposes: frozenset[Purpose] = frozenset()

    @property
    def sensitive(self) -> bool:
        return any(s.sensitive for s in self.scopes)


def _role(name: str, description: str, scopes: set[Scope], purposes: set[Purpose] | None = None) -> Role:
    return Role(name, description, frozenset(scopes), frozenset(purposes or ()))


ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        _role("viewer", "sees orders with PII masked", {Scope.RECORDS_READ}),
        _role(
            "fulfilment",
            "ships orders: reveals names, addresses and phones for fulfilment",
            {Scope.RECORDS_READ, Scope.RECORDS_SEARCH, Scope.PII_REVEAL},
            {Purpose.FULFILMENT},
        ),
        _role(
            "tax",
            "remits and invoices tax: reveals and exports tax data",
            {Scope.RECORDS_READ, Scope.RECORDS_SEARCH, Scope.PII_REVEAL, Scope.PII_EXPORT},
            {Purpose.TAX_REMITTANCE, Purpose.TAX_INVOICING},
        ),
        _role(
            "security-officer",
            "reads the security log, handles alarms and incidents, checks keys, pulls the kill switches",
            {
                Scope.AUDIT_READ,
                Scope.ALARMS_READ,
                Scope.ALARMS_MANAGE,
                Scope.INCIDENTS_READ,
                Scope.INCIDENTS_MANAGE,
                Scope.RECORDS_READ,
                Scope.KEYS_READ,
                Scope.KILLSWITCH_OPERATE,
            },
        ),
        _role(
            "operator",
            "runs the vault: tenants, SP-API sync, key rotation, deletion",
            {
                Scope.TENANTS_ADMIN,
                Scope.RECORDS_INGEST,
                Scope.RECORDS_READ,
                Scope.KEYS_READ,
                Scope.KEYS_ROTATE,
                Scope.TENANTS_SHRED,
                Scope.KILLSWITCH_OPERATE,
            },
        ),
        _role(
            "privacy-officer",
            "carries out deletion and return requests and buyers' rights; retention, holds and backups",
            {
                Scope.DELETION_READ,
                Scope.DELETION_MANAGE,
                Scope.RETENTION_READ,
                Scope.RETENTION_MANAGE,
                Scope.BACKUPS_READ,
                Scope.BACKUPS_MANAGE,
                Scope.RECORDS_READ,
                Scope.RECORDS_SEARCH,
                Scope.PII_EXPORT,
                Scope.TENANTS_SHRED,
            },
            {Purpose.LEGAL},
        ),
        _role(
            "compliance",
            "keeps the asset inventory, the ROPA, access reviews, vulnerabilities and policies; reads the "
            "DPP report and the state behind it; never sees PII",
            {
                Scope.GOVERNANCE_READ,
                Scope.GOVERNANCE_MANAGE,
                Scope.AUDIT_READ,
                Scope.ALARMS_READ,
                Scope.INCIDENTS_READ,
                Scope.DELETION_READ,
                Scope.RETENTION_READ,
                Scope.BACKUPS_READ,
                Scope.KEYS_READ,
            },
        ),
        _role(
            "admin",
            "manages accounts, grants and allow-lists; never sees PII",
            {Scope.USERS_ADMIN, Scope.AUDIT_READ, Scope.KILLSWITCH_OPERATE},
        ),
    )
}


class KillSwitch(StrEnum):
    """Switches an operator flips to stop a kind of work at once, for one tenant or all."""

    PII_ACCESS = "pii-access"
    SP_API_SYNC = "sp-api-sync"
    EXPORTS = "exports"


# Which switches stop which scope.
SWITCHED: dict[Scope, tuple[KillSwitch, ...]] = {
    Scope.PII_REVEAL: (KillSwitch.PII_ACCESS,),
    Scope.PII_EXPORT: (KillSwitch.PII_ACCESS, KillSwitch.EXPORTS),
    Scope.RECORDS_SEARCH: (KillSwitch.PII_ACCESS,),
    Scope.RECORDS_INGEST: (KillSwitch.SP_API_SYNC,),
}
ALL_TENANTS = "*"
