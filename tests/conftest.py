"""Fixtures: every vault test runs on SQLite and on PostgreSQL.

PostgreSQL is the shared server on 127.0.0.1:5432; the session creates its own database and
drops it at the end. Under CI=true an unreachable PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.pool import NullPool

from sagevault.audit import create_signing_key, migrate_audit
from sagevault.config import Settings, load_settings
from sagevault.crypto import InMemoryKeyProvider
from sagevault.db import create_engine_for
from sagevault.deployment import Deployment, init_deployment, migrate_store, open_deployment, service_engine
from sagevault.identity import Principal

DATA = Path(__file__).parent / "data"
MODELS = DATA / "sp-api-models"
PG_ADMIN_URL = os.environ.get("SAGEVAULT_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TENANT = "A1TESTSELLER01"
OTHER = "A2OTHERSELLER2"
OPERATOR = Principal(id="operator:test", kind="operator")

# `api` (the app in process), `served_api` (over TLS on a socket); `harness` and `admins` (access)
pytest_plugins = ["webapi", "access_harness"]


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
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this run (dropped at the end); each test gets a schema of its own in it."""
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
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _in_schema(database_url: str, schema: str) -> str:
    """The URL of `database_url` whose connections work in `schema` (any process that opens it)."""
    return (
        make_url(database_url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def pg_schema_ddl(pg_database: str) -> list[tuple[str, Any, bool]]:
    """What the migrations execute on a new schema, captured once per run by migrating a schema
    for real; each test's schema replays it (a few tens of milliseconds instead of Alembic's
    hundred and more)."""
    executed: list[tuple[str, Any, bool]] = []
    engine = create_engine_for(_in_schema(pg_database, "sagevault_capture"))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA sagevault_capture")

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        if not statement.lstrip().upper().startswith("SELECT"):  # Alembic's look-ups of what exists
            executed.append((statement, parameters, many))

    sqlalchemy.event.listen(engine, "before_cursor_execute", capture)
    migrate_store(engine)
    migrate_audit(engine)
    sqlalchemy.event.remove(engine, "before_cursor_execute", capture)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA sagevault_capture CASCADE")
    engine.dispose()
    return executed


@pytest.fixture
def pg_url(pg_database: str, pg_schema_ddl: list[tuple[str, Any, bool]]) -> Iterator[str]:
    """A migrated schema of this test's own (its URL names it), dropped afterwards: tests on
    PostgreSQL share nothing, whatever they leave behind."""
    schema = f"t_{secrets.token_hex(6)}"
    url = _in_schema(pg_database, schema)
    engine = create_engine_for(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO PUBLIC')  # as the public schema has
        for statement, parameters, many in pg_schema_ddl:
            conn.exec_driver_sql(statement, list(parameters) if many else parameters or None)
    try:
        yield url
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """The test schema as its owner (what an attacker with the owner's rights, or a migration, sees)."""
    engine = create_engine_for(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_service_engine(pg_url: str) -> Iterator[Engine]:
    """The test schema as the service works in it: the role `sagevault_app` on every connection."""
    engine = service_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # no stray sagevault.toml from the checkout
    # Argon2id at OWASP's floor (the least the settings accept) keeps log-in tests quick.
    return load_settings(
        data_dir=tmp_path / "var",
        password_hash_memory_kib=19456,
        password_hash_time_cost=2,
        password_hash_parallelism=1,
    )


@pytest.fixture
def deployment_at(
    backend: str, settings: Settings, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Deployment]]:
    """Make the deployment under test (in-memory master key, `backend`), with the parts a test
    brings (a clock, a password hasher, a throttle); closed after the test."""
    made: list[Deployment] = []
    # Set up before the deployments, so torn down after they are closed.
    engine: Engine | None = request.getfixturevalue("pg_service_engine") if backend == "postgresql" else None

    def make(**parts: Any) -> Deployment:
        keys = InMemoryKeyProvider()
        if engine is None:
            d = init_deployment(settings, keys=keys, **parts)
        else:
            if not settings.resolved_audit_signing_key_file.exists():  # what `sagevault init` makes beside the keys
                create_signing_key(settings.resolved_audit_signing_key_file)
            pg_settings = settings.model_copy(update={"database_url": engine.url.render_as_string(hide_password=False)})
            d = open_deployment(pg_settings, keys=keys, engine=engine, audit_engine=engine, **parts)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


@pytest.fixture
def deployment(deployment_at: Callable[..., Deployment]) -> Deployment:
    """A deployment with an in-memory master key on the backend under test."""
    return deployment_at()


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


@contextmanager
def audit_table_away(d: Deployment) -> Iterator[None]:
    """The security log's table renamed away by its owner for the block (the service may not):
    every append fails until it is back."""
    owner = create_engine_for(d.settings.resolved_audit_database_admin_url)
    with owner.begin() as conn:
        conn.execute(text("ALTER TABLE audit_events RENAME TO audit_events_away"))
    try:
        yield
    finally:
        with owner.begin() as conn:
            conn.execute(text("ALTER TABLE audit_events_away RENAME TO audit_events"))
        owner.dispose()


def _free_kms_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def kms_endpoint() -> Iterator[str]:
    """moto's AWS server on 127.0.0.1: a real KMS API over HTTP, no traffic leaves the host."""
    port = _free_kms_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto server did not start")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def aws_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials for moto's KMS (it checks none); no instance metadata is looked up."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
