"""The vulnerability register: pip-audit's JSON (a recorded file, never the network) read as
data, each finding with its deadline from the policy profile, closed when a later scan no longer
finds it, the overdue notice once per finding, and the alarm it raises."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from commands import run
from conftest import DATA, OPERATOR
from sagevault.deployment import Deployment
from sagevault.errors import AccessDenied, PayloadError
from sagevault.identity import Principal
from sagevault.jobs import Watch, default_jobs
from sagevault.testing import ManualClock
from webapi import Api

RECORDED = DATA / "pip-audit-recorded.json"


def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORDED.read_text())
    return data


def _events(d: Deployment, name: str) -> list[dict[str, Any]]:
    return list(d.audit.search(name=name))


def test_a_scan_records_each_finding_once_with_its_deadline_and_closes_what_is_gone(
    deployment_at: Callable[..., Deployment],
) -> None:
    clock = ManualClock()
    d = deployment_at(clock=clock)
    vulns = d.governance.vulns
    start = clock()
    with d.unit_of_work() as conn:
        first = vulns.scan(conn, recorded(), principal=OPERATOR)
    assert first.payload() == {
        "dependencies": 4,
        "skipped": 1,
        "found": 3,
        "opened": 3,
        "reopened": 0,
        "closed": 0,
        "open": 3,
    }
    with d.unit_of_work(read_only=True) as conn:
        found = {v.package: v for v in vulns.list_vulns(conn, principal=OPERATOR)}
    assert {p: v.severity for p, v in found.items()} == {
        "jinja2": "critical",
        "requests": "medium",
        "setuptools": "unknown",
    }
    assert found["jinja2"].due_at == start + timedelta(days=7)  # critical: the policy's 7 days
    assert found["requests"].due_at == start + timedelta(days=90)
    assert found["setuptools"].due_at == start + timedelta(days=7)  # unknown: as critical (fail closed)
    assert found["jinja2"].aliases == ["CVE-2024-22195"] and found["jinja2"].fix_versions == ["3.1.3"]

    clock.advance(days=1)
    with d.unit_of_work() as conn:
        again = vulns.scan(conn, recorded(), principal=OPERATOR)
    assert (again.opened, again.closed, again.open) == (0, 0, 3)  # recorded once
    with d.unit_of_work(read_only=True) as conn:
        jinja = next(v for v in vulns.list_vulns(conn, principal=OPERATOR) if v.package == "jinja2")
    assert jinja.last_seen_at == clock() and jinja.due_at == start + timedelta(days=7)

    upgraded = recorded()
    upgraded["dependencies"][0] = {"name": "jinja2", "version": "3.1.4", "vulns": []}  # fixed
    upgraded["dependencies"][2] = {"name": "setuptools", "skip_reason": "could not be audited this time"}
    with d.unit_of_work() as conn:
        later = vulns.scan(conn, upgraded, principal=OPERATOR)
        still = {v.package for v in vulns.list_vulns(conn, principal=OPERATOR)}
        every = vulns.list_vulns(conn, principal=OPERATOR, open_only=False)
    assert (later.closed, later.open) == (1, 2)
    assert still == {"requests", "setuptools"}  # a package not audited this time keeps its finding open
    assert [v.package for v in every if v.closed_at is not None] == ["jinja2"]

    opened = _events(d, "governance:vuln:open")
    assert len(opened) == 3 and all(e["operation"].startswith("vuln ") for e in opened)
    assert [e["counts"]["vuln"] for e in _events(d, "governance:vuln:close")] == [jinja.id]
    scans = _events(d, "governance:vuln:scan")
    assert [e["counts"]["opened"] for e in scans] == [3, 0, 0]
    text = json.dumps(opened + scans)
    assert "jinja2" not in text and "CVE" not in text  # ids and counts only


def test_a_finding_past_its_deadline_is_noted_once_and_raises_the_critical_alarm(
    deployment_at: Callable[..., Deployment],
) -> None:
    clock = ManualClock()
    d = deployment_at(clock=clock)
    with d.unit_of_work() as conn:
        d.governance.vulns.scan(conn, recorded(), principal=OPERATOR)
    jobs = default_jobs(clock)
    clock.advance(days=6)
    jobs.run(d, "vulnerability-deadlines", force=True)
    assert _events(d, "governance:vuln:overdue") == []
    clock.advance(days=2)  # the critical one's 7 days have passed (and the unrated one's: as critical)
    ran = jobs.run(d, "vulnerability-deadlines", force=True)
    assert ran.result is not None and ran.result.counts == {"overdue": 2}
    jobs.run(d, "vulnerability-deadlines", force=True)  # once per finding
    noted = _events(d, "governance:vuln:overdue")
    assert sorted(e["operation"].split()[-1] for e in noted) == ["critical", "unknown"]
    assert {e["actor"] for e in noted} == {"job:vulnerability-deadlines"}
    with d.unit_of_work(read_only=True) as conn:
        assert [v.package for v in d.governance.vulns.overdue(conn)] == ["jinja2", "setuptools"]
    Watch(d).catch_up()
    with d.unit_of_work(read_only=True) as conn:
        alarms = d.monitor.list_alarms(conn, principal=OPERATOR)
    assert {(a.rule, a.severity) for a in alarms} == {("vulnerability-overdue", "critical")}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_scans_that_are_not_pip_audit_json_are_refused_and_nothing_is_recorded(deployment: Deployment) -> None:
    d = deployment
    bad_severity = recorded()
    bad_severity["severities"] = {"CVE-2024-22195": "apocalyptic"}
    bad_id = recorded()
    bad_id["dependencies"][0]["vulns"][0]["id"] = "<script>"
    no_version = copy.deepcopy(recorded())
    del no_version["dependencies"][1]["version"]
    cases: list[tuple[Any, str]] = [
        ({"dependencies": []}, "checked nothing"),
        ({"deps": []}, "pip-audit's JSON"),
        ("text", "pip-audit's JSON"),
        (bad_severity, "a severity is one of"),
        (bad_id, "needs an advisory id"),
        (no_version, "needs a version"),
    ]
    for data, message in cases:
        with d.unit_of_work() as conn, pytest.raises(PayloadError, match=message):
            d.governance.vulns.scan(conn, data, principal=OPERATOR)
    with d.unit_of_work(read_only=True) as conn:
        assert d.governance.vulns.list_vulns(conn, principal=OPERATOR, open_only=False) == []
    assert _events(d, "governance:vuln:scan") == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_person_without_the_scope_may_not_scan_or_list(deployment: Deployment) -> None:
    stranger = Principal(id="p_nobody", kind="person")
    with deployment.unit_of_work() as conn, pytest.raises(AccessDenied):
        deployment.governance.vulns.scan(conn, recorded(), principal=stranger)
    with deployment.unit_of_work() as conn, pytest.raises(AccessDenied):
        deployment.governance.vulns.list_vulns(conn, principal=stranger)
    denied = _events(deployment, "access:permission:deny")
    assert [e["operation"] for e in denied] == ["vulns scan", "vulns list"]


def test_the_commands_scan_a_recorded_file_and_list_the_findings(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    ran = run(tmp_path, "vulns", "scan", "--from", str(RECORDED))
    assert ran.returncode == 0, ran.stderr
    assert "4 dependencies (1 skipped): 3 findings, 3 new" in ran.stdout
    listed = json.loads(run(tmp_path, "vulns", "list", "--json").stdout)
    assert [(v["package"], v["severity"], v["state"]) for v in listed] == [
        ("jinja2", "critical", "open"),
        ("setuptools", "unknown", "open"),
        ("requests", "medium", "open"),
    ]
    table = run(tmp_path, "vulns", "list", "--all").stdout
    assert "GHSA-h5c8-rqwp-cp95" in table and "3.1.3" in table
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    refused = run(tmp_path, "vulns", "scan", "--from", str(broken))
    assert refused.returncode == 2 and "not JSON" in refused.stderr


def test_the_api_records_a_scan_and_lists_findings_for_the_compliance_role(api: Api) -> None:
    lead = api.login("cam.compliance", api.person("cam.compliance", "compliance", ["*"]))
    viewer = api.login("vic.viewer", api.person("vic.viewer", "viewer", ["A1TESTSELLER01"]))
    made = api.client.post(f"{api.base}/vulnerabilities/scans", json=recorded(), headers=lead)
    assert made.status_code == 201, made.text
    assert made.json()["opened"] == 3
    listed = api.client.get(f"{api.base}/vulnerabilities", headers=lead)
    assert listed.status_code == 200
    assert [v["severity"] for v in listed.json()] == ["critical", "unknown", "medium"]
    assert api.client.get(f"{api.base}/vulnerabilities", headers=viewer).status_code == 403
    assert api.client.post(f"{api.base}/vulnerabilities/scans", json=recorded(), headers=viewer).status_code == 403
    empty = api.client.post(f"{api.base}/vulnerabilities/scans", json={"dependencies": []}, headers=lead)
    assert empty.status_code in (400, 422)
    bad = recorded()
    bad["dependencies"][0]["vulns"][0]["severity"] = 7
    refused = api.client.post(f"{api.base}/vulnerabilities/scans", json=bad, headers=lead)
    assert refused.status_code == 400 and "severity" in refused.text


def _only(package: str, version: str, advisory: str, aliases: list[str]) -> dict[str, Any]:
    vuln = {"id": advisory, "fix_versions": ["9.9.9"], "aliases": aliases}
    return {"dependencies": [{"name": package, "version": version, "vulns": [vuln]}], "severities": {}}


@pytest.mark.parametrize(
    "later",
    [
        # upgraded to a version that is still vulnerable to the same advisory
        _only("jinja2", "3.1.2.post1", "GHSA-h5c8-rqwp-cp95", ["CVE-2024-22195"]),
        # the same advisory now reported under its alias (PYSEC <-> GHSA), the GHSA id an alias
        _only("jinja2", "3.1.2", "PYSEC-2024-1", ["GHSA-h5c8-rqwp-cp95"]),
        # both at once, sharing only the CVE
        _only("jinja2", "3.1.3rc1", "PYSEC-2024-1", ["CVE-2024-22195"]),
    ],
)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_deadline_is_never_reset_by_a_new_version_or_an_alias(
    deployment_at: Callable[..., Deployment], later: dict[str, Any]
) -> None:
    clock = ManualClock()
    d = deployment_at(clock=clock)
    vulns = d.governance.vulns
    start = clock()
    with d.unit_of_work() as conn:
        vulns.scan(conn, _only("jinja2", "3.1.2", "GHSA-h5c8-rqwp-cp95", ["CVE-2024-22195"]), principal=OPERATOR)
    clock.advance(days=40)  # unknown: the 7 days have passed
    with d.unit_of_work() as conn:
        result = vulns.scan(conn, later, principal=OPERATOR)
        (now_open,) = vulns.list_vulns(conn, principal=OPERATOR)
        overdue = vulns.overdue(conn)
    assert (result.opened, result.closed) == (1, 1)
    assert now_open.due_at == start + timedelta(days=7) and [v.id for v in overdue] == [now_open.id]
    # another package with the same advisory id keeps its own clock
    with d.unit_of_work() as conn:
        vulns.scan(conn, _only("markupsafe", "2.0.0", "GHSA-h5c8-rqwp-cp95", []), principal=OPERATOR)
        other = next(v for v in vulns.list_vulns(conn, principal=OPERATOR) if v.package == "markupsafe")
    assert other.due_at == clock() + timedelta(days=7)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_skipped_dependency_never_counts_as_audited_whatever_else_it_carries(
    deployment: Deployment,
) -> None:
    d = deployment
    with d.unit_of_work() as conn:
        d.governance.vulns.scan(conn, recorded(), principal=OPERATOR)
    later = recorded()
    later["dependencies"][2] = {"name": "setuptools", "version": "65.5.0", "vulns": [], "skip_reason": "timeout"}
    with d.unit_of_work() as conn:
        result = d.governance.vulns.scan(conn, later, principal=OPERATOR)
        still = {v.package for v in d.governance.vulns.list_vulns(conn, principal=OPERATOR)}
    assert (result.dependencies, result.skipped, result.closed) == (3, 2, 0)
    assert "setuptools" in still
