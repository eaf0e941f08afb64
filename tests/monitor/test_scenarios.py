"""Attacks driven through the real HTTPS service (uvicorn on 127.0.0.1, SageVault's TLS, an httpx
client), then the detector over the security log they wrote: the alarm, its rule and version,
its evidence. The deployment's clock (a `ManualClock`) also stamps the events, so a test can
stand at 03:00 or build a principal's history over forty minutes in a second."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import OPERATOR, TENANT
from pii_scan import leaked, pii_strings, written_files
from sagevault.deployment import Deployment
from sagevault.jobs import Watch
from sagevault.monitor import Alarm, fake_orders
from sagevault.testing import ManualClock, generate_orders, get_orders_response
from sagevault.vault import Operation
from webapi import Api

REVEAL_FIELDS = {"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"}


def _alarms(d: Deployment, rule: str) -> list[Alarm]:
    Watch(d).catch_up()
    with d.unit_of_work(read_only=True) as conn:
        return [a for a in d.monitor.list_alarms(conn, principal=OPERATOR) if a.rule == rule]


def _session(api: Api, login: str, role: str) -> tuple[dict[str, str], str]:
    api.person(login, role, [TENANT])
    headers = api.login(login)
    return headers, api._people[login].id


def _ingest(api: Api, orders: list[dict[str, Any]]) -> None:
    with api.d.unit_of_work() as conn:
        api.d.vault.ingest(conn, TENANT, [get_orders_response(orders)], Operation.GET_ORDERS, principal=OPERATOR)


def test_twenty_refused_calls_in_a_minute_raise_one_alarm_while_the_detector_runs(
    serve_watched: Callable[..., Api],
) -> None:
    api = serve_watched()
    viewer, viewer_id = _session(api, "vic.viewer", "viewer")
    watch = Watch(api.d)
    with watch.running():  # as `serve` runs it: woken by the commits, no call from the test
        for _ in range(20):
            url = f"{api.base}/tenants/{TENANT}/orders/{api.order_id}/reveal"
            assert api.client.post(url, headers=viewer, json=REVEAL_FIELDS).status_code == 403
        deadline = time.monotonic() + 20
        found: list[Alarm] = []
        while not found and time.monotonic() < deadline:
            with api.d.unit_of_work(read_only=True) as conn:
                found = api.d.monitor.list_alarms(conn, principal=OPERATOR, state="open")
            time.sleep(0.05)
    [alarm] = found
    assert (alarm.rule, alarm.rule_version, alarm.principal, alarm.count) == (
        "denied-calls-principal",
        1,
        viewer_id,
        20,
    )
    denied = [e["seq"] for e in api.d.audit.search(name="access:permission:deny", actor=viewer_id)]
    assert alarm.evidence["seqs"] == denied and alarm.evidence["threshold"] == 20


def test_a_principal_going_from_its_baseline_to_twenty_times_its_rate_raises_the_rate_alarm(
    serve_watched: Callable[..., Api],
) -> None:
    clock = ManualClock()
    api = serve_watched(clock)
    packer, packer_id = _session(api, "pia.packer", "fulfilment")
    search = f"{api.base}/tenants/{TENANT}/search"
    body = {"kind": "email", "value": "nobody@example.com", "purpose": "fulfilment"}
    clock.advance(minutes=-40, seconds=-clock().second)  # to the start of a minute, forty minutes ago
    for _ in range(30):  # its normal: five searches a minute, for half an hour
        for _ in range(5):
            assert api.client.post(search, headers=packer, json=body).status_code == 200
            clock.advance(seconds=12)
    assert _alarms(api.d, "request-rate") == []
    clock.advance(minutes=12)
    for _ in range(100):  # twenty times that, in one minute
        assert api.client.post(search, headers=packer, json=body).status_code == 200
    [alarm] = _alarms(api.d, "request-rate")
    assert alarm.principal == packer_id and alarm.count == 100
    assert alarm.evidence["baseline"]["mean_per_minute"] == pytest.approx(5, abs=0.01)
    assert alarm.evidence["baseline"]["minutes"] >= 29 and alarm.evidence["observed_per_minute"] == 100


def test_one_principal_revealing_five_thousand_addresses_in_ten_minutes_raises_the_volume_alarm(
    serve_watched: Callable[..., Api],
) -> None:
    api = serve_watched()
    orders = list(generate_orders(5000, seed=41, prefix="9"))
    _ingest(api, orders)
    packer, packer_id = _session(api, "pia.packer", "fulfilment")
    url = f"{api.base}/tenants/{TENANT}/reveal"
    for i in range(0, 5000, 500):
        body = {"orders": [o["AmazonOrderId"] for o in orders[i : i + 500]], "fields": ["ShippingAddress.AddressLine1"]}
        r = api.client.post(url, headers=packer, json=body | {"purpose": "fulfilment"})
        assert r.status_code == 200, r.text
    [alarm] = _alarms(api.d, "reveal-volume")
    assert (alarm.principal, alarm.severity, alarm.clause) == (packer_id, "critical", "4")
    assert alarm.evidence["measure"] == "fields" and alarm.evidence["hard_cap"] == 2000
    assert alarm.evidence["observed"] > 2000 and alarm.evidence["window_seconds"] == 600
    assert _alarms(api.d, "request-rate") == []  # one attack, one alarm: reveals are measured by volume
    every = json.dumps([a.payload() for a in _all(api.d)]).encode()
    seeded = sorted(pii_strings([get_orders_response(orders[:200])]))  # 200 orders' worth: a scan of all is slow
    assert len(seeded) > 1000 and leaked(set(seeded), every + written_files(api.d)) == []


def test_a_search_that_finds_a_canary_and_a_reveal_of_one_raise_one_critical_alarm(
    serve_watched: Callable[..., Api],
) -> None:
    api = serve_watched()
    canaries = list(fake_orders(2))
    with api.d.unit_of_work() as conn:
        api.d.monitor.plant(conn, api.d.vault, TENANT, canaries, principal=OPERATOR)
    packer, packer_id = _session(api, "pia.packer", "fulfilment")
    listed = api.client.get(f"{api.base}/tenants/{TENANT}/orders", headers=packer).json()["items"]
    assert {o["order_id"] for o in listed} == {api.order_id, listed[-1]["order_id"]} and len(listed) == 2
    assert _alarms(api.d, "canary-touched") == []  # a listing that leaves them out touches none

    email = canaries[0]["BuyerInfo"]["BuyerEmail"]
    body = {"kind": "email", "value": email, "purpose": "fulfilment"}
    hits = api.client.post(f"{api.base}/tenants/{TENANT}/search", headers=packer, json=body).json()
    [alarm] = _alarms(api.d, "canary-touched")
    assert (alarm.severity, alarm.principal, alarm.tenant, alarm.count) == ("critical", packer_id, TENANT, 1)
    assert alarm.evidence["event_name"] == "vault:record:search" and len(alarm.evidence["canary_records"]) >= 1
    assert hits["items"], hits  # the canary answers like any order: nothing tells the caller

    url = f"{api.base}/tenants/{TENANT}/orders/{canaries[1]['AmazonOrderId']}/reveal"
    assert api.client.post(url, headers=packer, json=REVEAL_FIELDS).status_code == 200
    [again] = _alarms(api.d, "canary-touched")  # the same snooping: the same alarm, counting it
    assert again.id == alarm.id and again.count == 2 and again.evidence["event_name"] == "vault:field:reveal"
    payload = json.dumps(again.payload()).encode() + written_files(api.d)
    assert leaked(pii_strings([get_orders_response(canaries)]), payload) == []


def test_password_spraying_over_twenty_accounts_raises_the_spraying_alarm(serve_watched: Callable[..., Api]) -> None:
    api = serve_watched()
    with api.d.unit_of_work() as conn:
        for i in range(20):
            login = f"staff.{'abcdefghijklmnopqrst'[i]}"
            api.d.access.accounts.add_person(conn, login, f"{login}@seller-tools.example", manager=None, actor=OPERATOR)
    for i in range(20):
        login = f"staff.{'abcdefghijklmnopqrst'[i]}"
        body = {"login": login, "password": "Summer2026!Summer", "code": "123456"}
        assert api.client.post(f"{api.base}/sessions", json=body).status_code in (401, 429)
    [alarm] = _alarms(api.d, "password-spraying")
    assert (alarm.severity, alarm.rule_version) == ("critical", 1)
    assert alarm.evidence["distinct"] == "fingerprint" and alarm.evidence["distinct_values"] >= 8
    assert alarm.count >= 8 and _alarms(api.d, "login-brute-force") == []
    assert alarm.principal is None  # a per-source rule names no account (a response must not hit the target)


def test_a_reveal_at_three_in_the_morning_when_eight_to_eight_is_allowed_raises_the_schedule_alarm(
    serve_watched: Callable[..., Api],
) -> None:
    clock = ManualClock(datetime.now(UTC).replace(hour=2, minute=50, second=0, microsecond=0))
    api = serve_watched(clock, pii_access_hours="08:00-20:00")
    packer, packer_id = _session(api, "pia.packer", "fulfilment")
    clock.advance(
        seconds=(datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0) - clock()).total_seconds()
    )
    url = f"{api.base}/tenants/{TENANT}/orders/{api.order_id}/reveal"
    assert api.client.post(url, headers=packer, json=REVEAL_FIELDS).status_code == 200
    [alarm] = _alarms(api.d, "pii-outside-hours")
    assert alarm.principal == packer_id and alarm.evidence["local_time"] == "03:00"
    assert alarm.evidence["allowed"] == "08:00-20:00" and alarm.evidence["zone"] == "UTC"
    clock.advance(hours=7)  # 10:00: inside the hours, nothing more
    assert api.client.post(url, headers=packer, json=REVEAL_FIELDS).status_code == 200
    assert [a.count for a in _alarms(api.d, "pii-outside-hours")] == [1]


def _all(d: Deployment) -> list[Alarm]:
    with d.unit_of_work(read_only=True) as conn:
        return d.monitor.list_alarms(conn, principal=OPERATOR, limit=1000)
