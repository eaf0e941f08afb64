"""`sagevault backup`: encrypted backups tracked as live copies (being built)."""

from __future__ import annotations

from ._app import group

backup_app = group("backup", "Encrypted backups, tracked until they expire; a restore re-applies every deletion.")
