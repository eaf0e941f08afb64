"""Key files on disk: created once with mode 0600 in a 0700 directory, and refused when group or
others can reach them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sagevault.config import make_private_dir
from sagevault.errors import ConfigError, SageVaultError


def write_secret_file(path: Path, data: bytes, *, what: str, exists_error: type[SageVaultError]) -> None:
    """Write `data` to a new file only this user can read; never overwrite one."""
    make_private_dir(path.parent)
    os.chmod(path.parent, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise exists_error(f"{what} already exists at {path}; SageVault never overwrites one") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def read_secret_file(path: Path, *, what: str, missing_error: type[SageVaultError], advice: str) -> bytes:
    """The file's bytes, or a clear refusal: missing (with `advice`) or readable by others."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise missing_error(f"{what} {path} is missing; {advice}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"refusing to start: {what} {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}`"
        )
    return path.read_bytes()
