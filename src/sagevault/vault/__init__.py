"""The vault: Amazon Information stored with PII encrypted per tenant and per field.

`Vault` is the service; `AccessGate` is what it asks before it touches data (access implements
it; the vault does not import access); `MIGRATIONS` is where its tables are created.
"""

from __future__ import annotations

from pathlib import Path

from ._access import AccessGate, LocalOperatorGate
from ._keyring import KeyVersionInfo, TenantKeyring
from ._marketplaces import MARKETPLACES
from ._operations import ORDER_ID, Operation, SourceDocument, extract, recognise
from ._rights import Exported, RecordRights, Scan
from ._rotation import KeyLifecycle
from ._schema import vault_metadata
from ._secrets import SecretUnreadable, TenantSecrets
from ._service import MAX_BATCH_REVEAL, Vault
from ._views import (
    BatchReveal,
    IngestResult,
    OrderSummary,
    OrderView,
    PurgeStep,
    RecordView,
    RetentionDays,
    RevealedField,
    RewrapStep,
    RotationStep,
    SearchHit,
    ShredReceipt,
    Tenant,
)

MIGRATIONS = Path(__file__).with_name("migrations")

__all__ = [
    "MARKETPLACES",
    "MAX_BATCH_REVEAL",
    "MIGRATIONS",
    "ORDER_ID",
    "AccessGate",
    "BatchReveal",
    "Exported",
    "IngestResult",
    "KeyLifecycle",
    "KeyVersionInfo",
    "LocalOperatorGate",
    "Operation",
    "OrderSummary",
    "OrderView",
    "PurgeStep",
    "RecordRights",
    "RecordView",
    "RetentionDays",
    "RevealedField",
    "RewrapStep",
    "RotationStep",
    "Scan",
    "SearchHit",
    "SecretUnreadable",
    "ShredReceipt",
    "SourceDocument",
    "Tenant",
    "TenantKeyring",
    "TenantSecrets",
    "Vault",
    "extract",
    "recognise",
    "vault_metadata",
]
