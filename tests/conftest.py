"""Fixtures: every vault test runs on SQLite and on PostgreSQL.

PostgreSQL is the shared server on 127.0.0.1:5432; the session creates its own database and
drops it at the end. Under CI=true an unreachable PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, create_engine, text

from sagevault.audit import migrate_audit
from sagevault.config import Settings, load_settings
from sagevault.crypto import InMemoryKeyProvider
from sagevault.db import create_engine_for, migrate
from sagevault.deployment import Deployment, init_deployment, open_deployment
from sagevault.vault import Principal

DATA = Path(__file__).parent / "data"
MODELS = DATA / "sp-api-models"
PG_ADMIN_URL = os.environ.get("SAGEVAULT_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TENANT = "A1TESTSELLER01"
OTHER = "A2OTHERSELLER2"
OPERATOR = Principal(id="operator:test", kind="operator")

pytest_plugins = ["webapi"]  # the `api` fixture: a served API over TLS


def plaintext_answer(port: int, path: str = "/") -> bytes:
    """What a TLS-only port sends back to a plaintext HTTP request (at most a TLS alert)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        answer = b""
        try:
            while chunk := raw.recv(1024):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return answer


def sandbox_examples(model: str, path: str, method: str = "get") -> list[dict[str, Any]]:
    spec = json.loads((MODELS / model).read_text())
    static = spec["paths"][path][method]["responses"]["200"]["x-amzn-api-sandbox"]["static"]
    return [e["response"] for e in static]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, migrated once and dropped at the end."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except Exception as exc:
        admin.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is unreachable under CI=true: {type(exc).__name__}")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    name = f"sagevault_test_{os.getpid()}_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    engine = create_engine_for(url)
    migrate(engine)
    migrate_audit(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = create_engine_for(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # no stray sagevault.toml from the checkout
    # Argon2id at OWASP's floor (the least the settings accept) keeps log-in tests quick.
    return load_settings(data_dir=tmp_path / "var", password_hash_memory_kib=19456, password_hash_time_cost=2,
                         password_hash_parallelism=1)  # fmt: skip


@pytest.fixture
def deployment(backend: str, settings: Settings, request: pytest.FixtureRequest) -> Iterator[Deployment]:
    """A deployment with an in-memory master key on the backend under test, emptied afterwards."""
    keys = InMemoryKeyProvider()
    if backend == "sqlite":
        d = init_deployment(settings, keys=keys)
        yield d
        d.close()
        return
    engine: Engine = request.getfixturevalue("pg_engine")
    pg_settings = settings.model_copy(update={"database_url": engine.url.render_as_string(hide_password=False)})
    d = open_deployment(pg_settings, keys=keys, engine=engine, audit_engine=engine)
    try:
        yield d
    finally:
        with engine.begin() as conn:
            conn.execute(text(
                "TRUNCATE records, tenant_keys, tenants, audit_events, audit_anchors, principals, password_history, "
                "recovery_codes, api_keys, sessions, grants, allowlist, kill_switches CASCADE"
            ))
            # The access secret was wrapped by this test's in-memory master key.
            conn.execute(text("UPDATE access_state SET secret = NULL, generation = generation + 1"))
            conn.execute(text("UPDATE audit_head SET seq = 0, hash = :zero"), {"zero": b"\0" * 32})


@pytest.fixture
def vault_tenant(deployment: Deployment) -> Deployment:
    """A deployment with two tenants, TENANT and OTHER."""
    with deployment.engine.begin() as conn:
        deployment.vault.add_tenant(conn, TENANT, ["ATVPDKIKX0DER"], principal=OPERATOR)
        deployment.vault.add_tenant(conn, OTHER, ["ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"], principal=OPERATOR)
    return deployment


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the Redis at 127.0.0.1:6379; its keys are deleted after."""
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("CI") == "true":
            pytest.fail("Redis at 127.0.0.1:6379 is unreachable under CI=true")
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    prefix = f"sagevault-test-{os.getpid()}-{secrets.token_hex(4)}"
    yield prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()
