"""Directories SageVault creates are private to the account that runs it (0700), every level it
creates, whatever the process's umask (`Path.mkdir(parents=True, mode=...)` applies the mode to
the last level only)."""

from __future__ import annotations

from pathlib import Path


def make_private_dir(path: Path) -> None:
    missing: list[Path] = []
    here = path
    while not here.exists():
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)  # mkdir's mode passes through the umask
