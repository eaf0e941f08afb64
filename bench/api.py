"""API benchmark: reveals over TLS with authentication, authorisation and a durable audit event,
beside two floors in the same server processes: a no-op that returns the same bytes with none
of that, and an equivalent floor that does the reveal's security work by hand.

    python bench/api.py [--seconds 10] [--concurrency 16] [--workers 2] [--clients 2] [--repeat 3]
                        [--redis redis://127.0.0.1:6379/0] [--database-url postgresql+psycopg://...]
                        [--configs memory,redis,pg,pg_redis]
    python bench/api.py --in-process [--requests 2000] [--repeat 3]

The server is `sagevault serve`'s app plus the no-op floor route (`/bench/floor`), and beside it
the equivalent floor (`bench/_equivalent.py`: its own FastAPI app under /bench/equivalent, no
SageVault code on its request path; what it does per request, and why it is placed so, is in
that module's docstring), in `--workers` processes of their own, each listening on a socket of
its own bound to the same port (SO_REUSEPORT: the kernel spreads new connections over the
workers). The load generator is `--clients` separate processes, each with
`concurrency / clients` threads on blocking TLS sockets (HTTP/1.1 keep-alive, certificate
verified against the local CA): a request is one pre-encoded write and a read of the status
line, headers and Content-Length body, so the client costs the machine as little as Python can.
Each round runs reveal, no-op floor and equivalent floor one after the other, each measured for
`--seconds` after a short warm-up; the figures are the medians over `--repeat` rounds, the
ratios the medians of the per-round ratios. Client and server share the machine's cores. Before
the rounds the bench checks that the equivalent floor answers a reveal with the same bytes.

Configurations (`--configs`, run one after the other, each on a fresh deployment; by default the
one the flags name):
- `memory`: SQLite in a temporary directory, rate counters in each process's memory;
- `redis`: the same with SageVault's rate counters in `--redis` (SAGEVAULT_RATE_LIMIT_STORAGE_URL,
  under a key prefix of this run's own, SAGEVAULT_RATE_LIMIT_KEY_PREFIX, whose keys are deleted
  at the end); the equivalent floor counts the same counters there in one round trip;
- `pg`, `pg_redis`: the same on PostgreSQL: a database `sv_bench_<random>` is made through
  `--database-url`'s database (autocommit) and dropped at the end, even on error; SageVault runs
  on it (SAGEVAULT_DATABASE_URL) and the equivalent floor's tables live in it too. `pg_redis` is
  the deployable "PostgreSQL + Redis, N workers" configuration.

Per kind: requests/s, p50/p99 latency, the server processes' CPU time per request
(`server_cpu_ms`, from /proc, warm-up included), on PostgreSQL the CPU of the database's backends
per request (`db_cpu_ms`), with Redis the Redis server's (`redis_cpu_ms`: the whole server's,
other users of it included). One JSON line per configuration, then the last line: the first
configuration's figures (`reveal`, `floor`, `equivalent`, `reveal_floor_ratio`, and
`equivalent_floor_ratio` = reveal/s over equivalent floor/s) and, for every configuration run,
`equivalent_floor_ratio` (memory), `equivalent_floor_ratio_redis`, `equivalent_floor_ratio_pg`,
`equivalent_floor_ratio_pg_redis`, and for `pg_redis` `pg_redis_reveals_per_s` and
`pg_redis_reveal_p99_ms`; with several configurations, each one's figures under `configs`.

`--in-process` measures the app alone, for profiling (`py-spy record -- python bench/api.py
--in-process`): no TLS, no sockets, no client; the same app, floor route and equivalent floor
driven through ASGI in this process, one request at a time and 8 at a time, CPU time of the
whole process per request; and the reveal handler alone (`reveal_handler_alone_cpu_ms`: the
route's function called directly, its security events held and not committed), to set beside
the floor's whole request; and PII fields revealed per second by single-order reveals beside
batch reveals of 500 orders (`single_reveal_fields_per_s`, `batch_reveal_fields_per_s`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import secrets
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyotp
from fastapi import FastAPI, Response

from sagevault.config import load_settings
from sagevault.crypto import client_context
from sagevault.deployment import Deployment, init_deployment, open_deployment
from sagevault.identity import Channel, Principal
from sagevault.testing import generate_orders, get_orders_response
from sagevault.vault import Operation
from sagevault.web import create_app, listen, make_server

sys.path.insert(0, str(Path(__file__).parent))
import _equivalent as equivalent  # bench/ is not a package

TENANT = "A1BENCHSELLER"
PASSWORD = "Quartz-Fjord-7-Lantern"
OPERATOR = Principal(id="operator:bench", kind="operator")
FIELDS = {"fields": ["ShippingAddress.Name", "ShippingAddress.AddressLine1"], "purpose": "fulfilment"}
REVEAL_ROUTE = "POST /api/v1/tenants/{tenant_id}/orders/{order_id}/reveal"
# The limiter still counts every request; its limits are raised so that it admits a benchmark's
# rate (the defaults allow 100 requests/s per principal, 50 reveals/s).
BATCH_ROUTE = "POST /api/v1/tenants/{tenant_id}/reveal"
BATCH = 500  # orders per batch reveal (the most one may name)
RAISED_LIMITS = {
    "SAGEVAULT_API_RATE_PER_PRINCIPAL": "10000000 per minute",
    "SAGEVAULT_API_ROUTE_RATES": json.dumps({REVEAL_ROUTE: "10000000 per minute", BATCH_ROUTE: "10000000 per minute"}),
}
# The equivalent floor counts what the limiter counts, under the same limits.
EQUIVALENT_RATES = {
    "budget": "120 per minute",  # api_refusals_per_source's default (the bench leaves it)
    "total": RAISED_LIMITS["SAGEVAULT_API_RATE_PER_PRINCIPAL"],
    "route": "10000000 per minute",
}
WARMUP = 1.0  # seconds of requests before the measured window (connections, caches, thread pools)


def prepare(data_dir: Path, orders: int, database_url: str | None = None) -> tuple[str, list[str], dict[str, Any]]:
    """A deployment with one tenant, `orders` orders, an admin and a packer (on SQLite in
    `data_dir`, or on the PostgreSQL database `database_url`); the packer's session; and the
    equivalent floor's tables and data, made from the deployment's (its configuration)."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    d = init_deployment(settings)
    rows = list(generate_orders(orders, seed=3))
    with d.engine.begin() as conn:
        d.vault.add_tenant(conn, TENANT, ["ATVPDKIKX0DER"], principal=OPERATOR)
        d.vault.ingest(conn, TENANT, [get_orders_response(rows)], Operation.GET_ORDERS, principal=OPERATOR)
        people = {}
        for login in ("bench.admin", "bench.packer"):
            made = (
                d.access.accounts.bootstrap_admin(conn, login, f"{login}@seller-tools.example", actor=OPERATOR)
                if login == "bench.admin"
                else d.access.accounts.add_person(
                    conn, login, f"{login}@seller-tools.example", manager=None, actor=OPERATOR
                )
            )
            totp = pyotp.TOTP(d.access.enrolment.begin(conn, login, made.secret).secret)
            d.access.enrolment.finish(conn, login, made.secret, PASSWORD, totp.now())
            people[login] = (made.principal_id, totp)
        grant = d.access.grants.grant(conn, "bench.packer", "fulfilment", [TENANT], actor=OPERATOR)
        admin = Principal(people["bench.admin"][0], "person", Channel.API, "127.0.0.1")
        d.access.grants.approve(conn, grant.id, actor=admin)
        attempt = d.access.authn.login(
            conn, "bench.packer", PASSWORD, people["bench.packer"][1].at(time.time() + 30), source="127.0.0.1"
        )
    token = attempt.session().token
    try:
        config = equivalent.setup(d, TENANT, token, people["bench.packer"][0], data_dir.parent, database_url)
    finally:
        d.close()
    return token, [o["AmazonOrderId"] for o in rows], config


def app_with_floor(d: Deployment, data_dir: Path) -> FastAPI:
    """The real app, plus /bench/floor returning a reveal's bytes as they are."""
    app = create_app(d)
    cached: dict[str, bytes] = {}

    # In the event loop, as the reveal runs on SQLite (`OneHop`): no thread hop for either.
    @app.post("/bench/floor")
    async def floor() -> Response:  # the bytes of a real reveal, written by the bench before the runs
        body = cached.get("body") or cached.setdefault("body", (data_dir.parent / "floor.json").read_bytes())
        return Response(body, media_type="application/json")

    return app


def with_equivalent(app: FastAPI, data_dir: Path) -> equivalent.Dispatch:
    """`app`, and the equivalent floor's app of its own beside it under /bench/equivalent."""
    setting = json.loads((data_dir.parent / "equivalent.json").read_text())
    eq = equivalent.create_app(
        setting["config"], redis_url=setting["redis"], key_prefix=setting["prefix"], rates=EQUIVALENT_RATES
    )
    return equivalent.Dispatch(app, eq)


def serve(data_dir: Path, fd: int) -> None:
    """One server process: `app_with_floor` and the equivalent floor on the listening socket `fd`
    (this worker's, bound with SO_REUSEPORT to the bench's port)."""
    d = open_deployment(load_settings(data_dir=data_dir))
    app = with_equivalent(app_with_floor(d, data_dir), data_dir)
    listening = socket.socket(fileno=fd)
    try:
        server = make_server(d, "127.0.0.1", listening.getsockname()[1], app=app)  # type: ignore[arg-type]
        server.run(sockets=[listening])
    finally:
        d.close()


# --- the load generator ------------------------------------------------------------------


def _request(path: str, token: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Connection:
    """One keep-alive HTTP/1.1 connection over TLS, blocking (the socket calls release the GIL)."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buffer = b""
        self.body = b""

    def exchange(self, request: bytes) -> int:
        """Send `request`, read the whole response; return its status."""
        self.sock.sendall(request)
        buf = self.buffer
        while (end := buf.find(b"\r\n\r\n")) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
        head = buf[:end].decode("latin-1").lower()
        status = int(head[9:12])
        at = head.find("content-length:")
        length = int(head[at + 15 :].split("\r\n", 1)[0]) if at >= 0 else 0
        need = end + 4 + length
        while len(buf) < need:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
        self.body, self.buffer = buf[end + 4 : need], buf[need:]
        return status


def _client(
    port: int,
    ca: str,
    requests: list[bytes],
    threads: int,
    start: float,
    warm_until: float,
    stop: float,
    offset: int,
    out: Any,
) -> None:
    """A client process: `threads` connections sending `requests` in turn until `stop`; sends
    back the latencies of the requests begun in [warm_until, stop) and the error count."""
    context = client_context(Path(ca))
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[dict[int, int]] = [{} for _ in range(threads)]

    def worker(n: int) -> None:
        conn = _Connection(port, context)
        mine = latencies[n]
        i = offset + n
        while time.time() < start:
            time.sleep(0.001)
        while True:
            began = time.perf_counter()
            now = time.time()
            if now >= stop:
                break
            status = conn.exchange(requests[i % len(requests)])
            if now >= warm_until:
                mine.append(time.perf_counter() - began)
                if status != 200:
                    errors[n][status] = errors[n].get(status, 0) + 1
            i += threads * 97  # walk the orders from different places in each thread

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    statuses: dict[int, int] = {}
    for mine in errors:
        for status, n in mine.items():
            statuses[status] = statuses.get(status, 0) + n
    out.send(([x for part in latencies for x in part], statuses))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes `pids` have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


Meter = Callable[[], dict[str, float]]  # CPU seconds used so far, by process (other than the servers')


def load(
    port: int,
    ca: Path,
    requests: list[bytes],
    seconds: float,
    concurrency: int,
    clients: int,
    servers: list[int],
    meters: dict[str, Meter] | None = None,
) -> dict[str, Any]:
    """Run `concurrency` connections from `clients` processes for WARMUP + `seconds`; the
    servers' CPU time per request is measured over the whole run, warm-up included (and, for
    each of `meters`, that meter's processes' CPU time per request: `<name>_cpu_ms`)."""
    ctx = mp.get_context("fork")
    meters = meters or {}
    cpu_before = cpu_seconds(servers)
    each_before = [cpu_seconds([pid]) for pid in servers]
    metered_before = {name: meter() for name, meter in meters.items()}
    start = time.time() + 0.5  # time for every process to connect
    warm_until, stop = start + WARMUP, start + WARMUP + seconds
    procs, pipes = [], []
    for c in range(clients):
        threads = concurrency // clients + (c < concurrency % clients)
        mine, theirs = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=_client, args=(port, str(ca), requests, threads, start, warm_until, stop, c * 1000, theirs)
        )
        p.start()
        procs.append(p)
        pipes.append(mine)
    latencies: list[float] = []
    errors: dict[int, int] = {}
    for pipe in pipes:
        got, statuses = pipe.recv()
        latencies += got
        for status, n in statuses.items():
            errors[status] = errors.get(status, 0) + n
    for p in procs:
        p.join()
    cpu = cpu_seconds(servers) - cpu_before
    each = [cpu_seconds([pid]) - before for pid, before in zip(servers, each_before, strict=True)]
    served = len(latencies) * (1 + WARMUP / seconds)
    metered = {}
    for name, meter in meters.items():
        after, before = meter(), metered_before[name]
        used = sum(v - before.get(k, 0.0) for k, v in after.items())
        metered[f"{name}_cpu_ms"] = round(used * 1000 / served, 2)
    latencies.sort()
    return {
        "per_s": round(len(latencies) / seconds),
        "server_cpu_ms": round(cpu * 1000 / served, 2),
        **metered,
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "errors": sum(errors.values()),
        "error_statuses": errors,
        "worker_cpu_shares": [round(c / cpu, 2) if cpu else 0 for c in each],
    }


def _get(port: int, ca: Path, request: bytes) -> tuple[int, bytes]:
    """One request on a new connection: (status, body)."""
    conn = _Connection(port, client_context(ca))
    try:
        return conn.exchange(request), conn.body
    finally:
        conn.sock.close()


# --- in process ----------------------------------------------------------------------------


def _asgi_request(path: str, token: str, body: bytes) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8443),
    }


async def _asgi_call(app: FastAPI, scope: dict[str, Any], body: bytes) -> bytes:
    """One request through the ASGI app; its response body (the status must be 200)."""
    import asyncio

    sent = False
    status: list[int] = []
    out: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # the client never disconnects
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))

    await app({**scope, "state": {}}, receive, send)
    assert status == [200], status
    return b"".join(out)


async def _drive(app: FastAPI, scopes: list[dict[str, Any]], body: bytes, n: int, concurrency: int) -> float:
    """`n` requests through the ASGI app, `concurrency` at a time; process CPU ms per request."""
    import asyncio

    async def one(scope: dict[str, Any]) -> None:
        await _asgi_call(app, scope, body)

    left = iter(range(n))

    async def client() -> None:
        for i in left:
            await one(scopes[i % len(scopes)])

    began = time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return (time.process_time() - began) * 1000 / n


def _handler_alone(d: Deployment, app: FastAPI, scopes: list[dict[str, Any]], body: bytes, n: int) -> float:
    """The reveal's own work, called directly: the `OneHop` function of the route (credential
    chain, validation, the vault's reveal, the JSON answer) with no ASGI, no framework and its
    security events held, not committed. Thread CPU ms per call."""
    from types import SimpleNamespace

    from starlette.requests import Request

    from sagevault.web._onehop import _one_hop
    from sagevault.web.api._records import reveal

    serve = _one_hop(reveal)
    route = SimpleNamespace(path=REVEAL_ROUTE.split(" ", 1)[1])  # what the rate limiter keys the route by
    requests = []
    for scope in scopes:  # /api/v1/tenants/{tenant_id}/orders/{order_id}/reveal
        tenant_id, order_id = scope["path"].split("/")[4:7:2]
        params = {"tenant_id": tenant_id, "order_id": order_id}
        requests.append(Request({**scope, "app": app, "state": {}, "route": route, "path_params": params}))
    with d.audit.deferred() as held:
        began = time.thread_time()
        for i in range(n):
            serve(requests[i % len(requests)], body)
            held.clear()
        return (time.thread_time() - began) * 1000 / n


def _fields_per_s(
    app: FastAPI, loop: Any, token: str, ids: list[str], reveals: list[dict[str, Any]], body: bytes, requests: int
) -> dict[str, float]:
    """PII fields revealed per second of wall time, one request at a time: single-order reveals,
    and batch reveals of `BATCH` orders (label printing). Each field is the same work (a grant
    check, a decryption, a security event per order) in both; the batch pays the request, the
    credential chain and the commit once per `BATCH` orders."""
    fields = len(FIELDS["fields"])
    began = time.perf_counter()
    loop.run_until_complete(_drive(app, reveals, body, requests, 1))
    single = requests * fields / (time.perf_counter() - began)
    batch_body = json.dumps({"orders": ids[:BATCH], **FIELDS}).encode()
    batch = [_asgi_request(f"/api/v1/tenants/{TENANT}/reveal", token, batch_body)]
    rounds = max(1, requests // BATCH)
    began = time.perf_counter()
    loop.run_until_complete(_drive(app, batch, batch_body, rounds, 1))
    many = rounds * min(BATCH, len(ids)) * fields / (time.perf_counter() - began)
    return {"single_reveal_fields_per_s": round(single), "batch_reveal_fields_per_s": round(many)}


def in_process(
    requests: int, repeat: int, orders: int, admin_url: str | None = None, redis_url: str | None = None
) -> None:
    """The app alone through ASGI, in this process: CPU per request of the reveal, the no-op and
    the equivalent floor, 1 and 8 at a time, on SQLite or a fresh PostgreSQL database
    (`admin_url`), counting in memory or Redis (`redis_url`; this run's keys dropped after it)."""
    import asyncio

    prefix = f"sv-bench-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="sv-api-bench-") as tmp, pg_database(admin_url) as database_url:
        data_dir = Path(tmp) / "var"
        token, ids, config = prepare(data_dir, orders, database_url)
        _write_equivalent(data_dir, config, redis_url, f"{prefix}-eq")
        os.environ.update(RAISED_LIMITS)
        if redis_url is not None:
            os.environ |= {"SAGEVAULT_RATE_LIMIT_STORAGE_URL": redis_url, "SAGEVAULT_RATE_LIMIT_KEY_PREFIX": prefix}
        if database_url is not None:
            os.environ["SAGEVAULT_DATABASE_URL"] = database_url
        d = open_deployment(load_settings(data_dir=data_dir))
        app = app_with_floor(d, data_dir)
        served = with_equivalent(app, data_dir)
        body = json.dumps(FIELDS).encode()
        reveals = [_asgi_request(f"/api/v1/tenants/{TENANT}/orders/{o}/reveal", token, body) for o in ids]
        floors = [_asgi_request("/bench/floor", token, body)]
        equivalents = [
            _asgi_request(f"{equivalent.PREFIX}/tenants/{TENANT}/orders/{o}/reveal", token, body) for o in ids
        ]
        loop = asyncio.new_event_loop()
        sample = loop.run_until_complete(_asgi_call(app, reveals[0], body))
        assert loop.run_until_complete(_asgi_call(served, equivalents[0], body)) == sample  # the same answer
        (data_dir.parent / "floor.json").write_bytes(sample)
        loop.run_until_complete(_drive(served, reveals, body, 300, 8))  # warm-up: pools, caches, threads
        loop.run_until_complete(_drive(served, equivalents, body, 300, 8))
        figures: dict[str, list[float]] = {}
        kinds = (("reveal", reveals), ("floor", floors), ("equivalent", equivalents))
        for _ in range(repeat):
            for concurrency in (1, 8):
                for kind, scopes in kinds:
                    cpu = loop.run_until_complete(_drive(served, scopes, body, requests, concurrency))
                    figures.setdefault(f"{kind}_cpu_ms_{concurrency}_at_a_time", []).append(cpu)
            alone = _handler_alone(d, app, reveals, body, requests)
            figures.setdefault("reveal_handler_alone_cpu_ms", []).append(alone)
            for kind, per_s in _fields_per_s(app, loop, token, ids, reveals, body, requests).items():
                figures.setdefault(kind, []).append(per_s)
        loop.close()
        d.close()
        if redis_url is not None:
            drop_redis_keys(redis_url, prefix)
    med = {k: round(statistics.median(v), 3) for k, v in figures.items()}
    print(
        json.dumps(
            {
                "requests": requests,
                "runs": repeat,
                **med,
                "reveal_floor_cpu_ratio": round(med["reveal_cpu_ms_1_at_a_time"] / med["floor_cpu_ms_1_at_a_time"], 2),
                "reveal_equivalent_cpu_ratio": round(
                    med["reveal_cpu_ms_1_at_a_time"] / med["equivalent_cpu_ms_1_at_a_time"], 2
                ),
            }
        )
    )


# --- configurations: database and rate counters -----------------------------------------------

CONFIGS = {  # name: (PostgreSQL, Redis)
    "memory": (False, False),
    "redis": (False, True),
    "pg": (True, False),
    "pg_redis": (True, True),
}


@contextlib.contextmanager
def pg_database(admin_url: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL database for one configuration's run (created through `admin_url`'s
    database with autocommit, dropped at the end, even on error); None: SQLite."""
    if admin_url is None:
        yield None
        return
    import psycopg

    if not admin_url.startswith("postgresql+psycopg://"):
        raise SystemExit("--database-url: give a postgresql+psycopg:// URL")
    host = admin_url.split("@", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        raise SystemExit("--database-url: this bench sends traffic to 127.0.0.1 only")
    name = f"sv_bench_{secrets.token_hex(4)}"
    admin = equivalent._pg_dsn(admin_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_meter(admin_url: str, database: str) -> Meter:
    """The CPU time of the PostgreSQL backends serving `database` (this machine's processes)."""
    import psycopg

    admin = equivalent._pg_dsn(admin_url)
    name = database.rsplit("/", 1)[1]

    def meter() -> dict[str, float]:
        with psycopg.connect(admin, autocommit=True) as conn:
            pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))]
        used = {}
        for pid in pids:
            with contextlib.suppress(OSError):  # a backend that has just gone
                used[str(pid)] = cpu_seconds([pid])
        return used

    return meter


def redis_meter(url: str) -> Meter:
    """The Redis server's CPU time (the whole server: other users of it count too)."""
    import redis

    client = redis.Redis.from_url(url)

    def meter() -> dict[str, float]:
        info = client.info("cpu")
        return {"redis": float(info["used_cpu_user"]) + float(info["used_cpu_sys"])}

    return meter


def drop_redis_keys(url: str, prefix: str) -> int:
    """Delete this run's keys (SageVault's limiter's and the floor's: all begin with `prefix`)."""
    import redis

    client = redis.Redis.from_url(url)
    gone = 0
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        gone += client.delete(key)
    return gone


def _write_equivalent(data_dir: Path, config: dict[str, Any], redis_url: str | None, prefix: str) -> None:
    (data_dir.parent / "equivalent.json").write_text(
        json.dumps({"config": config, "redis": redis_url, "prefix": prefix})
    )


def audit_counter(data_dir: Path, config: dict[str, Any], database_url: str | None) -> Callable[[], dict[str, int]]:
    """Events and sealed groups (one seal per committed group) in SageVault's security log and in
    the equivalent floor's, so far: how many events a commit carries."""

    def counts(rows: list[Any]) -> dict[str, int]:
        (sv_events, sv_groups), (eq_events, eq_groups) = rows
        return {
            "reveal": sv_events,
            "reveal_groups": sv_groups,
            "equivalent": eq_events,
            "equivalent_groups": eq_groups,
        }

    if database_url is None:
        import sqlite3

        def read_sqlite() -> dict[str, int]:
            rows = []
            for path, table in ((data_dir / "audit.db", "audit_events"), (Path(config["audit"]), "eq_audit_events")):
                with contextlib.closing(sqlite3.connect(path)) as conn:
                    rows.append(conn.execute(f"SELECT count(*), count(seal) FROM {table}").fetchone())
            return counts(rows)

        return read_sqlite
    import psycopg

    def read_pg() -> dict[str, int]:
        with psycopg.connect(equivalent._pg_dsn(database_url), autocommit=True) as conn:
            return counts(
                [
                    conn.execute(f"SELECT count(*), count(seal) FROM {table}").fetchone()
                    for table in ("audit_events", "eq_audit_events")
                ]
            )

    return read_pg


def run_config(name: str, args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """One configuration: a fresh deployment and floor, the servers, `--repeat` rounds of reveal,
    no-op floor and equivalent floor; each round's figures by kind."""
    use_pg, use_redis = CONFIGS[name]
    if use_pg and not args.database_url:
        raise SystemExit(f"configuration {name} needs --database-url")
    if use_redis and not args.redis:
        raise SystemExit(f"configuration {name} needs --redis")
    redis_url = args.redis if use_redis else None
    if redis_url is not None:
        host = redis_url.split("://", 1)[1].split("@")[-1].split("/", 1)[0].rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost"):
            raise SystemExit("--redis: this bench sends traffic to 127.0.0.1 only")
    prefix = f"sv-bench-{secrets.token_hex(4)}"  # this run's Redis keys (SageVault's and the floor's)
    runs: dict[str, list[dict[str, Any]]] = {"reveal": [], "floor": [], "equivalent": []}
    with (
        tempfile.TemporaryDirectory(prefix="sv-api-bench-") as tmp,
        pg_database(args.database_url if use_pg else None) as database_url,
    ):
        try:
            data_dir = Path(tmp) / "var"
            token, orders, config = prepare(data_dir, args.orders, database_url)
            _write_equivalent(data_dir, config, redis_url, f"{prefix}-eq")
            # A socket per worker on one port. One shared socket gave all 16 keep-alive connections to
            # whichever worker woke first in 2 runs of 3 (it accepts every pending one): one worker
            # served the reveals and the other idled.
            listening = listen("127.0.0.1", 0, args.workers)  # as `sagevault serve --workers` binds them
            port = listening[0].getsockname()[1]
            env = {**os.environ, **RAISED_LIMITS}
            if redis_url is not None:
                env |= {"SAGEVAULT_RATE_LIMIT_STORAGE_URL": redis_url, "SAGEVAULT_RATE_LIMIT_KEY_PREFIX": prefix}
            if database_url is not None:
                env["SAGEVAULT_DATABASE_URL"] = database_url
            meters: dict[str, Meter] = {}
            if database_url is not None:
                meters["db"] = pg_meter(args.database_url, database_url)
            if redis_url is not None:
                meters["redis"] = redis_meter(redis_url)
            servers = [
                subprocess.Popen(
                    [sys.executable, __file__, "--serve", str(data_dir), str(sock.fileno())],
                    cwd=tmp,
                    pass_fds=(sock.fileno(),),
                    env=env,
                )
                for sock in listening
            ]
            try:
                ca = data_dir / "tls" / "ca.pem"
                body = json.dumps(FIELDS).encode()
                reveals = [_request(f"/api/v1/tenants/{TENANT}/orders/{o}/reveal", token, body) for o in orders]
                for _ in range(150):
                    try:
                        status, sample = _get(port, ca, reveals[0])
                        break
                    except OSError:
                        time.sleep(0.2)
                assert status == 200, sample
                (data_dir.parent / "floor.json").write_bytes(sample)  # read by the floor route on first use
                floors = [_request("/bench/floor", token, body)]
                equivalents = [
                    _request(f"{equivalent.PREFIX}/tenants/{TENANT}/orders/{o}/reveal", token, body) for o in orders
                ]
                same = _get(port, ca, equivalents[0])
                assert same == (200, sample), f"the equivalent floor answers otherwise: {same!r} / {sample!r}"
                kinds = (("reveal", reveals), ("floor", floors), ("equivalent", equivalents))
                pids = [s.pid for s in servers]
                audit = audit_counter(data_dir, config, database_url)
                for _ in range(args.repeat):
                    for kind, requests in kinds:
                        if any(s.poll() is not None for s in servers):
                            raise RuntimeError("a server process has stopped; see its error above")
                        before = audit()
                        figures = load(port, ca, requests, args.seconds, args.concurrency, args.clients, pids, meters)
                        after = audit()
                        if kind != "floor":  # events per group commit (each group's last event is sealed)
                            groups = after[f"{kind}_groups"] - before[f"{kind}_groups"]
                            figures["events_per_commit"] = round((after[kind] - before[kind]) / max(1, groups), 2)
                        runs[kind].append(figures)
                        print(name, kind, json.dumps(figures), file=sys.stderr)
            finally:
                for s in servers:
                    s.terminate()
                for s in servers:
                    s.wait(timeout=30)
                for sock in listening:
                    sock.close()
        finally:
            if redis_url is not None:
                drop_redis_keys(redis_url, prefix)
    return runs


def summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per kind, and the ratios (medians of the per-round ratios)."""
    keys = ("per_s", "p50_ms", "p99_ms", "server_cpu_ms", "db_cpu_ms", "redis_cpu_ms", "events_per_commit", "errors")
    med = {kind: {k: statistics.median(r[k] for r in rs) for k in keys if k in rs[0]} for kind, rs in runs.items()}

    def ratio(a: str, b: str) -> float:
        return round(statistics.median(x["per_s"] / y["per_s"] for x, y in zip(runs[a], runs[b], strict=True)), 2)

    return {
        **med,
        "reveal_floor_ratio": ratio("reveal", "floor"),
        "equivalent_floor_ratio": ratio("reveal", "equivalent"),  # reveal / equivalent floor
        "equivalent_noop_ratio": ratio("equivalent", "floor"),  # equivalent floor / no-op floor
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="server processes listening on one port")
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (reveal, floor, equivalent); medians reported")
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--redis", metavar="URL", help="rate counters in this Redis (redis://127.0.0.1:6379/0)")
    parser.add_argument(
        "--database-url", metavar="URL", help="PostgreSQL (postgresql+psycopg://...): a database is made per run"
    )
    parser.add_argument(
        "--configs",
        help="comma-separated, run one after the other: memory, redis, pg, pg_redis "
        "(default: the one --redis and --database-url name)",
    )
    parser.add_argument("--in-process", action="store_true", help="the app alone, through ASGI (for profiling)")
    parser.add_argument("--requests", type=int, default=2000, help="with --in-process: requests per run")
    parser.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "FD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:
        in_process(args.requests, args.repeat, args.orders, args.database_url, args.redis)
        return
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return
    default = {(False, False): "memory", (False, True): "redis", (True, False): "pg", (True, True): "pg_redis"}
    names = (args.configs or default[(bool(args.database_url), bool(args.redis))]).split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"--configs: unknown {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    out: dict[str, Any] = {
        "concurrency": args.concurrency,
        "workers": args.workers,
        "clients": args.clients,
        "runs": args.repeat,
        "seconds": args.seconds,
    }
    by_config: dict[str, dict[str, Any]] = {}
    for name in names:
        by_config[name] = summary(run_config(name, args))
        print(json.dumps({"config": name, **by_config[name]}))
    first = by_config[names[0]]
    out |= {"config": names[0], **first}
    for name, figures in by_config.items():
        suffix = "" if name == "memory" else f"_{name}"
        out[f"equivalent_floor_ratio{suffix}"] = figures["equivalent_floor_ratio"]
        if name == "pg_redis":
            out["pg_redis_reveals_per_s"] = figures["reveal"]["per_s"]
            out["pg_redis_reveal_p99_ms"] = figures["reveal"]["p99_ms"]
    if "memory" not in by_config:
        out.pop("equivalent_floor_ratio", None)  # only the memory configuration's carries the bare name
    if len(by_config) > 1:
        out["configs"] = by_config
    print(json.dumps(out))


if __name__ == "__main__":
    main()
