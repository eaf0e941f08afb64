"""The words of the catalog: documents, purposes, retention rules, and one catalogued field."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Document(StrEnum):
    """A kind of stored document: one SP-API response object for one order."""

    V0_ORDER = "orders-v0:Order"
    V0_BUYER_INFO = "orders-v0:OrderBuyerInfo"
    V0_ADDRESS = "orders-v0:OrderAddress"
    V0_ORDER_ITEMS = "orders-v0:OrderItems"
    V0_ORDER_ITEMS_BUYER_INFO = "orders-v0:OrderItemsBuyerInfo"
    V0_REGULATED_INFO = "orders-v0:OrderRegulatedInfo"
    ORDER_2026 = "orders-2026-01-01:Order"


class Purpose(StrEnum):
    """Why PII may be revealed (Amazon DPP: fulfil orders, remit taxes, tax invoices, legal duties)."""

    FULFILMENT = "fulfilment"
    TAX_REMITTANCE = "tax_remittance"
    TAX_INVOICING = "tax_invoicing"
    LEGAL = "legal"


class Retention(StrEnum):
    PII_AFTER_DELIVERY = "pii:30-days-after-delivery"
    NON_PII = "non-pii:18-months"


@dataclass(frozen=True, slots=True)
class CatalogField:
    document: Document
    path: str
    pii: bool
    category: str
    purposes: frozenset[Purpose]
    retention: Retention
    search: str | None = None

    @property
    def searchable(self) -> bool:
        return self.search is not None
