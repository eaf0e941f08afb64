"""PostgreSQL: the migrations run as the tables' owner; the service works as the role
`sagevault_app`, which can use rows, append security events and purge old ones through the
owner's function, and can do nothing else: no DDL, no UPDATE, DELETE or TRUNCATE of events."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError

from conftest import OPERATOR
from sagevault.audit import (
    Asker,
    AuditEvent,
    AuditLog,
    DigestFile,
    EventName,
    Signer,
    create_signing_key,
    load_public_key,
    public_path,
    verify,
)
from sagevault.config import Settings
from sagevault.crypto import InMemoryKeyProvider
from sagevault.db import create_engine_for
from sagevault.deployment import STORE_CHAIN, open_deployment, service_engine
from sagevault.errors import ConfigError, NotInitialized
from sagevault.identity import Channel


@pytest.fixture
def signed(tmp_path: Path) -> Path:
    key = tmp_path / "keys" / "audit-signing.key"
    create_signing_key(key)
    return key


def _log(engine: Engine, key: Path, tmp_path: Path) -> AuditLog:
    return AuditLog(
        engine, signer=Signer(key), digests=DigestFile(tmp_path / "digests.jsonl"), public_key=public_path(key)
    )


def _event(at: datetime | None = None) -> AuditEvent:
    return AuditEvent(
        name=EventName.CLI_COMMAND_RUN, channel=Channel.CLI, actor=OPERATOR.id, **({"at": at} if at else {})
    )


def _refused(engine: Engine, statement: str, *, purge_flag: bool = False) -> str:
    with engine.connect() as conn, conn.begin():
        if purge_flag:  # what the append-only trigger lets through for the owner's purge
            conn.execute(text("SET LOCAL sagevault.audit_purge = 'on'"))
        with pytest.raises(DBAPIError) as refused:
            conn.execute(text(statement))
    return str(refused.value.orig)


def test_the_service_role_uses_rows_and_appends_events_but_changes_no_event_and_no_table(
    pg_service_engine: Engine, signed: Path, tmp_path: Path
) -> None:
    service = pg_service_engine
    log = _log(service, signed, tmp_path)
    log.record(_event())  # appending works
    with service.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar_one() == "sagevault_app"
        for table in inspect(conn).get_table_names():  # every table's rows are readable
            conn.execute(text(f'SELECT count(*) FROM "{table}"'))
    for statement in (
        "UPDATE audit_events SET actor = 'svc:mallory'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "DELETE FROM audit_anchors",
        "INSERT INTO audit_anchors VALUES (1, ''::bytea, 'x', ''::bytea)",
        "CREATE TABLE stolen (x int)",
        "ALTER TABLE records ADD COLUMN x int",
        "DROP TABLE sessions",
        "DROP TRIGGER audit_events_append_only ON audit_events",
        "UPDATE alembic_version SET version_num = 'x'",
    ):
        assert "permission denied" in _refused(service, statement) or "must be owner" in _refused(service, statement), (
            statement
        )
    assert "permission denied" in _refused(service, "DELETE FROM audit_events", purge_flag=True)
    with service.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 1


def test_the_service_purges_old_events_only_through_the_owners_function(
    pg_service_engine: Engine, signed: Path, tmp_path: Path
) -> None:
    service = pg_service_engine
    log = _log(service, signed, tmp_path)
    old = datetime.now(UTC) - timedelta(days=500)
    for i in range(4):
        log.record(_event(old + timedelta(minutes=i)))
    log.record(_event())  # today's
    with service.connect() as conn:
        today = conn.execute(text("SELECT hash FROM audit_events WHERE seq = 5")).scalar_one()
    refused = _refused(service, f"SELECT sagevault_audit_purge(5, '\\x{bytes(today).hex()}'::bytea, 'x', ''::bytea)")
    assert "not all older than 365 days" in refused  # the service cannot purge a recent event, even by hand
    assert log.purge_before(datetime.now(UTC) - timedelta(days=365), Asker(OPERATOR)) == 4
    report = verify(service, load_public_key(public_path(signed)), DigestFile(tmp_path / "digests.jsonl").read())
    assert report.ok and report.events == 2, report.problems


def test_a_service_connection_that_could_rewrite_the_log_is_refused_with_the_fix(
    pg_engine: Engine, settings: Settings
) -> None:
    """The owner's connection (what the deployment used before) is refused when the deployment
    opens, saying what to configure; the same URL through the service engine works."""
    url = pg_engine.url.render_as_string(hide_password=False)
    pg_settings = settings.model_copy(update={"database_url": url})
    create_signing_key(pg_settings.resolved_audit_signing_key_file)
    keys = InMemoryKeyProvider()
    with pytest.raises(ConfigError, match="acts as postgres, which may change or delete security events") as err:
        open_deployment(pg_settings, keys=keys, engine=pg_engine, audit_engine=pg_engine)
    assert "database_admin_url" in str(err.value) and "sagevault_app" in str(err.value)
    engine = service_engine(url)
    try:
        d = open_deployment(pg_settings, keys=keys, engine=engine, audit_engine=engine)
        d.close()
    finally:
        engine.dispose()
    assert STORE_CHAIN.version_table == "alembic_version"


def test_a_server_without_the_service_role_is_told_to_run_init(pg_database: str, settings: Settings) -> None:
    """A PostgreSQL server SageVault has never been set up on has no service role yet (the first
    migration makes it): opening a deployment there says to run `sagevault init`, not a driver error."""
    engine = create_engine_for(pg_database, role=f"sagevault_never_made_{secrets.token_hex(4)}")
    pg_settings = settings.model_copy(update={"database_url": pg_database})
    create_signing_key(pg_settings.resolved_audit_signing_key_file)
    try:
        with pytest.raises(NotInitialized, match="has no SageVault schema; run `sagevault init` first"):
            open_deployment(pg_settings, keys=InMemoryKeyProvider(), engine=engine, audit_engine=engine)
    finally:
        engine.dispose()
    # Any other refusal of the connection is said as it is, not taken for a server to initialise.
    wrong = create_engine_for(f"{pg_database}?options=-c%20statement_timeout%3Dabc", role="sagevault_app")
    try:
        with pytest.raises(OperationalError, match="statement_timeout"):
            open_deployment(pg_settings, keys=InMemoryKeyProvider(), engine=wrong, audit_engine=wrong)
    finally:
        wrong.dispose()


def test_a_deployment_on_postgresql_keeps_the_pool_its_settings_ask_for(pg_url: str, settings: Settings) -> None:
    pg_settings = settings.model_copy(update={"database_url": pg_url, "database_pool_size": 7})
    create_signing_key(pg_settings.resolved_audit_signing_key_file)
    d = open_deployment(pg_settings, keys=InMemoryKeyProvider())
    try:
        assert d.engine.pool.size() == 7 and d.audit.engine.pool.size() == 7  # type: ignore[attr-defined]
    finally:
        d.close()


def test_the_service_keeps_its_postgresql_connections_between_requests(pg_url: str) -> None:
    """Sixteen units of work at once, then again: the second time no connection is opened (each
    new one costs a PostgreSQL backend; SQLAlchemy's default kept five and reopened the rest)."""
    engine = service_engine(pg_url, pool_size=16)
    opened: list[object] = []
    event.listen(engine, "connect", lambda conn, _record: opened.append(conn))
    try:
        for _ in range(2):
            held = [engine.connect() for _ in range(16)]
            for conn in held:
                assert conn.execute(text("SELECT current_user")).scalar_one() == "sagevault_app"
                conn.close()
        assert len(opened) == 16
    finally:
        engine.dispose()
