"""The administration API over a real TLS server: users, enrolment, passwords, API keys, roles,
grants (two-person rule), allow-lists and kill switches, as an admin or a client would meet them."""

from __future__ import annotations

import base64
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import update

from conftest import OPERATOR, TENANT
from factories import People
from sagevault.access import ALL_TENANTS
from sagevault.access._login import REFUSED
from sagevault.access._schema import principals
from sagevault.config import Settings
from sagevault.crypto import InMemoryKeyProvider
from sagevault.deployment import init_deployment
from sagevault.testing import ManualClock, fast_password_hashing
from sagevault.web import API, create_app
from sagevault.web.api import _admin, _models
from webapi import PASSWORD, Api, InProcessClient

NEW_PASSWORD = "Harbor-Violet-93-Compass"

# Every route that needs a credential, with a body a permitted caller could send.
GUARDED: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("GET", "/users", "/users", None),
    ("POST", "/users", "/users", {"login": "zed.newcomer", "email": "zed@seller-tools.example"}),
    ("POST", "/services", "/services", {"login": "label-printer", "owner": "alice.ng", "purpose": "prints labels"}),
    ("POST", "/users/{login}/disable", "/users/alice.ng/disable", None),
    ("POST", "/users/{login}/enable", "/users/alice.ng/enable", None),
    ("POST", "/users/{login}/unlock", "/users/alice.ng/unlock", None),
    ("POST", "/users/{login}/reset", "/users/alice.ng/reset", None),
    ("GET", "/access-review", "/access-review", None),
    ("GET", "/api-keys", "/api-keys", None),
    ("POST", "/api-keys", "/api-keys", {"service": "order-sync", "scopes": ["records:read"]}),
    ("POST", "/api-keys/{key_id}/rotate", "/api-keys/0123456789abcdef/rotate", None),
    ("DELETE", "/api-keys/{key_id}", "/api-keys/0123456789abcdef", None),
    ("GET", "/roles", "/roles", None),
    ("GET", "/scopes", "/scopes", None),
    ("GET", "/grants", "/grants", None),
    ("POST", "/grants", "/grants", {"login": "alice.ng", "role": "viewer", "tenants": [TENANT]}),
    ("POST", "/grants/{grant_id}/approve", "/grants/grt_bcdfghjkmnpq/approve", None),
    ("DELETE", "/grants/{grant_id}", "/grants/grt_bcdfghjkmnpq", None),
    ("GET", "/allowlist", "/allowlist", None),
    ("POST", "/allowlist", "/allowlist", {"cidr": "127.0.0.0/8"}),
    ("DELETE", "/allowlist/{entry_id}", "/allowlist/net_bcdfghjkmnpq", None),
    ("GET", "/killswitches", "/killswitches", None),
    ("PUT", "/killswitches/{name}", "/killswitches/pii-access", None),
    ("DELETE", "/killswitches/{name}", "/killswitches/pii-access", None),
]
# Routes whose proof is in the body (a one-time secret, or the current password and a code).
OPEN = {("POST", "/enrolment/begin"), ("POST", "/enrolment/finish"), ("POST", "/password")}


def refused(r: httpx.Response, status: int, kind: str | None = None, *secrets: str) -> dict[str, Any]:
    """`r` is a problem of `status` (and `kind`) with a request id, and shows none of `secrets`."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["request_id"] == r.headers["x-request-id"]
    if kind is not None:
        assert body["type"] == f"https://sagevault.dev/problems/{kind}", body
    for secret in secrets:
        assert secret not in r.text
    return body


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, (r.status_code, r.text)
    return r.json() if r.content else None


def admins(api: Api) -> tuple[dict[str, str], dict[str, str]]:
    """Sessions of two administrators (each approved by the bootstrapped one)."""
    bob = api.login("bob.admin", api.person("bob.admin", "admin", [ALL_TENANTS]))
    carol = api.login("carol.admin", api.person("carol.admin", "admin", [ALL_TENANTS]))
    return bob, carol


def test_the_route_tables_of_this_module_cover_every_administration_route() -> None:
    served = {
        (m, r.path.removeprefix("/api/v1"))
        for r in _admin.router.routes
        if isinstance(r, APIRoute)
        for m in r.methods or ()
    }
    assert served == {(m, t) for m, t, _, _ in GUARDED} | OPEN


def test_every_administration_route_refuses_a_request_without_credentials(api: Api) -> None:
    for method, _, path, body in GUARDED:
        for headers in ({}, {"Authorization": "Bearer svs_forged"}, {"Authorization": "Bearer svk_0_forged"}):
            r = api.client.request(method, api.base + path, headers=headers, json=body)
            refused(r, 401, "authentication-failed")
            assert r.headers["www-authenticate"] == "Bearer"


def test_a_packer_is_refused_every_administration_route_and_learns_no_ids(api: Api) -> None:
    packer = api.login("pat.packer", api.person("pat.packer", "fulfilment", [TENANT]))
    for method, _, path, body in GUARDED:
        r = api.client.request(method, api.base + path, headers=packer, json=body)
        refused(r, 403, "access-denied")
    listed = api.client.get(f"{api.base}/users", headers=packer)
    assert "alice.ng" not in listed.text


def test_unknown_logins_and_ids_are_404_problems_for_an_admin(api: Api) -> None:
    bob, _ = admins(api)
    for method, template, path, _ in GUARDED:
        if "{" not in template or template.startswith("/killswitches"):
            continue
        unknown = path.replace("alice.ng", "nobody.here")
        body = refused(api.client.request(method, api.base + unknown, headers=bob), 404, "not-found")
        assert body["detail"].startswith("no ")
    killswitch = api.client.put(f"{api.base}/killswitches/self-destruct", headers=bob)
    assert "pii-access" in refused(killswitch, 422, "invalid-request")["detail"]  # says which names exist


def test_path_parameters_that_cannot_name_anything_are_422_problems(api: Api) -> None:
    bob, _ = admins(api)
    for method, path in [
        ("POST", "/users/x/disable"),
        ("POST", "/users/alice%20ng/enable"),
        ("POST", f"/users/{'a' * 65}/reset"),
        ("POST", "/api-keys/0123456789ABCDEF/rotate"),
        ("DELETE", "/api-keys/0123"),
        ("POST", "/grants/net_bcdfghjkmnpq/approve"),
        ("DELETE", "/grants/grt_"),
        ("DELETE", "/allowlist/grt_bcdfghjkmnpq"),
        ("DELETE", "/killswitches/PII-ACCESS"),
        ("PUT", "/killswitches/exports?tenant=a%40b.example"),
    ]:
        refused(api.client.request(method, api.base + path, headers=bob), 422, "invalid-request")
    assert api.client.get(f"{api.base}/api-keys", headers=bob, params={"login": "x@y"}).status_code == 422


def test_an_admin_adds_a_person_who_enrols_and_logs_in_over_https(api: Api) -> None:
    bob, _ = admins(api)
    added = ok(
        api.client.post(
            f"{api.base}/users", headers=bob, json={"login": "Erin.Shipper", "email": "erin@seller-tools.example"}
        ),
        201,
    )
    secret = added["enrolment_secret"]
    assert added["login"] == "erin.shipper" and secret.startswith("sve_") and added["expires_at"].endswith("+00:00")
    taken = api.client.post(
        f"{api.base}/users", headers=bob, json={"login": "erin.shipper", "email": "erin2@seller-tools.example"}
    )
    assert "taken" in refused(taken, 409, "conflict")["detail"]
    listed = ok(api.client.get(f"{api.base}/users", headers=bob))
    assert {u["login"]: u["status"] for u in listed["items"]}["erin.shipper"] == "enrolling"

    wrong = api.client.post(
        f"{api.base}/enrolment/begin", json={"login": "erin.shipper", "enrolment_secret": secret[:-4] + "XXXX"}
    )
    refused(wrong, 401, "authentication-failed", secret[:-4])
    setup = ok(
        api.client.post(f"{api.base}/enrolment/begin", json={"login": "erin.shipper", "enrolment_secret": secret})
    )
    assert setup["provisioning_uri"].startswith("otpauth://totp/") and "erin" not in setup["provisioning_uri"]
    totp = pyotp.TOTP(setup["totp_secret"])
    finish = {
        "login": "erin.shipper",
        "enrolment_secret": secret,
        "password": "erin-short",
        "code": totp.at(api.clock()),
    }
    weak = api.client.post(f"{api.base}/enrolment/finish", json=finish)
    assert "at least 12 characters" in refused(weak, 400, "bad-request", "erin-short", secret)["detail"]
    bad_code = api.client.post(f"{api.base}/enrolment/finish", json={**finish, "password": PASSWORD, "code": "000000"})
    refused(bad_code, 401, "authentication-failed", PASSWORD, secret)
    codes = ok(api.client.post(f"{api.base}/enrolment/finish", json={**finish, "password": PASSWORD}), 201)
    assert len(codes["recovery_codes"]) == 10 and len(set(codes["recovery_codes"])) == 10
    spent = api.client.post(f"{api.base}/enrolment/begin", json={"login": "erin.shipper", "enrolment_secret": secret})
    refused(spent, 401, "authentication-failed", secret)

    grant = ok(
        api.client.post(
            f"{api.base}/grants", headers=bob, json={"login": "erin.shipper", "role": "viewer", "tenants": [TENANT]}
        ),
        201,
    )
    assert grant["status"] == "active"  # masked reads reach no PII: no second party needed
    erin = api.login("erin.shipper", totp)
    masked = api.client.get(f"{api.base}/tenants/{TENANT}/orders/{api.order_id}", headers=erin)
    assert masked.status_code == 200 and "[PII" in masked.text
    recovered = api.client.post(
        f"{api.base}/sessions", json={"login": "erin.shipper", "password": PASSWORD, "code": codes["recovery_codes"][0]}
    )
    assert recovered.status_code == 201, recovered.text


def test_sensitive_grants_need_a_second_admin_over_https(api: Api) -> None:
    bob, carol = admins(api)
    dave = api.login("dave.packer", api.person("dave.packer", "viewer", [TENANT]))
    reveal = f"{api.base}/tenants/{TENANT}/orders/{api.order_id}/reveal"
    wanted = {"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"}
    refused(api.client.post(reveal, headers=dave, json=wanted), 403)

    wish = {"login": "dave.packer", "role": "fulfilment", "tenants": [TENANT]}
    pending = ok(api.client.post(f"{api.base}/grants", headers=bob, json=wish), 201)
    assert pending["status"] == "pending" and pending["approved_by"] is None
    refused(api.client.post(reveal, headers=dave, json=wanted), 403)  # pending grants give nothing
    own = api.client.post(f"{api.base}/grants/{pending['id']}/approve", headers=bob)
    assert "you asked for this grant" in refused(own, 403, "access-denied")["detail"]
    self_grant = api.client.post(
        f"{api.base}/grants", headers=bob, json={"login": "bob.admin", "role": "tax", "tenants": [TENANT]}
    )
    refused(self_grant, 403, "access-denied")

    approved = ok(api.client.post(f"{api.base}/grants/{pending['id']}/approve", headers=carol))
    assert approved["status"] == "active" and approved["approved_by"] not in (None, pending["requested_by"])
    assert ok(api.client.post(reveal, headers=dave, json=wanted))["fields"][0]["value"]
    again = api.client.post(f"{api.base}/grants/{pending['id']}/approve", headers=carol)
    assert "no longer pending" in refused(again, 409, "conflict")["detail"]

    live = ok(api.client.get(f"{api.base}/grants", headers=carol, params={"login": "dave.packer"}))
    assert sorted(g["role"] for g in live["items"]) == ["fulfilment", "viewer"]
    assert api.client.delete(f"{api.base}/grants/{pending['id']}", headers=carol).status_code == 204
    refused(api.client.post(reveal, headers=dave, json=wanted), 403)
    twice = api.client.delete(f"{api.base}/grants/{pending['id']}", headers=carol)
    assert "revoked already" in refused(twice, 409, "conflict")["detail"]
    late = api.client.post(f"{api.base}/grants/{pending['id']}/approve", headers=carol)
    assert "is revoked, no longer pending" in refused(late, 409, "conflict")["detail"]
    live = ok(api.client.get(f"{api.base}/grants", headers=carol, params={"login": "dave.packer"}))
    assert [g["role"] for g in live["items"]] == ["viewer"]


def test_a_grant_window_past_the_last_utc_instant_is_a_422_that_says_what_to_send(api: Api) -> None:
    bob, _ = admins(api)
    api.person("fay.viewer", "viewer", [TENANT])
    wish = {"login": "fay.viewer", "role": "viewer", "tenants": [TENANT]}
    for field, value in (("not_before", "9999-12-31T23:59:59-23:59"), ("not_after", "0001-01-01T00:00:00+23:59")):
        r = api.client.post(f"{api.base}/grants", headers=bob, json={**wish, field: value})
        detail = refused(r, 422, "invalid-request", value)["detail"]
        assert f"body.{field}" in detail and "out of range in UTC" in detail and "2026-11-01T08:00:00Z" in detail
    window = {"not_before": "2026-01-01T08:00:00+02:00", "not_after": "9999-12-31T23:59:59"}  # naive: UTC
    grant = ok(api.client.post(f"{api.base}/grants", headers=bob, json={**wish, **window}), 201)
    assert grant["not_before"].startswith("2026-01-01T06:00:00") and grant["not_after"].startswith("9999-12-31")


def test_lists_come_in_pages_with_a_cursor_that_ends_in_null(api: Api) -> None:
    bob, _ = admins(api)
    with api.d.engine.begin() as conn:
        for name in ("kim", "lee", "max", "ned", "ola"):
            api.d.access.accounts.add_person(
                conn, f"{name}.clerk", f"{name}@seller-tools.example", manager=None, actor=OPERATOR
            )
    everyone = ["alice.ng", "bob.admin", "carol.admin", "kim.clerk", "lee.clerk", "max.clerk", "ned.clerk", "ola.clerk"]
    first = ok(api.client.get(f"{api.base}/users", headers=bob, params={"limit": 5}))
    assert [u["login"] for u in first["items"]] == everyone[:5] and first["next_cursor"]
    second = ok(api.client.get(f"{api.base}/users", headers=bob, params={"limit": 5, "cursor": first["next_cursor"]}))
    assert [u["login"] for u in second["items"]] == everyone[5:] and second["next_cursor"] is None
    whole = ok(api.client.get(f"{api.base}/users", headers=bob, params={"limit": 8}))
    assert len(whole["items"]) == 8 and whole["next_cursor"] is None

    foreign = base64.urlsafe_b64encode(b"[1, 2]").decode().rstrip("=")  # a valid encoding of the wrong position
    for cursor in ("not-a-cursor!", "%%%", foreign):
        r = api.client.get(f"{api.base}/users", headers=bob, params={"cursor": cursor})
        assert "start again without one" in refused(r, 400, "bad-request")["detail"]
    for limit in (0, 501, "many"):
        refused(api.client.get(f"{api.base}/users", headers=bob, params={"limit": limit}), 422, "invalid-request")
    for path, typo in (("/users", "login"), ("/grants", "pendng"), ("/api-keys", "logn"), ("/killswitches", "tenant")):
        r = api.client.get(api.base + path, headers=bob, params={typo: "x"})  # a filter it does not have: not ignored
        assert typo in refused(r, 422, "invalid-request")["detail"], path

    grants = ok(api.client.get(f"{api.base}/grants", headers=bob, params={"limit": 2}))
    rest = ok(api.client.get(f"{api.base}/grants", headers=bob, params={"limit": 2, "cursor": grants["next_cursor"]}))
    ids = [g["id"] for g in grants["items"] + rest["items"]]
    assert len(ids) == 3 == len(set(ids)) and rest["next_cursor"] is None  # alice's, bob's and carol's


def test_an_admin_adds_a_service_and_issues_rotates_and_revokes_its_keys(api: Api) -> None:
    bob, carol = admins(api)
    service = ok(
        api.client.post(
            f"{api.base}/services",
            headers=bob,
            json={"login": "label-printer", "owner": "bob.admin", "purpose": "prints labels"},
        ),
        201,
    )
    assert service["id"].startswith("svc_") and service["login"] == "label-printer"
    ok(
        api.client.post(
            f"{api.base}/grants", headers=bob, json={"login": "label-printer", "role": "viewer", "tenants": [TENANT]}
        ),
        201,
    )
    key = {"service": "label-printer", "scopes": ["records:read"], "days": 30}
    issued = ok(api.client.post(f"{api.base}/api-keys", headers=bob, json=key), 201)
    token = issued["token"]
    assert token.startswith(f"svk_{issued['key_id']}_") and issued["scopes"] == ["records:read"]
    order = f"{api.base}/tenants/{TENANT}/orders/{api.order_id}"
    assert api.client.get(order, headers={"Authorization": f"Bearer {token}"}).status_code == 200

    listed = api.client.get(f"{api.base}/api-keys", headers=carol, params={"login": "label-printer"})
    assert [k["key_id"] for k in ok(listed)["items"]] == [issued["key_id"]]
    assert token.split("_", 2)[2] not in listed.text and "token" not in listed.text

    rotated = ok(api.client.post(f"{api.base}/api-keys/{issued['key_id']}/rotate", headers=bob, json={"days": 7}), 201)
    assert rotated["key_id"] != issued["key_id"] and rotated["scopes"] == ["records:read"]
    refused(api.client.get(order, headers={"Authorization": f"Bearer {token}"}), 401, None, token)
    fresh = {"Authorization": f"Bearer {rotated['token']}"}
    assert api.client.get(order, headers=fresh).status_code == 200
    stale = api.client.post(f"{api.base}/api-keys/{issued['key_id']}/rotate", headers=bob)
    assert "is revoked" in refused(stale, 409, "conflict")["detail"]

    assert api.client.delete(f"{api.base}/api-keys/{rotated['key_id']}", headers=bob).status_code == 204
    refused(api.client.delete(f"{api.base}/api-keys/{rotated['key_id']}", headers=bob), 409, "conflict")
    refused(api.client.get(order, headers=fresh), 401, None, rotated["token"])
    assert ok(api.client.get(f"{api.base}/api-keys", headers=bob))["items"] == []
    unknown_scope = api.client.post(
        f"{api.base}/api-keys", headers=bob, json={"service": "label-printer", "scopes": ["everything"]}
    )
    refused(unknown_scope, 422, "invalid-request")
    person = api.client.post(
        f"{api.base}/api-keys", headers=bob, json={"service": "carol.admin", "scopes": ["records:read"]}
    )
    assert "no service account" in refused(person, 400, "bad-request")["detail"]


def test_an_admin_disables_enables_unlocks_and_resets_accounts(api: Api) -> None:
    bob, _ = admins(api)
    frank = api.login("frank.viewer", api.person("frank.viewer", "viewer", [TENANT]))
    order = f"{api.base}/tenants/{TENANT}/orders/{api.order_id}"
    assert api.client.get(order, headers=frank).status_code == 200
    assert ok(api.client.post(f"{api.base}/users/frank.viewer/disable", headers=bob)) == {"credentials_ended": 1}
    refused(api.client.get(order, headers=frank), 401)
    to_disabled = api.client.post(
        f"{api.base}/grants", headers=bob, json={"login": "frank.viewer", "role": "viewer", "tenants": [TENANT]}
    )
    assert "enable it first" in refused(to_disabled, 409, "conflict")["detail"]
    assert (
        "your own account"
        in refused(api.client.post(f"{api.base}/users/bob.admin/disable", headers=bob), 400, "bad-request")["detail"]
    )
    assert api.client.post(f"{api.base}/users/frank.viewer/enable", headers=bob).status_code == 204
    assert (
        "is not disabled"
        in refused(api.client.post(f"{api.base}/users/frank.viewer/enable", headers=bob), 409, "conflict")["detail"]
    )
    refused(api.client.get(order, headers=frank), 401)  # the ended session stays ended

    gina_totp = api.person("gina.viewer", "viewer", [TENANT])
    assert (
        "is not locked"
        in refused(api.client.post(f"{api.base}/users/gina.viewer/unlock", headers=bob), 409, "conflict")["detail"]
    )
    for _ in range(api.d.settings.policy.lockout_threshold):
        wrong = api.client.post(
            f"{api.base}/sessions", json={"login": "gina.viewer", "password": "Wrong-Guess-4-Me!", "code": "123456"}
        )
        refused(wrong, 401, None, "Wrong-Guess-4-Me!")
    locked = ok(api.client.get(f"{api.base}/users", headers=bob))
    assert {u["login"]: u["locked_until"] for u in locked["items"]}["gina.viewer"] is not None
    assert api.client.post(f"{api.base}/users/gina.viewer/unlock", headers=bob).status_code == 204
    api.login("gina.viewer", gina_totp)

    reset = ok(api.client.post(f"{api.base}/users/gina.viewer/reset", headers=bob))
    assert reset["enrolment_secret"].startswith("sve_") and reset["pending_grants"] == 0
    setup = api.client.post(
        f"{api.base}/enrolment/begin", json={"login": "gina.viewer", "enrolment_secret": reset["enrolment_secret"]}
    )
    assert setup.status_code == 200 and setup.json()["totp_secret"] != gina_totp.secret

    review = ok(api.client.get(f"{api.base}/access-review", headers=bob))
    assert set(review) == {"inactive", "expiring_keys", "expiring_passwords"} and review["inactive"] == []


def test_a_person_changes_their_password_over_https(api: Api) -> None:
    bob, _ = admins(api)
    secret = ok(
        api.client.post(
            f"{api.base}/users", headers=bob, json={"login": "hugo.clerk", "email": "hugo@seller-tools.example"}
        ),
        201,
    )["enrolment_secret"]
    enrol = {"login": "hugo.clerk", "enrolment_secret": secret}
    totp = pyotp.TOTP(ok(api.client.post(f"{api.base}/enrolment/begin", json=enrol))["totp_secret"])
    finished = api.client.post(
        f"{api.base}/enrolment/finish", json={**enrol, "password": PASSWORD, "code": totp.at(api.clock())}
    )
    codes = ok(finished, 201)["recovery_codes"]
    ok(
        api.client.post(
            f"{api.base}/grants", headers=bob, json={"login": "hugo.clerk", "role": "viewer", "tenants": [TENANT]}
        ),
        201,
    )
    change = {"login": "hugo.clerk", "current_password": PASSWORD, "new_password": NEW_PASSWORD, "code": codes[0]}
    too_young = api.client.post(f"{api.base}/password", json=change)
    assert "less than 1 day(s) ago" in refused(too_young, 400, "bad-request", PASSWORD, NEW_PASSWORD)["detail"]
    with api.d.engine.begin() as conn:  # a day later
        conn.execute(
            update(principals)
            .where(principals.c.login == "hugo.clerk")
            .values(password_set_at=datetime.now(UTC) - timedelta(days=2))
        )
    weak = api.client.post(f"{api.base}/password", json={**change, "new_password": "hugo-is-great", "code": codes[1]})
    refused(weak, 400, "bad-request", "hugo-is-great", PASSWORD)
    wrong = api.client.post(f"{api.base}/password", json={**change, "current_password": "Not-My-Password-1!"})
    assert refused(wrong, 401, None, "Not-My-Password-1!", NEW_PASSWORD)["detail"] == REFUSED
    # Two sessions opened with the old password (on two devices, or one a thief holds) ...
    before = [api.login("hugo.clerk", totp) for _ in range(2)]
    assert all(api.client.get(f"{api.base}/tenants/{TENANT}/orders", headers=h).status_code == 200 for h in before)
    changed = api.client.post(f"{api.base}/password", json={**change, "code": api.next_code(totp)})
    assert ok(changed) == {"sessions_ended": 2}
    for h in before:  # ... end with the change, and the answer says so
        refused(api.client.get(f"{api.base}/tenants/{TENANT}/orders", headers=h), 401, "authentication-failed")
    (event,) = [e for e in api.d.audit.search(name="access:password:change") if e["outcome"] == "success"]
    assert event["counts"] == {"sessions_ended": 2}
    old = api.client.post(f"{api.base}/sessions", json={"login": "hugo.clerk", "password": PASSWORD, "code": codes[2]})
    refused(old, 401, None, PASSWORD)
    new = api.client.post(
        f"{api.base}/sessions", json={"login": "hugo.clerk", "password": NEW_PASSWORD, "code": codes[3]}
    )
    assert new.status_code == 201, new.text


def test_enrolment_and_password_change_stay_inside_the_allow_list(api: Api) -> None:
    with api.d.engine.begin() as conn:
        enrolment = api.d.access.accounts.add_person(
            conn, "ivy.clerk", "ivy@seller-tools.example", manager=None, actor=OPERATOR
        )
        api.d.access.allowlists.add(conn, "10.0.0.0/8", actor=OPERATOR)  # loopback is no longer inside
    begin = api.client.post(
        f"{api.base}/enrolment/begin", json={"login": "ivy.clerk", "enrolment_secret": enrolment.secret}
    )
    refused(begin, 403, "network-denied", enrolment.secret)
    finish = api.client.post(
        f"{api.base}/enrolment/finish",
        json={"login": "ivy.clerk", "code": "123456", "enrolment_secret": enrolment.secret, "password": NEW_PASSWORD},
    )
    refused(finish, 403, "network-denied", enrolment.secret, NEW_PASSWORD)
    change = api.client.post(
        f"{api.base}/password",
        json={"login": "alice.ng", "current_password": PASSWORD, "new_password": NEW_PASSWORD, "code": "123456"},
    )
    refused(change, 403, "network-denied", PASSWORD, NEW_PASSWORD)


def test_secrets_shown_once_have_no_repr_that_prints_them() -> None:
    now = datetime.now(UTC)
    secret = "sve_Shown-Once-Enrolment-Secret"
    shown = [
        _models.EnrolmentOut(
            principal_id="usr_x", login="x.y", enrolment_secret=secret, expires_at=now, pending_grants=0
        ),
        _models.TotpSetupOut(totp_secret=secret, provisioning_uri=f"otpauth://totp/x?secret={secret}"),
        _models.RecoveryCodesOut(recovery_codes=[secret]),
        _models.IssuedKeyOut(
            key_id="0123456789abcdef", token=secret, principal_id="svc_x", scopes=[], expires_at=now, pending_grants=0
        ),
    ]
    for model in shown:
        assert secret not in repr(model) and secret not in str(model)
        assert secret in model.model_dump_json()  # the answer itself still carries it, once


def test_bodies_with_secrets_that_do_not_validate_echo_none_of_them(api: Api) -> None:
    secret = "sve_Do-Not-Echo-This-Enrolment-Secret"
    password = "Do-Not-Echo-This-Password-9!"
    cases = [
        ("/enrolment/begin", {"login": "x.y", "enrolment_secret": secret, "extra": password}),
        ("/enrolment/begin", {"login": ["x"], "enrolment_secret": secret + "x" * 200}),
        ("/enrolment/finish", {"login": "x.y", "enrolment_secret": secret, "password": password, "code": "1"}),
        ("/enrolment/finish", {"login": "x.y", "enrolment_secret": secret, "password": password * 10, "code": "12345"}),
        ("/password", {"login": "x.y", "current_password": password, "new_password": 7, "code": "123456"}),
        ("/password", {"login": "x.y", "current_password": password, "new_password": password, "code": password}),
    ]
    for path, body in cases:
        refused(api.client.post(api.base + path, json=body), 422, "invalid-request", secret, password)
    # The OpenAPI document: no secret is ever a path or query parameter.
    spec = ok(api.client.get(f"{api.base}/openapi.json"))
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                words = set(parameter["name"].split("_"))
                assert not {"secret", "password", "token", "code"} & words, (path, parameter)


def test_roles_scopes_allow_lists_and_kill_switches_as_an_admin_sees_them(api: Api) -> None:
    bob, _ = admins(api)
    roles = {r["name"]: r for r in ok(api.client.get(f"{api.base}/roles", headers=bob))["items"]}
    assert roles["fulfilment"]["two_person_rule"] and roles["fulfilment"]["purposes"] == ["fulfilment"]
    assert not roles["viewer"]["two_person_rule"] and roles["viewer"]["scopes"] == ["records:read"]
    assert "users:admin" in roles["admin"]["scopes"]
    scopes = {s["name"]: s["two_person_rule"] for s in ok(api.client.get(f"{api.base}/scopes", headers=bob))["items"]}
    assert scopes["users:admin"] and scopes["pii:reveal"] and not scopes["records:read"]

    entry = ok(api.client.post(f"{api.base}/allowlist", headers=bob, json={"cidr": "127.0.0.0/8"}), 201)
    assert entry == {"id": entry["id"], "list": "global", "target": None, "cidr": "127.0.0.0/8"}
    clash = api.client.post(f"{api.base}/allowlist", headers=bob, json={"cidr": "127.0.0.1/32"})
    assert "overlaps 127.0.0.0/8" in refused(clash, 409, "conflict")["detail"]
    per_role = ok(
        api.client.post(f"{api.base}/allowlist", headers=bob, json={"cidr": "::1/128", "role": "fulfilment"}), 201
    )
    both = api.client.post(
        f"{api.base}/allowlist", headers=bob, json={"cidr": "10.1.0.0/16", "role": "viewer", "login": "bob.admin"}
    )
    assert "not both" in refused(both, 400, "bad-request")["detail"]
    listed = ok(api.client.get(f"{api.base}/allowlist", headers=bob))["items"]
    assert [(e["list"], e["target"], e["cidr"]) for e in listed] == [
        ("global", None, "127.0.0.0/8"),
        ("role", "fulfilment", "::1/128"),
    ]
    assert api.client.delete(f"{api.base}/allowlist/{per_role['id']}", headers=bob).status_code == 204
    refused(api.client.delete(f"{api.base}/allowlist/{per_role['id']}", headers=bob), 404, "not-found")
    assert [e["id"] for e in ok(api.client.get(f"{api.base}/allowlist", headers=bob))["items"]] == [entry["id"]]

    assert ok(api.client.get(f"{api.base}/killswitches", headers=bob))["items"] == []
    assert api.client.put(f"{api.base}/killswitches/exports", headers=bob, params={"tenant": TENANT}).status_code == 204
    assert api.client.put(f"{api.base}/killswitches/pii-access", headers=bob).status_code == 204
    assert api.client.delete(f"{api.base}/killswitches/pii-access", headers=bob).status_code == 204
    switches = ok(api.client.get(f"{api.base}/killswitches", headers=bob))["items"]
    assert [(s["name"], s["tenant"], s["engaged"]) for s in switches] == [
        ("exports", TENANT, True),
        ("pii-access", "*", False),
    ]


class _GatedHasher:
    """The fast hasher, but a verification waits until the test lets it go: the window in which
    a log-in is hashing its password."""

    def __init__(self) -> None:
        self._inner = fast_password_hashing()
        self.hashing = threading.Event()
        self.go = threading.Event()

    def hash(self, password: str) -> str:
        return self._inner.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        self.hashing.set()
        assert self.go.wait(30)
        return self._inner.verify(stored, password)


@pytest.mark.parametrize("route", ["/sessions", "/password"])
def test_a_password_is_hashed_while_no_write_lock_is_held(settings: Settings, route: str) -> None:
    """Argon2 takes tens of milliseconds; on SQLite a write transaction holds the database's one
    write lock. While a log-in (or a password change) hashes, another writer gets the lock."""
    hasher = _GatedHasher()
    clock = ManualClock()
    d = init_deployment(settings, keys=InMemoryKeyProvider(), hasher=hasher, clock=clock)
    client = InProcessClient(create_app(d), "https://127.0.0.1")
    try:
        hasher.go.set()  # enrolment hashes freely
        person = People(d.access, d.engine, clock).bootstrap_admin("ana.admin")
        hasher.go.clear()
        hasher.hashing.clear()
        clock.advance(days=2)  # old enough to change
        code = person.totp.at(clock())
        body = (
            {"login": "ana.admin", "password": PASSWORD, "code": code}
            if route == "/sessions"
            else {"login": "ana.admin", "current_password": PASSWORD, "new_password": NEW_PASSWORD, "code": code}
        )
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(client.post, f"https://127.0.0.1{API}{route}", json=body)
            assert hasher.hashing.wait(30)
            writer = sqlite3.connect(settings.resolved_data_dir / "sagevault.db", timeout=2)
            try:
                writer.execute("BEGIN IMMEDIATE")  # waits 2 s for the lock, then fails, if the log-in holds it
                writer.execute("ROLLBACK")
            finally:
                writer.close()
                hasher.go.set()
            assert answer.result().status_code in (200, 201), answer.result().text
    finally:
        client.close()
        d.close()
