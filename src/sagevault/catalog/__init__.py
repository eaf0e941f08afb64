"""The field catalog: the one place that decides what is PII.

Every field of the SP-API order payloads SageVault knows (Orders v0 and Orders 2026-01-01) is one
row: document, JSON path, PII or not, a data category (fideslang-style dot path), the purposes
for which it may be revealed, its retention rule and, for searchable PII, its blind-index kind.
A field that is not here is treated as PII (fail closed). The record of processing is generated
from this table.
"""

from __future__ import annotations

from ._catalog import CATALOG, Catalog, Tree, generic_path, path_tokens
from ._model import CatalogField, Document, Purpose, Retention

__all__ = [
    "CATALOG",
    "Catalog",
    "CatalogField",
    "Document",
    "Purpose",
    "Retention",
    "Tree",
    "generic_path",
    "path_tokens",
]
