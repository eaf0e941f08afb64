"""The web console (`/console`): server-rendered pages for the security and compliance people and for
fulfilment, a face of the same service as the API (same authentication, scopes, audited domain calls).
docs/console.md says what it holds. Each section is a module with its own router, gathered here."""

from __future__ import annotations

from fastapi import APIRouter

from . import _alarms, _audit, _dashboard, _deletions, _incidents, _pages, _reviews
from ._render import CONSOLE_CSP, PREFIX, STATIC, error_page

router = APIRouter(include_in_schema=False)
for _section in (_pages, _dashboard, _alarms, _incidents, _deletions, _reviews, _audit):
    router.include_router(_section.router)

__all__ = ["CONSOLE_CSP", "PREFIX", "STATIC", "error_page", "router"]
