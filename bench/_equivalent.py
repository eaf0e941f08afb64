"""The equivalent floor of `bench/api.py`: a hand-written reveal endpoint, no SageVault code on its
request path, doing per request the security work SageVault's reveal does, the least Python on
this stack can do it with. What SageVault's reveal costs beyond it is overhead, not security.

Framework: FastAPI (the version SageVault's app runs on), one `async def` route taking the raw
`Request`, so that the comparison is with what the same framework can give, not with a leaner one.
Where it runs: in the same server processes as the reveal and the no-op floor, as an app of its
own beside SageVault's, chosen by a path prefix at the top of the ASGI stack (`Dispatch`, one
string comparison): the same uvicorn, uvloop, TLS context, sockets and worker processes, and no
SageVault middleware or router on its path (those are part of what the ratio measures). On
SQLite it does its work in the event loop and awaits its event's commit, as SageVault's reveal
does there (`OneHop`); on PostgreSQL in one hop to the thread pool, as SageVault's reveal does
there, and the commit is awaited from the loop.

Per request, in SageVault's order:
1. the source address's keyed hash (HMAC-SHA256 under the floor's own secret), which its
   refusal budget is counted by; the address checked against the global allow-list;
2. the bearer credential: its keyed hash (HMAC-SHA256) looked up as SageVault looks a session up
   (`authn.authenticate_session`): the policy generation is read from the database on every
   request; the session row (principal, expiry) is read from the database on a miss and
   remembered for that generation; expiry and the principal's status checked on every request;
3. rate counters: the source's refusal budget (a test), the principal's total and the
   principal's rate on this route (two hits), as SageVault's `RequestLimiter` counts them
   (sliding-window counters, the limits the bench's servers run with): in memory under a lock,
   or in Redis as ONE round trip (one Lua script over the six keys) where SageVault makes three;
4. validation: the path's tenant and order ids by pattern, the body (Content-Type, then a
   pydantic model with `extra="forbid"`, as SageVault's `RevealBody`);
5. the decision, over a picture of the access state cached per generation as SageVault's
   `AccessControl.policy` caches it (one primary-key read when nothing changed; principals'
   status, active grants by principal and tenant, kill switches, the global allow-list reloaded
   when it moves): kill switch, account active, source allowed, a grant on the tenant carrying
   pii:reveal in its time window, the purpose one its role exists for; and the catalog: every
   requested field a PII field whose purposes include the one given;
6. one sealed-row read: one SELECT by (tenant, order id) of the order's records (id, document,
   sealed blob, restriction mark) joined to the tenant's shred mark, as SageVault reads them;
   on SQLite the generation read and this read share one DEFERRED transaction (a snapshot), on
   PostgreSQL they are two autocommit statements (READ COMMITTED gives SageVault's transaction no
   more than that);
7. AES-256-GCM decryption (`cryptography`'s AESGCM) of the requested fields only, with the
   tenant's data key unwrapped once and held in memory (as SageVault's key ring holds unwrapped
   data keys), the record id and path bound as associated data;
8. the security event `vault:field:reveal` (the columns and values SageVault stores), appended by
   a group-commit writer thread of this process's: the chain head locked (a lock file across
   processes then BEGIN IMMEDIATE on SQLite; SELECT ... FOR UPDATE on PostgreSQL), each event's
   hash SHA-256 over the previous hash and the canonical JSON of its values, the group's last
   event sealed with Ed25519, the head moved, committed (SQLite in WAL with synchronous=FULL,
   as SageVault's audit log; PostgreSQL's plain COMMIT), and the request answered only then;
9. the JSON answer SageVault's reveal gives, with SageVault's security headers and a request id.

Setup (`setup`, outside the request path) uses SageVault to read the orders SageVault stored
(the same 1,000 orders, records per order, fields and sizes), decrypts them and seals them again
under the floor's own tenant key in tables of its own (`eq_*`), in the same database engine as
the SageVault run: SQLite files in the run's temporary directory (`eq.db`, `eq-audit.db`: the
vault's and the log's, apart, as SageVault keeps them), or the run's PostgreSQL database.

Not done (per request, SageVault does these too, they are small or amortised): the signed digest
every 1,000 events, security-event field validation, problem details on refusals beyond a short
JSON body (refusals are recorded, and durable before they are answered, as SageVault's are).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = "/bench/equivalent"
ROUTE = "POST /api/v1/tenants/{tenant_id}/orders/{order_id}/reveal"  # counted under SageVault's route name
_TENANT_ID = re.compile(r"[A-Z0-9]{2,64}")
_ORDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NONCE = 12
_SECURITY_HEADERS = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}
_canonical = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_AUDIT_COLUMNS = (
    "seq, at, name, channel, outcome, reason, actor, tenant_id, record_ids, counts, client_ip_hash, "
    "request_id, operation, fingerprint, prev_hash, hash, seal"
)

# --- setup: outside the request path (it may use SageVault) -------------------------------------

_TABLES = [
    "CREATE TABLE eq_state (id INTEGER PRIMARY KEY, generation BIGINT NOT NULL, secret {blob} NOT NULL)",
    "CREATE TABLE eq_principals (id VARCHAR(128) PRIMARY KEY, status VARCHAR(16) NOT NULL)",
    "CREATE TABLE eq_sessions (token_hash {blob} PRIMARY KEY, principal_id VARCHAR(128) NOT NULL, "
    "expires_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION)",
    "CREATE TABLE eq_grants (id VARCHAR(64) PRIMARY KEY, principal_id VARCHAR(128) NOT NULL, "
    "tenant_id VARCHAR(64) NOT NULL, scopes TEXT NOT NULL, purposes TEXT NOT NULL, "
    "not_before DOUBLE PRECISION, not_after DOUBLE PRECISION, status VARCHAR(16) NOT NULL)",
    "CREATE TABLE eq_kill_switches (name VARCHAR(32) NOT NULL, tenant_id VARCHAR(64) NOT NULL, "
    "engaged BOOLEAN NOT NULL, PRIMARY KEY (name, tenant_id))",
    "CREATE TABLE eq_allowlist (cidr VARCHAR(64) PRIMARY KEY)",
    "CREATE TABLE eq_catalog (document VARCHAR(40) NOT NULL, path VARCHAR(200) NOT NULL, purposes TEXT NOT NULL, "
    "PRIMARY KEY (document, path))",
    "CREATE TABLE eq_tenants (id VARCHAR(64) PRIMARY KEY, shredded_at DOUBLE PRECISION)",
    "CREATE TABLE eq_keys (tenant_id VARCHAR(64) NOT NULL, version INTEGER NOT NULL, wrapped {blob} NOT NULL, "
    "PRIMARY KEY (tenant_id, version))",
    "CREATE TABLE eq_records (id BIGINT PRIMARY KEY, tenant_id VARCHAR(64) NOT NULL, order_id VARCHAR(64) NOT NULL, "
    "document VARCHAR(40) NOT NULL, key_version INTEGER NOT NULL, pii {blob} NOT NULL, "
    "restricted_at DOUBLE PRECISION, UNIQUE (tenant_id, order_id, document))",
]
# The security log: SageVault's columns and indexes (`audit_events`, `audit_head`).
_AUDIT_TABLES = [
    "CREATE TABLE eq_audit_events (seq BIGINT PRIMARY KEY, at VARCHAR(32) NOT NULL, name VARCHAR(48) NOT NULL, "
    "channel VARCHAR(12) NOT NULL, outcome VARCHAR(12) NOT NULL, reason VARCHAR(32) NOT NULL, actor VARCHAR(128), "
    "tenant_id VARCHAR(128), record_ids TEXT NOT NULL, counts TEXT NOT NULL, client_ip_hash VARCHAR(64), "
    "request_id VARCHAR(64), operation VARCHAR(64), fingerprint VARCHAR(64), prev_hash {blob} NOT NULL, "
    "hash {blob} NOT NULL, seal {blob})",
    "CREATE INDEX ix_eq_audit_events_at ON eq_audit_events (at)",
    "CREATE INDEX ix_eq_audit_events_tenant_id ON eq_audit_events (tenant_id)",
    "CREATE INDEX ix_eq_audit_events_actor ON eq_audit_events (actor)",
    "CREATE TABLE eq_audit_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash {blob} NOT NULL)",
]


def _seal_blob(aead: AESGCM, tenant_id: str, record_id: int, fields: dict[str, bytes]) -> bytes:
    """The floor's blob: per field, path length (2 bytes), path, sealed length (4), nonce + ciphertext."""
    out = [struct.pack("<H", len(fields))]
    for path, plain in fields.items():
        nonce = os.urandom(_NONCE)
        sealed = nonce + aead.encrypt(nonce, plain, _ad(tenant_id, record_id, path))
        pb = path.encode()
        out.append(struct.pack("<H", len(pb)) + pb + struct.pack("<I", len(sealed)) + sealed)
    return b"".join(out)


def _ad(tenant_id: str, record_id: int, path: str) -> bytes:
    return f"eq1\x1f{tenant_id}\x1f{record_id}\x1f{path}".encode()


def setup(
    d: Any, tenant_id: str, token: str, principal_id: str, directory: Path, database_url: str | None
) -> dict[str, Any]:
    """Make the floor's tables and data from what SageVault `d` stores for `tenant_id` (the same
    records, fields and sizes), its session for `token`, and its grant; return the floor's
    configuration (JSON), for `create_app` in each server process."""
    from sagevault.crypto import PiiBlob  # setup only: never on the request path

    master = secrets.token_bytes(32)
    data_key = secrets.token_bytes(32)
    secret = secrets.token_bytes(32)
    signing = Ed25519PrivateKey.generate()
    master_file = directory / "eq-master.key"
    master_file.write_bytes(master)
    signing_file = directory / "eq-signing.key"
    signing_file.write_bytes(signing.private_bytes_raw())
    aead = AESGCM(data_key)
    records = []
    with d.engine.connect() as conn, conn.begin():
        mark = "?" if conn.dialect.name == "sqlite" else "%(t)s"
        rows = conn.exec_driver_sql(
            f"SELECT id, order_id, document, pii, key_version FROM records WHERE tenant_id = {mark}",
            (tenant_id,) if mark == "?" else {"t": tenant_id},
        ).all()
        for rid, order_id, document, pii, version in rows:
            cipher = d.vault._keys.cipher(conn, tenant_id, version)
            plain = cipher.open(str(rid), bytes(pii), set(PiiBlob.paths(bytes(pii))))
            records.append((rid, tenant_id, order_id, document, 1, _seal_blob(aead, tenant_id, rid, plain), None))
    catalog = {
        (f.document.value, f.path): ",".join(sorted(p.value for p in f.purposes)) for f in d.vault._catalog if f.pii
    }
    wrap_nonce = os.urandom(_NONCE)
    wrapped = wrap_nonce + AESGCM(master).encrypt(wrap_nonce, data_key, f"eq-key\x1f{tenant_id}\x1f1".encode())
    sqlite = database_url is None
    vault_target = str(directory / "eq.db") if sqlite else _pg_dsn(database_url)
    audit_target = str(directory / "eq-audit.db") if sqlite else vault_target
    blob = "BLOB" if sqlite else "BYTEA"
    state = [
        ("INSERT INTO eq_state (id, generation, secret) VALUES (1, 1, {p})", [(secret,)]),
        ("INSERT INTO eq_principals (id, status) VALUES ({p}, {p})", [(principal_id, "active")]),
        (
            "INSERT INTO eq_sessions (token_hash, principal_id, expires_at) VALUES ({p}, {p}, {p})",
            [(_keyed(secret, "session", token), principal_id, time.time() + 12 * 3600)],
        ),
        (
            "INSERT INTO eq_grants (id, principal_id, tenant_id, scopes, purposes, status) "
            "VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
            [("g1", principal_id, tenant_id, "records:read,records:search,pii:reveal", "fulfilment", "active")],
        ),
        (
            "INSERT INTO eq_kill_switches (name, tenant_id, engaged) VALUES ({p}, {p}, {p})",
            [("pii-access", "*", False)],
        ),
        ("INSERT INTO eq_allowlist (cidr) VALUES ({p})", [("127.0.0.0/8",), ("::1/128",)]),
        (
            "INSERT INTO eq_catalog (document, path, purposes) VALUES ({p}, {p}, {p})",
            [(*k, v) for k, v in catalog.items()],
        ),
        ("INSERT INTO eq_tenants (id) VALUES ({p})", [(tenant_id,)]),
        ("INSERT INTO eq_keys (tenant_id, version, wrapped) VALUES ({p}, 1, {p})", [(tenant_id, wrapped)]),
        (
            "INSERT INTO eq_records (id, tenant_id, order_id, document, key_version, pii, restricted_at) "
            "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})",
            records,
        ),
    ]
    audit = [("INSERT INTO eq_audit_head (id, seq, hash) VALUES (1, 0, {p})", [(b"\0" * 32,)])]
    for target, tables, inserts in ((vault_target, _TABLES, state), (audit_target, _AUDIT_TABLES, audit)):
        conn = _connect(target, sqlite, autocommit=False)
        try:
            cur = conn.cursor()
            for ddl in tables:
                cur.execute(ddl.format(blob=blob))
            for sql, params in inserts:
                cur.executemany(sql.format(p="?" if sqlite else "%s"), params)
            conn.commit()
        finally:
            conn.close()
    return {
        "backend": "sqlite" if sqlite else "postgresql",
        "vault": vault_target,
        "audit": audit_target,
        "master_key_file": str(master_file),
        "signing_key_file": str(signing_file),
    }


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _connect(target: str, sqlite: bool, *, autocommit: bool) -> Any:
    if sqlite:
        conn = sqlite3.connect(target, isolation_level=None if autocommit else "DEFERRED", check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # as SageVault's engines (the audit log's commits are durable)
        conn.execute("PRAGMA busy_timeout=5000")
        return conn
    import psycopg

    return psycopg.connect(target, autocommit=autocommit)


def _keyed(secret: bytes, label: str, value: str) -> bytes:
    return hmac.digest(secret, label.encode() + b"\0" + value.encode("utf-8", "surrogatepass"), "sha256")


# --- rate counters ----------------------------------------------------------------------------


def parse_rate(text: str) -> tuple[int, int]:
    """`limits` notation as the bench's settings write it ("N per minute"): (limit, window seconds)."""
    count, _, unit = text.split(" ", 2)
    return int(count), {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[unit.rstrip("s")]


class MemoryCounters:
    """Sliding-window counters (limits' `SlidingWindowCounterRateLimiter`'s arithmetic: the previous
    window weighted by how much of it still overlaps, plus the current one) in a dict, under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, list[float]] = {}  # key -> [window index, previous count, current count]

    def _count(self, key: str, expiry: int, now: float) -> tuple[list[float], float]:
        index = now // expiry
        entry = self._windows.get(key)
        if entry is None or entry[0] < index - 1:
            entry = self._windows[key] = [index, 0, 0]
        elif entry[0] == index - 1:
            entry[0], entry[1], entry[2] = index, entry[2], 0
        return entry, entry[1] * (1 - (now % expiry) / expiry) + entry[2]

    def admit(
        self,
        source_key: str,
        principal: str,
        route: str,
        budget: tuple[int, int],
        total: tuple[int, int],
        per_route: tuple[int, int],
    ) -> tuple[bool, bool, bool]:
        """(source within its refusal budget, principal's total admitted, its route rate admitted)."""
        now = time.time()
        with self._lock:
            within = self._count(f"refused/{source_key}", budget[1], now)[1] < budget[0]
            entry, count = self._count(f"api/{principal}", total[1], now)
            if count + 1 > total[0]:
                return within, False, False
            entry[2] += 1
            entry, count = self._count(f"route/{route}/{principal}", per_route[1], now)
            if count + 1 > per_route[0]:
                return within, True, False
            entry[2] += 1
            return within, True, True

    def refused(self, source_key: str, budget: tuple[int, int]) -> None:
        with self._lock:
            self._count(f"refused/{source_key}", budget[1], time.time())[0][2] += 1


# limits' sliding-window scripts (sliding_window.lua, acquire_sliding_window.lua), three counters in one.
_REDIS_SCRIPT = """
local function window(prev, cur, expiry)
  local ttl = tonumber(redis.call('pttl', cur))
  if ttl > 0 and ttl < expiry then
    redis.call('rename', cur, prev)
    redis.call('set', cur, 0, 'PX', ttl + expiry)
  end
  local pc = tonumber(redis.call('get', prev)) or 0
  local pt = tonumber(redis.call('pttl', prev)) or 0
  local cc = tonumber(redis.call('get', cur)) or 0
  if pt < 0 then pt = 0 end
  return math.floor(pc * pt / expiry) + cc
end
local function hit(prev, cur, limit, expiry)
  if window(prev, cur, expiry) + 1 > limit then return 0 end
  if redis.call('exists', cur) == 1 then redis.call('incrby', cur, 1)
  else redis.call('set', cur, 1, 'PX', expiry * 2) end
  return 1
end
local within = 0
if window(KEYS[1], KEYS[2], tonumber(ARGV[2]) * 1000) < tonumber(ARGV[1]) then within = 1 end
local total = hit(KEYS[3], KEYS[4], tonumber(ARGV[3]), tonumber(ARGV[4]) * 1000)
local route = 0
if total == 1 then route = hit(KEYS[5], KEYS[6], tonumber(ARGV[5]), tonumber(ARGV[6]) * 1000) end
return {within, total, route}
"""


class RedisCounters:
    """The same three counters in Redis, in one round trip (one Lua script), blocking as
    SageVault's limiter blocks (0.5 s socket timeouts)."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_REDIS_SCRIPT)
        self._prefix = prefix

    def _keys(self, key: str) -> list[str]:
        return [f"{self._prefix}:{{{key}}}/-1", f"{self._prefix}:{{{key}}}"]

    def admit(
        self,
        source_key: str,
        principal: str,
        route: str,
        budget: tuple[int, int],
        total: tuple[int, int],
        per_route: tuple[int, int],
    ) -> tuple[bool, bool, bool]:
        keys = [
            *self._keys(f"refused/{source_key}"),
            *self._keys(f"api/{principal}"),
            *self._keys(f"route/{route}/{principal}"),
        ]
        within, ok_total, ok_route = self._script(keys=keys, args=[*budget, *total, *per_route])
        return bool(within), bool(ok_total), bool(ok_route)

    def refused(self, source_key: str, budget: tuple[int, int]) -> None:
        # (a refusal's path: a second round trip is fine there)
        keys = self._keys(f"refused/{source_key}")  # tested, then hit (the third counter's limit 0: not hit)
        self._script(keys=[*keys, *keys, *keys], args=[*budget, *budget, 0, 60])


# --- the security log's group commit ----------------------------------------------------------


class ChainWriter:
    """Appends events to the hash chain from a thread of this process's: whatever is queued when
    the head is locked goes in one transaction; each caller's future is settled once it commits."""

    def __init__(self, target: str, sqlite: bool, signing: Ed25519PrivateKey) -> None:
        self._target, self._sqlite, self._signing = target, sqlite, signing
        self._cond = threading.Condition()
        self._queue: list[tuple[list[Any], asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self.groups = 0
        self.events = 0

    def append(self, values: list[Any]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="eq-audit-writer", daemon=True)
                self._thread.start()
            self._queue.append((values, loop, future))
            self._cond.notify()
        return future

    def _run(self) -> None:
        conn = _connect(self._target, self._sqlite, autocommit=self._sqlite)
        lock_fd = os.open(self._target + "-writer.lock", os.O_RDWR | os.O_CREAT, 0o600) if self._sqlite else None
        sign = self._signing.sign
        mark = "?" if self._sqlite else "%s"
        insert = f"INSERT INTO eq_audit_events ({_AUDIT_COLUMNS}) VALUES ({', '.join([mark] * 17)})"
        move = f"UPDATE eq_audit_head SET seq = {mark}, hash = {mark} WHERE id = 1"
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
            batch: list[tuple[list[Any], asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
            error: BaseException | None = None
            try:
                cur = conn.cursor()
                if lock_fd is not None:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX)
                try:
                    if self._sqlite:
                        cur.execute("BEGIN IMMEDIATE")
                        cur.execute("SELECT seq, hash FROM eq_audit_head WHERE id = 1")
                    else:
                        cur.execute("SELECT seq, hash FROM eq_audit_head WHERE id = 1 FOR UPDATE")
                    seq, prev = cur.fetchone()
                    prev = bytes(prev)
                    with self._cond:  # everything queued by the time the head is locked
                        batch, self._queue = self._queue, []
                    rows = []
                    for values, _, _ in batch:
                        seq += 1
                        stored = [seq, *values]
                        digest = hashlib.sha256(prev + _canonical(stored).encode()).digest()
                        rows.append((*stored, prev, digest, None))
                        prev = digest
                    rows[-1] = (*rows[-1][:-1], sign(b"eq-audit-seal\x00" + str(seq).encode() + b"\x00" + prev))
                    cur.executemany(insert, rows)
                    cur.execute(move, (seq, prev))
                    if self._sqlite:
                        cur.execute("COMMIT")
                    else:
                        conn.commit()
                finally:
                    if lock_fd is not None:
                        fcntl.flock(lock_fd, fcntl.LOCK_UN)
                self.groups += 1
                self.events += len(batch)
            except Exception as exc:  # fail closed: every caller of the group is refused
                error = exc
                with contextlib.suppress(Exception):  # the connection is gone; the next group reconnects
                    conn.rollback() if not self._sqlite else conn.execute("ROLLBACK")
                conn = _connect(self._target, self._sqlite, autocommit=self._sqlite)
            loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for _, loop, future in batch:
                loops.setdefault(loop, []).append(future)
            for loop, futures in loops.items():
                with contextlib.suppress(RuntimeError):  # that loop is closed
                    loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(None)


# --- the access picture, per generation ---------------------------------------------------------


class _Policy:
    __slots__ = ("generation", "grants", "networks", "sessions", "status", "switches")

    def __init__(self, generation: int, cur: Any) -> None:
        self.generation = generation
        self.status = dict(cur.execute("SELECT id, status FROM eq_principals").fetchall())
        self.grants: dict[str, dict[str, list[tuple[frozenset[str], frozenset[str], float | None, float | None]]]] = {}
        for principal, tenant, scopes, purposes, nb, na in cur.execute(
            "SELECT principal_id, tenant_id, scopes, purposes, not_before, not_after FROM eq_grants "
            "WHERE status = 'active'"
        ).fetchall():
            if self.status.get(principal) == "active":
                rule = (frozenset(scopes.split(",")), frozenset(purposes.split(",")), nb, na)
                self.grants.setdefault(principal, {}).setdefault(tenant, []).append(rule)
        self.switches = frozenset(
            (n, t) for n, t, on in cur.execute("SELECT name, tenant_id, engaged FROM eq_kill_switches").fetchall() if on
        )
        self.networks = tuple(
            ipaddress.ip_network(c) for (c,) in cur.execute("SELECT cidr FROM eq_allowlist").fetchall()
        )
        self.sessions: dict[bytes, tuple[str, float]] = {}  # token hash -> (principal, expiry), this generation


@lru_cache(maxsize=4096)
def _allowed(address: str, networks: tuple[Any, ...]) -> bool:
    parsed = ipaddress.ip_address(address)
    return any(parsed in n for n in networks)


class RevealBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: list[str] = Field(min_length=1, max_length=50)
    purpose: str = Field(pattern=r"^(fulfilment|tax_remittance|tax_invoicing|legal)$")


class Refused(Exception):
    def __init__(self, status: int, kind: str, actor: str | None = None, tenant: str | None = None) -> None:
        self.status, self.kind, self.actor, self.tenant = status, kind, actor, tenant


class Floor:
    """The floor's state in one server process: connections, the policy picture, the key, counters."""

    def __init__(self, config: dict[str, Any], counters: Any, rates: dict[str, tuple[int, int]]) -> None:
        self.sqlite = config["backend"] == "sqlite"
        self._target = config["vault"]
        self._idle: list[Any] = []  # connections not in use (the loop's one on SQLite; a few threads' on PostgreSQL)
        self._policy: _Policy | None = None
        self._policy_lock = threading.Lock()
        self.counters = counters
        self.rates = rates
        self.master = Path(config["master_key_file"]).read_bytes()
        signing = Ed25519PrivateKey.from_private_bytes(Path(config["signing_key_file"]).read_bytes())
        self.writer = ChainWriter(config["audit"], self.sqlite, signing)
        conn = self._take()
        cur = conn.cursor()
        (self.secret,) = cur.execute("SELECT secret FROM eq_state WHERE id = 1").fetchone()
        self.secret = bytes(self.secret)
        self.catalog: dict[str, list[tuple[str, frozenset[str]]]] = {}
        for document, path, purposes in cur.execute("SELECT document, path, purposes FROM eq_catalog").fetchall():
            self.catalog.setdefault(path, []).append((document, frozenset(purposes.split(","))))
        self._keys: dict[tuple[str, int], AESGCM] = {}
        mark = "?" if self.sqlite else "%s"
        self._row_sql = (
            "SELECT t.shredded_at, r.id, r.document, r.pii, r.key_version, r.restricted_at FROM eq_tenants t "
            f"LEFT JOIN eq_records r ON r.tenant_id = t.id AND r.order_id = {mark} WHERE t.id = {mark} "
            "ORDER BY r.document"
        )
        self._session_sql = (
            f"SELECT principal_id, expires_at FROM eq_sessions WHERE token_hash = {mark} AND revoked_at IS NULL"
        )
        self._key_sql = f"SELECT wrapped FROM eq_keys WHERE tenant_id = {mark} AND version = {mark}"
        self._idle.append(conn)

    def _take(self) -> Any:
        try:
            return self._idle.pop()  # (atomic under the GIL)
        except IndexError:
            return _connect(self._target, self.sqlite, autocommit=True)

    def _policy_at(self, cur: Any) -> _Policy:
        (generation,) = cur.execute("SELECT generation FROM eq_state WHERE id = 1").fetchone()
        policy = self._policy
        if policy is not None and policy.generation == generation:
            return policy
        with self._policy_lock:
            policy = self._policy = _Policy(generation, cur)
        return policy

    def _aead(self, cur: Any, tenant_id: str, version: int) -> AESGCM:
        aead = self._keys.get((tenant_id, version))
        if aead is None:
            (wrapped,) = cur.execute(self._key_sql, (tenant_id, version)).fetchone()
            wrapped = bytes(wrapped)
            key = AESGCM(self.master).decrypt(
                wrapped[:_NONCE], wrapped[_NONCE:], f"eq-key\x1f{tenant_id}\x1f{version}".encode()
            )
            aead = self._keys[(tenant_id, version)] = AESGCM(key)
        return aead

    def work(
        self, tenant_id: str, order_id: str, raw: bytes, content_type: str, authorization: str, peer: str
    ) -> tuple[bytes, list[Any]]:
        """Steps 1-7 and 9 (see the module): the answer's body and the event's values; or Refused."""
        source_key = _keyed(self.secret, "ip", peer).hex()
        token = authorization[7:].strip() if authorization.startswith("Bearer ") else ""
        conn = self._take()
        cur = conn.cursor()
        if self.sqlite:
            cur.execute("BEGIN")
        try:
            policy = self._policy_at(cur)
            if not _allowed(peer, policy.networks):
                raise Refused(403, "network-denied")
            token_hash = _keyed(self.secret, "session", token)
            hit = policy.sessions.get(token_hash)
            if hit is None:
                row = cur.execute(self._session_sql, (token_hash,)).fetchone()
                hit = (row[0], row[1]) if row is not None else None
                if hit is not None and len(policy.sessions) < 10_000:
                    policy.sessions[token_hash] = hit
            if hit is None or policy.status.get(hit[0]) != "active" or hit[1] <= time.time():
                if self.counters.admit(source_key, "", "", self.rates["budget"], (0, 60), (0, 60))[0]:
                    self.counters.refused(source_key, self.rates["budget"])
                raise Refused(401, "authentication-failed")
            principal = hit[0]
            _, total_ok, route_ok = self.counters.admit(
                source_key, principal, ROUTE, self.rates["budget"], self.rates["total"], self.rates["route"]
            )
            if not (total_ok and route_ok):
                raise Refused(429, "rate-limited", principal)
            if not (_TENANT_ID.fullmatch(tenant_id) and _ORDER_ID.fullmatch(order_id)):
                raise Refused(422, "invalid-request", principal)
            if content_type.split(";", 1)[0].strip().lower() != "application/json":
                raise Refused(422, "invalid-request", principal)
            try:
                body = RevealBody.model_validate_json(raw)
            except ValidationError:
                raise Refused(422, "invalid-request", principal) from None
            purpose = body.purpose
            wanted: dict[str, set[str]] = {}  # document -> paths
            for name in body.fields:
                entries = self.catalog.get(name)
                if not entries:
                    raise Refused(422, "invalid-request", principal, tenant_id)
                for document, purposes in entries:
                    if purpose not in purposes:
                        raise Refused(403, "purpose-not-allowed", principal, tenant_id)
                    wanted.setdefault(document, set()).add(name)
            if ("pii-access", "*") in policy.switches or ("pii-access", tenant_id) in policy.switches:
                raise Refused(403, "kill-switch", principal, tenant_id)
            now = time.time()
            by_tenant = policy.grants.get(principal, {})
            for scopes, purposes, nb, na in by_tenant.get(tenant_id, []) + by_tenant.get("*", []):
                if (
                    "pii:reveal" in scopes
                    and purpose in purposes
                    and (nb is None or now >= nb)
                    and (na is None or now < na)
                ):
                    break
            else:
                raise Refused(403, "access-denied", principal, tenant_id)
            rows = cur.execute(self._row_sql, (order_id, tenant_id)).fetchall()
            if not rows:
                raise Refused(404, "unknown-tenant", principal, tenant_id)
            if rows[0][0] is not None:
                raise Refused(410, "tenant-shredded", principal, tenant_id)
            if rows[0][1] is None:
                raise Refused(404, "record-not-found", principal, tenant_id)
            if any(r[5] is not None for r in rows):
                raise Refused(403, "processing-restricted", principal, tenant_id)
            fields = []
            for _, record_id, document, sealed, version, _ in rows:
                paths = wanted.get(document)
                if not paths:
                    continue
                blob = sealed if type(sealed) is bytes else bytes(sealed)
                aead = self._aead(cur, tenant_id, version)
                n = struct.unpack_from("<H", blob)[0]
                at = 2
                for _ in range(n):
                    (plen,) = struct.unpack_from("<H", blob, at)
                    path = blob[at + 2 : at + 2 + plen].decode()
                    at += 2 + plen
                    (slen,) = struct.unpack_from("<I", blob, at)
                    at += 4
                    if path in paths:
                        try:
                            plain = aead.decrypt(
                                blob[at : at + _NONCE], blob[at + _NONCE : at + slen], _ad(tenant_id, record_id, path)
                            )
                        except InvalidTag:
                            raise Refused(500, "integrity-failure", principal, tenant_id) from None
                        value = plain[1:].decode() if plain[:1] == b"s" else json.loads(plain[1:])
                        fields.append({"record_id": record_id, "document": document, "path": path, "value": value})
                    at += slen
        finally:
            if self.sqlite:
                cur.execute("COMMIT")
            self._idle.append(conn)
        answer = json.dumps({"fields": fields}, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        event = _event(
            principal,
            tenant_id,
            _canonical(sorted({f["record_id"] for f in fields})),
            _canonical({"fields": len(fields)}),
            "success",
            "none",
        )
        return answer, event


def _event(actor: str | None, tenant: str | None, record_ids: str, counts: str, outcome: str, reason: str) -> list[Any]:
    """A vault:field:reveal event's stored values after seq, in SageVault's column order."""
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return [
        at,
        "vault:field:reveal",
        "api",
        outcome,
        reason,
        actor,
        tenant,
        record_ids,
        counts,
        None,
        None,
        "reveal",
        None,
    ]


def create_app(config: dict[str, Any], *, redis_url: str | None, key_prefix: str, rates: dict[str, str]) -> FastAPI:
    """The floor's app for one server process (its connections and writer are this process's)."""
    counters = RedisCounters(redis_url, key_prefix) if redis_url else MemoryCounters()
    floor = Floor(config, counters, {k: parse_rate(v) for k, v in rates.items()})
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.floor = floor
    in_loop = floor.sqlite

    @app.post(PREFIX + "/tenants/{tenant_id}/orders/{order_id}/reveal")
    async def reveal(request: Request) -> Response:
        raw = await request.body()
        params = request.path_params
        headers = request.headers
        args = (
            params["tenant_id"],
            params["order_id"],
            raw,
            headers.get("content-type", ""),
            headers.get("authorization", ""),
            request.client.host if request.client else "0.0.0.0",  # an address no list allows
        )
        answered = {**_SECURITY_HEADERS, "x-request-id": secrets.token_hex(8)}
        try:
            length = headers.get("content-length")
            if length is not None and int(length) > 10 * 1024 * 1024:
                raise Refused(413, "body-too-large")
            body, event = floor.work(*args) if in_loop else await run_in_threadpool(floor.work, *args)
        except Refused as refused:  # recorded, and durable, before it is answered
            event = _event(refused.actor, refused.tenant, "[]", "{}", "denied", refused.kind.replace("-", "_"))
            await floor.writer.append(event)
            problem = json.dumps({"status": refused.status, "type": refused.kind}).encode()
            return Response(problem, refused.status, answered, "application/problem+json")
        await floor.writer.append(event)
        return Response(body, 200, answered, "application/json")

    return app


class Dispatch:
    """The server's ASGI app: /bench/equivalent/... to the floor's app, the rest to SageVault's."""

    def __init__(self, sagevault: ASGIApp, equivalent: ASGIApp) -> None:
        self.sagevault, self.equivalent = sagevault, equivalent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX + "/"):
            await self.equivalent(scope, receive, send)
        else:
            await self.sagevault(scope, receive, send)


def writer_counts(app: FastAPI) -> Callable[[], tuple[int, int]]:
    floor: Floor = app.state.floor
    return lambda: (floor.writer.groups, floor.writer.events)
