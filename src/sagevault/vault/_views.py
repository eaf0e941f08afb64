"""What the vault hands back: tenants, masked views, revealed fields, search hits, ingest
results, and the progress of a rotation or a purge. Revealed values never appear in a repr."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sagevault.catalog import CatalogField, Document


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    marketplaces: list[str]
    region: str
    created_at: datetime
    shredded_at: datetime | None


@dataclass(slots=True)
class IngestResult:
    records: int = 0
    orders: int = 0
    replaced: int = 0
    pii_fields: int = 0
    unknown_fields: int = 0
    documents: Counter[str] = field(default_factory=Counter)
    unknown_paths: Counter[str] = field(default_factory=Counter)

    def add(self, part: IngestResult) -> None:
        """Fold the result of one more batch of the same ingest into this one (orders are
        counted by the caller, who sees every batch's order ids)."""
        self.records += part.records
        self.replaced += part.replaced
        self.pii_fields += part.pii_fields
        self.unknown_fields += part.unknown_fields
        self.documents.update(part.documents)
        self.unknown_paths.update(part.unknown_paths)

    def counts(self) -> dict[str, int]:
        return {
            "records": self.records,
            "orders": self.orders,
            "replaced": self.replaced,
            "pii_fields": self.pii_fields,
            "unknown_fields": self.unknown_fields,
        }


@dataclass(frozen=True, slots=True)
class RecordView:
    """A stored record with every PII value replaced by a mask naming its data category."""

    record_id: int
    document: Document
    operation: str
    origin: str
    marketplace_id: str | None
    seller_id: str
    retrieved_at: datetime
    key_version: int
    pii_paths: list[str]
    unknown_fields: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OrderView:
    tenant_id: str
    order_id: str
    records: list[RecordView]


@dataclass(frozen=True, slots=True)
class OrderSummary:
    """An order as a listing shows it: ids and clear (non-PII) state only, nothing decrypted."""

    order_id: str
    record_ids: list[int]
    documents: list[Document]
    order_status: str | None
    purchased_at: str | None
    retrieved_at: datetime


@dataclass(frozen=True, slots=True)
class RevealedField:
    record_id: int
    document: Document
    path: str
    value: Any = field(repr=False)


@dataclass(frozen=True, slots=True)
class SearchHit:
    order_id: str
    record_id: int
    document: Document


@dataclass(frozen=True, slots=True)
class ShredReceipt:
    tenant_id: str
    shredded_at: datetime
    keys_destroyed: list[tuple[str, int]]
    master_key_id: str

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "shredded_at": self.shredded_at.isoformat(),
            "keys_destroyed": [f"{p}:v{v}" for p, v in self.keys_destroyed],
            "master_key_id": self.master_key_id,
            "method": "crypto-shred: every wrapped tenant key deleted and cached copy evicted; backups taken "
            "before this time keep wrapped keys until they expire (live copies <= 90 days)",
        }


def mask(f: CatalogField | None) -> str:
    return f"[PII {f.category}]" if f is not None else "[PII unknown]"


@dataclass(frozen=True, slots=True)
class RotationStep:
    """One step of a key rotation: the primary version records move to, how many moved in this
    step, how many are left, and the old versions retired (by the step that moved the last)."""

    tenant_id: str
    primary_version: int
    moved: int
    remaining: int
    retired: list[int]

    @property
    def complete(self) -> bool:
        return self.remaining == 0


@dataclass(frozen=True, slots=True)
class PurgeStep:
    """One step of the purge that follows a shred: rows deleted now, rows left."""

    tenant_id: str
    purged: int
    remaining: int


@dataclass(frozen=True, slots=True)
class RewrapStep:
    """One step of a master key rotation: the master key tenant keys are moving to, how many
    were re-wrapped in this step and how many are left."""

    master_key_id: str
    moved: int
    remaining: int

    @property
    def complete(self) -> bool:
        return self.remaining == 0


@dataclass(frozen=True, slots=True)
class BatchReveal:
    """A batch reveal: the revealed fields of each order found (in the order asked), and the
    order ids the tenant does not hold."""

    orders: dict[str, list[RevealedField]]
    missing: list[str]

    @property
    def fields(self) -> int:
        return sum(len(fs) for fs in self.orders.values())


@dataclass(frozen=True)
class RetentionDays:
    """The policy profile's retention numbers, as ingest needs them to date each record."""

    pii_after_delivery: int = 30
    records: int = 548
    delivery_margin: int = 30  # no delivery date in the payload: purchase date + this many days
