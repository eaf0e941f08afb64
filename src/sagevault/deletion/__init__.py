"""Deletion, return and retention (DPP 9, and the retention of DPP 1): requests from Amazon,
sellers and buyers carried out within 72 hours (return bundle, crypto-shred or logical delete,
verification, a signed certificate), the live copies (backups, exports, bundles) tracked until
they are gone, backups that re-apply every deletion when restored, and the retention purges.

`MIGRATIONS` is where this package's tables are created.
"""

from __future__ import annotations

from pathlib import Path

from ._backup import Backup, Backups, Restored
from ._backup_file import Manifest
from ._bundle import Bundle, recipient_of, write_bundle
from ._buyer import BuyerRights
from ._certificate import page as certificate_page
from ._certificate import verify as verify_certificate
from ._copies import KINDS, LiveCopies, LiveCopy
from ._requests import SOURCES, DeletionRequest, Deletions
from ._retention import LegalHold, Retention, RetentionRun, RetentionStatus, parse_time
from ._schema import deletion_metadata, deletion_requests, legal_holds, live_copies

MIGRATIONS = Path(__file__).with_name("migrations")

__all__ = [
    "KINDS",
    "MIGRATIONS",
    "SOURCES",
    "Backup",
    "Backups",
    "Bundle",
    "BuyerRights",
    "DeletionRequest",
    "Deletions",
    "LegalHold",
    "LiveCopies",
    "LiveCopy",
    "Manifest",
    "Restored",
    "Retention",
    "RetentionRun",
    "RetentionStatus",
    "certificate_page",
    "deletion_metadata",
    "deletion_requests",
    "legal_holds",
    "live_copies",
    "parse_time",
    "recipient_of",
    "verify_certificate",
    "write_bundle",
]
