"""Deletion, return and retention (DPP 9, and the retention of DPP 1): requests from Amazon,
sellers and buyers carried out within 72 hours (return bundle, crypto-shred or logical delete,
verification, a signed certificate), the live copies (backups, exports, bundles) tracked until
they are gone, backups that re-apply every deletion when restored, and the retention purges.

`MIGRATIONS` is where this package's tables are created.
"""

from __future__ import annotations

from pathlib import Path

from ._copies import KINDS, LiveCopies, LiveCopy
from ._retention import Retention, RetentionRun
from ._schema import deletion_metadata, deletion_requests, legal_holds, live_copies

MIGRATIONS = Path(__file__).with_name("migrations")

__all__ = [
    "KINDS",
    "MIGRATIONS",
    "LiveCopies",
    "LiveCopy",
    "Retention",
    "RetentionRun",
    "deletion_metadata",
    "deletion_requests",
    "legal_holds",
    "live_copies",
]
