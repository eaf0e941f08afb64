"""The authorisation matrix of the access tests, through HTTP: every role x tenant inside/outside
the grant x purpose allowed/refused, for every scope an API route exercises, as real requests to
the TLS server. Allowed cells answer 2xx; refused ones 403 with the matching problem, and each
refusal is one `access:permission:deny` event with its reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from conftest import OPERATOR, OTHER, TENANT
from sagevault.access import DEPLOYMENT_SCOPES, PURPOSE_SCOPES, ROLES
from sagevault.catalog import Purpose
from sagevault.identity import Scope
from sagevault.testing import generate_orders, get_orders_response
from webapi import PASSWORD, Api


@dataclass(frozen=True)
class Call:
    """The route that exercises a scope: method, path (from tenant and order), body (from purpose)."""

    method: str
    path: Callable[[str, str], str]
    body: Callable[[Purpose], Any] | None = None
    ok: tuple[int, ...] = (200,)


# Every scope an API route checks, and the route. pii:export has no route yet, and tenants:shred
# and tenants:admin are left out: a shred (or a second tenant) in an allowed cell would change the
# cells after it; the access matrix covers them.
CALLS: dict[Scope, Call] = {
    Scope.RECORDS_READ: Call("GET", lambda t, o: f"/tenants/{t}/orders/{o}"),
    Scope.PII_REVEAL: Call(
        "POST",
        lambda t, o: f"/tenants/{t}/orders/{o}/reveal",
        lambda p: {"fields": ["ShippingAddress.Name"], "purpose": p.value},
    ),
    Scope.RECORDS_SEARCH: Call(
        "POST",
        lambda t, o: f"/tenants/{t}/search",
        lambda p: {"kind": "name", "value": "Nobody Here", "purpose": p.value},
    ),
    Scope.RECORDS_INGEST: Call(
        "POST",
        lambda t, o: f"/tenants/{t}/documents",
        lambda p: get_orders_response(list(generate_orders(1, seed=5, prefix="7"))),
        (201,),
    ),
    Scope.KEYS_READ: Call("GET", lambda t, o: f"/tenants/{t}/keys"),
    Scope.KEYS_ROTATE: Call("POST", lambda t, o: f"/tenants/{t}/keys/rotation", ok=(200, 202)),
    Scope.KILLSWITCH_OPERATE: Call("PUT", lambda t, o: f"/killswitches/exports?tenant={t}", ok=(204,)),
    Scope.AUDIT_READ: Call("GET", lambda t, o: "/audit/events?limit=1"),
    Scope.USERS_ADMIN: Call("GET", lambda t, o: "/users?limit=1"),
}


def expected(role: str, scope: Scope, tenant: str, purpose: Purpose) -> tuple[bool, str]:
    """As the access matrix: allowed exactly when the role carries the scope for a tenant its grant
    covers (deployment scopes need "*"), with one of its purposes for PII scopes."""
    carries = scope in ROLES[role].scopes and tenant == TENANT and scope not in DEPLOYMENT_SCOPES
    if carries and scope in PURPOSE_SCOPES and purpose not in ROLES[role].purposes:
        return False, "purpose_not_allowed"
    return carries, "access_denied"


def test_authorisation_matrix_over_https(api: Api) -> None:
    with api.d.engine.begin() as conn:
        api.d.vault.add_tenant(conn, OTHER, ["ATVPDKIKX0DER"], principal=OPERATOR)
    sessions: dict[str, dict[str, str]] = {}
    ids: dict[str, str] = {}
    for role in ROLES:  # one person and one session per role, reused for every cell
        login = f"matrix.{role.replace('-', '')}"
        totp = api.person(login, role, [TENANT])
        r = api.client.post(
            f"{api.base}/sessions", json={"login": login, "password": PASSWORD, "code": api.next_code(totp)}
        )
        assert r.status_code == 201, r.text
        sessions[role], ids[role] = {"Authorization": f"Bearer {r.json()['token']}"}, r.json()["principal"]

    expected_denials: list[tuple[str, str | None, str]] = []
    cells, allowed_scopes = 0, set[Scope]()
    for role in ROLES:
        allowed_purpose = min(ROLES[role].purposes, default=Purpose.FULFILMENT)
        other_purpose = next(p for p in Purpose if p not in ROLES[role].purposes)
        for scope, call in CALLS.items():
            tenants = [TENANT] if scope in DEPLOYMENT_SCOPES else [TENANT, OTHER]
            purposes = [allowed_purpose, other_purpose] if scope in PURPOSE_SCOPES else [allowed_purpose]
            for tenant in tenants:
                for purpose in purposes:
                    allow, reason = expected(role, scope, tenant, purpose)
                    r = _send(api, call, tenant, purpose, sessions[role])
                    cells += 1
                    cell = (role, scope.value, tenant, purpose.value, r.status_code, r.text[:200])
                    if allow:
                        assert r.status_code in call.ok, cell
                        allowed_scopes.add(scope)
                        continue
                    assert r.status_code == 403, cell
                    kind = "purpose-not-allowed" if reason == "purpose_not_allowed" else "access-denied"
                    assert r.headers["content-type"] == "application/problem+json" and r.json()["type"].endswith(
                        kind
                    ), cell
                    expected_denials.append((ids[role], None if scope in DEPLOYMENT_SCOPES else tenant, reason))

    recorded = [
        (e["actor"], e["tenant_id"], e["reason"])
        for e in api.d.audit.search(name="access:permission:deny")
        if e["actor"] in ids.values()
    ]
    assert sorted(recorded, key=str) == sorted(expected_denials, key=str)
    assert len(expected_denials) > cells // 2  # most cells are refusals ...
    assert allowed_scopes == CALLS.keys() - DEPLOYMENT_SCOPES  # ... and every tenant scope is allowed somewhere


def _send(api: Api, call: Call, tenant: str, purpose: Purpose, auth: dict[str, str]) -> httpx.Response:
    url = api.base + call.path(tenant, api.order_id)
    return api.client.request(call.method, url, headers=auth, json=call.body(purpose) if call.body else None)
