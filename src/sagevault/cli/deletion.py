"""`sagevault deletion`: deletion and return requests, buyers' rights, certificates (being built)."""

from __future__ import annotations

from ._app import group

deletion_app = group("deletion", "Deletion and return requests (72 hours), buyers' rights, signed certificates.")
