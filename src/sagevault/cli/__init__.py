"""The `sagevault` command line (Typer + Rich): the app and its shared helpers in `_app`, one
module per command group. Importing this package registers every command."""

from __future__ import annotations

from . import (
    access,
    audit,
    backup,
    compliance,
    connector,
    deletion,
    governance,
    incidents,
    jobs,
    monitor,
    retention,
    reviews,
    serve,
    vault,
)
from ._app import app, main

__all__ = [
    "access",
    "app",
    "audit",
    "backup",
    "compliance",
    "connector",
    "deletion",
    "governance",
    "incidents",
    "jobs",
    "main",
    "monitor",
    "retention",
    "reviews",
    "serve",
    "vault",
]
