"""The vault: Amazon Information stored with PII encrypted per tenant and per field."""

from __future__ import annotations

from ._access import AccessGate, Action, LocalOperatorGate, Principal
from ._keyring import KeyVersionInfo, TenantKeyring
from ._marketplaces import MARKETPLACES
from ._operations import ORDER_ID, Operation, SourceDocument, extract, recognise
from ._service import (
    IngestResult,
    OrderView,
    RecordView,
    RevealedField,
    SearchHit,
    ShredReceipt,
    Tenant,
    Vault,
)

__all__ = [
    "MARKETPLACES",
    "ORDER_ID",
    "AccessGate",
    "Action",
    "IngestResult",
    "KeyVersionInfo",
    "LocalOperatorGate",
    "Operation",
    "OrderView",
    "Principal",
    "RecordView",
    "RevealedField",
    "SearchHit",
    "ShredReceipt",
    "SourceDocument",
    "Tenant",
    "TenantKeyring",
    "Vault",
    "extract",
    "recognise",
]
