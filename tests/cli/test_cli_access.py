"""`sagevault users|grants|allowlist|killswitch` as an operator and two administrators run them,
in this process: secrets typed on standard input, or handed over on a file descriptor
(`--secrets-fd`) as a script enrols. One test runs the enrolment as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pyotp

from commands import SV, run
from processes import process_env

PASSWORD = "Harbor-Lantern-42-Quill"


sv = run


def _fresh_code(totp: pyotp.TOTP) -> str:
    """The next 30-second step's code: accepted (one step of clock drift is allowed) and newer
    than the code enrolment used, which works only once."""
    return totp.at(time.time() + 30)


def _fd_with(*lines: str) -> int:
    """A file descriptor to read `lines` from, as a script hands secrets over (`--secrets-fd`)."""
    read, write = os.pipe()
    os.write(write, "".join(f"{line}\n" for line in lines).encode())
    os.close(write)
    return read


def enrol(tmp: Path, login: str, secret: str) -> tuple[pyotp.TOTP, list[str]]:
    """`users enrol` as a script runs it: `--step begin` gives the TOTP secret, `--step finish`
    takes a code of it; the secrets go over a file descriptor, never the command line."""
    fd = _fd_with(secret)
    try:
        began = sv(tmp, "users", "enrol", "--login", login, "--step", "begin", "--json", "--secrets-fd", str(fd))
    finally:
        os.close(fd)
    assert began.returncode == 0, began.stderr
    totp = pyotp.TOTP(json.loads(began.stdout)["totp_secret"])
    fd = _fd_with(secret, PASSWORD, totp.now())
    try:
        done = sv(tmp, "users", "enrol", "--login", login, "--step", "finish", "--json", "--secrets-fd", str(fd))
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    return totp, json.loads(done.stdout)["recovery_codes"]


def _secret_of(output: str) -> str:
    return next(w for w in output.split() if w.startswith("sve_"))


def test_operator_and_two_admins_run_access_from_the_shell(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    assert run(tmp_path, "tenants", "add", "A1CLISELLER", "--marketplace", "ATVPDKIKX0DER").returncode == 0
    listed = sv(tmp_path, "users", "list")
    assert "no accounts yet" in listed.stdout  # init made none

    generic = sv(tmp_path, "users", "bootstrap-admin", "--login", "admin", "--email", "ops@seller-tools.example")
    assert generic.returncode == 2 and "generic name" in generic.stderr
    boot = sv(tmp_path, "users", "bootstrap-admin", "--login", "alice.ng", "--email", "alice@seller-tools.example")
    assert boot.returncode == 0, boot.stderr
    alice_totp, alice_recovery = enrol(tmp_path, "alice.ng", _secret_of(boot.stdout))
    assert len(alice_recovery) == 10
    again = sv(tmp_path, "users", "bootstrap-admin", "--login", "bob.okafor", "--email", "bob@seller-tools.example")
    assert again.returncode == 2 and "exists already" in again.stderr

    # Bob is added by the operator, so the admins may ask for and approve his grants.
    added = sv(tmp_path, "users", "add", "--login", "bob.okafor", "--email", "bob@seller-tools.example")
    assert added.returncode == 0, added.stderr
    assert "you saw this secret" not in added.stdout
    bob_totp, _ = enrol(tmp_path, "bob.okafor", _secret_of(added.stdout))
    bob_admin = sv(tmp_path, "grants", "add", "--login", "bob.okafor", "--role", "admin", "-t", "*")
    assert "(pending)" in bob_admin.stdout  # admin is under the two-person rule: alice approves
    bob_grant = next(w for w in bob_admin.stdout.split() if w.startswith("grt_")).rstrip(":")
    approved_bob = sv(
        tmp_path, "grants", "approve", bob_grant, "--as", "alice.ng", stdin=f"{PASSWORD}\n{_fresh_code(alice_totp)}\n"
    )
    assert approved_bob.returncode == 0, approved_bob.stderr

    # Dan is added by alice: she saw his secret, so she may not ask for his PII grants (a
    # recovery code stands in for her TOTP code, whose next step went to the approval).
    dan = sv(
        tmp_path,
        "users",
        "add",
        "--login",
        "dan.moss",
        "--email",
        "dan@seller-tools.example",
        "--as",
        "alice.ng",
        stdin=f"{PASSWORD}\n{alice_recovery[0]}\n",
    )
    assert dan.returncode == 0, dan.stderr
    assert "you saw this secret: grants of dan.moss that reach PII" in dan.stdout
    refused = sv(
        tmp_path,
        "grants",
        "add",
        "--login",
        "dan.moss",
        "--role",
        "fulfilment",
        "-t",
        "A1CLISELLER",
        "--as",
        "alice.ng",
        stdin=f"{PASSWORD}\n{alice_recovery[1]}\n",
    )
    assert refused.returncode == 2 and "you issued dan.moss's enrolment secret" in refused.stderr

    carol = sv(tmp_path, "users", "add", "--login", "carol.diaz", "--email", "carol@seller-tools.example")
    assert carol.returncode == 0
    bad_tenant = sv(tmp_path, "grants", "add", "--login", "carol.diaz", "--role", "fulfilment", "-t", "A9NOPE")
    assert bad_tenant.returncode == 2 and "no tenant A9NOPE" in bad_tenant.stderr
    pending = sv(tmp_path, "grants", "add", "--login", "carol.diaz", "--role", "fulfilment", "-t", "A1CLISELLER")
    assert "(pending)" in pending.stdout
    grant_id = next(w for w in pending.stdout.split() if w.startswith("grt_")).rstrip(":")
    wrong = sv(tmp_path, "grants", "approve", grant_id, "--as", "bob.okafor", stdin=f"{PASSWORD}\n000000\n")
    assert wrong.returncode == 2 and "wrong login, password or code" in wrong.stderr
    approved = sv(
        tmp_path, "grants", "approve", grant_id, "--as", "bob.okafor", stdin=f"{PASSWORD}\n{_fresh_code(bob_totp)}\n"
    )
    assert approved.returncode == 0, approved.stderr
    assert "active" in sv(tmp_path, "grants", "list", "--login", "carol.diaz").stdout

    malformed = sv(tmp_path, "allowlist", "add", "10.0.0.1/8")
    assert malformed.returncode == 2 and "did you mean 10.0.0.0/8" in malformed.stderr
    assert sv(tmp_path, "allowlist", "add", "127.0.0.0/8").returncode == 0
    overlap = sv(tmp_path, "allowlist", "add", "127.0.0.0/16")
    assert overlap.returncode == 2 and "overlaps" in overlap.stderr

    engaged = sv(tmp_path, "killswitch", "engage", "pii-access", "-t", "A1CLISELLER")
    assert engaged.returncode == 0 and "engaged" in engaged.stdout
    assert "engaged" in sv(tmp_path, "killswitch", "list").stdout  # a new process: the state persisted
    unknown_switch = sv(tmp_path, "killswitch", "engage", "everything")
    assert unknown_switch.returncode == 2 and "pii-access, sp-api-sync, exports" in unknown_switch.stderr

    disabled = sv(tmp_path, "users", "disable", "carol.diaz")
    assert disabled.returncode == 0 and "disabled" in disabled.stdout
    accounts = sv(tmp_path, "users", "list")
    assert "carol.diaz" in accounts.stdout and "disabled" in accounts.stdout

    events = sv(tmp_path, "audit", "export")
    for name in (
        "access:account:create",
        "access:account:enrol",
        "access:grant:approve",
        "access:login:failure",
        "access:allowlist:add",
        "access:killswitch:engage",
        "access:account:disable",
    ):
        assert f'"{name}"' in events.stdout, name
    written = b"".join(p.read_bytes() for p in (tmp_path / "var").rglob("*") if p.is_file() and "keys" not in p.parts)
    for secret in (PASSWORD, alice_totp.secret, bob_totp.secret, _secret_of(boot.stdout), alice_recovery[2]):
        assert secret.encode() not in written
    assert b"alice@seller-tools.example" not in (tmp_path / "var" / "audit.db").read_bytes()
    assert b"alice@seller-tools.example" not in b"".join(p.read_bytes() for p in (tmp_path / "var" / "logs").rglob("*"))


def test_a_script_enrols_a_person_in_a_real_process_with_secrets_on_a_descriptor(tmp_path: Path) -> None:
    """The console script, as automation runs it: secrets on descriptor 3, JSON out, nothing on
    the command line; a descriptor that is not open is a clear usage error."""
    assert run(tmp_path, "init").returncode == 0
    boot = sv(tmp_path, "users", "bootstrap-admin", "--login", "alice.ng", "--email", "alice@seller-tools.example")
    secret = _secret_of(boot.stdout)

    def step(name: str, *lines: str) -> subprocess.CompletedProcess[str]:
        fd = _fd_with(*lines)
        try:
            return subprocess.run(
                [*SV, "users", "enrol", "--login", "alice.ng", "--step", name, "--json", "--secrets-fd", str(fd)],
                cwd=tmp_path,
                env=process_env(tmp_path),
                pass_fds=(fd,),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            os.close(fd)

    began = step("begin", secret)
    assert began.returncode == 0, began.stderr
    totp = pyotp.TOTP(json.loads(began.stdout)["totp_secret"])
    short = step("finish", secret, PASSWORD)
    assert short.returncode == 2 and "totp code expected on the --secrets-fd descriptor" in short.stderr
    done = step("finish", secret, PASSWORD, totp.now())
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["recovery_codes"]) == 10
    closed = sv(tmp_path, "users", "enrol", "--login", "alice.ng", "--step", "begin", "--secrets-fd", "987")
    assert closed.returncode == 2 and "--secrets-fd 987 is not an open file descriptor" in closed.stderr
