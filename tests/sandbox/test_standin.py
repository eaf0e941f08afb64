"""The local SP-API stand-in (`sagevault.sandbox`) as a client meets it: a real uvicorn over TLS on
127.0.0.1, a real httpx client that trusts only the stand-in's local CA. LWA grants, RDTs and
their paths, getOrders and searchOrders paging (each order once, PII only through an RDT),
Amazon's date and NextToken checks, rate limits, injected faults, revocation, the control
endpoints and the `sagevault sandbox serve` command."""

from __future__ import annotations

import logging
import re
import signal
import stat
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from commands import SV
from processes import process_env
from sagevault.catalog import CATALOG
from sagevault.cli import app
from sagevault.crypto import client_context
from sagevault.errors import ConfigError
from sagevault.sandbox import (
    Sandbox,
    SandboxConfig,
    SandboxServer,
    SellerSpec,
    generate_orders,
    pii_values,
    serve,
)
from sagevault.testing import ManualClock
from sagevault.vault import recognise
from sagevault.vault._operations import extract
from sagevault.vault._split import split

MAIN, OTHER, GONE = "A1SANDBOXMAIN", "A2SANDBOXOTHER", "A3SANDBOXGONE"
MARKETPLACE = "ATVPDKIKX0DER"
EPOCH = "2020-01-01T00:00:00Z"
ORDERS_V0, ORDERS_2026 = "/orders/v0/orders", "/orders/2026-01-01/orders"
PII = ["buyerInfo", "shippingAddress"]


class Standin:
    """A running stand-in and a client that trusts its CA."""

    def __init__(self, sandbox: Sandbox, server: SandboxServer) -> None:
        self.sandbox, self.server, self.config = sandbox, server, sandbox.config
        self.http = httpx.Client(base_url=server.url, verify=client_context(server.ca_file), timeout=5)

    def lwa(self, **form: str) -> httpx.Response:
        return self.http.post("/auth/o2/token", data={"client_id": self.config.client_id, **form})

    def access_token(self, seller: str = MAIN) -> str:
        r = self.lwa(
            grant_type="refresh_token",
            refresh_token=self.sandbox.refresh_token(seller),
            client_secret=self.config.client_secret,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def rdt_response(self, path: str, elements: list[str] | None = None, seller: str = MAIN) -> httpx.Response:
        resource: dict[str, Any] = {"method": "GET", "path": path}
        if elements is not None:
            resource["dataElements"] = elements
        return self.http.post(
            "/tokens/2021-03-01/restrictedDataToken",
            json={"restrictedResources": [resource]},
            headers={"x-amz-access-token": self.access_token(seller)},
        )

    def rdt(self, path: str, elements: list[str] | None = None, seller: str = MAIN) -> str:
        r = self.rdt_response(path, elements, seller)
        assert r.status_code == 200, r.text
        return str(r.json()["restrictedDataToken"])

    def get(self, path: str, token: str | None, **params: str) -> httpx.Response:
        headers = {} if token is None else {"x-amz-access-token": token}
        return self.http.get(path, params=params, headers=headers)

    def all_orders(self, token: str, **params: str) -> list[list[dict[str, Any]]]:
        """Every page of getOrders, following NextToken."""
        pages: list[list[dict[str, Any]]] = []
        query = {"MarketplaceIds": MARKETPLACE, "LastUpdatedAfter": EPOCH, **params}
        while True:
            r = self.get(ORDERS_V0, token, **query)
            assert r.status_code == 200, r.text
            payload = r.json()["payload"]
            pages.append(payload["Orders"])
            if "NextToken" not in payload:
                return pages
            query = {"MarketplaceIds": MARKETPLACE, "NextToken": payload["NextToken"]}

    def control(self, method: str, name: str, admin: str | None = "", **body: Any) -> httpx.Response:
        token = self.sandbox.admin_token if admin == "" else admin
        headers = {} if token is None else {"x-sandbox-admin": token}
        return self.http.request(method, f"/_sandbox/{name}", json=body or None, headers=headers)

    def close(self) -> None:
        self.http.close()
        self.server.close()


def _config(**changes: Any) -> SandboxConfig:
    sellers = {
        MAIN: SellerSpec(MAIN, orders=250),
        OTHER: SellerSpec(OTHER, orders=5, seed=1),
        GONE: SellerSpec(GONE, orders=3, seed=2),
    }
    return SandboxConfig(sellers=sellers, **{"rate_limits": False, **changes})


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("standin-tls")  # made by the first server, reused by the others


@pytest.fixture(scope="module")
def standin(tls_dir: Path) -> Iterator[Standin]:
    """One stand-in for the module (no rate limits); tests that change its state use their own."""
    sandbox = Sandbox(_config())
    running = Standin(sandbox, serve(sandbox, tls_dir=tls_dir))
    yield running
    running.close()


@pytest.fixture
def start(tls_dir: Path) -> Iterator[Callable[..., Standin]]:
    """Start a stand-in of this test's own (config changes as keywords; `clock=`)."""
    started: list[Standin] = []

    def make(clock: Callable[[], datetime] | None = None, **changes: Any) -> Standin:
        sandbox = Sandbox(_config(**changes), clock=clock)
        started.append(Standin(sandbox, serve(sandbox, tls_dir=tls_dir)))
        return started[-1]

    yield make
    for running in started:
        running.close()


def _error(r: httpx.Response) -> tuple[int, str]:
    [error] = r.json()["errors"]
    assert set(error) == {"code", "message", "details"}
    return r.status_code, error["code"]


# -- LWA --------------------------------------------------------------------------------------


def test_a_refresh_token_grant_gives_an_opaque_access_token(standin: Standin) -> None:
    r = standin.lwa(
        grant_type="refresh_token",
        refresh_token=standin.config.sellers[MAIN].refresh_token,
        client_secret=standin.config.client_secret,
    )
    assert r.status_code == 200 and r.headers["x-amzn-RequestId"]
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["access_token"].startswith("Atza|") and (body["token_type"], body["expires_in"]) == ("bearer", 3600)
    assert r.headers["cache-control"] == "no-store"


def test_an_authorization_code_gives_the_sellers_refresh_token_once(standin: Standin) -> None:
    code = standin.sandbox.authorization_code(OTHER)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": "https://app.example/cb"}
    r = standin.lwa(client_secret=standin.config.client_secret, **form)
    assert r.status_code == 200, r.text
    assert r.json()["refresh_token"] == standin.config.sellers[OTHER].refresh_token
    assert r.json()["access_token"].startswith("Atza|")
    again = standin.lwa(client_secret=standin.config.client_secret, **form)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


def test_lwa_refuses_a_wrong_client_an_unknown_grant_and_a_malformed_request(standin: Standin) -> None:
    refresh = standin.config.sellers[MAIN].refresh_token
    wrong = standin.lwa(grant_type="refresh_token", refresh_token=refresh, client_secret="amzn1.oa2-cs.v1.wrong")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    assert set(wrong.json()) == {"error", "error_description"}
    secret = standin.config.client_secret
    unknown = standin.lwa(grant_type="refresh_token", refresh_token="Atzr|nope", client_secret=secret)
    assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_grant")
    for form in ({"refresh_token": refresh}, {"grant_type": "password"}, {"grant_type": "refresh_token"}):
        r = standin.lwa(client_secret=standin.config.client_secret, **form)
        assert (r.status_code, r.json()["error"]) == (400, "invalid_request"), form
    garbage = standin.http.post("/auth/o2/token", content=b"%%%=&&", headers={"content-type": "text/plain"})
    assert (garbage.status_code, garbage.json()["error"]) == (400, "invalid_request")


# -- Restricted Data Tokens ---------------------------------------------------------------------


def test_an_rdt_is_made_for_the_restricted_paths_and_works_only_on_its_own(standin: Standin) -> None:
    r = standin.rdt_response(ORDERS_V0, PII)
    assert r.status_code == 200 and r.headers["x-amzn-RateLimit-Limit"] == "1.0"
    assert r.json()["restrictedDataToken"].startswith("Atz.sprdt|") and r.json()["expiresIn"] == 3600
    for path, elements in [
        (ORDERS_V0, ["buyerInfo", "creditCard"]),
        (ORDERS_V0, None),  # getOrders needs the elements named
        ("/orders/v0/orders/{orderId}/orderItems/buyerInfo", None),
        ("/fba/inbound/v0/shipments", None),
        ("/orders/v0/orders/{orderId}/address", ["shippingAddress"]),
    ]:
        assert _error(standin.rdt_response(path, elements)) == (400, "InvalidInput"), path
    bad = standin.http.post(
        "/tokens/2021-03-01/restrictedDataToken",
        content=b"not json",
        headers={"x-amz-access-token": standin.access_token()},
    )
    assert _error(bad) == (400, "InvalidInput")
    order_id = standin.sandbox.orders_of(MAIN)[0]["AmazonOrderId"]
    address = f"/orders/v0/orders/{order_id}/address"
    list_rdt = standin.rdt(ORDERS_V0, PII)
    assert _error(standin.get(address, list_rdt)) == (403, "Unauthorized")  # made for another path
    assert _error(standin.get(address, standin.access_token())) == (403, "Unauthorized")  # restricted
    assert _error(standin.get(ORDERS_2026, list_rdt, lastUpdatedAfter=EPOCH)) == (403, "Unauthorized")
    one = standin.rdt(address)  # a literal order's path: that order only
    other_id = standin.sandbox.orders_of(MAIN)[1]["AmazonOrderId"]
    assert standin.get(address, one).status_code == 200
    assert _error(standin.get(f"/orders/v0/orders/{other_id}/address", one)) == (403, "Unauthorized")
    rdt_of_rdt = standin.http.post(
        "/tokens/2021-03-01/restrictedDataToken",
        json={"restrictedResources": [{"method": "GET", "path": ORDERS_V0, "dataElements": PII}]},
        headers={"x-amz-access-token": list_rdt},
    )
    assert _error(rdt_of_rdt) == (403, "Unauthorized")


def test_sp_api_calls_without_a_known_token_are_unauthorized(standin: Standin) -> None:
    for token in (None, "", "Atza|made-up"):
        r = standin.get(ORDERS_V0, token, MarketplaceIds=MARKETPLACE, LastUpdatedAfter=EPOCH)
        assert _error(r) == (403, "Unauthorized") and r.headers["x-amzn-RequestId"]


# -- Orders -------------------------------------------------------------------------------------


def test_get_orders_pages_through_every_order_once_in_order_with_pii_only_through_an_rdt(standin: Standin) -> None:
    expected = standin.sandbox.orders_of(MAIN)
    pages = standin.all_orders(standin.rdt(ORDERS_V0, PII), MaxResultsPerPage="37")
    assert [len(p) for p in pages] == [37] * 6 + [28]
    listed = [o for page in pages for o in page]
    assert listed == expected  # each once, by (LastUpdateDate, AmazonOrderId), BuyerInfo and ShippingAddress in
    only_address = [o for page in standin.all_orders(standin.rdt(ORDERS_V0, ["shippingAddress"])) for o in page]
    assert all("ShippingAddress" in o and "BuyerInfo" not in o for o in only_address)
    plain = [o for page in standin.all_orders(standin.access_token()) for o in page]
    assert [o["AmazonOrderId"] for o in plain] == [o["AmazonOrderId"] for o in expected]
    assert not any("BuyerInfo" in o or "ShippingAddress" in o for o in plain)
    pii = {v for o in expected for v in pii_values(o)}
    r = standin.get(ORDERS_V0, standin.access_token(), MarketplaceIds=MARKETPLACE, LastUpdatedAfter=EPOCH)
    assert not any(v in r.text for v in pii)
    assert r.headers["x-amzn-RateLimit-Limit"] == "0.0167" and "LastUpdatedBefore" in r.json()["payload"]


def test_get_orders_checks_its_parameters_as_amazon_does(standin: Standin) -> None:
    token = standin.access_token()
    now = datetime.now(UTC)
    recent = standin.get(
        ORDERS_V0,
        token,
        MarketplaceIds=MARKETPLACE,
        LastUpdatedAfter=EPOCH,
        LastUpdatedBefore=(now - timedelta(minutes=1)).isoformat(),
    )
    assert _error(recent) == (400, "InvalidInput") and "2 minutes" in recent.json()["errors"][0]["message"]
    bound = (now - timedelta(minutes=3)).replace(microsecond=0)
    fine = standin.get(
        ORDERS_V0, token, MarketplaceIds=MARKETPLACE, LastUpdatedAfter=EPOCH, LastUpdatedBefore=bound.isoformat()
    )
    payload = fine.json()["payload"]
    assert fine.status_code == 200 and payload["LastUpdatedBefore"] == bound.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert all(o["LastUpdateDate"] < payload["LastUpdatedBefore"] for o in payload["Orders"])
    for params in (
        {"LastUpdatedAfter": EPOCH},  # no MarketplaceIds
        {"MarketplaceIds": "A1PA6795UKMFR9", "LastUpdatedAfter": EPOCH},  # not the seller's
        {"MarketplaceIds": MARKETPLACE},  # neither CreatedAfter nor LastUpdatedAfter
        {"MarketplaceIds": MARKETPLACE, "LastUpdatedAfter": EPOCH, "CreatedAfter": EPOCH},
        {"MarketplaceIds": MARKETPLACE, "LastUpdatedAfter": "yesterday"},
        {"MarketplaceIds": MARKETPLACE, "LastUpdatedAfter": EPOCH, "MaxResultsPerPage": "101"},
        {"MarketplaceIds": MARKETPLACE, "LastUpdatedAfter": EPOCH, "OrderStatuses": "Lost"},
    ):
        assert _error(standin.get(ORDERS_V0, token, **params)) == (400, "InvalidInput"), params
    created = standin.get(ORDERS_V0, token, MarketplaceIds=MARKETPLACE, CreatedAfter=EPOCH, OrderStatuses="Pending")
    payload = created.json()["payload"]
    assert "CreatedBefore" in payload and {o["OrderStatus"] for o in payload["Orders"]} == {"Pending"}


def test_a_next_token_altered_or_of_another_seller_is_invalid_input(standin: Standin) -> None:
    token = standin.access_token()
    r = standin.get(ORDERS_V0, token, MarketplaceIds=MARKETPLACE, LastUpdatedAfter=EPOCH, MaxResultsPerPage="10")
    next_token = r.json()["payload"]["NextToken"]
    flipped = next_token[:5] + ("A" if next_token[5] != "A" else "B") + next_token[6:]
    for bad in (flipped, next_token + "x", "not-a-token", next_token.split(".")[0]):
        assert _error(standin.get(ORDERS_V0, token, MarketplaceIds=MARKETPLACE, NextToken=bad)) == (400, "InvalidInput")
    theirs = standin.access_token(OTHER)
    assert _error(standin.get(ORDERS_V0, theirs, MarketplaceIds=MARKETPLACE, NextToken=next_token)) == (
        400,
        "InvalidInput",
    )
    assert _error(standin.get(ORDERS_2026, token, paginationToken=next_token)) == (400, "InvalidInput")
    assert standin.get(ORDERS_V0, token, MarketplaceIds=MARKETPLACE, NextToken=next_token).status_code == 200


def test_search_orders_pages_the_same_orders_with_pii_only_for_its_rdt_and_included_data(standin: Standin) -> None:
    expected = [o["AmazonOrderId"] for o in standin.sandbox.orders_of(MAIN)]
    rdt = standin.rdt(ORDERS_2026, PII)
    seen, query = [], {"lastUpdatedAfter": EPOCH, "maxResultsPerPage": "60", "includedData": "BUYER,RECIPIENT"}
    while True:
        r = standin.get(ORDERS_2026, rdt, **query)
        assert r.status_code == 200 and r.headers["x-amzn-RateLimit-Limit"] == "0.0056", r.text
        body = r.json()
        assert len(body["orders"]) <= 60 and "lastUpdatedBefore" in body
        seen += body["orders"]
        if "pagination" not in body:
            break
        query = {"paginationToken": body["pagination"]["nextToken"], "includedData": "BUYER,RECIPIENT"}
    assert [o["orderId"] for o in seen] == expected
    assert all(o["buyer"]["buyerEmail"].endswith("@marketplace.amazon.com") and o["recipient"] for o in seen)
    assert {"salesChannel", "orderItems", "createdTime", "lastUpdatedTime"} <= set(seen[0])
    plain = standin.get(ORDERS_2026, standin.access_token(), lastUpdatedAfter=EPOCH, includedData="BUYER,RECIPIENT")
    unasked = standin.get(ORDERS_2026, rdt, lastUpdatedAfter=EPOCH, marketplaceIds=MARKETPLACE)
    for r in (plain, unasked):
        assert r.status_code == 200 and not any("buyer" in o or "recipient" in o for o in r.json()["orders"])
    assert _error(standin.get(ORDERS_2026, rdt, lastUpdatedAfter=EPOCH, includedData="EVERYTHING")) == (
        400,
        "InvalidInput",
    )


def test_single_order_reads_answer_in_the_models_shapes(standin: Standin) -> None:
    order = standin.sandbox.orders_of(MAIN)[5]
    base = f"/orders/v0/orders/{order['AmazonOrderId']}"
    token = standin.access_token()
    got = standin.get(base, token).json()["payload"]
    assert got["AmazonOrderId"] == order["AmazonOrderId"] and "BuyerInfo" not in got and "ShippingAddress" not in got
    assert standin.get(base, standin.rdt("/orders/v0/orders/{orderId}", PII)).json()["payload"] == order
    address = standin.get(f"{base}/address", standin.rdt("/orders/v0/orders/{orderId}/address")).json()["payload"]
    assert address == {"AmazonOrderId": order["AmazonOrderId"], "ShippingAddress": order["ShippingAddress"]}
    buyer = standin.get(f"{base}/buyerInfo", standin.rdt("/orders/v0/orders/{orderId}/buyerInfo")).json()["payload"]
    assert buyer == {"AmazonOrderId": order["AmazonOrderId"], **order["BuyerInfo"]}
    items = standin.get(f"{base}/orderItems", token).json()["payload"]
    assert items["AmazonOrderId"] == order["AmazonOrderId"] and 1 <= len(items["OrderItems"]) <= 2
    assert items == standin.get(f"{base}/orderItems", token).json()["payload"]  # deterministic
    assert _error(standin.get("/orders/v0/orders/902-0000000-0000000", token)) == (404, "NotFound")
    theirs = standin.sandbox.orders_of(OTHER)[0]["AmazonOrderId"]
    assert _error(standin.get(f"/orders/v0/orders/{theirs}", token)) == (404, "NotFound")
    assert _error(standin.get("/orders/v0/nothing-here", token)) == (404, "NotFound")


def test_orders_changed_and_added_show_up_in_the_next_incremental_read(start: Callable[..., Standin]) -> None:
    clock = ManualClock()
    s = start(clock=clock)
    token = s.access_token()
    first = s.get(ORDERS_V0, token, MarketplaceIds=MARKETPLACE, LastUpdatedAfter=EPOCH).json()["payload"]
    clock.advance(minutes=10)
    updated = s.sandbox.update_orders(MAIN, 4)
    added = s.sandbox.add_orders(MAIN, 3)
    clock.advance(minutes=3)
    pages = s.all_orders(token, LastUpdatedAfter=first["LastUpdatedBefore"])
    assert sorted(o["AmazonOrderId"] for p in pages for o in p) == sorted(updated + added)
    assert len(set(updated + added)) == 7 and len(s.sandbox.orders_of(MAIN)) == 253
    changed = {o["AmazonOrderId"]: o for o in s.sandbox.orders_of(MAIN)}
    assert all(changed[i]["OrderStatus"] in ("Unshipped", "Shipped") for i in updated)


# -- Tokens over time, revocation ----------------------------------------------------------------


def test_an_access_token_past_its_life_is_refused_as_expired(start: Callable[..., Standin]) -> None:
    clock = ManualClock()
    s = start(clock=clock, token_seconds=60)
    token = s.access_token()
    assert s.get(ORDERS_V0, token, MarketplaceIds=MARKETPLACE, LastUpdatedAfter=EPOCH).status_code == 200
    clock.advance(seconds=61)
    r = s.get(ORDERS_V0, token, MarketplaceIds=MARKETPLACE, LastUpdatedAfter=EPOCH)
    assert _error(r) == (403, "Unauthorized") and "expired" in r.json()["errors"][0]["message"]
    assert s.get(ORDERS_V0, s.access_token(), MarketplaceIds=MARKETPLACE, LastUpdatedAfter=EPOCH).status_code == 200


def test_a_revoked_seller_gets_invalid_grant_and_403_until_it_authorises_again(standin: Standin) -> None:
    old_refresh = standin.sandbox.refresh_token(GONE)
    token, rdt = standin.access_token(GONE), standin.rdt(ORDERS_V0, PII, seller=GONE)
    standin.sandbox.revoke(GONE)
    r = standin.lwa(grant_type="refresh_token", refresh_token=old_refresh, client_secret=standin.config.client_secret)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    for t in (token, rdt):
        assert _error(standin.get(ORDERS_V0, t, MarketplaceIds=MARKETPLACE, LastUpdatedAfter=EPOCH)) == (
            403,
            "Unauthorized",
        )
    assert standin.access_token(MAIN)  # other sellers are untouched
    code = standin.sandbox.authorization_code(GONE)
    again = standin.lwa(
        grant_type="authorization_code",
        code=code,
        redirect_uri="https://app.example/cb",
        client_secret=standin.config.client_secret,
    ).json()
    assert again["refresh_token"] != old_refresh and again["refresh_token"] == standin.sandbox.refresh_token(GONE)
    assert standin.get(ORDERS_V0, again["access_token"], MarketplaceIds=MARKETPLACE, LastUpdatedAfter=EPOCH).is_success


# -- Rate limits and faults ------------------------------------------------------------------------


def test_over_the_rate_limit_amazon_answers_429_with_its_rate(start: Callable[..., Standin]) -> None:
    s = start(rate_limits=True, rate_scale=0.05)  # getOrders: 0.000835/s, a burst of 1
    token = s.access_token()
    query = {"MarketplaceIds": MARKETPLACE, "LastUpdatedAfter": EPOCH}
    assert s.get(ORDERS_V0, token, **query).status_code == 200
    r = s.get(ORDERS_V0, token, **query)
    assert _error(r) == (429, "QuotaExceeded") and r.headers["x-amzn-RateLimit-Limit"] == "0.000835"
    assert s.sandbox.calls["throttled"] == 1 and s.sandbox.calls["getOrders"] == 2
    assert s.get(ORDERS_V0, s.access_token(OTHER), **query).status_code == 200  # a bucket per seller
    fast = Sandbox(_config(rate_limits=True, rate_scale=300.0))
    assert fast.limits("getOrders") == (pytest.approx(5.01), 20)  # the burst is Amazon's, not scaled up


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("500", 500, "InternalFailure"),
        ("503", 503, "ServiceUnavailable"),
        ("429", 429, "QuotaExceeded"),
        ("expired-token", 403, "Unauthorized"),
    ],
)
def test_an_injected_fault_answers_once_then_the_call_works(
    standin: Standin, kind: str, status: int, code: str
) -> None:
    token = standin.access_token()
    query = {"MarketplaceIds": MARKETPLACE, "LastUpdatedAfter": EPOCH, "MaxResultsPerPage": "1"}
    standin.sandbox.inject(kind, 1, "getOrders")
    r = standin.get(ORDERS_V0, token, **query)
    assert _error(r) == (status, code) and r.headers["x-amzn-RateLimit-Limit"]
    if kind == "expired-token":
        assert "expired" in r.json()["errors"][0]["message"]
    assert standin.get(ORDERS_V0, token, **query).status_code == 200


def test_a_malformed_answer_is_a_200_that_is_not_json(standin: Standin) -> None:
    token = standin.access_token()
    standin.sandbox.inject("malformed", 2)  # any SP-API operation
    r = standin.get(ORDERS_V0, token, MarketplaceIds=MARKETPLACE, LastUpdatedAfter=EPOCH)
    order_id = standin.sandbox.orders_of(MAIN)[0]["AmazonOrderId"]
    items = standin.get(f"/orders/v0/orders/{order_id}/orderItems", token)
    for answer in (r, items):
        assert answer.status_code == 200
        with pytest.raises(ValueError, match=r"\w"):
            answer.json()
    standin.sandbox.inject("500", 1, "token")
    failed = standin.lwa(grant_type="refresh_token", refresh_token="x", client_secret="y")
    assert (failed.status_code, failed.json()["error"]) == (500, "server_error")
    assert standin.sandbox.faults == []


def test_a_timeout_holds_the_answer_past_the_clients_patience(start: Callable[..., Standin]) -> None:
    s = start()
    s.sandbox.hang_seconds = 0.4
    token = s.access_token()
    s.sandbox.inject("timeout", 1, "getOrders")
    query = {"MarketplaceIds": MARKETPLACE, "LastUpdatedAfter": EPOCH, "MaxResultsPerPage": "1"}
    with pytest.raises(httpx.ReadTimeout):
        s.http.get(ORDERS_V0, params=query, headers={"x-amz-access-token": token}, timeout=0.1)
    assert s.get(ORDERS_V0, token, **query).status_code == 200
    s.sandbox.inject("timeout", 1, "getOrders")
    assert s.get(ORDERS_V0, token, **query).status_code == 200  # a patient client gets its answer


# -- Control endpoints ------------------------------------------------------------------------------


def test_the_control_endpoints_need_the_admin_token(start: Callable[..., Standin]) -> None:
    s = start()
    for admin in (None, "wrong"):
        for method, name in (("POST", "faults"), ("POST", "revoke"), ("POST", "orders"), ("GET", "calls")):
            assert _error(s.control(method, name, admin, seller_id=MAIN, kind="500")) == (403, "Unauthorized")
    assert s.sandbox.faults == [] and len(s.sandbox.orders_of(MAIN)) == 250
    assert s.control("POST", "faults", kind="503", count=1, operation="getOrders").status_code == 200
    assert _error(s.control("POST", "faults", kind="boom")) == (400, "InvalidInput")
    assert _error(s.get(ORDERS_V0, s.access_token(), MarketplaceIds=MARKETPLACE, LastUpdatedAfter=EPOCH)) == (
        503,
        "ServiceUnavailable",
    )
    changed = s.control("POST", "orders", seller_id=MAIN, add=2, update=1).json()
    assert len(changed["added"]) == 2 and len(changed["updated"]) == 1 and len(s.sandbox.orders_of(MAIN)) == 252
    assert _error(s.control("POST", "orders", seller_id="A9NOBODY", add=1)) == (400, "InvalidInput")
    calls = s.control("GET", "calls").json()["calls"]
    assert calls["getOrders"] == 1 and calls["token"] == 1
    assert s.control("POST", "revoke", seller_id=MAIN).json() == {"revoked": MAIN}
    refresh = s.sandbox.refresh_token(MAIN)
    r = s.lwa(grant_type="refresh_token", refresh_token=refresh, client_secret=s.config.client_secret)
    assert r.json()["error"] == "invalid_grant"


# -- The data ---------------------------------------------------------------------------------------


def test_generated_orders_are_deterministic_unique_and_all_known_to_the_catalog() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    orders = generate_orders(MAIN, MARKETPLACE, 120, 0, now)
    assert orders == generate_orders(MAIN, MARKETPLACE, 120, 0, now)
    assert orders != generate_orders(MAIN, MARKETPLACE, 120, 1, now)
    ids = [o["AmazonOrderId"] for o in orders]
    assert len(set(ids)) == 120 and all(re.fullmatch(r"\d{3}-\d{7}-\d{7}", i) for i in ids)
    assert {o["OrderStatus"] for o in orders} == {"Unshipped", "Shipped", "Pending"}
    latest = now - timedelta(minutes=5)
    for o in orders:
        purchased, updated = (datetime.fromisoformat(o[k]) for k in ("PurchaseDate", "LastUpdateDate"))
        assert latest - timedelta(days=10) <= purchased <= updated <= latest
    values = [v for o in orders for v in pii_values(o)]
    assert len(values) == len(set(values)) == 7 * 120
    assert all(o["BuyerInfo"]["BuyerEmail"].endswith("@marketplace.amazon.com") for o in orders)
    ours = generate_orders(OTHER, MARKETPLACE, 120, 0, now)
    assert not {v for o in ours for v in pii_values(o)} & set(values)
    payload = {"payload": {"Orders": orders, "LastUpdatedBefore": "2026-03-01T11:55:00Z"}}
    in_catalog: set[str] = set()
    for doc in extract(payload, recognise(payload)):
        found: list[Any] = []
        unknown: dict[str, Any] = {}
        split(doc.body, CATALOG.tree(doc.document), "", found, unknown)
        assert unknown == {}
        in_catalog |= {v for _, _, v in found if isinstance(v, str)}
    assert in_catalog == set(values)  # pii_values is exactly what the catalog calls PII


def test_the_server_writes_no_token_and_no_pii_to_a_log(standin: Standin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rdt = standin.rdt(ORDERS_V0, PII)
    pages = standin.all_orders(rdt, MaxResultsPerPage="100")
    standin.get(ORDERS_V0, rdt, MarketplaceIds=MARKETPLACE, NextToken="tampered")
    secrets = {standin.config.client_secret, *standin.sandbox.issued_tokens()}
    pii = {v for p in pages for o in p for v in pii_values(o)}
    assert len(pii) > 1000 and not any(s in caplog.text for s in secrets | pii)


# -- Serving and the command line ---------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_a_host_that_is_not_loopback_is_refused(tls_dir: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        serve(Sandbox(_config()), host=host, tls_dir=tls_dir)


def test_sandbox_serve_help_and_refusal_through_the_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    told = runner.invoke(app, ["sandbox", "serve", "--help"], env={"COLUMNS": "200"})
    assert told.exit_code == 0
    for option in ("--port", "--dir", "--seller", "--orders", "--marketplace", "--no-rate-limits", "--rate-scale"):
        assert option in told.stdout
    refused = runner.invoke(app, ["sandbox", "serve", "--host", "0.0.0.0", "--dir", str(tmp_path / "sbx")])
    assert refused.exit_code == 2 and "loopback" in refused.stderr and not (tmp_path / "sbx").exists()


def test_sandbox_serve_as_a_process_writes_private_files_and_answers(tmp_path: Path) -> None:
    home = tmp_path / "sbx"
    proc = subprocess.Popen(
        [*SV, "sandbox", "serve", "--port", "0", "--dir", str(home), "--orders", "12", "--rate-scale", "100"],
        cwd=tmp_path,
        env=process_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        while "Ctrl-C" not in (line := proc.stdout.readline()) and line:
            lines.append(line)
        printed = "".join(lines)
        settings = tomllib.loads((home / "app.toml").read_text())
        assert set(settings) == {"client_id", "client_secret", "endpoint", "token_url", "ca_file"}
        assert settings["endpoint"] in printed and settings["token_url"] == settings["endpoint"] + "/auth/o2/token"
        refresh = (home / "seller-A1SANDBOXDEMO1.token").read_text().strip()
        admin = (home / "admin.token").read_text().strip()
        for secret in (settings["client_secret"], refresh, admin):
            assert secret not in printed
        for path in (home / "app.toml", home / "seller-A1SANDBOXDEMO1.token", home / "admin.token"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        with httpx.Client(verify=client_context(Path(settings["ca_file"])), timeout=5) as http:
            form = {"grant_type": "refresh_token", "refresh_token": refresh}
            creds = {"client_id": settings["client_id"], "client_secret": settings["client_secret"]}
            r = http.post(settings["token_url"], data=form | creds)
            assert r.status_code == 200, r.text
            calls = http.get(settings["endpoint"] + "/_sandbox/calls", headers={"x-sandbox-admin": admin})
            assert calls.json()["calls"] == {"token": 1}
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0 and "Traceback" not in err, err
