"""A leaver loses access within 24 hours (DPP 6): marked leaving, the account is disabled at that
time by the hourly `leavers` job, its sessions ended and its API keys revoked, each step audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from commands import run
from conftest import OPERATOR
from factories import People
from sagevault.compliance import evaluate
from sagevault.deployment import Deployment
from sagevault.errors import AccessError
from sagevault.jobs import default_jobs
from sagevault.testing import ManualClock, fast_password_hashing


def test_a_leaver_is_disabled_by_the_hourly_job_once_their_date_comes(deployment_at: Callable[..., Deployment]) -> None:
    clock = ManualClock()
    d = deployment_at(clock=clock, hasher=fast_password_hashing())
    people = People(d.access, d.engine, clock)
    with d.unit_of_work() as conn:
        d.vault.add_tenant(conn, "A1TESTSELLER01", ["ATVPDKIKX0DER"], principal=OPERATOR)
    people.person("lee.leaver", "viewer")
    people.person("sam.stays", "viewer")
    with d.unit_of_work() as conn:
        d.access.accounts.add_service(conn, "lee-bot", owner="lee.leaver", purpose="exports", actor=OPERATOR)
        key = d.access.api_keys.issue(conn, "lee-bot", scopes=["records:read"], actor=OPERATOR)
        with pytest.raises(AccessError, match="UTC offset"):
            d.access.accounts.leave(conn, "lee.leaver", clock().replace(tzinfo=None), actor=OPERATOR)
        assert d.access.accounts.leave(conn, "lee.leaver", clock() + timedelta(hours=2), actor=OPERATOR) == 0
        assert d.access.accounts.leave(conn, "lee-bot", clock() + timedelta(hours=2), actor=OPERATOR) == 0
    jobs = default_jobs(clock)
    clock.advance(hours=1)
    assert jobs.run(d, "leavers", force=True).result.counts == {"disabled": 0}
    clock.advance(hours=1, minutes=30)  # 30 minutes past the date: the next hourly run
    assert jobs.run(d, "leavers", force=True).result.counts == {"disabled": 2}
    with d.unit_of_work(read_only=True) as conn:
        status = {a.login: a.status for a in d.access.accounts.list(conn, actor=OPERATOR)}
        live = {k.key_id for k in d.access.api_keys.list(conn, actor=OPERATOR)}
    assert status["lee.leaver"] == status["lee-bot"] == "disabled" and status["sam.stays"] == "active"
    assert key.key_id not in live  # the service's key died with it
    names = [(e["name"], e["operation"]) for e in d.audit.search() if e["name"].startswith("access:account:")]
    assert names.count(("access:account:disable", "leaver")) == 2
    assert [n for n, _ in names].count("access:account:leave") == 2
    assert jobs.run(d, "leavers", force=True).result.counts == {"disabled": 0}  # once


def test_users_leave_on_the_command_line(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    made = run(tmp_path, "users", "add", "--login", "kim.gone", "--email", "kim@seller-tools.example")
    assert made.returncode == 0, made.stderr
    later = run(tmp_path, "users", "leave", "kim.gone", "--at", "2099-01-01T00:00:00+00:00")
    assert later.returncode == 0 and "is disabled at 2099-01-01" in later.stdout, later.stderr
    naive = run(tmp_path, "users", "leave", "kim.gone", "--at", "2099-01-01T00:00:00")
    assert naive.returncode == 2 and "UTC offset" in naive.stderr
    now = run(tmp_path, "users", "leave", "kim.gone")
    assert now.returncode == 0 and "disabled" in now.stdout
    again = run(tmp_path, "users", "leave", "kim.gone")
    assert again.returncode == 2 and "disabled already" in again.stderr


def test_the_dpp_report_fails_a_leaver_left_enabled_past_the_policys_hours(
    deployment_at: Callable[..., Deployment],
) -> None:
    clock = ManualClock()
    d = deployment_at(clock=clock, hasher=fast_password_hashing())
    People(d.access, d.engine, clock).bootstrap_admin("ada.admin")
    with d.unit_of_work() as conn:
        made = d.access.accounts.add_person(
            conn, "lee.leaver", "lee@seller-tools.example", manager=None, actor=OPERATOR
        )
        assert made.login == "lee.leaver"
        d.access.accounts.leave(conn, "lee.leaver", clock() + timedelta(hours=1), actor=OPERATOR)

    def status() -> str:
        with d.unit_of_work(read_only=True) as conn:
            return evaluate(d, conn, principal=OPERATOR).item("dpp-6-leavers").status

    assert status() == "ATTENTION"  # marked, not yet due
    clock.advance(hours=26)  # the scheduler did not run: 25 hours past the date
    assert status() == "FAIL"
    default_jobs(clock).run(d, "leavers", force=True)
    assert status() == "ATTENTION"  # disabled; that every leaver was marked is the leaver process's to show
