"""`sagevault` commands run in this process through Typer's runner: the same app, options and
exit codes as the installed command, without starting an interpreter per command. A few tests
(tests/cli/test_entry_point.py, test_serve.py) run the real process."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from sagevault.cli import app

SV = [sys.executable, "-c", "from sagevault.cli import main; main()"]  # the real process, where one is needed

# Argon2id at OWASP's floor (the least the settings accept) keeps log-in commands quick.
FAST_HASHING = {
    "SAGEVAULT_PASSWORD_HASH_MEMORY_KIB": "19456",
    "SAGEVAULT_PASSWORD_HASH_TIME_COST": "2",
    "SAGEVAULT_PASSWORD_HASH_PARALLELISM": "1",
}


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def environment(tmp: Path, **extra: str) -> dict[str, str | None]:
    """The environment a command runs with: the data dir under `tmp`, wide plain output, no
    configuration file from elsewhere."""
    return {
        "SAGEVAULT_DATA_DIR": str(tmp / "var"),
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "SAGEVAULT_CONFIG": None,
        **FAST_HASHING,
        **extra,
    }


def run(tmp: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> Ran:
    """`sagevault ARGS` in `tmp` with `stdin`: its exit code, standard output and standard error."""
    with _cwd(tmp):
        result = CliRunner().invoke(
            app, list(args), input=stdin, env=environment(tmp, **(env or {})), catch_exceptions=False
        )
    return Ran(result.exit_code, result.stdout, result.stderr)
