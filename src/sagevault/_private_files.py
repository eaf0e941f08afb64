"""The data dir is private to the account that runs SageVault, whole: its directories 0700, its
files 0600 (the databases hold password hashes, wrapped keys, blind-index tokens, the security
log and Amazon Information; the certificates and the verification key beside them are public, and
handed out as copies)."""

from __future__ import annotations

import stat
from pathlib import Path

from sagevault.errors import ConfigError


def loose_entries(data_dir: Path) -> list[tuple[Path, int]]:
    """Everything under `data_dir` (itself included) that others could read, write or enter."""
    if not data_dir.exists():
        return []
    loose: list[tuple[Path, int]] = []
    for path in [data_dir, *sorted(data_dir.rglob("*"))]:
        try:
            st = path.lstat()
        except FileNotFoundError:  # removed while walking (a -journal file)
            continue
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            loose.append((path, mode))
    return loose


def check_private(data_dir: Path) -> None:
    """Refuse to run on a data dir that others can read, with the command that fixes it."""
    loose = loose_entries(data_dir)
    if loose:
        path, mode = loose[0]
        more = f" and {len(loose) - 1} more" if len(loose) > 1 else ""
        raise ConfigError(
            f"refusing to start: {path} is open to other accounts (mode {mode:04o}){more}; the data dir holds "
            f"keys, password hashes and the security log. Fix it with: chmod -R go-rwx {data_dir}"
        )
