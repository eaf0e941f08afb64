"""Compliance: every requirement of the DPP policy profile (the nine clauses of the seed policy
and Amazon's current numbers) evaluated on the live deployment, rendered as JSON, Markdown or a
self-contained HTML page, and the signed evidence pack an auditor checks offline.

Read-only over every other package: it reads their services, settings and (for counts only)
their tables, and writes nothing but its own security events (compliance:report:create,
compliance:pack:create). A requirement whose evidence cannot be read is ATTENTION, never PASS."""

from __future__ import annotations

from ._model import REFERENCE, Item, Report, Result, Status, render, render_html, render_json, render_markdown
from ._pack import PACK_FORMAT, Pack, build_pack, embedded_key_sha256, verify_pack
from ._report import REQUIREMENTS, Requirement, evaluate, register_own_assets

__all__ = [
    "PACK_FORMAT",
    "REFERENCE",
    "REQUIREMENTS",
    "Item",
    "Pack",
    "Report",
    "Requirement",
    "Result",
    "Status",
    "build_pack",
    "embedded_key_sha256",
    "evaluate",
    "register_own_assets",
    "render",
    "render_html",
    "render_json",
    "render_markdown",
    "verify_pack",
]
