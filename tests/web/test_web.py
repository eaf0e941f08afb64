"""The HTTPS API's sessions, records, order of checks and problems: a real uvicorn server on
127.0.0.1 with SageVault's TLS context and a real httpx client that trusts the local CA."""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Query
from fastapi.routing import APIRoute
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from starlette.responses import Response

from conftest import OPERATOR, TENANT, audit_table_away, plaintext_answer
from sagevault import errors
from sagevault.access import ALL_TENANTS, RequestLimiter
from sagevault.access._login import REFUSED
from sagevault.config import Settings
from sagevault.db import reading
from sagevault.testing import generate_orders, get_orders_response
from sagevault.web import API
from sagevault.web._deps import AuthenticatedRead, TenantPath
from sagevault.web._onehop import OneHop, _in_thread
from sagevault.web._pagination import CURSOR_KEY, PageQuery, encode_cursor
from sagevault.web.api import _admin, _data, _records
from webapi import Api


def test_every_route_refuses_a_request_without_credentials(api: Api) -> None:
    routes = [
        ("GET", "/tenants"),
        ("GET", f"/tenants/{TENANT}/orders/{api.order_id}"),
        ("POST", f"/tenants/{TENANT}/orders/{api.order_id}/reveal"),
        ("PUT", "/killswitches/pii-access"),
        ("DELETE", "/killswitches/pii-access"),
        ("DELETE", "/sessions"),
    ]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer svs_forged"}, {"Authorization": "Basic YWRtaW46YWRtaW4="}):
            r = api.client.request(
                method,
                api.base + path,
                headers=headers,
                json={"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"},
            )
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["request_id"] == r.headers["x-request-id"]
            assert r.headers["strict-transport-security"].startswith("max-age=")
    # Each refusal is a security event: the ones without a bearer token at the API's edge, the
    # forged ones where the credential was checked.
    edge = [e["reason"] for e in api.d.audit.search(name="api:request:refuse")]
    assert edge == ["no_credential"] * (2 * len(routes))
    forged = [e["reason"] for e in api.d.audit.search(name="access:login:failure")]
    assert forged.count("session_ended") == len(routes)


def test_a_person_logs_in_reads_masked_and_reveals_for_an_allowed_purpose_only(api: Api) -> None:
    totp = api.person("mia.packer", "fulfilment", [TENANT])
    wrong = api.client.post(
        f"{api.base}/sessions", json={"login": "mia.packer", "password": "Not-It-42-Really", "code": "000000"}
    )
    assert wrong.status_code == 401 and wrong.json()["detail"] == REFUSED
    auth = api.login("mia.packer", totp)
    masked = api.client.get(f"{api.base}/tenants/{TENANT}/orders/{api.order_id}", headers=auth)
    assert masked.status_code == 200 and "[PII" in masked.text
    body = {"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"}
    revealed = api.client.post(f"{api.base}/tenants/{TENANT}/orders/{api.order_id}/reveal", headers=auth, json=body)
    assert revealed.status_code == 200 and revealed.json()["fields"][0]["value"]
    tax = api.client.post(
        f"{api.base}/tenants/{TENANT}/orders/{api.order_id}/reveal",
        headers=auth,
        json={**body, "purpose": "tax_remittance"},
    )
    assert tax.status_code == 403 and tax.json()["type"].endswith("purpose-not-allowed")
    other = api.client.get(f"{api.base}/tenants/A9OTHERSELLER/orders/{api.order_id}", headers=auth)
    assert other.status_code == 403
    assert api.client.delete(f"{api.base}/sessions", headers=auth).status_code == 204
    assert api.client.get(f"{api.base}/tenants/{TENANT}/orders/{api.order_id}", headers=auth).status_code == 401


def test_a_kill_switch_over_the_api_stops_reveals_at_once(api: Api) -> None:
    packer = api.login("paul.packer", api.person("paul.packer", "fulfilment", [TENANT]))
    officer = api.login("sofia.officer", api.person("sofia.officer", "security-officer", [ALL_TENANTS]))
    reveal = f"{api.base}/tenants/{TENANT}/orders/{api.order_id}/reveal"
    body = {"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"}
    assert api.client.put(f"{api.base}/killswitches/pii-access", headers=packer).status_code == 403
    assert api.client.put(f"{api.base}/killswitches/pii-access", headers=officer).status_code == 204
    stopped = api.client.post(reveal, headers=packer, json=body)
    assert stopped.status_code == 403 and stopped.json()["type"].endswith("kill-switch")
    assert api.client.delete(f"{api.base}/killswitches/pii-access", headers=officer).status_code == 204
    assert api.client.post(reveal, headers=packer, json=body).status_code == 200


def test_bad_input_is_a_4xx_problem_that_echoes_no_value(api: Api) -> None:
    secret_password = "Do-Not-Echo-This-9!"
    cases = [
        b"{not json",
        b'{"login": "x", "password": "' + secret_password.encode() + b'", "code": "123456", "extra": 1}',
        b'{"login": 7, "password": "' + secret_password.encode() + b'", "code": []}',
        b"[]",
    ]
    for raw in cases:
        r = api.client.post(f"{api.base}/sessions", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, (raw, r.status_code, r.text)
        assert secret_password not in r.text and r.headers["content-type"] == "application/problem+json"
    auth = api.login("vera.packer", api.person("vera.packer", "fulfilment", [TENANT]))
    r = api.client.post(
        f"{api.base}/tenants/{TENANT}/orders/{api.order_id}/reveal",
        headers=auth,
        json={"fields": [], "purpose": "world-domination"},
    )
    assert r.status_code == 422 and "purpose" in r.json()["detail"]
    for tenant, order in (("A", api.order_id), (TENANT, "-1"), (TENANT, "buyer%40example.com"), (TENANT, "9" * 65)):
        r = api.client.get(f"{api.base}/tenants/{tenant}/orders/{order}", headers=auth)  # cannot name an order
        assert r.status_code == 422 and r.json()["type"].endswith("invalid-request"), (tenant, order, r.text)
    r = api.client.get(f"{api.base}/tenants/A/orders/{api.order_id}")  # no credential: refused first, whatever
    assert r.status_code == 401


def test_reveal_served_in_one_hop_authenticates_before_it_validates_and_echoes_nothing(api: Api) -> None:
    """The hot path (`OneHop`) keeps the order of checks: no credential is a 401 whatever the body
    and path; with one, each kind of bad input is a 422 that says where, and echoes no value."""
    url = f"{api.base}/tenants/{TENANT}/orders/{api.order_id}/reveal"
    pii = "Mrs. Echo Nowhere, 7 Quiet Lane"
    for raw, kind in (
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b'{"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"}', "text/plain"),
    ):
        r = api.client.post(url, content=raw, headers={"content-type": kind})
        assert r.status_code == 401 and r.json()["type"].endswith("authentication-failed"), (raw, r.text)
        r = api.client.post(f"{api.base}/tenants/A/orders/-1/reveal", content=raw, headers={"content-type": kind})
        assert r.status_code == 401, (raw, r.text)
    auth = api.login("ida.packer", api.person("ida.packer", "fulfilment", [TENANT]))
    cases = [
        (b"{not json", "application/json", "body"),
        (b"", "application/json", "body: Field required"),
        (b'{"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"}', "text/plain", "application/json"),
        (
            ('{"fields": ["ShippingAddress.Name"], "purpose": "fulfilment", "note": "' + pii + '"}').encode(),
            "application/json",
            "body.note",
        ),
        (('{"fields": ["' + pii + '"], "purpose": "' + pii + '"}').encode(), "application/json", "body.purpose"),
    ]
    for raw, kind, said in cases:
        r = api.client.post(url, content=raw, headers={**auth, "content-type": kind})
        assert r.status_code == 422 and r.json()["type"].endswith("invalid-request"), (raw, r.text)
        assert said in r.json()["detail"] and pii not in r.text, (raw, r.text)
    r = api.client.post(
        f"{api.base}/tenants/A/orders/-1/reveal",
        headers=auth,
        json={"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"},
    )
    assert r.status_code == 422 and "path.tenant_id" in r.json()["detail"] and "path.order_id" in r.json()["detail"]
    ok = api.client.post(
        url,
        headers={**auth, "content-type": "application/json; charset=utf-8"},
        content=b'{"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"}',
    )
    assert ok.status_code == 200 and ok.json()["fields"][0]["path"] == "ShippingAddress.Name"
    # Each refusal without a credential is recorded once, and the one reveal answered once.
    assert [e["reason"] for e in api.d.audit.search(name="api:request:refuse")] == ["no_credential"] * 6
    assert len(list(api.d.audit.search(name="vault:field:reveal"))) == 1


def test_reveals_are_answered_only_once_their_events_are_committed_on_each_backend(
    api_on_backend: Api, backend: str
) -> None:
    """On SQLite a reveal runs in the event loop and its event joins a group commit written by the
    audit log's thread; on PostgreSQL it runs in a worker thread. Either way concurrent reveals
    are each recorded once in one unforked chain, an answer arrives only after its event is
    committed, and a reveal whose event cannot be written is a 503 that carries no PII."""
    api = api_on_backend
    assert api.d.local_reads == (backend == "sqlite")  # which path the reveals below take
    auth = api.login("kai.packer", api.person("kai.packer", "fulfilment", [TENANT]))
    url = f"{api.base}/tenants/{TENANT}/orders/{api.order_id}/reveal"
    body = {"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"}

    with ThreadPoolExecutor(8) as pool:  # eight connections at once
        answers = list(pool.map(lambda _: api.client.post(url, headers=auth, json=body), range(32)))
    assert [r.status_code for r in answers] == [200] * 32
    name = answers[0].json()["fields"][0]["value"]
    events = list(api.d.audit.search())
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # gap-free: no fork, no loss
    assert len([e for e in events if e["name"] == "vault:field:reveal"]) == 32
    for _ in range(3):  # the event is committed (seen by another connection's snapshot) when the answer arrives
        before = _committed_reveals(api)
        assert api.client.post(url, headers=auth, json=body).status_code == 200
        assert _committed_reveals(api) == before + 1
    with audit_table_away(api.d):
        refused = api.client.post(url, headers=auth, json=body)
        assert refused.status_code == 503 and refused.json()["type"].endswith("audit-unavailable"), refused.text
        assert name not in refused.text
    assert api.client.post(url, headers=auth, json=body).json()["fields"][0]["value"] == name
    assert api.d.audit.count(name="vault:field:reveal") == 32 + 3 + 1  # the refused one was never recorded


def _committed_reveals(api: Api) -> int:
    """Reveal events committed now, read in a snapshot (a read that queued for the audit
    database's write lock would wait for a commit under way and prove nothing)."""
    with api.d.audit.engine.connect() as conn:
        reading(conn)
        with conn.begin():
            return int(
                conn.execute(text("SELECT count(*) FROM audit_events WHERE name = 'vault:field:reveal'")).scalar_one()
            )


def test_a_reveal_that_fails_unexpectedly_is_a_500_only_after_the_events_it_recorded(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the event-loop path the events a failing reveal recorded are committed before its 500
    leaves, and the failure is recorded too."""
    auth = api.login("ola.packer", api.person("ola.packer", "fulfilment", [TENANT]))
    reveal = api.d.vault.reveal

    def half_done(*args: object, **kwargs: object) -> object:
        reveal(*args, **kwargs)  # records its vault:field:reveal event (held until the handler ends)
        raise RuntimeError("a bug after the read")

    monkeypatch.setattr(api.d.vault, "reveal", half_done)
    before = _committed_reveals(api)
    r = api.client.post(
        f"{api.base}/tenants/{TENANT}/orders/{api.order_id}/reveal",
        headers=auth,
        json={"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"},
    )
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert _committed_reveals(api) == before + 1
    assert [e["operation"] for e in api.d.audit.search(name="api:request:fail")] == ["runtimeerror"]


def test_one_hop_routes_refuse_a_shape_they_cannot_validate() -> None:
    router = APIRouter()

    def paged(tenant_id: TenantPath, q: Annotated[PageQuery, Query()], work: AuthenticatedRead) -> Response:
        raise AssertionError("never served")

    def unauthenticated(tenant_id: TenantPath) -> Response:
        raise AssertionError("never served")

    for endpoint, said in ((paged, "'q'"), (unauthenticated, "Authenticated")):
        with pytest.raises(TypeError, match=said):
            router.add_api_route("/t/{tenant_id}", endpoint, methods=["POST"], route_class_override=OneHop)


def test_plaintext_http_to_the_port_gets_no_http_answer(served_api: Api) -> None:
    api = served_api
    port = int(api.base.split(":")[2].split("/")[0])
    assert b"HTTP/" not in plaintext_answer(port, "/api/v1/tenants")
    legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    legacy.check_hostname = False
    legacy.verify_mode = ssl.CERT_NONE
    legacy.maximum_version = ssl.TLSVersion.TLSv1_2
    legacy.set_ciphers("AES128-SHA:AES256-SHA")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api.base}/tenants", verify=legacy, timeout=5)


def test_a_service_ingests_and_a_packer_searches_by_blind_index(api: Api) -> None:
    with api.d.engine.begin() as conn:
        api.d.access.accounts.add_service(
            conn, "order-sync", owner="alice.ng", purpose="SP-API order sync", actor=api.admin
        )
        grant = api.d.access.grants.grant(conn, "order-sync", "operator", [TENANT], actor=OPERATOR)
        api.d.access.grants.approve(conn, grant.id, actor=api.admin)
        key = api.d.access.api_keys.issue(conn, "order-sync", scopes=["records:ingest"], actor=OPERATOR)
    sync = {"Authorization": f"Bearer {key.token}"}
    new = list(generate_orders(3, seed=77, prefix="9"))
    stored = api.client.post(f"{api.base}/tenants/{TENANT}/documents", headers=sync, json=get_orders_response(new))
    assert stored.status_code == 201, stored.text
    assert stored.json()["orders"] == 3 and stored.json()["pii_fields"] > 0
    garbage = api.client.post(f"{api.base}/tenants/{TENANT}/documents", headers=sync, json={"not": "sp-api"})
    assert garbage.status_code == 400 and garbage.headers["content-type"] == "application/problem+json"
    auth = api.login("nia.packer", api.person("nia.packer", "fulfilment", [TENANT]))
    email = new[1]["BuyerInfo"]["BuyerEmail"]
    found = api.client.post(
        f"{api.base}/tenants/{TENANT}/search",
        headers=auth,
        json={"kind": "email", "value": email.upper(), "purpose": "fulfilment"},
    )
    assert found.status_code == 200 and [h["order_id"] for h in found.json()["items"]] == [new[1]["AmazonOrderId"]]
    assert email not in found.text
    refused = api.client.post(
        f"{api.base}/tenants/{TENANT}/search",
        headers=sync,
        json={"kind": "email", "value": email, "purpose": "fulfilment"},
    )
    assert refused.status_code == 403  # the key carries records:ingest only


def test_oversize_and_unsized_bodies_are_refused_before_anything_runs(api: Api) -> None:
    limit = api.d.settings.api_max_body_bytes
    big = b'{"login": "' + b"a" * limit + b'", "password": "x", "code": "123456"}'
    r = api.client.post(f"{api.base}/sessions", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "api_max_body_bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:
        yield b'{"login": "x", "password": "y", "code": "123456"}'

    r = api.client.post(f"{api.base}/sessions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 411


def test_rate_limits_per_principal_and_per_route_answer_429_and_redis_down_refuses(
    api: Api, settings: Settings, redis_prefix: str
) -> None:
    order = f"{api.base}/tenants/{TENANT}/orders/{api.order_id}"
    tight = settings.model_copy(
        update={
            "api_rate_per_principal": "8 per minute",
            "api_route_rates": {f"GET {API}/tenants/{{tenant_id}}/orders/{{order_id}}": "3 per minute"},
        }
    )
    api.app.state.limiter = RequestLimiter(tight)
    auth = api.login("rhea.packer", api.person("rhea.packer", "fulfilment", [TENANT]))
    reads = [api.client.get(order, headers=auth).status_code for _ in range(4)]
    assert reads == [200, 200, 200, 429]  # the route's own limit
    body = {"fields": ["ShippingAddress.Name"], "purpose": "fulfilment"}
    reveals = [api.client.post(f"{order}/reveal", headers=auth, json=body).status_code for _ in range(5)]
    assert reveals == [200, 200, 200, 200, 429]  # the principal's total: 8 counted requests, then refused
    refused = api.client.post(f"{order}/reveal", headers=auth, json=body)
    assert refused.json()["type"].endswith("rate-limited") and "slow down" in refused.json()["detail"]
    events = list(api.d.audit.search(name="api:request:refuse"))
    assert [e["reason"] for e in events] == ["rate_limited"] * 3 and {e["outcome"] for e in events} == {"denied"}
    assert len({e["actor"] for e in events}) == 1 and events[0]["client_ip_hash"]
    fresh = api.login("sam.packer", api.person("sam.packer", "fulfilment", [TENANT]))
    assert api.client.get(order, headers=fresh).status_code == 200  # another principal has its own budget
    # Counted in Redis, shared by every worker; Redis unreachable = refused, not unlimited.
    api.app.state.limiter = RequestLimiter(settings, storage_url="redis://127.0.0.1:6379/0", key_prefix=redis_prefix)
    assert api.client.get(order, headers=fresh).status_code == 200
    api.app.state.limiter = RequestLimiter(settings, storage_url="redis://127.0.0.1:1/0")
    down = api.client.get(order, headers=fresh)
    assert down.status_code == 503 and "cannot be reached" in down.json()["detail"]
    assert down.json()["type"].endswith("limiter-unavailable")


def test_refused_requests_are_bounded_per_source_and_the_allow_list_comes_before_the_credential(
    api: Api, settings: Settings
) -> None:
    api.app.state.limiter = RequestLimiter(settings.model_copy(update={"api_refusals_per_source": "3 per minute"}))
    auth = api.login("ivo.packer", api.person("ivo.packer", "fulfilment", [TENANT]))
    order = f"{api.base}/tenants/{TENANT}/orders/{api.order_id}"
    assert api.client.get(order, headers=auth).status_code == 200
    statuses = [
        api.client.get(order, headers={"Authorization": "Bearer svk_forged_key"}).status_code for _ in range(4)
    ] + [api.client.get(order).status_code for _ in range(2)]
    assert statuses == [401] * 6
    # Over its budget the source's refusals are still refusals, but no longer one event each:
    # the budget's end is one event. A good credential from the same address (a NAT) still works.
    assert [e["reason"] for e in api.d.audit.search(name="api:request:refuse")] == ["rate_limited"]
    assert len(list(api.d.audit.search(name="access:apikey:failure"))) == 3
    assert api.client.get(order, headers=auth).status_code == 200
    # Outside the global allow-list, a good and a bad credential get the same answer.
    api.app.state.limiter = RequestLimiter(settings)
    with api.d.engine.begin() as conn:
        api.d.access.allowlists.add(conn, "10.0.0.0/8", actor=OPERATOR)
    for headers in (auth, {"Authorization": "Bearer svs_forged"}, {}):
        r = api.client.get(order, headers=headers)
        assert r.status_code == 403 and r.json()["type"].endswith("network-denied"), r.text


def test_an_unexpected_error_is_a_bare_500_problem_with_the_headers_and_a_security_event(
    api: Api, tmp_path: Path
) -> None:
    def boom() -> None:
        raise RuntimeError("jane.doe@example.com 555-0100")  # as if a bug put PII in a message

    api.app.add_api_route(f"{API}/boom", boom, methods=["GET"])
    r = api.client.get(f"{api.base}/boom")
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert "jane.doe" not in r.text and "RuntimeError" not in r.text and "Traceback" not in r.text
    assert r.headers["strict-transport-security"].startswith("max-age=") and r.headers["cache-control"] == "no-store"
    events = list(api.d.audit.search(name="api:request:fail"))
    assert [(e["request_id"], e["operation"]) for e in events] == [(r.headers["x-request-id"], "runtimeerror")]
    assert api.client.get(f"{api.base}/boom").status_code == 500  # the connection and server live on

    def tampered() -> None:  # a SageVault error with no status of its own is unexpected too
        raise errors.IntegrityError("a ciphertext failed authentication")

    def busy() -> None:  # SQLite's write lock not had within the busy timeout: load, not a fault
        raise OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))

    api.app.add_api_route(f"{API}/tampered", tampered, methods=["GET"])
    api.app.add_api_route(f"{API}/busy", busy, methods=["GET"])
    r = api.client.get(f"{api.base}/tampered")
    assert r.status_code == 500 and "ciphertext" not in r.text
    assert [e["operation"] for e in api.d.audit.search(name="api:request:fail")][-1] == "integrityerror"
    r = api.client.get(f"{api.base}/busy")
    assert r.status_code == 503 and r.json()["type"].endswith("storage-busy") and r.headers["retry-after"] == "1"

    pool = create_engine(f"sqlite:///{tmp_path / 'pool.db'}", pool_size=1, max_overflow=0, pool_timeout=0.05)
    held = pool.connect()  # every pooled connection in use: the next request waits, then is told to retry

    def exhausted() -> None:
        with pool.connect():
            pass

    api.app.add_api_route(f"{API}/exhausted", exhausted, methods=["GET"])
    r = api.client.get(f"{api.base}/exhausted")
    held.close()
    pool.dispose()
    assert r.status_code == 503 and r.json()["type"].endswith("storage-busy") and r.headers["retry-after"] == "1"


def _signed(key: bytes, *positions: object) -> list[str]:
    token = CURSOR_KEY.set(key)
    try:
        return [encode_cursor(p) for p in positions]
    finally:
        CURSOR_KEY.reset(token)


def test_crafted_cursors_are_400_problems_on_every_paged_list(api: Api) -> None:
    """Only a cursor this deployment gave out is taken: one it signed around a value no list
    could have given (out of range, a lone surrogate, a NUL, a list, too long), an unsigned one,
    one signed with another key, or anything else is a 400 that says to start again."""
    officer = api.login("lea.officer", api.person("lea.officer", "security-officer", [ALL_TENANTS]))
    operator = api.login("omar.operator", api.person("omar.operator", "operator", [ALL_TENANTS]))
    ours = api.app.state.cursor_key
    crafted = [
        *_signed(ours, 2**70, -1, "\ud800", "a\u0000", ["x"], "x" * 300),
        *_signed(b"another deployment's key 32 byte", 0, "A"),
        "MA",  # a position, unsigned (how cursors looked before they were signed)
        "%%%",
        "e30",
        "MA.AAAAAAAAAAAAAAAAAAAAAA",
    ]
    lists = [
        (f"{api.base}/audit/events", officer),
        (f"{api.base}/tenants", operator),
        (f"{api.base}/tenants/{TENANT}/orders", operator),
    ]
    for url, auth in lists:
        assert api.client.get(url, headers=auth).status_code == 200
        for cursor in crafted:
            r = api.client.get(url, headers=auth, params={"cursor": cursor})
            assert r.status_code in (400, 422) and "cursor" in r.json()["detail"], (url, cursor, r.status_code)
    (given,) = _signed(ours, "A0")  # and one it gave out works
    assert api.client.get(f"{api.base}/tenants", headers=operator, params={"cursor": given}).status_code == 200


def test_logging_out_ends_the_session_is_recorded_and_is_not_how_api_keys_end(api: Api) -> None:
    totp = api.person("uma.packer", "fulfilment", [TENANT])
    auth = api.login("uma.packer", totp)
    assert api.client.delete(f"{api.base}/sessions", headers=auth).status_code == 204
    ended = list(api.d.audit.search(name="access:session:end"))
    assert len(ended) == 1 and ended[0]["actor"].startswith("usr_") and ended[0]["outcome"] == "success"
    assert api.client.delete(f"{api.base}/sessions", headers=auth).status_code == 401  # already over
    with api.d.engine.begin() as conn:
        api.d.access.accounts.add_service(conn, "label-printer", owner="alice.ng", purpose="labels", actor=api.admin)
        key = api.d.access.api_keys.issue(conn, "label-printer", scopes=["records:read"], actor=OPERATOR)
    r = api.client.delete(f"{api.base}/sessions", headers={"Authorization": f"Bearer {key.token}"})
    assert r.status_code == 400 and "revoke" in r.json()["detail"] and key.token not in r.text


def test_only_routes_that_write_nothing_to_the_vault_database_take_a_snapshot_read() -> None:
    """On SQLite a snapshot-read unit of work cannot write (query_only): every GET, plus reveal (one
    order or a batch), search, audit verify and ingest's permission check (it stores in a transaction of its own
    after parsing), and nothing else. The conformance run drives all of them, so a write
    that slipped into one would fail there."""
    snapshot = AuthenticatedRead.__metadata__[0].dependency
    routes = [r for module in (_records, _data, _admin) for r in module.router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 40
    marked = {
        (m, r.path) for r in routes for m in r.methods if any(d.call is snapshot for d in r.dependant.dependencies)
    }
    gets = {("GET", r.path) for r in routes if "GET" in r.methods}
    assert marked == gets | {
        ("POST", f"{API}/tenants/{{tenant_id}}/orders/{{order_id}}/reveal"),
        ("POST", f"{API}/tenants/{{tenant_id}}/reveal"),
        ("POST", f"{API}/tenants/{{tenant_id}}/search"),
        ("POST", f"{API}/audit/verify"),
        ("POST", f"{API}/tenants/{{tenant_id}}/documents"),
    }


def test_pii_sent_through_the_api_reaches_no_byte_the_server_wrote(api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    """Known PII goes in through every door of the API (ingest, search values, reveals, refused
    and malformed requests, a filter that looks like an e-mail); afterwards no file under the data
    dir (databases, WAL, audit log, application log) and nothing the process printed holds it."""
    from pii_scan import leaked, pii_strings

    with api.d.engine.begin() as conn:
        api.d.access.accounts.add_service(
            conn, "order-sync", owner="alice.ng", purpose="SP-API order sync", actor=api.admin
        )
        grant = api.d.access.grants.grant(conn, "order-sync", "operator", [TENANT], actor=OPERATOR)
        api.d.access.grants.approve(conn, grant.id, actor=api.admin)
        key = api.d.access.api_keys.issue(conn, "order-sync", scopes=["records:ingest"], actor=OPERATOR)
    orders = list(generate_orders(5, seed=99, prefix="7"))
    payload = get_orders_response(orders)
    known = pii_strings([payload])
    assert len(known) > 20
    sync = {"Authorization": f"Bearer {key.token}"}
    assert api.client.post(f"{api.base}/tenants/{TENANT}/documents", headers=sync, json=payload).status_code == 201
    packer = api.login("pia.packer", api.person("pia.packer", "fulfilment", [TENANT]))
    officer = api.login("olga.officer", api.person("olga.officer", "security-officer", [ALL_TENANTS]))
    email, name = orders[0]["BuyerInfo"]["BuyerEmail"], orders[0]["ShippingAddress"]["Name"]
    order = f"{api.base}/tenants/{TENANT}/orders/{orders[0]['AmazonOrderId']}"
    body = {"fields": ["ShippingAddress.Name", "BuyerInfo.BuyerEmail"], "purpose": "fulfilment"}
    revealed = api.client.post(f"{order}/reveal", headers=packer, json=body)
    assert revealed.status_code == 200 and name in revealed.text and name in known  # the values are in play
    assert (
        api.client.post(f"{order}/reveal", headers=packer, json={**body, "purpose": "tax_remittance"}).status_code
        == 403
    )
    assert (
        api.client.post(f"{order}/reveal", headers=packer, json={"fields": [name], "purpose": "fulfilment"}).status_code
        == 400
    )
    search = f"{api.base}/tenants/{TENANT}/search"
    assert (
        api.client.post(
            search, headers=packer, json={"kind": "email", "value": email, "purpose": "fulfilment"}
        ).status_code
        == 200
    )
    assert (
        api.client.post(
            search, headers=sync, json={"kind": "email", "value": email, "purpose": "fulfilment"}
        ).status_code
        == 403
    )
    for raw in (
        b'{"kind": "email", "value": "' + email.encode() + b'", "purpose": 7}',
        b'{"' + name.encode() + b'": 1',
    ):
        r = api.client.post(search, headers={**packer, "content-type": "application/json"}, content=raw)
        assert r.status_code == 422 and email not in r.text and name not in r.text
    r = api.client.get(f"{api.base}/audit/events", headers=officer, params={"actor": email})
    assert r.status_code in (400, 422) and email not in r.text
    assert api.client.post(
        f"{api.base}/sessions", json={"login": email, "password": name, "code": "123456"}
    ).status_code in (401, 422)
    files = [p for p in api.d.settings.resolved_data_dir.rglob("*") if p.is_file()]
    assert {"sagevault.db", "audit.db"} <= {p.name for p in files}
    written = b"".join(p.read_bytes() for p in files)
    printed = capfd.readouterr()
    assert leaked(known, written) == []
    assert leaked(known, (printed.out + printed.err).encode()) == []


def test_a_credential_sent_where_a_tenant_id_belongs_never_reaches_the_security_log(api: Api) -> None:
    """A session token or an API key pasted into a tenant path, or into the audit export's tenant
    filter, is refused before anything records it; the append-only log never holds it."""
    officer = api.login("tia.officer", api.person("tia.officer", "security-officer", [ALL_TENANTS]))
    token = officer["Authorization"].removeprefix("Bearer ")
    with api.d.engine.begin() as conn:
        api.d.access.accounts.add_service(conn, "tok-sync", owner="alice.ng", purpose="token test", actor=api.admin)
        key = api.d.access.api_keys.issue(conn, "tok-sync", scopes=["records:read"], actor=OPERATOR).token
    for credential in (token, key):
        for method, path in (("GET", f"/tenants/{credential}/orders"), ("GET", f"/tenants/{credential}/keys")):
            assert api.client.request(method, f"{api.base}{path}", headers=officer).status_code == 422
        r = api.client.get(f"{api.base}/audit/export", headers=officer, params={"tenant": credential})
        assert r.status_code in (400, 422), r.text
        with api.d.engine.begin() as conn, pytest.raises(errors.PayloadError, match="not a selling partner id"):
            api.d.vault.add_tenant(conn, credential, ["ATVPDKIKX0DER"], principal=OPERATOR)
    written = b"".join(p.read_bytes() for p in api.d.settings.resolved_data_dir.rglob("*") if p.is_file())
    assert token.encode() not in written and key.encode() not in written
    assert all(e["tenant_id"] in (None, TENANT) for e in api.d.audit.search())


def test_ingest_asks_permission_before_it_reads_the_payload(api: Api) -> None:
    viewer = api.login("vic.viewer", api.person("vic.viewer", "viewer", [TENANT]))
    url = f"{api.base}/tenants/{TENANT}/documents"
    for body in (b"{not json", b'{"not": "sp-api"}', b"\xff\xfe"):
        refused = api.client.post(url, headers=viewer | {"content-type": "application/json"}, content=body)
        assert refused.status_code == 403, refused.text
        assert "json" not in refused.text.lower() and "line" not in refused.text
    denials = list(api.d.audit.search(name="access:permission:deny"))
    assert [(e["operation"], e["tenant_id"]) for e in denials] == [("ingest", TENANT)] * 3
    operator = api.login("olu.operator", api.person("olu.operator", "operator", [TENANT]))
    bad = api.client.post(url, headers=operator | {"content-type": "application/json"}, content=b'{"a": 1,}')
    assert bad.status_code == 400 and "not JSON (line 1, column 9)" in bad.json()["detail"]
    elsewhere = api.client.post(f"{api.base}/tenants/NOSUCHTENANT/documents", headers=operator, content=b"{")
    assert elsewhere.status_code == 403  # not the operator's tenant: refused before the body is looked at
    assert [e for e in api.d.audit.search(name="vault:record:ingest") if e["channel"] == "api"] == []


def test_the_hot_paths_thread_is_waited_for_when_its_request_is_cancelled() -> None:
    """A request cancelled while its reveal runs in a worker thread (a server stopping) still gets
    the thread's result, with the security events it holds, so they are made durable before the
    cancellation goes on; the task's context (request id, held events) goes to the thread."""
    seen = contextvars.ContextVar("seen", default="")

    def work() -> str:
        time.sleep(0.2)
        return f"done in {seen.get()}"

    async def request() -> tuple[object, bool]:
        seen.set("request-7")
        return await _in_thread(work)

    async def cancel_midway() -> tuple[object, bool]:
        task = asyncio.ensure_future(request())
        await asyncio.sleep(0.05)
        task.cancel()
        return await task

    assert asyncio.run(cancel_midway()) == ("done in request-7", True)
