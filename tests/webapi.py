"""The API under test. `api`: the app in this process, called through `httpx.ASGITransport` from
127.0.0.1 (no socket, no TLS: what most route tests need). `served_api`: the same app served by a
real uvicorn over SageVault's TLS on a free port, and a real httpx client that trusts the local CA,
for the tests that prove something about the socket. Registered in conftest."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI

from conftest import OPERATOR, TENANT
from factories import PASSWORD, People, Person
from sagevault.config import PolicyProfile, Settings
from sagevault.crypto import InMemoryKeyProvider, client_context
from sagevault.deployment import Deployment, init_deployment
from sagevault.identity import Principal
from sagevault.testing import ManualClock, fast_password_hashing, generate_orders, get_orders_response
from sagevault.vault import Operation
from sagevault.web import API, create_app, make_server

__all__ = ["PASSWORD", "Api", "InProcessClient"]


class InProcessClient:
    """A blocking client for an ASGI app in this process: each request is a coroutine of
    `httpx.AsyncClient` over `httpx.ASGITransport`, run on an event loop of the client's own
    (one thread, as a server's worker has), so requests from several threads run concurrently."""

    def __init__(self, app: FastAPI, base_url: str, source: str = "127.0.0.1") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="in-process-client", daemon=True)
        self._thread.start()
        transport = httpx.ASGITransport(app=app, client=(source, 50000))
        self._client = self._call(self._make(transport, base_url))

    @staticmethod
    async def _make(transport: httpx.ASGITransport, base_url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        content = kwargs.get("content")
        if content is not None and not isinstance(content, str | bytes):  # a body streamed in chunks
            kwargs["content"] = _streamed(content)
        response: httpx.Response = self._call(self._client.request(method, url, **kwargs))
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    @contextmanager
    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """The whole answer, read (ASGITransport hands a streamed body over in one piece)."""
        yield self.request(method, url, **kwargs)

    def close(self) -> None:
        self._call(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def _streamed(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@dataclass
class Api:
    d: Deployment
    base: str
    client: Any  # InProcessClient, or httpx.Client for `served_api`
    order_id: str
    admin_person: Person  # the bootstrapped admin, alice.ng
    app: FastAPI
    people: People
    clock: ManualClock

    def person(self, login: str, role: str, tenants: list[str]) -> pyotp.TOTP:
        """An enrolled person with `role` on `tenants` (approved by the bootstrapped admin if it
        needs a second party). Returns their authenticator."""
        person = self.people.person(login, role, tenants=tenants, approver=self.admin_person)
        self._people[login] = person
        return person.totp

    def login(self, login: str, totp: pyotp.TOTP | None = None) -> dict[str, str]:
        """A session for `login` (a person made by `person`, the admin, or one enrolled with
        `totp`), as bearer headers."""
        if totp is None:
            totp = (self.admin_person if login == self.admin_person.login else self._people[login]).totp
        code = self.next_code(totp)
        r = self.client.post(f"{self.base}/sessions", json={"login": login, "password": PASSWORD, "code": code})
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def next_code(self, totp: pyotp.TOTP) -> str:
        """A TOTP code newer than any used so far (the clock moves one step)."""
        self.clock.advance(seconds=30)
        return totp.at(self.clock())

    def __post_init__(self) -> None:
        self._people: dict[str, Person] = {}

    @property
    def admin(self) -> Principal:
        """The bootstrapped admin as an in-process caller acting from 127.0.0.1 sees it."""
        return self.admin_person.principal()


def _prepared(d: Deployment, clock: ManualClock) -> tuple[People, Person, str]:
    """One tenant with two orders, and a bootstrapped admin (alice.ng)."""
    orders = list(generate_orders(2, seed=11))
    people = People(d.access, d.engine, clock)
    admin = people.bootstrap_admin("alice.ng")
    with d.engine.begin() as conn:
        d.vault.add_tenant(conn, TENANT, ["ATVPDKIKX0DER"], principal=OPERATOR)
        d.vault.ingest(conn, TENANT, [get_orders_response(orders)], Operation.GET_ORDERS, principal=OPERATOR)
    return people, admin, orders[0]["AmazonOrderId"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def api(settings: Settings, clock: ManualClock) -> Iterator[Api]:
    """The API of a deployment (SQLite) with one tenant of two orders and a bootstrapped admin
    (alice.ng), called in process."""
    d = init_deployment(settings, keys=InMemoryKeyProvider(), hasher=fast_password_hashing(), clock=clock)
    try:
        yield from _in_process(d, clock)
    finally:
        d.close()


@pytest.fixture
def api_on_backend(
    backend: str, settings: Settings, clock: ManualClock, request: pytest.FixtureRequest
) -> Iterator[Api]:
    """The same, on the backend under test (`backend`: SQLite and PostgreSQL)."""
    d = request.getfixturevalue("deployment_at")(clock=clock, hasher=fast_password_hashing())
    yield from _in_process(d, clock)


def _in_process(d: Deployment, clock: ManualClock) -> Iterator[Api]:
    people, admin, order_id = _prepared(d, clock)
    app = create_app(d)
    client = InProcessClient(app, "https://127.0.0.1")
    try:
        yield Api(d, f"https://127.0.0.1{API}", client, order_id, admin, app, people, clock)
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served_api(settings: Settings, clock: ManualClock) -> Iterator[Api]:
    """The same deployment's API served over TLS by uvicorn on a free port of 127.0.0.1."""
    d = init_deployment(settings, keys=InMemoryKeyProvider(), hasher=fast_password_hashing(), clock=clock)
    yield from served(d, settings, clock)


def served(d: Deployment, settings: Settings, clock: ManualClock) -> Iterator[Api]:
    """Serve deployment `d` (prepared as `api`'s is) over TLS on a free port; closed afterwards."""
    try:
        people, admin, order_id = _prepared(d, clock)
        port = free_port()
        app = create_app(d)
        server = make_server(d, "127.0.0.1", port, app=app)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "the server did not start"
        client = httpx.Client(verify=client_context(settings.tls_dir / "ca.pem"), timeout=10)
        try:
            yield Api(d, f"https://127.0.0.1:{port}{API}", client, order_id, admin, app, people, clock)
        finally:
            client.close()
            server.should_exit = True
            thread.join(timeout=10)
    finally:
        d.close()


@pytest.fixture
def serve_watched(settings: Settings) -> Iterator[Callable[..., Api]]:
    """Start the HTTPS service of a new deployment whose events the clock stamps."""
    stack: list[Iterator[Api]] = []

    def start(clock: ManualClock | None = None, **policy: Any) -> Api:
        clock = clock or ManualClock()
        configured = settings.model_copy(update={"policy": PolicyProfile(**policy)}) if policy else settings
        d = init_deployment(
            configured, keys=InMemoryKeyProvider(), hasher=fast_password_hashing(), clock=clock, event_clock=clock
        )
        running = served(d, configured, clock)
        stack.append(running)
        return next(running)

    yield start
    for running in stack:
        with pytest.raises(StopIteration):
            next(running)
