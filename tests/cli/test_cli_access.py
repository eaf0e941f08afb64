"""`sagevault users|grants|allowlist|killswitch` as an operator and two administrators run them:
secrets typed on standard input; enrolment in a real process, whose TOTP code is read off its output."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyotp
import pytest

from commands import SV, run
from processes import process_env

PASSWORD = "Harbor-Lantern-42-Quill"


sv = run


def _fresh_code(totp: pyotp.TOTP) -> str:
    """The next 30-second step's code: accepted (one step of clock drift is allowed) and newer
    than the code enrolment used, which works only once."""
    return totp.at(time.time() + 30)


def enrol(tmp: Path, login: str, secret: str) -> tuple[pyotp.TOTP, str]:
    """Run `users enrol` interactively: the TOTP secret is printed mid-way, the code depends on it."""
    proc = subprocess.Popen(
        [*SV, "users", "enrol", "--login", login],
        cwd=tmp,
        env=process_env(tmp),
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(secret + "\n")
    proc.stdin.flush()
    totp_secret = ""
    for line in proc.stdout:
        if line.strip().startswith("secret:"):
            totp_secret = line.split(":", 1)[1].strip()
            break
    totp = pyotp.TOTP(totp_secret)
    out, err = proc.communicate(f"{PASSWORD}\n{PASSWORD}\n{totp.now()}\n", timeout=60)
    assert proc.returncode == 0, err
    assert "recovery codes" in out
    return totp, out


def _secret_of(output: str) -> str:
    return next(w for w in output.split() if w.startswith("sve_"))


@pytest.mark.skipif(sys.platform != "linux", reason="interactive pipes")
def test_operator_and_two_admins_run_access_from_the_shell(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    assert run(tmp_path, "tenants", "add", "A1CLISELLER", "--marketplace", "ATVPDKIKX0DER").returncode == 0
    listed = sv(tmp_path, "users", "list")
    assert "no accounts yet" in listed.stdout  # init made none

    generic = sv(tmp_path, "users", "bootstrap-admin", "--login", "admin", "--email", "ops@seller-tools.example")
    assert generic.returncode == 2 and "generic name" in generic.stderr
    boot = sv(tmp_path, "users", "bootstrap-admin", "--login", "alice.ng", "--email", "alice@seller-tools.example")
    assert boot.returncode == 0, boot.stderr
    alice_totp, alice_out = enrol(tmp_path, "alice.ng", _secret_of(boot.stdout))
    alice_recovery = [w for w in alice_out.split() if len(w) == 11 and w[5] == "-"]
    assert len(alice_recovery) == 10
    again = sv(tmp_path, "users", "bootstrap-admin", "--login", "bob.okafor", "--email", "bob@seller-tools.example")
    assert again.returncode == 2 and "exists already" in again.stderr

    added = sv(
        tmp_path,
        "users",
        "add",
        "--login",
        "bob.okafor",
        "--email",
        "bob@seller-tools.example",
        "--as",
        "alice.ng",
        stdin=f"{PASSWORD}\n{_fresh_code(alice_totp)}\n",
    )
    assert added.returncode == 0, added.stderr
    bob_totp, _ = enrol(tmp_path, "bob.okafor", _secret_of(added.stdout))
    bob_admin = sv(tmp_path, "grants", "add", "--login", "bob.okafor", "--role", "admin", "-t", "*")
    assert "(pending)" in bob_admin.stdout  # admin is under the two-person rule: alice approves
    bob_grant = next(w for w in bob_admin.stdout.split() if w.startswith("grt_")).rstrip(":")
    # Alice's next TOTP code went to `users add`; a recovery code stands in for one (once).
    approved_bob = sv(
        tmp_path, "grants", "approve", bob_grant, "--as", "alice.ng", stdin=f"{PASSWORD}\n{alice_recovery[0]}\n"
    )
    assert approved_bob.returncode == 0, approved_bob.stderr

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
    for secret in (PASSWORD, alice_totp.secret, bob_totp.secret, _secret_of(boot.stdout)):
        assert secret.encode() not in written
    assert b"alice@seller-tools.example" not in (tmp_path / "var" / "audit.db").read_bytes()
    assert b"alice@seller-tools.example" not in b"".join(p.read_bytes() for p in (tmp_path / "var" / "logs").rglob("*"))
