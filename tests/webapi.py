"""The `api` fixture: a real uvicorn server on 127.0.0.1 with SageVault's TLS context, and a
real httpx client that trusts the local CA. Registered in conftest."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pyotp
import pytest
from fastapi import FastAPI

from conftest import OPERATOR, TENANT
from sagevault.audit import Channel
from sagevault.config import Settings
from sagevault.crypto import InMemoryKeyProvider, client_context
from sagevault.deployment import Deployment, init_deployment
from sagevault.testing import generate_orders, get_orders_response
from sagevault.vault import Operation, Principal
from sagevault.web import API, create_app, make_server

PASSWORD = "Quartz-Fjord-7-Lantern"


@dataclass
class Api:
    d: Deployment
    base: str
    client: httpx.Client
    order_id: str
    admin: Principal
    app: FastAPI

    def person(self, login: str, role: str, tenants: list[str]) -> pyotp.TOTP:
        with self.d.engine.begin() as conn:
            enrolment = self.d.access.add_person(conn, login, f"{login}@seller-tools.example", manager=None,
                                                 actor=OPERATOR)  # fmt: skip
            setup = self.d.access.begin_enrolment(conn, login, enrolment.secret)
            totp = pyotp.TOTP(setup.secret)
            self.d.access.finish_enrolment(conn, login, enrolment.secret, PASSWORD, totp.now())
            grant = self.d.access.grant(conn, login, role, tenants, actor=OPERATOR)
            if grant.status == "pending":  # the second party: the bootstrapped admin
                self.d.access.approve(conn, grant.id, actor=self.admin)
        return totp

    def login(self, login: str, totp: pyotp.TOTP) -> dict[str, str]:
        code = totp.at(time.time() + 30)  # the enrolment used the current step
        r = self.client.post(f"{self.base}/sessions", json={"login": login, "password": PASSWORD, "code": code})
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    """A deployment (SQLite) with one tenant of two orders, a bootstrapped admin (alice.ng) and
    its API served over TLS on a free port."""
    d = init_deployment(settings, keys=InMemoryKeyProvider())
    try:
        yield from _served(d, settings)
    finally:
        d.close()


@pytest.fixture
def api_on_backend(deployment: Deployment, settings: Settings) -> Iterator[Api]:
    """The same, on the backend under test (`backend`: SQLite and PostgreSQL)."""
    yield from _served(deployment, settings)


def _served(d: Deployment, settings: Settings) -> Iterator[Api]:
    orders = list(generate_orders(2, seed=11))
    with d.engine.begin() as conn:
        boot = d.access.bootstrap_admin(conn, "alice.ng", "alice@seller-tools.example", actor=OPERATOR)
        admin_totp = pyotp.TOTP(d.access.begin_enrolment(conn, boot.login, boot.secret).secret)
        d.access.finish_enrolment(conn, boot.login, boot.secret, PASSWORD, admin_totp.now())
        admin = Principal(boot.principal_id, "person", Channel.API, "127.0.0.1")
        d.vault.add_tenant(conn, TENANT, ["ATVPDKIKX0DER"], principal=OPERATOR)
        d.vault.ingest(conn, TENANT, [get_orders_response(orders)], Operation.GET_ORDERS, principal=OPERATOR)
    port = _free_port()
    app = create_app(d)
    server = make_server(d, "127.0.0.1", port, app=app)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    client = httpx.Client(verify=client_context(settings.tls_dir / "ca.pem"), timeout=10)
    try:
        yield Api(d, f"https://127.0.0.1:{port}{API}", client, orders[0]["AmazonOrderId"], admin, app)
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=10)
