"""`sagevault retention`: what goes when, legal holds (being built)."""

from __future__ import annotations

from ._app import group

retention_app = group("retention", "Retention: PII 30 days after delivery, records after 18 months; legal holds.")
