"""The HTTPS service: FastAPI on uvicorn, TLS only (issue #5)."""

from __future__ import annotations

from ._app import create_app, openapi_document
from ._deps import API
from ._server import listen, make_server

__all__ = ["API", "create_app", "listen", "make_server", "openapi_document"]
