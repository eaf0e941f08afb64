"""Identity, least privilege and network protection, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pyotp
import pytest
import redis
import sqlalchemy
from limits import parse
from limits.strategies import SlidingWindowCounterRateLimiter
from sqlalchemy import select, update

from access_harness import ELSEWHERE, OFFICE, OUTSIDE, PASSWORD, Harness, locked_out
from conftest import OPERATOR, OTHER, TENANT
from factories import Person
from sagevault.access import (
    ALL_TENANTS,
    DEPLOYMENT_SCOPES,
    PURPOSE_SCOPES,
    ROLES,
    AccessCore,
    AccessService,
    LoginThrottle,
    RequestLimiter,
    client_address,
    is_breached,
    parse_network,
)
from sagevault.access._login import REFUSED
from sagevault.access._schema import api_keys, principals
from sagevault.access._throttle import _Windows
from sagevault.catalog import Purpose
from sagevault.config import Settings
from sagevault.db import reading
from sagevault.deployment import Deployment, open_deployment
from sagevault.errors import (
    AccessDenied,
    AccessError,
    AccountDisabled,
    AuthenticationFailed,
    CredentialExpired,
    KillSwitchEngaged,
    LoginThrottled,
    NetworkDenied,
    PurposeNotAllowed,
    RateLimited,
    TenantShredded,
)
from sagevault.identity import Channel, Principal, Scope
from sagevault.testing import ManualClock, generate_orders, get_orders_response
from sagevault.vault import Operation

# --- accounts ---------------------------------------------------------------------------------


def test_init_creates_no_account_and_bootstrap_makes_exactly_one(harness: Harness) -> None:
    with harness.tx() as conn:
        assert harness.svc.accounts.count_people(conn) == 0
        for generic in ("admin", "root", "test", "shared", "team", "Admin2", "ops_1"):
            with pytest.raises(AccessError, match="generic name"):
                harness.svc.accounts.bootstrap_admin(conn, generic, "x@seller-tools.example", actor=OPERATOR)
        with pytest.raises(AccessError, match="not an e-mail"):
            harness.svc.accounts.bootstrap_admin(
                conn, "maria@seller-tools.example", "m@seller-tools.example", actor=OPERATOR
            )
        enrolment = harness.svc.accounts.bootstrap_admin(
            conn, "maria.silva", "maria@seller-tools.example", actor=OPERATOR
        )
        assert enrolment.secret.startswith("sve_")
        with pytest.raises(AccessError, match="exists already"):
            harness.svc.accounts.bootstrap_admin(conn, "john.smith", "john@seller-tools.example", actor=OPERATOR)
        # Until enrolled, the account cannot log in.
        attempt = harness.svc.authn.login(conn, "maria.silva", PASSWORD, "000000", source=OFFICE)
        assert not attempt.ok
        with pytest.raises(AuthenticationFailed):
            attempt.session()
        maria = harness.enrol(conn, enrolment)
        with pytest.raises(AuthenticationFailed):  # the enrolment secret works once
            harness.svc.enrolment.begin(conn, "maria.silva", enrolment.secret)
    harness.clock.advance(seconds=30)
    session = harness.login(maria)
    assert session.principal.id == maria.id and session.principal.kind == "person"
    with harness.tx() as conn:
        assert harness.svc.authn.authenticate_session(conn, session.token, source=OFFICE).id == maria.id
        harness.svc.core.authorize(conn, session.principal, Scope.USERS_ADMIN)  # bootstrap gave the admin role
        with pytest.raises(AccessDenied):  # ... and no PII
            harness.svc.core.authorize(conn, session.principal, Scope.PII_REVEAL, TENANT, purpose=Purpose.FULFILMENT)
    assert harness.events("access:login:success", maria.id)


def test_password_rules_each_refused_and_recorded(harness: Harness, admins: tuple[Person, Person]) -> None:
    with harness.tx() as conn:
        enrolment = harness.svc.accounts.add_person(
            conn,
            "carlos.oliveira",
            "carlos@seller-tools.example",
            manager="alice.ng",
            actor=harness.as_principal(admins[0]),
        )
        setup = harness.svc.enrolment.begin(conn, enrolment.login, enrolment.secret)
        code = pyotp.TOTP(setup.secret).at(harness.clock())
        cases = {
            "Short-1a": "at least 12 characters",
            "alllowercase-and-digits-1": "an upper-case letter",
            "NoDigitsHere-At-All": "a digit",
            "NoSymbols1234abcd": "a symbol",
            "Carlos-Oliveira-99x": "no part of the login",
            "Password1234!": "known from breaches",
            "Qwertyuiop123!": "known from breaches",
        }
        for bad, why in cases.items():
            with pytest.raises(AccessError, match=why) as info:
                harness.svc.enrolment.finish(conn, enrolment.login, enrolment.secret, bad, code)
            assert bad not in str(info.value)
    refused = harness.events("access:password:change", enrolment.principal_id)
    assert [e["reason"] for e in refused].count("weak_password") == 5
    assert [e["reason"] for e in refused].count("breached_password") == 2
    assert is_breached("Sunshine2024!") and not is_breached(PASSWORD)


def test_password_history_min_age_and_max_age(harness: Harness) -> None:
    dana = harness.person("dana.tanaka", "viewer")
    svc, clock = harness.svc, harness.clock

    def change(new: str) -> None:
        with harness.tx() as conn:
            attempt = svc.authn.change_password(conn, dana.login, dana.password, new, dana.code(clock), source=OFFICE)
        clock.advance(seconds=30)
        attempt.check()  # after the commit, as an edge does

    with pytest.raises(AccessError, match="less than 1 day"):
        change("Second-Harbor-88-Kite")
    passwords = [f"Rotation-{n:02d}-Marble-Q" for n in range(10)]
    for new in passwords:
        clock.advance(days=1, seconds=5)
        change(new)
        dana.password = new
    clock.advance(days=1, seconds=5)
    with pytest.raises(AccessError, match="one of your last 10"):
        change(passwords[1])
    change(PASSWORD)  # the enrolment password is now 11 changes back: allowed again
    dana.password = PASSWORD
    reasons = [e["reason"] for e in harness.events("access:password:change", dana.id)]
    assert reasons.count("password_too_young") == 1 and reasons.count("password_reused") == 1
    clock.advance(days=365)
    with pytest.raises(CredentialExpired, match="older than 365 days"):
        harness.login(dana)


def test_wrong_and_replayed_totp_are_refused_and_recovery_codes_work_once(harness: Harness) -> None:
    eve = harness.person("eve.murphy", "viewer")
    with pytest.raises(AuthenticationFailed):
        harness.login(eve, code="123456" if eve.code(harness.clock) != "123456" else "654321")
    code = eve.code(harness.clock)
    with harness.tx() as conn:
        harness.svc.authn.login(conn, eve.login, eve.password, code, source=OFFICE).session()
    with harness.tx() as conn:  # same code again, same 30-second step
        attempt = harness.svc.authn.login(conn, eve.login, eve.password, code, source=OFFICE)
    with pytest.raises(AuthenticationFailed):
        attempt.session()
    reasons = [e["reason"] for e in harness.events("access:login:failure", eve.id)]
    assert reasons == ["bad_totp", "totp_replay"]
    harness.login(eve, code=eve.recovery[0])
    with pytest.raises(AuthenticationFailed):
        harness.login(eve, code=eve.recovery[0])
    assert harness.events("access:login:success", eve.id)[-1]["reason"] == "recovery_code"


def test_unknown_account_fails_like_a_wrong_password(harness: Harness) -> None:
    frank = harness.person("frank.rossi", "viewer")
    with pytest.raises(AuthenticationFailed) as wrong:
        harness.login(frank, password="Not-The-Password-42")
    ghost = Person("ghost.user", "usr_none", PASSWORD, frank.totp, [])
    with pytest.raises(AuthenticationFailed) as unknown:
        harness.login(ghost)
    assert str(wrong.value) == str(unknown.value) == REFUSED


# --- lockout ----------------------------------------------------------------------------------


def test_ten_wrong_passwords_lock_with_tiered_cool_off_and_admin_unlock(
    harness: Harness, admins: tuple[Person, Person]
) -> None:
    grace = harness.person("grace.chen", "viewer")
    for n in range(9):
        with pytest.raises(AuthenticationFailed):
            harness.login(grace, password=f"Wrong-Password-{n}-x")
    harness.login(grace)  # nine failures: not locked; success clears the count
    for n in range(10):
        with pytest.raises(AuthenticationFailed):
            harness.login(grace, password=f"Wrong-Password-{n}-y")
    locked_out(harness, grace)  # the right password does not get in while locked
    locks = harness.events("access:account:lock", grace.id)
    assert len(locks) == 1 and locks[0]["counts"] == {"locks": 1, "minutes": 15}
    harness.clock.advance(minutes=16)
    harness.login(grace)  # cool-off over
    assert harness.events("access:account:unlock", grace.id)[-1]["reason"] == "cool_off"
    for n in range(10):
        with pytest.raises(AuthenticationFailed):
            harness.login(grace, password=f"Wrong-Password-{n}-z", source=ELSEWHERE)
    assert harness.events("access:account:lock", grace.id)[-1]["counts"] == {"locks": 1, "minutes": 15}
    # lock_count was reset by the successful log-in; lock again without success in between:
    harness.clock.advance(minutes=16)
    for n in range(10):
        with pytest.raises(AuthenticationFailed):
            harness.login(grace, password=f"Wrong-Password-{n}-w", source=ELSEWHERE)
    assert harness.events("access:account:lock", grace.id)[-1]["counts"] == {"locks": 2, "minutes": 30}
    with harness.tx() as conn:
        harness.svc.accounts.unlock(conn, grace.login, actor=harness.as_principal(admins[1]))
    harness.login(grace)
    assert harness.events("access:account:unlock", admins[1].id)


def test_spraying_one_source_is_blocked_without_locking_the_accounts(harness: Harness) -> None:
    people = [harness.person(f"spray.target{n:02d}", "viewer") for n in range(50)]
    outcomes = []
    for person in people:
        try:
            # A new address each time, all in one /64: counted as one source.
            harness.login(person, password="Summer-Sale-2026!", source=f"2001:db8::{len(outcomes) + 1:x}")
        except (LoginThrottled, AuthenticationFailed) as exc:
            outcomes.append(exc.reason)
    assert outcomes == ["bad_credentials"] * 10 + ["spraying"] * 40  # blocked after 10 distinct accounts
    detections = harness.events("access:spray:detect")
    assert len(detections) == 1 and detections[0]["client_ip_hash"]
    assert not harness.events("access:account:lock")
    for person in people:  # their owners, from the office, are not locked out
        harness.login(person, source=OFFICE)


# --- counters in Redis --------------------------------------------------------------------------


def test_redis_counters_are_shared_between_nodes(
    vault_tenant: Deployment, clock: ManualClock, redis_prefix: str
) -> None:
    url = "redis://127.0.0.1:6379/0"
    node_a, node_b = (
        Harness(vault_tenant, clock, LoginThrottle(vault_tenant.settings, storage_url=url, key_prefix=redis_prefix))
        for _ in range(2)
    )
    henry = node_a.person("henry.brown", "viewer")
    for n in range(10):  # five failures on each node: ten in all
        with pytest.raises(AuthenticationFailed):
            (node_a if n % 2 else node_b).login(henry, source="127.0.0.1", password=f"Wrong-Password-{n}-r")
    locked_out(node_a, henry, source="127.0.0.1")
    client = redis.Redis(host="127.0.0.1", port=6379)
    keys = [k.decode() for k in client.scan_iter(f"{redis_prefix}*")]
    client.close()
    assert keys and not any("henry" in k or "127.0.0.1" in k for k in keys)  # keyed hashes only


def test_redis_down_refuses_logins(vault_tenant: Deployment, clock: ManualClock) -> None:
    down = LoginThrottle(vault_tenant.settings, storage_url="redis://127.0.0.1:1/0", key_prefix="unused")
    h = Harness(vault_tenant, clock, down)
    irene = h.person("irene.yilmaz", "viewer")
    with pytest.raises(LoginThrottled, match="cannot be reached") as info:
        h.login(irene, source="127.0.0.1")  # the right password and code
    assert info.value.reason == "limiter_unavailable"
    assert h.events("access:login:failure")[-1]["reason"] == "limiter_unavailable"


def test_redis_request_counters_hold_per_route_and_principal_on_every_node_and_limits_reads_them(
    settings: Settings, redis_prefix: str
) -> None:
    tight = settings.model_copy(
        update={"api_rate_per_principal": "5 per minute", "api_route_rates": {"GET /narrow": "2 per minute"}}
    )
    url = "redis://127.0.0.1:6379/0"
    node_a, node_b = (RequestLimiter(tight, storage_url=url, key_prefix=redis_prefix) for _ in range(2))
    node_a.admit("p1", "GET /narrow")
    node_b.admit("p1", "GET /narrow")
    with pytest.raises(RateLimited, match="on this route"):  # the route's 2, counted across both nodes
        node_a.admit("p1", "GET /narrow")
    node_b.admit("p1", "GET /wide")  # the principal's total counted the refused route call too: 4
    node_a.admit("p2", "GET /narrow")  # another principal has its own counters
    node_a.admit("p1", "GET /wide")  # 5
    with pytest.raises(RateLimited, match="for one principal"):
        node_b.admit("p1", "GET /wide")
    # The counters are the `limits` library's own keys: its reading agrees.
    store = SlidingWindowCounterRateLimiter(node_a._storage)
    assert not store.test(parse("5 per minute"), "api", "p1") and store.test(parse("5 per minute"), "api", "p2")
    assert not store.test(parse("2 per minute"), "route", "GET /narrow", "p1")


def test_in_memory_request_rates_hold_and_their_counters_are_swept_without_a_thread(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RequestLimiter(
        settings.model_copy(update={"api_rate_per_principal": "5 per second", "api_route_rates": {}})
    )
    started: list[threading.Thread] = []
    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda t: (started.append(t), start(t))[1])
    for _ in range(5):
        limiter.admit("p1", "GET /x")
    with pytest.raises(RateLimited):
        limiter.admit("p1", "GET /x")
    for n in range(60):  # steady traffic from many principals: counted, and no thread started for it
        limiter.admit(f"p{n + 2}", "GET /x")
        time.sleep(0.005)
    assert started == []
    time.sleep(2.2)  # every counter has expired (a sliding window keeps two windows)
    limiter.admit("late", "GET /x")  # sweeps the rest
    assert limiter._windows is not None and len(limiter._windows) == 1  # only "late"'s counter is left
    limiter.admit("p1", "GET /x")  # p1's window has passed too


def test_the_in_memory_sliding_window_weighs_the_previous_window_and_never_admits_more_than_its_rate() -> None:
    now = [1000.0]
    windows = _Windows(clock=lambda: now[0])
    ten = parse("10 per 10 seconds")
    assert [windows.hit("k", ten) for _ in range(11)] == [True] * 10 + [False]
    assert windows.hit("other", ten)  # its own counter
    now[0] = 1012.0  # 20 % into the next window: the last one still weighs 8
    assert [windows.hit("k", ten) for _ in range(3)] == [True, True, False]
    now[0] = 1019.9  # 99 % in: it weighs 0.1, so 9 more (0.1 + 2 + 8 = 10.1 would be over)
    assert sum(windows.hit("k", ten) for _ in range(12)) == 7
    now[0] = 1045.0  # two windows later: nothing weighs
    assert sum(windows.hit("k", ten) for _ in range(12)) == 10
    t = 2000.0  # at any steady pace, never more than 10 in any 10 seconds
    times: list[float] = []
    while t < 2100:
        now[0] = t
        if windows.hit("steady", ten):
            times.append(t)
        t += 0.37
    assert all(sum(1 for u in times if s <= u < s + 10) <= 10 for s in times)
    assert len(times) >= 90  # and it does admit about the rate


# --- leavers, API keys ----------------------------------------------------------------------------


def test_disabled_account_sessions_and_api_keys_stop_at_once(harness: Harness, admins: tuple[Person, Person]) -> None:
    admin = harness.as_principal(admins[0])
    jack = harness.person("jack.patel", "viewer")
    session = harness.login(jack)
    with harness.tx() as conn:
        harness.svc.accounts.add_service(
            conn, "label-printer", owner="alice.ng", purpose="prints shipping labels", actor=admin
        )
        harness.svc.grants.grant(conn, "label-printer", "viewer", [TENANT], actor=admin)
        key = harness.svc.api_keys.issue(conn, "label-printer", scopes=["records:read"], actor=admin)
        service = harness.svc.api_keys.verify(conn, key.token, source=OFFICE)
        harness.d.vault.record_count(conn, TENANT, principal=service)
        harness.d.vault.record_count(conn, TENANT, principal=session.principal)
    with harness.tx() as conn:
        assert harness.svc.accounts.disable(conn, "jack.patel", actor=admin) == 1
        assert harness.svc.accounts.disable(conn, "label-printer", actor=admin) == 1
    with harness.tx() as conn:
        with pytest.raises(AuthenticationFailed):
            harness.svc.authn.authenticate_session(conn, session.token, source=OFFICE)
        with pytest.raises(AccountDisabled):  # principal objects someone kept are refused too
            harness.d.vault.record_count(conn, TENANT, principal=session.principal)
        with pytest.raises(AccountDisabled):
            harness.d.vault.record_count(conn, TENANT, principal=service)
        with pytest.raises(AuthenticationFailed):
            harness.svc.api_keys.verify(conn, key.token, source=OFFICE)
    with pytest.raises(AuthenticationFailed):
        harness.login(jack)


def test_api_keys_expire_carry_scopes_and_are_refused_when_wrong(
    harness: Harness, admins: tuple[Person, Person]
) -> None:
    admin = harness.as_principal(admins[0])
    with harness.tx() as conn:
        harness.svc.accounts.add_service(conn, "order-sync", owner="alice.ng", purpose="SP-API order sync", actor=admin)
        harness.svc.grants.grant(conn, "order-sync", "viewer", [TENANT], actor=admin)
        with pytest.raises(AccessError, match="1 to 365 days"):
            harness.svc.api_keys.issue(conn, "order-sync", scopes=["records:read"], days=400, actor=admin)
        with pytest.raises(AccessError, match="unknown"):
            harness.svc.api_keys.issue(conn, "order-sync", scopes=["records:everything"], actor=admin)
        key = harness.svc.api_keys.issue(conn, "order-sync", scopes=["records:read"], days=30, actor=admin)
        principal = harness.svc.api_keys.verify(conn, key.token, source=OFFICE)
        assert principal.kind == "service" and principal.scopes == frozenset({"records:read"})
        tampered = key.token[:-2] + ("AA" if not key.token.endswith("AA") else "BB")
        for bad in (tampered, "svk_nothing", key.token.replace("svk_", "svs_")):
            with pytest.raises(AuthenticationFailed):
                harness.svc.api_keys.verify(conn, bad, source=OFFICE)
        with pytest.raises(NetworkDenied):
            harness.svc.api_keys.verify(conn, key.token, source=OUTSIDE)
        with pytest.raises(AccessDenied):  # the grant has more than the key: the key decides
            harness.svc.core.authorize(conn, principal, Scope.RECORDS_SEARCH, TENANT)
        review = harness.svc.reviews.run(conn, actor=admin)
        assert [k[0] for k in review.expiring_keys] == [key.key_id]
        rotated = harness.svc.api_keys.rotate(conn, key.key_id, actor=admin)
        assert rotated.scopes == key.scopes and rotated.token != key.token
        with pytest.raises(AuthenticationFailed):  # the old key stops at once
            harness.svc.api_keys.verify(conn, key.token, source=OFFICE)
        assert harness.svc.api_keys.verify(conn, rotated.token, source=OFFICE).id == principal.id
        key = harness.svc.api_keys.issue(conn, "order-sync", scopes=["records:read"], days=30, actor=admin)
    harness.clock.advance(days=31)
    with harness.tx() as conn, pytest.raises(CredentialExpired, match="expired"):
        harness.svc.api_keys.verify(conn, key.token, source=OFFICE)
    reasons = [e["reason"] for e in harness.events("access:apikey:failure")]
    assert reasons.count("bad_credentials") == 4 and "credential_expired" in reasons and "network_denied" in reasons
    for event in harness.d.audit.search():
        assert key.token not in str(event)


def test_inactive_accounts_are_flagged_after_90_days(harness: Harness, admins: tuple[Person, Person]) -> None:
    kate = harness.person("kate.khan", "viewer")
    harness.clock.advance(days=60)
    harness.login(admins[0])
    harness.clock.advance(days=31)
    with harness.tx() as conn:
        review = harness.svc.reviews.run(conn, actor=harness.as_principal(admins[0]))
    flagged = {a.login for a in review.inactive}
    assert kate.login in flagged and admins[0].login not in flagged


# --- grants -------------------------------------------------------------------------------------


def test_grants_two_person_rule_windows_and_bad_tenants(harness: Harness, admins: tuple[Person, Person]) -> None:
    alice, bob = (harness.as_principal(a) for a in admins)
    liam = harness.person("liam.silva")
    with harness.tx() as conn:
        with pytest.raises(AccessDenied, match="yourself"):
            harness.svc.grants.grant(conn, "alice.ng", "fulfilment", [TENANT], actor=alice)
        with pytest.raises(AccessError, match="no tenant"):
            harness.svc.grants.grant(conn, "liam.silva", "viewer", ["A9NOSUCHTENANT"], actor=alice)
        with pytest.raises(AccessError, match="no role"):
            harness.svc.grants.grant(conn, "liam.silva", "superuser", [TENANT], actor=alice)
        pending = harness.svc.grants.grant(conn, "liam.silva", "fulfilment", [TENANT], actor=alice)
        assert pending.status == "pending"
        liam_p = harness.as_principal(liam)
        with pytest.raises(AccessDenied):
            harness.svc.core.authorize(conn, liam_p, Scope.PII_REVEAL, TENANT, purpose=Purpose.FULFILMENT)
        with pytest.raises(AccessDenied, match="you asked for this grant"):
            harness.svc.grants.approve(conn, pending.id, actor=alice)  # the requester
        assert harness.svc.grants.approve(conn, pending.id, actor=bob).status == "active"
        harness.svc.core.authorize(conn, liam_p, Scope.PII_REVEAL, TENANT, purpose=Purpose.FULFILMENT)
        later = harness.svc.grants.grant(
            conn,
            "liam.silva",
            "viewer",
            [OTHER],
            actor=alice,
            not_before=harness.clock() + timedelta(days=1),
            not_after=harness.clock() + timedelta(days=2),
        )
        assert later.status == "active"
        with pytest.raises(AccessDenied):  # the window has not opened
            harness.svc.core.authorize(conn, liam_p, Scope.RECORDS_READ, OTHER)
        harness.clock.advance(days=1, seconds=1)
        harness.svc.core.authorize(conn, liam_p, Scope.RECORDS_READ, OTHER)
        harness.clock.advance(days=1)
        with pytest.raises(AccessDenied):  # ... and has closed
            harness.svc.core.authorize(conn, liam_p, Scope.RECORDS_READ, OTHER)
    reasons = {e["reason"] for e in harness.events("access:grant:create", alice.id) if e["outcome"] != "success"}
    assert {"self_grant", "unknown_tenant", "bad_input"} <= reasons
    assert harness.events("access:grant:approve", alice.id)[0]["reason"] == "two_person_rule"


# --- the matrix ------------------------------------------------------------------------------------


def test_authorisation_matrix_every_scope_role_tenant_and_purpose(
    harness: Harness, admins: tuple[Person, Person]
) -> None:
    """Every scope x every role x tenant inside/outside the grant x purpose allowed/not: allowed
    exactly when the role carries the scope for that tenant (deployment scopes need "*") and,
    for PII scopes, the purpose is the role's; every denial is recorded."""
    alice = admins[0]
    holders = {role: harness.person(f"matrix.{role}", role, approver=alice) for role in ROLES}
    expected_denials: list[tuple[str, str | None, str]] = []
    with harness.tx() as conn:
        for role, person in holders.items():
            principal = harness.as_principal(person)
            allowed_purpose = min(ROLES[role].purposes, default=Purpose.FULFILMENT)
            other_purpose = next(p for p in Purpose if p not in ROLES[role].purposes)
            for scope in Scope:
                for tenant in (TENANT, OTHER):
                    for purpose in (allowed_purpose, other_purpose):
                        expect = (
                            scope in ROLES[role].scopes
                            and tenant == TENANT
                            and scope not in DEPLOYMENT_SCOPES
                            and (scope not in PURPOSE_SCOPES or purpose in ROLES[role].purposes)
                        )
                        try:
                            harness.svc.core.authorize(conn, principal, scope, tenant, purpose=purpose)
                            allowed = True
                        except AccessDenied:
                            allowed = False
                        assert allowed == expect, (role, scope.value, tenant, purpose.value)
                        if not allowed:
                            purpose_only = scope in ROLES[role].scopes and tenant == TENANT and scope in PURPOSE_SCOPES
                            reason = "purpose_not_allowed" if purpose_only else "access_denied"
                            expected_denials.append((person.id, tenant, reason))
    recorded = [
        (e["actor"], e["tenant_id"], e["reason"])
        for e in harness.events("access:permission:deny")
        if e["actor"] in {p.id for p in holders.values()}
    ]
    assert sorted(recorded) == sorted(expected_denials)
    assert len(expected_denials) > len(ROLES) * len(Scope)  # most cells are refusals


def test_vault_reads_go_through_the_decision(harness: Harness, admins: tuple[Person, Person]) -> None:
    d = harness.d
    orders = list(generate_orders(3))
    with harness.tx() as conn:
        d.vault.ingest(conn, TENANT, [get_orders_response(orders)], Operation.GET_ORDERS, principal=OPERATOR)
    order_id = orders[0]["AmazonOrderId"]
    packer = harness.as_principal(harness.person("mia.packer", "fulfilment", approver=admins[0]))
    viewer = harness.as_principal(harness.person("noah.viewer", "viewer"))
    field = "ShippingAddress.Name"
    with harness.tx() as conn:
        revealed = d.vault.reveal(conn, TENANT, order_id, [field], Purpose.FULFILMENT, principal=packer)
        assert revealed and revealed[0].value
        with pytest.raises(PurposeNotAllowed):
            d.vault.reveal(conn, TENANT, order_id, [field], Purpose.TAX_REMITTANCE, principal=packer)
        with pytest.raises(AccessDenied):
            d.vault.reveal(conn, OTHER, order_id, [field], Purpose.FULFILMENT, principal=packer)
        d.vault.get(conn, TENANT, order_id, principal=viewer)
        with pytest.raises(AccessDenied):
            d.vault.reveal(conn, TENANT, order_id, [field], Purpose.FULFILMENT, principal=viewer)
    denials = [e for e in harness.events("access:permission:deny") if e["actor"] in (packer.id, viewer.id)]
    assert len(denials) == 3 and all(e["operation"] == "reveal" for e in denials)


# --- network ---------------------------------------------------------------------------------------


def test_outside_the_allow_list_is_refused_before_any_data_is_read(
    harness: Harness, admins: tuple[Person, Person]
) -> None:
    d = harness.d
    orders = list(generate_orders(1))
    with harness.tx() as conn:
        d.vault.ingest(conn, TENANT, [get_orders_response(orders)], Operation.GET_ORDERS, principal=OPERATOR)
    olivia = harness.person("olivia.murphy", "fulfilment", approver=admins[0])
    with pytest.raises(NetworkDenied):
        harness.login(olivia, source=OUTSIDE)
    harness.login(olivia, source="2001:db8:1::7")  # IPv6 inside the list
    reads_before = len(harness.events("vault:field:reveal"))
    away = Principal(olivia.id, "person", Channel.API, OUTSIDE)
    with harness.tx() as conn, pytest.raises(NetworkDenied):
        d.vault.reveal(
            conn, TENANT, orders[0]["AmazonOrderId"], ["BuyerInfo.BuyerEmail"], Purpose.FULFILMENT, principal=away
        )
    assert len(harness.events("vault:field:reveal")) == reads_before
    assert harness.events("access:network:deny", None)
    assert harness.events("access:permission:deny", olivia.id)[-1]["reason"] == "network_denied"
    # A per-principal list narrows the global one.
    with harness.tx() as conn:
        harness.svc.allowlists.add(
            conn, "198.51.100.7/32", login="olivia.murphy", actor=harness.as_principal(admins[0])
        )
    with pytest.raises(NetworkDenied):
        harness.login(olivia, source=ELSEWHERE)
    harness.login(olivia, source=OFFICE)


def test_bad_cidrs_are_refused_and_recorded(harness: Harness, admins: tuple[Person, Person]) -> None:
    admin = harness.as_principal(admins[0])
    with harness.tx() as conn:
        with pytest.raises(AccessError, match=r"host bits set; did you mean 10\.0\.0\.0/8"):
            harness.svc.allowlists.add(conn, "10.0.0.1/8", actor=admin)
        with pytest.raises(AccessError, match="not an IPv4 or IPv6 network"):
            harness.svc.allowlists.add(conn, "10.0.0.0/33", actor=admin)
        with pytest.raises(AccessError, match=r"overlaps 198\.51\.100\.0/25"):
            harness.svc.allowlists.add(conn, "198.51.100.64/26", actor=admin)
        with pytest.raises(AccessError, match=r"overlaps 2001:db8::/32"):
            harness.svc.allowlists.add(conn, "2001:db8:ff::/48", actor=admin)
        harness.svc.allowlists.add(conn, "198.51.100.64/26", role="viewer", actor=admin)  # another list: fine
    assert len([e for e in harness.events("access:allowlist:add", admin.id) if e["outcome"] != "success"]) == 4


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    proxies = [parse_network("10.0.0.0/8")]
    assert str(client_address("203.0.113.9", "198.51.100.7", proxies)) == "203.0.113.9"  # not a proxy: ignored
    assert str(client_address("10.1.2.3", "198.51.100.7", proxies)) == "198.51.100.7"
    # The client wrote "127.0.0.1" itself; the proxy appended the real peer.
    assert str(client_address("10.1.2.3", "127.0.0.1, 203.0.113.50", proxies)) == "203.0.113.50"
    assert str(client_address("10.1.2.3", "203.0.113.50, 10.9.9.9", proxies)) == "203.0.113.50"
    with pytest.raises(AccessError):
        client_address("10.1.2.3", "not-an-ip", proxies)


# --- kill switches ---------------------------------------------------------------------------------


def _order_packer_and_officer(
    harness: Harness, admins: tuple[Person, Person]
) -> tuple[list[Any], Principal, Principal]:
    """One ingested order, a packer (fulfilment on TENANT) and a security officer on every tenant."""
    orders = list(generate_orders(1))
    with harness.tx() as conn:
        harness.d.vault.ingest(conn, TENANT, [get_orders_response(orders)], Operation.GET_ORDERS, principal=OPERATOR)
    packer = harness.as_principal(harness.person("paul.packer", "fulfilment", approver=admins[0]))
    officer = harness.as_principal(
        harness.person("sofia.officer", "security-officer", tenants=(ALL_TENANTS,), approver=admins[0])
    )
    return orders, packer, officer


def test_kill_switch_stops_reveals_at_once_and_survives_a_restart(
    harness: Harness, admins: tuple[Person, Person], settings: Settings, backend: str, request: pytest.FixtureRequest
) -> None:
    d = harness.d
    orders, packer, officer = _order_packer_and_officer(harness, admins)
    order_id, field = orders[0]["AmazonOrderId"], ["ShippingAddress.Name"]
    with harness.tx() as conn:
        d.vault.reveal(conn, TENANT, order_id, field, Purpose.FULFILMENT, principal=packer)
    with harness.tx() as conn:
        with pytest.raises(AccessDenied):  # a packer cannot pull the switch
            harness.svc.switches.set(conn, "pii-access", True, actor=packer)
        harness.svc.switches.set(conn, "pii-access", True, actor=officer)
    with harness.tx() as conn, pytest.raises(KillSwitchEngaged, match="pii-access"):
        d.vault.reveal(conn, TENANT, order_id, field, Purpose.FULFILMENT, principal=packer)
    with harness.tx() as conn, pytest.raises(KillSwitchEngaged):  # the operator too
        d.vault.reveal(conn, TENANT, order_id, field, Purpose.FULFILMENT, principal=OPERATOR)
    # A restart: a new deployment object (new caches) on the same database.
    if backend == "sqlite":
        reopened = open_deployment(d.settings, keys=d.keys)
    else:
        reopened = open_deployment(d.settings, keys=d.keys, engine=d.engine, audit_engine=d.audit.engine)
    with reopened.engine.begin() as conn, pytest.raises(KillSwitchEngaged):
        reopened.vault.reveal(conn, TENANT, order_id, field, Purpose.FULFILMENT, principal=packer)
    with reopened.engine.begin() as conn:
        reopened.access.switches.set(conn, "pii-access", False, actor=officer)
        assert reopened.access.switches.list(conn, actor=officer)[0][:3] == ("pii-access", ALL_TENANTS, False)
    with reopened.engine.begin() as conn:
        assert reopened.vault.reveal(conn, TENANT, order_id, field, Purpose.FULFILMENT, principal=packer)
    with harness.tx() as conn:  # per tenant: the other tenant's sync goes on
        harness.svc.switches.set(conn, "sp-api-sync", True, tenant_id=TENANT, actor=officer)
    with harness.tx() as conn, pytest.raises(KillSwitchEngaged, match=f"tenant {TENANT}"):
        d.vault.ingest(conn, TENANT, [get_orders_response(orders)], Operation.GET_ORDERS, principal=OPERATOR)
    with harness.tx() as conn:
        d.vault.ingest(conn, OTHER, [get_orders_response(orders)], Operation.GET_ORDERS, principal=OPERATOR)
    assert harness.events("access:killswitch:engage", officer.id) and harness.events("access:killswitch:release")
    assert [e["reason"] for e in harness.events("access:permission:deny")].count("kill_switch") >= 3
    if backend == "sqlite":
        reopened.close()


def test_an_access_change_applies_at_once_within_the_unit_of_work_that_made_it(
    harness: Harness, admins: tuple[Person, Person]
) -> None:
    """The policy generation is read once per unit of work and remembered for it; a change that
    unit makes itself (here a kill switch, then a disabled account) is seen by its next decision."""
    d = harness.d
    orders, packer, officer = _order_packer_and_officer(harness, admins)
    order_id, field = orders[0]["AmazonOrderId"], ["ShippingAddress.Name"]
    with harness.tx() as conn:
        assert d.vault.reveal(conn, TENANT, order_id, field, Purpose.FULFILMENT, principal=packer)
        harness.svc.switches.set(conn, "pii-access", True, actor=officer)
        with pytest.raises(KillSwitchEngaged):
            d.vault.reveal(conn, TENANT, order_id, field, Purpose.FULFILMENT, principal=packer)
        harness.svc.switches.set(conn, "pii-access", False, actor=officer)
        assert d.vault.reveal(conn, TENANT, order_id, field, Purpose.FULFILMENT, principal=packer)
        harness.svc.accounts.disable(conn, "paul.packer", actor=harness.as_principal(admins[0]))
        with pytest.raises(AccessDenied):
            d.vault.reveal(conn, TENANT, order_id, field, Purpose.FULFILMENT, principal=packer)


def test_a_kill_switch_committed_while_a_unit_of_work_runs_stops_its_next_decision_on_postgresql(
    harness: Harness, admins: tuple[Person, Person], backend: str
) -> None:
    """PostgreSQL reads committed data statement by statement, so every decision reads the policy
    generation again: a switch engaged between a request's credential check and its reveal stops
    the reveal. On SQLite a read unit of work is one snapshot, so it is ordered before the switch
    as a whole (and the next one is stopped)."""
    d = harness.d
    orders, packer, officer = _order_packer_and_officer(harness, admins)
    order_id, field = orders[0]["AmazonOrderId"], ["ShippingAddress.Name"]
    with d.engine.connect() as conn:
        reading(conn)
        with conn.begin():
            d.access.core.policy(conn)  # what the API's credential check does first
            with harness.tx() as other:  # another request, another worker
                harness.svc.switches.set(other, "pii-access", True, actor=officer)
            if backend == "postgresql":
                with pytest.raises(KillSwitchEngaged):
                    d.vault.reveal(conn, TENANT, order_id, field, Purpose.FULFILMENT, principal=packer)
            else:
                assert d.vault.reveal(conn, TENANT, order_id, field, Purpose.FULFILMENT, principal=packer)
    with harness.tx() as conn, pytest.raises(KillSwitchEngaged):
        d.vault.reveal(conn, TENANT, order_id, field, Purpose.FULFILMENT, principal=packer)


def test_re_enabled_account_needs_its_sensitive_grants_approved_again(
    harness: Harness, admins: tuple[Person, Person]
) -> None:
    alice, bob = (harness.as_principal(a) for a in admins)
    rosa = harness.as_principal(harness.person("rosa.tanaka", "fulfilment", "viewer", approver=admins[0]))
    with harness.tx() as conn:
        harness.svc.accounts.disable(conn, "rosa.tanaka", actor=alice)
        harness.svc.accounts.enable(conn, "rosa.tanaka", actor=alice)
        harness.svc.core.authorize(conn, rosa, Scope.RECORDS_READ, TENANT)  # viewer: back at once
        with pytest.raises(AccessDenied):  # fulfilment: waits for a second party
            harness.svc.core.authorize(conn, rosa, Scope.PII_REVEAL, TENANT, purpose=Purpose.FULFILMENT)
        pending = harness.svc.grants.list(conn, actor=alice, login="rosa.tanaka", pending=True)
        assert [g.role for g in pending] == ["fulfilment"]
        with pytest.raises(AccessDenied):  # alice re-enabled her, so alice is the requester now
            harness.svc.grants.approve(conn, pending[0].id, actor=alice)
        harness.svc.grants.approve(conn, pending[0].id, actor=bob)
        harness.svc.core.authorize(conn, rosa, Scope.PII_REVEAL, TENANT, purpose=Purpose.FULFILMENT)


def test_role_allow_list_limits_that_roles_grants_and_loopback_is_the_default(
    vault_tenant: Deployment, clock: ManualClock
) -> None:
    h = Harness(vault_tenant, clock)
    sam = h.person("sam.rossi", "viewer")
    h.login(sam, source="127.0.0.1")  # no global allow-list yet: loopback only
    with pytest.raises(NetworkDenied):
        h.login(sam, source="192.0.2.10")
    with h.tx() as conn:
        h.svc.allowlists.add(conn, "192.0.2.0/24", actor=OPERATOR)
        h.svc.allowlists.add(conn, "192.0.2.128/25", role="viewer", actor=OPERATOR)
        inside = Principal(sam.id, "person", Channel.API, "192.0.2.200")
        outside_role = Principal(sam.id, "person", Channel.API, "192.0.2.10")
        h.svc.core.authorize(conn, inside, Scope.RECORDS_READ, TENANT)
        with pytest.raises(AccessDenied):  # inside the global list, outside the viewer role's list
            h.svc.core.authorize(conn, outside_role, Scope.RECORDS_READ, TENANT)
        with pytest.raises(NetworkDenied):  # a library call without an address is refused outright
            h.svc.core.authorize(conn, Principal(sam.id, "person"), Scope.RECORDS_READ, TENANT)


def test_every_vault_refusal_is_recorded_and_key_use_counts_as_activity(
    harness: Harness, admins: tuple[Person, Person]
) -> None:
    d, admin = harness.d, harness.as_principal(admins[0])
    viewer = harness.as_principal(harness.person("tom.viewer", "viewer"))
    with harness.tx() as conn:
        for call in (
            lambda: d.vault.list_tenants(conn, principal=viewer),
            lambda: d.vault.record_count(conn, OTHER, principal=viewer),
            lambda: d.vault.keys.status(conn, TENANT, principal=viewer),
            lambda: d.vault.shred_receipt(conn, TENANT, principal=viewer),
        ):
            with pytest.raises(AccessDenied):
                call()
        harness.svc.accounts.add_service(conn, "busy-sync", owner="alice.ng", purpose="order sync", actor=admin)
        harness.svc.grants.grant(conn, "busy-sync", "viewer", [TENANT], actor=admin)
        key = harness.svc.api_keys.issue(conn, "busy-sync", scopes=["records:read"], actor=admin)
    operations = [e["operation"] for e in harness.events("access:permission:deny", viewer.id)]
    assert operations == ["list tenants", "record count", "key status", "shred receipt"]
    harness.clock.advance(days=89)
    with harness.tx() as conn:
        harness.svc.api_keys.verify(conn, key.token, source=OFFICE)
    harness.clock.advance(days=2)
    with harness.tx() as conn:
        inactive = {a.login for a in harness.svc.reviews.run(conn, actor=admin).inactive}
    assert "busy-sync" not in inactive and "tom.viewer" in inactive


def test_a_key_used_while_a_writer_holds_the_lock_is_served_and_its_use_noted_later(
    harness: Harness, admins: tuple[Person, Person]
) -> None:
    """A key's last-use bookkeeping waits only briefly for the write lock (SQLite) or the key's
    row (PostgreSQL): while another transaction holds it, the request is served, not held up or
    refused, and a later request notes the use."""
    d, admin = harness.d, harness.as_principal(admins[0])
    with harness.tx() as conn:
        harness.svc.accounts.add_service(conn, "night-sync", owner="alice.ng", purpose="order sync", actor=admin)
        harness.svc.grants.grant(conn, "night-sync", "viewer", [TENANT], actor=admin)
        key = harness.svc.api_keys.issue(conn, "night-sync", scopes=["records:read"], actor=admin)
    key_row = api_keys.c.id == key.token[4:20]

    def used_at() -> object:
        with d.engine.connect() as conn:
            return conn.execute(select(api_keys.c.last_used_at).where(key_row)).scalar_one()

    def use() -> str:
        with d.engine.connect() as conn:
            reading(conn)  # as the API's read routes run
            with conn.begin():
                return harness.svc.api_keys.verify(conn, key.token, source=OFFICE).kind

    with d.engine.connect() as writer, writer.begin():  # an ingest, say: it holds the lock for now
        writer.execute(update(api_keys).where(key_row).values(last_used_at=None))
        assert use() == "service"
    assert used_at() is None  # not noted while the lock was held ...
    assert use() == "service"
    assert used_at() is not None  # ... but by the next use


def test_password_change_guesses_count_like_log_ins(harness: Harness) -> None:
    uma = harness.person("uma.chen", "viewer")
    for n in range(10):
        with harness.tx() as conn:
            attempt = harness.svc.authn.change_password(
                conn, uma.login, f"Guess-Number-{n}-Q", "New-Harbor-77-Quill", uma.code(harness.clock), source=OFFICE
            )
        harness.clock.advance(seconds=30)
        with pytest.raises(AuthenticationFailed) as info:
            attempt.check()
        assert info.value.reason == "bad_credentials"
    assert harness.events("access:account:lock", uma.id)
    locked_out(harness, uma)


def test_refused_before_the_tenant_is_even_looked_at(harness: Harness, admins: tuple[Person, Person]) -> None:
    """The decision comes first: from outside the allow-list a shredded tenant answers
    NetworkDenied, not TenantShredded (which the vault can only know by reading the tenant)."""
    d = harness.d
    vera = harness.as_principal(harness.person("vera.okafor", "fulfilment", approver=admins[0]))
    with harness.tx() as conn:
        d.vault.shred(conn, TENANT, principal=OPERATOR)
    away = Principal(vera.id, "person", Channel.API, OUTSIDE)
    with harness.tx() as conn, pytest.raises(NetworkDenied):
        d.vault.reveal(
            conn, TENANT, "902-1845936-5435065", ["ShippingAddress.Name"], Purpose.FULFILMENT, principal=away
        )
    with harness.tx() as conn, pytest.raises(TenantShredded):
        d.vault.reveal(
            conn, TENANT, "902-1845936-5435065", ["ShippingAddress.Name"], Purpose.FULFILMENT, principal=vera
        )
    with harness.tx() as conn, pytest.raises(NetworkDenied, match="no source address"):
        d.vault.get(conn, TENANT, "902-1845936-5435065", principal=Principal(vera.id, "person"))


def test_odd_codes_and_locked_accounts_give_nothing_away(harness: Harness) -> None:
    wes = harness.person("wes.khan", "viewer")
    for odd in ("\u0661\u0662\u0663\u0664\u0665\u0666", "12345\ud800", "\uff11" * 6):
        with pytest.raises(AuthenticationFailed):  # never a crash, whatever the password
            harness.login(wes, code=odd)
    with pytest.raises(AuthenticationFailed):
        harness.login(Person("wes.k\ud800an", wes.id, PASSWORD, wes.totp, []))
    # Each was counted: two name wes (the code was checked), the two with unencodable input name
    # nobody (refused before the account was looked up).
    assert len(harness.events("access:login:failure", wes.id)) == 2
    anonymous = [e["reason"] for e in harness.events("access:login:failure") if e["actor"] is None]
    assert anonymous == ["bad_input"] * 2
    for n in range(7):
        with pytest.raises(AuthenticationFailed):
            harness.login(wes, password=f"Wrong-Password-{n}-v")
    answers = []
    for password in ("Still-Wrong-9-Pass", PASSWORD):  # locked now: a wrong password, then the right one
        with pytest.raises(AuthenticationFailed) as refused:
            harness.login(wes, password=password)
        answers.append((str(refused.value), refused.value.reason, type(refused.value)))
    assert answers[0] == answers[1] == (REFUSED, "bad_credentials", AuthenticationFailed)  # no hint either way
    assert [e["reason"] for e in harness.events("access:login:failure", wes.id)][-2:] == ["account_locked"] * 2


def test_reset_and_sensitive_keys_need_the_second_party_again(harness: Harness, admins: tuple[Person, Person]) -> None:
    alice, bob = (harness.as_principal(a) for a in admins)
    xena = harness.as_principal(harness.person("xena.silva", "fulfilment", approver=admins[1]))
    with harness.tx() as conn:
        assert (
            harness.svc.accounts.reset(conn, "xena.silva", actor=alice).pending_grants == 1
        )  # alice holds xena's secret
        assert [g.role for g in harness.svc.grants.list(conn, actor=bob, login="xena.silva", pending=True)] == [
            "fulfilment"
        ]
        harness.svc.grants.approve(conn, harness.svc.grants.list(conn, actor=bob, pending=True)[0].id, actor=bob)
        harness.svc.accounts.reset(conn, "xena.silva", actor=OPERATOR)  # the master-key holder: nothing to re-arm
        assert not harness.svc.grants.list(conn, actor=bob, login="xena.silva", pending=True)
        harness.svc.accounts.add_service(
            conn, "tax-export", owner="bob.okafor", purpose="tax remittance export", actor=bob
        )
        harness.svc.grants.grant(conn, "tax-export", "tax", [TENANT], actor=bob)
        pending = harness.svc.grants.list(conn, actor=bob, login="tax-export", pending=True)
        harness.svc.grants.approve(conn, pending[0].id, actor=alice)
        harness.svc.api_keys.issue(conn, "tax-export", scopes=["records:read"], actor=bob)  # not sensitive
        assert not harness.svc.grants.list(conn, actor=bob, login="tax-export", pending=True)
        assert harness.svc.api_keys.issue(conn, "tax-export", scopes=["pii:reveal"], actor=bob).pending_grants == 1
        assert [g.role for g in harness.svc.grants.list(conn, actor=bob, login="tax-export", pending=True)] == ["tax"]
    assert xena.id


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Tokyo"])
def test_expiry_and_windows_are_utc_whatever_the_host_zone(
    harness: Harness, admins: tuple[Person, Person], zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        admin = harness.as_principal(admins[0])
        with harness.tx() as conn:
            harness.svc.accounts.add_service(conn, "zone-sync", owner="alice.ng", purpose="order sync", actor=admin)
            harness.svc.grants.grant(
                conn, "zone-sync", "viewer", [OTHER], actor=admin, not_after=harness.clock() + timedelta(hours=2)
            )
            key = harness.svc.api_keys.issue(conn, "zone-sync", scopes=["records:read"], days=1, actor=admin)
        harness.clock.advance(hours=1, minutes=59)
        with harness.tx() as conn:
            service = harness.svc.api_keys.verify(conn, key.token, source=OFFICE)
            harness.svc.core.authorize(conn, service, Scope.RECORDS_READ, OTHER)
        harness.clock.advance(minutes=2)
        with harness.tx() as conn, pytest.raises(AccessDenied):  # the window closed on the minute
            harness.svc.core.authorize(conn, service, Scope.RECORDS_READ, OTHER)
        harness.clock.advance(hours=22)
        with harness.tx() as conn, pytest.raises(CredentialExpired):
            harness.svc.api_keys.verify(conn, key.token, source=OFFICE)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_session_that_ended_is_refused_and_recorded(harness: Harness) -> None:
    yara = harness.person("yara.chen", "viewer")
    session = harness.login(yara)
    harness.clock.advance(hours=13)
    with harness.tx() as conn, pytest.raises(AuthenticationFailed, match="log in again"):
        harness.svc.authn.authenticate_session(conn, session.token, source=OFFICE)
    assert harness.events("access:login:failure", yara.id)[-1]["reason"] == "session_ended"


def test_a_checked_session_is_remembered_per_generation_and_ends_at_once_in_every_process(
    harness: Harness, admins: tuple[Person, Person]
) -> None:
    # Another API worker: its own service and its own policy picture over the same database.
    d = harness.d
    other = AccessService(AccessCore(d.settings, d.keys, d.audit, tenants=d.vault, clock=harness.clock))
    yara, zoe = harness.person("yara.chen", "viewer"), harness.person("zoe.ng", "viewer")
    first, second, zoes = harness.login(yara), harness.login(yara), harness.login(zoe)
    session_reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM sessions" in statement:
            session_reads.append(statement)

    def check(svc: AccessService, *sessions: Any) -> None:
        with harness.tx() as conn:
            for s in sessions:
                assert svc.authn.authenticate_session(conn, s.token, source=OFFICE).id == s.principal.id

    sqlalchemy.event.listen(harness.d.engine, "before_cursor_execute", count)
    try:
        for svc in (harness.svc, other):
            check(svc, first, second, zoes)
        assert len(session_reads) == 6
        for svc in (harness.svc, other):  # remembered: no session row is read again
            check(svc, first, second, zoes)
        assert len(session_reads) == 6
    finally:
        sqlalchemy.event.remove(harness.d.engine, "before_cursor_execute", count)
    with harness.tx() as conn:  # logged out in one worker: refused at once in the other
        harness.svc.authn.logout(conn, first.token)
    with harness.tx() as conn, pytest.raises(AuthenticationFailed, match="log in again"):
        other.authn.authenticate_session(conn, first.token, source=OFFICE)
    check(other, second, zoes)
    with harness.tx() as conn:  # a disabled account: its sessions are refused at once everywhere
        harness.svc.accounts.disable(conn, "zoe.ng", actor=harness.as_principal(admins[0]))
    with harness.tx() as conn, pytest.raises(AuthenticationFailed):
        other.authn.authenticate_session(conn, zoes.token, source=OFFICE)
    check(other, second)
    harness.clock.advance(hours=13)  # expiry is checked on every request, remembered or not
    with harness.tx() as conn, pytest.raises(AuthenticationFailed, match="log in again"):
        other.authn.authenticate_session(conn, second.token, source=OFFICE)


def test_passwords_are_hashed_with_argon2id_at_the_deployment_cost(vault_tenant: Deployment) -> None:
    """The deployment's own access service (not the harness's fast hasher): Argon2id with the
    settings' cost, and a log-in checks against it."""
    d = vault_tenant
    with d.engine.begin() as conn:
        enrolment = d.access.accounts.add_person(
            conn, "nora.hash", "nora@seller-tools.example", manager=None, actor=OPERATOR
        )
        # enrolment checks the code against the deployment's own clock (real time)
        setup = d.access.enrolment.begin(conn, enrolment.login, enrolment.secret)
        totp = pyotp.TOTP(setup.secret)
        d.access.enrolment.finish(conn, enrolment.login, enrolment.secret, PASSWORD, totp.now())
        stored = conn.execute(select(principals.c.password_hash).where(principals.c.login == "nora.hash")).scalar_one()
    s = d.settings
    assert stored.startswith(
        f"$argon2id$v=19$m={s.password_hash_memory_kib},t={s.password_hash_time_cost},p={s.password_hash_parallelism}$"
    )
    code = totp.at(time.time() + 30)  # newer than the one enrolment used
    with d.engine.begin() as conn:
        wrong = d.access.authn.login(conn, "nora.hash", "Not-Her-Password-9!", code, source="127.0.0.1")
        right = d.access.authn.login(conn, "nora.hash", PASSWORD, code, source="127.0.0.1")
    assert not wrong.ok and right.ok
