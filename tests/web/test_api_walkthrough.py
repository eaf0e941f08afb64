"""docs/api.md's curl walk-through, run as written (bash + curl) against `sagevault serve` on a
fresh data dir loaded as `make run` loads it: the guide a new user follows has to work."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from processes import free_port as _free_port
from processes import wait_for_tls as _wait_for_tls

DOCS = Path(__file__).parents[2] / "docs" / "api.md"


def _walkthrough() -> str:
    section = DOCS.read_text().split("## curl against the embedded deployment", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "docs/api.md lost its curl walk-through"
    return match.group(1)


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="needs curl and bash")
def test_the_curl_walkthrough_of_docs_api_md_works_as_written(tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)  # the guide runs .venv/bin/...
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGEVAULT_")} | {"NO_COLOR": "1"}
    sv = str(tmp_path / ".venv" / "bin" / "sagevault")
    demo = subprocess.run([sv, "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert demo.returncode == 0, demo.stderr
    port = _free_port()
    server = subprocess.Popen(
        [sv, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_tls(port, server)
        run = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", _walkthrough()],
            cwd=tmp_path,
            timeout=300,
            env=env | {"API": f"https://127.0.0.1:{port}/api/v1"},
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    revealed = [line for line in lines if line.startswith('{"fields"')]
    assert len(revealed) == 1 and '"path":"ShippingAddress.City"' in revealed[0].replace(" ", "")
    assert "403" in lines and lines[-1] == "plaintext: no answer (curl exit 52)"
