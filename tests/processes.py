"""Real processes: the `sagevault` command as installed, a server on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from commands import SV, environment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, value in environment(tmp, **extra).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_process(tmp: Path, *args: str, stdin: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SV, *args],
        cwd=tmp,
        env=process_env(tmp, **extra),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def wait_for_tls(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    told = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
    raise AssertionError(f"the server did not come up (exit code {proc.poll()}): {told}")
