"""The `sagevault` command line (Typer + Rich): the app and its shared helpers in `_app`, one
module per command group. Importing this package registers every command."""

from __future__ import annotations

from . import access, audit, backup, connector, deletion, incidents, jobs, monitor, retention, serve, vault
from ._app import app, main

__all__ = [
    "access",
    "app",
    "audit",
    "backup",
    "connector",
    "deletion",
    "incidents",
    "jobs",
    "main",
    "monitor",
    "retention",
    "serve",
    "vault",
]
