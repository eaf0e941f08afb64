"""The installed `sagevault` command, as a shell runs it: a real process of the console script
(the other CLI tests run the same app in this process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from processes import process_env

SAGEVAULT = Path(sys.executable).with_name("sagevault")


def _run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SAGEVAULT), *args], cwd=tmp, env=process_env(tmp), capture_output=True, text=True, timeout=120, check=False
    )


def test_the_console_script_runs_commands_and_says_what_went_wrong_in_one_line(tmp_path: Path) -> None:
    assert SAGEVAULT.is_file(), "the package's console script is not installed beside this interpreter"
    helped = _run(tmp_path, "--help")
    assert helped.returncode == 0
    assert all(group in helped.stdout for group in ("tenants", "keys", "audit", "users", "grants", "jobs", "serve"))
    early = _run(tmp_path, "tenants", "list")
    assert early.returncode == 2 and "run `sagevault init` first" in early.stderr
    assert "Traceback" not in early.stderr and early.stderr.count("\n") == 1
    made = _run(tmp_path, "init")
    assert made.returncode == 0 and "initialised" in made.stdout
    assert (tmp_path / "var" / "keys" / "master.key").stat().st_mode & 0o777 == 0o600
    assert _run(tmp_path, "audit", "verify").returncode == 0
