"""The orders sync against the local SP-API stand-in (real TLS on 127.0.0.1, real httpx), on
SQLite and PostgreSQL: every order stored once, PII only through an RDT and only encrypted,
Amazon's faults survived without loss, a revoked authorisation stopping the tenant."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import OPERATOR
from pii_scan import leaked, stored_bytes, written_files
from sagevault.access import KillSwitch
from sagevault.connector import AppCredentials, Backoff, SpApiClient, save_app
from sagevault.deployment import Deployment
from sagevault.errors import (
    AuthorizationRevoked,
    ConfigError,
    Conflict,
    KillSwitchEngaged,
    TenantShredded,
    UpstreamError,
)
from sagevault.jobs import Watch, sync_tenant
from sagevault.sandbox import Sandbox, SandboxConfig, SellerSpec, new_refresh_token, pii_values, serve
from sagevault.vault._schema import records

SELLER = "A1SYNCSELLER01"
CLIENT_ID = "amzn1.application-oa2-client.synctest"
CLIENT_SECRET = "amzn1.oa2-cs.v1.synctest-secret-0123456789abcdef"


class StandIn:
    def __init__(self, sandbox: Sandbox, url: str, ca_file: Path, spec: SellerSpec, clock: Clock) -> None:
        self.sandbox, self.url, self.ca_file, self.spec, self.clock = sandbox, url, ca_file, spec, clock

    def client(self, **kw: object) -> SpApiClient:
        app = AppCredentials(CLIENT_ID, CLIENT_SECRET, self.url, self.url + "/auth/o2/token", self.ca_file)
        return SpApiClient(app, timeout=kw.pop("timeout", 2.0), backoff=Backoff(base=0.01, cap=0.05), **kw)  # type: ignore[arg-type]

    def pii(self) -> set[str]:
        return {v for o in self.sandbox.orders_of(SELLER) for v in pii_values(o)}


class Clock:
    """Real time, moved forward on demand: Amazon's and SageVault's, the same."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    spec = SellerSpec(seller_id=SELLER, orders=230, refresh_token=new_refresh_token())
    clock = Clock()
    sandbox = Sandbox(SandboxConfig(CLIENT_ID, CLIENT_SECRET, {SELLER: spec}, rate_scale=1000.0), clock)
    sandbox.hang_seconds = 3
    with serve(sandbox, tls_dir=tmp_path_factory.mktemp("standin-tls")) as server:
        yield StandIn(sandbox, server.url, Path(server.ca_file), spec, clock)


@pytest.fixture
def d(deployment_at: Callable[..., Deployment], standin: StandIn) -> Deployment:
    deployment = deployment_at(clock=standin.clock)
    deployment.connector.use(standin.client())
    with deployment.unit_of_work() as conn:
        deployment.vault.add_tenant(conn, SELLER, ["ATVPDKIKX0DER"], principal=OPERATOR)
    return deployment


def _connect(d: Deployment, standin: StandIn, **kw: object) -> None:
    with d.unit_of_work() as conn:
        d.connector.connect(conn, SELLER, standin.spec.refresh_token, principal=OPERATOR, **kw)  # type: ignore[arg-type]


def _stored(d: Deployment) -> tuple[int, int]:
    """(orders stored, records stored) of the seller."""
    with d.engine.connect() as conn:
        orders = conn.execute(
            select(func.count(func.distinct(records.c.order_id))).where(records.c.tenant_id == SELLER)
        ).scalar_one()
        rows = conn.execute(select(func.count()).where(records.c.tenant_id == SELLER)).scalar_one()
    return int(orders), int(rows)


def _events(d: Deployment, prefix: str) -> list[dict]:
    return [e for e in d.audit.search() if e["name"].startswith(prefix)]


def test_a_seller_is_synced_whole_with_pii_only_encrypted_and_no_token_anywhere(
    d: Deployment, standin: StandIn
) -> None:
    _connect(d, standin)
    report = sync_tenant(d, SELLER, OPERATOR)
    assert (report.orders, report.pages, report.finished) == (230, 3, True)
    assert _stored(d) == (230, 230)
    order = standin.sandbox.orders_of(SELLER)[0]
    with d.unit_of_work() as conn:
        shown = d.vault.get(conn, SELLER, order["AmazonOrderId"], principal=OPERATOR)
        revealed = d.vault.reveal(
            conn, SELLER, order["AmazonOrderId"], ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR
        )
    assert order["BuyerInfo"]["BuyerEmail"] not in json.dumps(asdict(shown), default=str)  # masked
    assert [f.value for f in revealed] == [order["BuyerInfo"]["BuyerEmail"]]
    record = shown.records[0]  # attribution: fetched by the connector, from getOrders, for this seller
    assert (record.origin, record.operation, record.seller_id) == ("sp-api-sync", "orders-v0.getOrders", SELLER)
    names = [e["name"] for e in _events(d, "connector:")]
    assert names[0] == "connector:token:refresh" and "connector:auth:connect" in names
    assert names.count("connector:sync:page") == 3 and names[-1] == "connector:sync:finish"
    assert "connector:rdt:create" in names
    with d.unit_of_work(read_only=True) as conn:
        [status] = d.connector.status(conn, principal=OPERATOR)
    assert (status.pages, status.orders, status.errors, status.in_window) == (3, 230, 0, False)
    secrets = {standin.spec.refresh_token, CLIENT_SECRET, *standin.sandbox.issued_tokens()}
    haystack = stored_bytes(d) + written_files(d) + json.dumps(list(d.audit.search()), default=str).encode()
    assert leaked(standin.pii() | secrets, haystack) == []


def test_a_second_run_takes_only_new_and_updated_orders(d: Deployment, standin: StandIn) -> None:
    _connect(d, standin)
    sync_tenant(d, SELLER, OPERATOR)
    standin.sandbox.add_orders(SELLER, 7)
    standin.sandbox.update_orders(SELLER, 5)
    standin.clock.offset += timedelta(minutes=10)  # the next window ends three minutes before then
    report = sync_tenant(d, SELLER, OPERATOR)
    assert report.orders == 12 and _stored(d) == (237, 237)


def test_without_restricted_data_no_pii_is_fetched_at_all(d: Deployment, standin: StandIn) -> None:
    _connect(d, standin, restricted_data=False)
    sync_tenant(d, SELLER, OPERATOR)
    assert _stored(d)[0] == 230
    assert standin.sandbox.calls["createRestrictedDataToken"] == 0
    assert leaked(standin.pii(), stored_bytes(d)) == []


def test_429s_5xx_and_an_expired_token_slow_the_sync_but_lose_nothing(d: Deployment, standin: StandIn) -> None:
    _connect(d, standin)
    standin.sandbox.inject("429", 3, "getOrders")
    standin.sandbox.inject("503", 1, "getOrders")
    standin.sandbox.inject("500", 1)
    standin.sandbox.inject("expired-token", 1, "getOrders")
    standin.sandbox.inject("expired-token", 1, "createRestrictedDataToken")  # two 403s in a row: not revoked
    standin.sandbox.inject("503", 1, "token")  # LWA itself
    report = sync_tenant(d, SELLER, OPERATOR)
    assert report.finished and _stored(d) == (230, 230)
    assert d.connector.client.throttled >= 3 and d.connector.client.retries >= 5


def test_a_timeout_is_retried(d: Deployment, standin: StandIn) -> None:
    d.connector.use(standin.client(timeout=0.5))
    _connect(d, standin)
    standin.sandbox.inject("timeout", 1, "getOrders")
    assert sync_tenant(d, SELLER, OPERATOR).finished and _stored(d)[0] == 230


def test_a_malformed_page_stores_nothing_of_it_and_holds_the_checkpoint(d: Deployment, standin: StandIn) -> None:
    _connect(d, standin)
    sync_tenant(d, SELLER, OPERATOR, max_pages=1)
    standin.sandbox.inject("malformed", 10, "getOrders")
    with pytest.raises(UpstreamError, match="not JSON"):
        sync_tenant(d, SELLER, OPERATOR)
    assert _stored(d) == (100, 100)
    with d.unit_of_work(read_only=True) as conn:
        [status] = d.connector.status(conn, principal=OPERATOR)
    assert (status.pages, status.errors, status.last_error, status.in_window) == (1, 1, "UpstreamError", True)
    standin.sandbox.faults.clear()
    report = sync_tenant(d, SELLER, OPERATOR)
    assert report.finished and _stored(d) == (230, 230)
    assert [e["name"] for e in _events(d, "connector:sync:fail")] == ["connector:sync:fail"]


def test_a_page_is_never_stored_onto_a_checkpoint_that_moved(d: Deployment, standin: StandIn) -> None:
    _connect(d, standin)
    with d.unit_of_work() as conn:
        plan = d.connector.plan(conn, SELLER, principal=OPERATOR)
    page = d.connector.fetch(plan, plan.cursors[0], principal=OPERATOR)
    with d.unit_of_work() as conn:
        d.connector.store(conn, page, principal=OPERATOR)
    with d.unit_of_work() as conn, pytest.raises(Conflict, match="moved"):
        d.connector.store(conn, page, principal=OPERATOR)
    assert _stored(d) == (100, 100)


def test_a_revoked_authorisation_stops_the_sync_raises_the_alarm_and_opens_a_deletion_request(
    d: Deployment, standin: StandIn
) -> None:
    _connect(d, standin)
    sync_tenant(d, SELLER, OPERATOR, max_pages=1)
    standin.sandbox.revoke(SELLER)
    d.connector.client.forget(SELLER)  # the access token in memory would still pass for an hour otherwise
    with pytest.raises(AuthorizationRevoked, match="authorise the application again"):
        sync_tenant(d, SELLER, OPERATOR)
    with d.unit_of_work(read_only=True) as conn:
        [status] = d.connector.status(conn, principal=OPERATOR)
        [request] = d.deletion.list_requests(conn, principal=OPERATOR)
    assert status.state == "revoked" and _stored(d) == (100, 100)
    assert (request.tenant_id, request.source, request.scope_kind) == (SELLER, "authorisation-revoked", "tenant")
    with pytest.raises(AuthorizationRevoked, match="revoked"):
        sync_tenant(d, SELLER, OPERATOR)  # stopped until the seller connects again
    Watch(d).catch_up()
    with d.unit_of_work(read_only=True) as conn:
        alarms = [a.rule for a in d.monitor.list_alarms(conn, principal=OPERATOR)]
    assert "sp-api-authorisation-revoked" in alarms


def test_a_revoked_refresh_token_is_refused_at_connect_and_nothing_is_stored(d: Deployment, standin: StandIn) -> None:
    standin.sandbox.revoke(SELLER)
    with pytest.raises(AuthorizationRevoked, match="invalid_grant"), d.unit_of_work() as conn:
        d.connector.connect(conn, SELLER, standin.spec.refresh_token, principal=OPERATOR)
    with d.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM tenant_secrets").scalar_one() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM sp_connections").scalar_one() == 0


def test_the_kill_switch_stops_the_sync_before_any_call_to_amazon(d: Deployment, standin: StandIn) -> None:
    _connect(d, standin)
    with d.unit_of_work() as conn:
        d.access.switches.set(conn, KillSwitch.SP_API_SYNC.value, True, actor=OPERATOR, tenant_id=SELLER)
    calls = sum(standin.sandbox.calls.values())
    with pytest.raises(KillSwitchEngaged):
        sync_tenant(d, SELLER, OPERATOR)
    assert sum(standin.sandbox.calls.values()) == calls and _stored(d) == (0, 0)


def test_an_expired_next_token_reads_the_window_again_and_stores_nothing_twice(d: Deployment, standin: StandIn) -> None:
    _connect(d, standin)
    sync_tenant(d, SELLER, OPERATOR, max_pages=1)
    with d.unit_of_work() as conn:
        conn.exec_driver_sql("UPDATE sp_sync SET next_token = 'not-a-token-amazon-gave'")
    assert sync_tenant(d, SELLER, OPERATOR).finished and _stored(d) == (230, 230)


def test_searchorders_of_orders_2026_is_synced_when_the_tenant_is_configured_for_it(
    d: Deployment, standin: StandIn
) -> None:
    _connect(d, standin, api="orders-2026")
    report = sync_tenant(d, SELLER, OPERATOR)
    assert report.finished and _stored(d)[0] == 230
    with d.engine.connect() as conn:
        assert set(conn.execute(select(records.c.operation).distinct()).scalars()) == {"orders-2026-01-01.searchOrders"}


def test_a_plaintext_endpoint_is_never_written_or_called(tmp_path: Path, deployment: Deployment) -> None:
    plain = AppCredentials(CLIENT_ID, CLIENT_SECRET, "http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="https://"):
        save_app(tmp_path / "app.toml", plain, deployment.keys)
    assert not (tmp_path / "app.toml").exists()


def test_403s_while_lwa_still_honours_the_token_are_not_a_revocation(d: Deployment, standin: StandIn) -> None:
    _connect(d, standin)
    standin.sandbox.inject("expired-token", 3, "createRestrictedDataToken")  # e.g. the app lost its PII role
    with pytest.raises(UpstreamError, match="check the application's roles"):
        sync_tenant(d, SELLER, OPERATOR)
    with d.unit_of_work(read_only=True) as conn:
        [status] = d.connector.status(conn, principal=OPERATOR)
        assert d.deletion.list_requests(conn, principal=OPERATOR) == []
    assert (status.state, status.last_error) == ("active", "SpApiRefused")
    assert sync_tenant(d, SELLER, OPERATOR).finished and _stored(d)[0] == 230  # once fixed, it goes on


def test_the_kill_switch_engaged_mid_run_stops_the_calls_and_the_stores(d: Deployment, standin: StandIn) -> None:
    _connect(d, standin)

    def engage(_page: object, report: object) -> None:
        with d.unit_of_work() as conn:
            d.access.switches.set(conn, KillSwitch.SP_API_SYNC.value, True, actor=OPERATOR, tenant_id=SELLER)

    with pytest.raises(KillSwitchEngaged):
        sync_tenant(d, SELLER, OPERATOR, on_page=engage)
    assert _stored(d) == (100, 100)  # the first page only: the page fetched ahead was not stored
    assert standin.sandbox.calls["getOrders"] <= 2  # at most the one already under way went out
    with d.unit_of_work(read_only=True) as conn:
        [status] = d.connector.status(conn, principal=OPERATOR)
    assert (status.pages, status.in_window) == (1, True)


def test_a_shredded_tenant_stops_being_synced_and_a_removed_one_is_recorded(d: Deployment, standin: StandIn) -> None:
    _connect(d, standin)
    with d.unit_of_work() as conn:
        d.vault.shred(conn, SELLER, principal=OPERATOR)
    with pytest.raises(TenantShredded):
        sync_tenant(d, SELLER, OPERATOR)
    with d.unit_of_work(read_only=True) as conn:
        assert d.connector.active_tenants(conn) == []
    with d.unit_of_work() as conn:
        d.connector.disconnect(conn, SELLER, principal=OPERATOR)
    assert [e["counts"] for e in _events(d, "connector:auth:disconnect")] == [{"refresh_tokens": 0}]
