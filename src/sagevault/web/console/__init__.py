"""The web console (`/console`): server-rendered pages for the security and compliance people and for
fulfilment, a face of the same service as the API (same authentication, scopes, audited domain calls).
docs/console.md says what this slice holds and what is still to come."""

from __future__ import annotations

from ._pages import router
from ._render import CONSOLE_CSP, PREFIX, STATIC, error_page

__all__ = ["CONSOLE_CSP", "PREFIX", "STATIC", "error_page", "router"]
