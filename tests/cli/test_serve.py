"""`sagevault serve` as `make run` starts it: a real process on a fresh data dir, a real client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pyotp
import pytest

from commands import SV
from conftest import OPERATOR, plaintext_answer
from processes import free_port as _free_port
from processes import wait_for_tls as _wait_for_tls
from sagevault.audit import DigestFile
from sagevault.config import load_settings
from sagevault.crypto import client_context
from sagevault.deployment import init_deployment, open_audit

REDIS = "redis://127.0.0.1:6379/0"
PASSWORD = "Quartz-Fjord-7-Lantern"


def _serve(tmp: Path, port: int, *extra: str, redis_prefix: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "SAGEVAULT_DATA_DIR": str(tmp / "var"), "COLUMNS": "80", "NO_COLOR": "1"}
    env.pop("SAGEVAULT_CONFIG", None)
    if redis_prefix is not None:  # rate counters the workers share
        env |= {"SAGEVAULT_RATE_LIMIT_STORAGE_URL": REDIS, "SAGEVAULT_RATE_LIMIT_KEY_PREFIX": redis_prefix}
    return subprocess.Popen(
        [*SV, "serve", "--port", str(port), *extra],
        cwd=tmp,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_serve_initialises_a_new_data_dir_and_answers_only_over_tls(tmp_path: Path) -> None:
    port = _free_port()
    proc = _serve(tmp_path, port, "--init")
    try:
        _wait_for_tls(port, proc)
        ca = tmp_path / "var" / "tls" / "ca.pem"
        r = httpx.get(f"https://127.0.0.1:{port}/api/v1/tenants", verify=client_context(ca), timeout=10)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert httpx.get(f"https://127.0.0.1:{port}/api/v1/openapi.json", verify=client_context(ca)).status_code == 200
        assert b"HTTP/" not in plaintext_answer(port, "/api/v1/tenants")
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode in (0, 130) and "Traceback" not in stderr, stderr  # 130: stopped by Ctrl-C
    # What the operator is told: where the API is, which CA to trust, how to make the first admin.
    assert f"https://127.0.0.1:{port}/api/v1" in stdout
    assert f"the web console: https://127.0.0.1:{port}/console" in stdout  # what `make run` prints
    assert f"--cacert {ca}" in stdout and str(ca) in stdout
    assert "sagevault users bootstrap-admin --login LOGIN --email EMAIL" in stdout


def test_serve_without_init_on_a_new_dir_or_on_a_busy_port_says_what_to_do(tmp_path: Path) -> None:
    port = _free_port()
    fresh = _serve(tmp_path, port)
    _, stderr = fresh.communicate(timeout=60)
    assert fresh.returncode != 0 and "sagevault init" in stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        proc = _serve(tmp_path, taken, "--init")
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert f"could not listen on 127.0.0.1:{taken}" in " ".join(stderr.split()) and "Traceback" not in stderr


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _role(pid: int) -> str:
    return "detector" if b"monitor" in Path(f"/proc/{pid}/cmdline").read_bytes() else "server"


def test_serve_with_workers_runs_that_many_processes_on_the_port_and_stops_them_all(
    tmp_path: Path, redis_prefix: str
) -> None:
    port = _free_port()
    proc = _serve(tmp_path, port, "--init", "--workers", "2", redis_prefix=redis_prefix)
    try:
        _wait_for_tls(port, proc)
        ca = tmp_path / "var" / "tls" / "ca.pem"
        for _ in range(6):  # new connections, spread by the kernel; every one answered over TLS
            with httpx.Client(verify=client_context(ca), timeout=10) as client:
                assert client.get(f"https://127.0.0.1:{port}/api/v1/tenants").status_code == 401
        workers = _children(proc.pid)  # the two servers and the detector (`monitor run`) beside them
        roles = sorted(_role(w) for w in workers)
        assert roles == ["detector", "server", "server"]
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "a worker or the detector outlived the server"


def test_several_workers_with_per_process_rate_counters_are_refused(tmp_path: Path) -> None:
    """memory:// counters are per process: N workers would allow N times the lockout threshold."""
    port = _free_port()
    proc = _serve(tmp_path, port, "--init", "--workers", "2")
    _, stderr = proc.communicate(timeout=60)
    told = " ".join(stderr.split())
    assert proc.returncode == 2 and "rate_limit_storage_url" in told and "redis://" in told, stderr
    assert "lockout threshold" in told and "Traceback" not in stderr
    with socket.socket() as s:  # nothing was left listening
        s.bind(("127.0.0.1", port))


def test_failed_log_ins_spread_over_workers_lock_the_account_at_the_threshold(
    tmp_path: Path, redis_prefix: str
) -> None:
    """With counters in Redis the workers share one count: ten wrong passwords on ten new
    connections (spread over both workers by the kernel) lock the account, so the right password
    and code are refused next."""
    settings = load_settings(data_dir=tmp_path / "var")
    d = init_deployment(settings)
    with d.engine.begin() as conn:
        made = d.access.accounts.bootstrap_admin(conn, "lena.admin", "lena@seller-tools.example", actor=OPERATOR)
        totp = pyotp.TOTP(d.access.enrolment.begin(conn, "lena.admin", made.secret).secret)
        d.access.enrolment.finish(conn, "lena.admin", made.secret, PASSWORD, totp.now())
    d.close()
    port = _free_port()
    proc = _serve(tmp_path, port, "--workers", "2", redis_prefix=redis_prefix)
    try:
        _wait_for_tls(port, proc)
        ca = tmp_path / "var" / "tls" / "ca.pem"
        url = f"https://127.0.0.1:{port}/api/v1/sessions"
        for n in range(10):
            with httpx.Client(verify=client_context(ca), timeout=10) as client:  # a new connection each time
                r = client.post(url, json={"login": "lena.admin", "password": f"Wrong-Guess-{n}-x", "code": "000000"})
                assert r.status_code == 401, r.text
        with httpx.Client(verify=client_context(ca), timeout=10) as client:
            right = {"login": "lena.admin", "password": PASSWORD, "code": totp.at(time.time() + 30)}
            r = client.post(url, json=right)
        assert r.status_code == 401, r.text  # as any failure: a locked account tells nobody the password was right
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    log = open_audit(settings)
    try:
        reasons = [e["reason"] for e in log.search(name="access:login:failure")]
        locks = list(log.search(name="access:account:lock"))
    finally:
        log.close()
    assert len(locks) == 1 and reasons[-1] == "account_locked"  # the security log keeps the truth


def test_workers_serve_the_deployment_named_on_the_command_line_or_fail_together(
    tmp_path: Path, redis_prefix: str
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "SAGEVAULT_RATE_LIMIT_STORAGE_URL": REDIS,
        "SAGEVAULT_RATE_LIMIT_KEY_PREFIX": redis_prefix,
    }
    env.pop("SAGEVAULT_DATA_DIR", None)
    env.pop("SAGEVAULT_CONFIG", None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()  # the working directory holds no deployment: workers must not look there
    proc = subprocess.Popen(
        [*SV, "--data-dir", str(tmp_path / "named"), "serve", "--init", "--workers", "2", "--port", str(port)],
        cwd=elsewhere,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_tls(port, proc)
        ca = tmp_path / "named" / "tls" / "ca.pem"
        with httpx.Client(verify=client_context(ca), timeout=10) as client:
            assert [client.get(f"https://127.0.0.1:{port}/api/v1/tenants").status_code for _ in range(4)] == [401] * 4
        assert not (elsewhere / "var").exists()
        workers = _children(proc.pid)  # two servers and the detector
        servers = [w for w in workers if _role(w) == "server"]
        os.kill(servers[0], signal.SIGKILL)  # a server worker dies: the server stops and says so
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "a server worker ended on its own" in " ".join(stderr.split())
    assert not [w for w in workers if Path(f"/proc/{w}").exists()]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_the_server_gracefully_with_its_shutdown_digest(tmp_path: Path, stop: int) -> None:
    """systemd, Docker and Kubernetes stop a service with SIGTERM, a terminal with Ctrl-C: either
    stops it at once (an idle keep-alive client holds nothing up), signs the log's head and exits 0."""
    port = _free_port()
    proc = _serve(tmp_path, port, "--init")
    try:
        _wait_for_tls(port, proc)
        ca = tmp_path / "var" / "tls" / "ca.pem"
        with httpx.Client(verify=client_context(ca), timeout=10) as client:  # keeps its connection open, idle
            assert client.get(f"https://127.0.0.1:{port}/api/v1/tenants").status_code == 401
            proc.send_signal(stop)
            assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    settings = load_settings(data_dir=tmp_path / "var")
    log = open_audit(settings)
    try:
        head, _ = log.head()
    finally:
        log.close()
    assert DigestFile(settings.digest_file).read()[-1].seq == head  # nothing after the last signed digest
