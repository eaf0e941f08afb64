"""Settings, the policy profile, the schema migrations and the public API."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect

import sagevault
from sagevault._private_files import loose_entries
from sagevault.access import access_metadata
from sagevault.audit import migrate_audit
from sagevault.config import PolicyProfile, load_settings
from sagevault.connector import connector_metadata
from sagevault.crypto import InMemoryKeyProvider
from sagevault.db import create_engine_for, migrate, schema_is_current
from sagevault.deletion import deletion_metadata
from sagevault.deployment import STORE_CHAIN, init_deployment, migrate_store, open_audit, open_deployment
from sagevault.errors import ConfigError
from sagevault.governance import governance_metadata
from sagevault.identity import Channel, Principal
from sagevault.incidents import incidents_metadata
from sagevault.jobs import jobs_metadata
from sagevault.logs import configure_logging, release_logging
from sagevault.monitor import monitor_metadata
from sagevault.vault import vault_metadata


def test_defaults_are_the_policy_numbers(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path)
    assert s.policy == PolicyProfile()
    assert s.policy.deletion_sla_hours == 72 and s.policy.security_log_retention_days == 365
    assert s.policy.lockout_threshold == 10 and s.policy.pii_retention_days_after_delivery == 30
    assert s.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'sagevault.db'}"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SAGEVAULT_POLICY__SECURITY_LOG_RETENTION_DAYS": "30"}, "security_log_retention_days=30 is unsafe"),
        ({"SAGEVAULT_POLICY__SECURITY_LOG_RETENTION_DAYS": "364"}, "set it >= 365"),
        ({"SAGEVAULT_POLICY__PII_RETENTION_DAYS_AFTER_DELIVERY": "90"}, "set it <= 30"),
        ({"SAGEVAULT_POLICY__LOCKOUT_THRESHOLD": "50"}, "lockout_threshold=50"),
        ({"SAGEVAULT_KEY_CACHE_TTL_SECONDS": "86400"}, "at most 3600 seconds"),
        ({"SAGEVAULT_KEY_PROVIDER": "aws-kms"}, "needs kms_key_id"),
        ({"SAGEVAULT_POLICY__NOT_A_SETTING": "1"}, "policy.not_a_setting"),
        ({"SAGEVAULT_TRUSTED_PROXIES": '["10.0.0.1/8"]'}, "not a network in CIDR form"),
        ({"SAGEVAULT_PASSWORD_HASH_MEMORY_KIB": "1024"}, "OWASP's floor"),
        ({"SAGEVAULT_RATE_LIMIT_STORAGE_URL": "http://127.0.0.1:6379"}, "rate_limit_storage_url must be"),
        ({"SAGEVAULT_POLICY__INACTIVE_ACCOUNT_DAYS": "180"}, "inactive_account_days=180"),
        ({"SAGEVAULT_DATABASE_URL": "postgresql+psycopg://app@db.example.com/sv"}, "sslmode=verify-full"),
        ({"SAGEVAULT_DATABASE_URL": "postgresql+psycopg://app@10.0.0.5/sv?sslmode=require"}, "sslmode=verify-full"),
        ({"SAGEVAULT_AUDIT_DATABASE_URL": "postgresql+psycopg://app@[2001:db8::5]/sv"}, "audit_database_url points"),
        ({"SAGEVAULT_RATE_LIMIT_STORAGE_URL": "redis://cache.example.com:6379/0"}, "use rediss://"),
        ({"SAGEVAULT_RATE_LIMIT_STORAGE_URL": "rediss://cache.example.com/0?ssl_cert_reqs=none"}, "certificate checks"),
        ({"SAGEVAULT_KMS_ENDPOINT_URL": "http://kms.example.com"}, "must be an https:// URL"),
        ({"SAGEVAULT_DATABASE_POOL_SIZE": "0"}, "database_pool_size must be between 1 and 200"),
    ],
)
def test_unsafe_settings_refuse_to_start(env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match="refusing to start") as info:
        load_settings()
    assert message in str(info.value)


def test_stricter_settings_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGEVAULT_POLICY__SECURITY_LOG_RETENTION_DAYS", "730")
    monkeypatch.setenv("SAGEVAULT_POLICY__LOCKOUT_THRESHOLD", "5")
    s = load_settings()
    assert s.policy.security_log_retention_days == 730 and s.policy.lockout_threshold == 5


@pytest.mark.parametrize(
    "env",
    [
        {"SAGEVAULT_DATABASE_URL": "postgresql+psycopg://app@db.example.com/sv?sslmode=verify-full"},
        {"SAGEVAULT_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/test"},
        {"SAGEVAULT_DATABASE_URL": "postgresql+psycopg://app@/sv?host=/var/run/postgresql"},
        {"SAGEVAULT_RATE_LIMIT_STORAGE_URL": "rediss://cache.example.com:6380/0"},
        {"SAGEVAULT_RATE_LIMIT_STORAGE_URL": "redis://[::1]:6379/0"},
        {"SAGEVAULT_KMS_ENDPOINT_URL": "https://kms.us-east-1.amazonaws.com"},
    ],
)
def test_encrypted_or_local_channels_are_accepted(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert s.model_dump(mode="json")[next(iter(env)).removeprefix("SAGEVAULT_").lower()] == next(iter(env.values()))


def test_toml_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "custom.toml"
    cfg.write_text('data_dir = "/srv/sagevault"\n[policy]\ndeletion_sla_hours = 48\n')
    monkeypatch.setenv("SAGEVAULT_CONFIG", str(cfg))
    s = load_settings()
    assert s.data_dir == Path("/srv/sagevault") and s.policy.deletion_sla_hours == 48


def test_migrations_build_exactly_the_declared_schema(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'm.db'}")
    migrate_store(engine)
    declared = MetaData()
    for domain in (
        vault_metadata,
        access_metadata,
        jobs_metadata,
        monitor_metadata,
        incidents_metadata,
        deletion_metadata,
        connector_metadata,
        governance_metadata,
    ):
        for table in domain.tables.values():
            table.to_metadata(declared)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), declared)
    engine.dispose()
    assert diff == []


def test_public_api_is_pinned() -> None:
    assert sagevault.__all__ == sorted(sagevault.__all__)
    assert set(sagevault.__all__) == {
        "CATALOG",
        "ConfigError",
        "IntegrityError",
        "InMemoryKeyProvider",
        "Operation",
        "Principal",
        "Purpose",
        "SageVaultError",
        "Settings",
        "TenantShredded",
        "Vault",
        "init_deployment",
        "load_settings",
        "open_deployment",
    }


def test_a_limiter_url_given_in_code_is_held_to_the_same_rule(tmp_path: Path) -> None:
    from sagevault.access import LoginThrottle

    settings = load_settings(data_dir=tmp_path)
    with pytest.raises(ConfigError, match="use rediss://"):
        LoginThrottle(settings, storage_url="redis://cache.example.com:6379/0")  # refused before any connection


def test_every_migration_file_ships_in_the_package() -> None:
    """The migration folders are not packages: setuptools installs their files only if a
    package-data pattern names them (an install from a wheel would otherwise have no schema)."""
    root = Path(sagevault.__file__).parent
    text = (root.parents[1] / "pyproject.toml").read_text()
    patterns = tomllib.loads(text)["tool"]["setuptools"]["package-data"]["sagevault"]
    shipped = {p for pattern in patterns for p in root.glob(pattern)}
    migrations = {p for p in root.glob("*/migrations/**/*") if p.is_file() and "__pycache__" not in p.parts}
    assert migrations and migrations <= shipped, sorted(str(p) for p in migrations - shipped)


def test_a_database_from_before_a_domain_added_its_tables_is_brought_up_to_date_when_opened(tmp_path: Path) -> None:
    """A deployment made before the jobs table (revision 0002) opens and gains it (0003) and
    every revision after it."""
    settings = load_settings(data_dir=tmp_path / "var")
    engine = create_engine_for(settings.resolved_database_url)
    settings.resolved_data_dir.mkdir(parents=True, mode=0o700)
    migrate(engine, STORE_CHAIN, "0002")
    assert "job_runs" not in inspect(engine).get_table_names()
    audit_engine = create_engine_for(settings.resolved_audit_database_url)
    migrate_audit(audit_engine)
    audit_engine.dispose()
    d = open_deployment(settings, keys=InMemoryKeyProvider(), engine=engine)
    try:
        assert "job_runs" in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert schema_is_current(conn, STORE_CHAIN)
    finally:
        d.close()


def test_a_settings_change_is_recorded_with_who_opened_and_which_settings_changed(tmp_path: Path) -> None:
    """The names of the settings that changed, and who opened the deployment: never a value."""
    operator = Principal("operator:ops", "operator", Channel.CLI)
    first = load_settings(data_dir=tmp_path / "var", rate_limit_key_prefix="first-prefix-value")
    init_deployment(first, keys=(keys := InMemoryKeyProvider()), actor=operator).close()
    again = open_deployment(first, keys=keys, actor=operator)  # nothing changed: nothing recorded
    again.close()
    changed = first.model_copy(
        update={"rate_limit_key_prefix": "second-prefix-value", "policy": PolicyProfile(lockout_threshold=5)}
    )
    d = open_deployment(changed, keys=keys, actor=operator)
    try:
        events = list(d.audit.search(name="admin:config:change"))
    finally:
        d.close()
    assert [(e["actor"], e["channel"]) for e in events] == [("operator:ops", "cli")] * 2
    assert events[0]["counts"] == {"settings": events[0]["counts"]["settings"]} and events[0]["counts"]["settings"] > 30
    assert events[1]["counts"] == {"setting:policy.lockout_threshold": 1, "setting:rate_limit_key_prefix": 1}
    written = b"".join(p.read_bytes() for p in (tmp_path / "var").rglob("*") if p.is_file())
    assert b"first-prefix-value" not in written and b"second-prefix-value" not in written


def test_the_data_dir_is_private_whatever_the_umask_and_a_loose_one_is_refused(tmp_path: Path) -> None:
    before = os.umask(0o022)  # a common default: new files 0644, new directories 0755
    try:
        settings = load_settings(data_dir=tmp_path / "var")
        d = init_deployment(settings, keys=InMemoryKeyProvider())
        with d.engine.begin() as conn:
            d.vault.add_tenant(conn, "A1PRIVATESELLER", ["ATVPDKIKX0DER"], principal=Principal.local_operator())
        d.audit.write_digest()
        d.close()
        configure_logging(settings.resolved_data_dir / "logs" / "sagevault.log")
        release_logging()
    finally:
        os.umask(before)
    data = settings.resolved_data_dir
    made = {p.relative_to(data).as_posix(): oct(p.stat().st_mode & 0o777) for p in [data, *data.rglob("*")]}
    assert {"sagevault.db", "audit.db", "audit/digests.jsonl", "keys/audit-signing.pub", "tls/ca.pem"} <= made.keys()
    assert all(mode in ("0o600", "0o700") for mode in made.values()), made
    assert loose_entries(data) == []
    (data / "audit.db").chmod(0o644)  # as an older version, or a careless copy, left it
    with pytest.raises(ConfigError, match=f"audit.db is open to other accounts .*chmod -R go-rwx {data}"):
        open_deployment(settings, keys=InMemoryKeyProvider())
    (data / "audit.db").chmod(0o600)
    data.chmod(0o755)
    with pytest.raises(ConfigError, match="mode 0755"):
        open_audit(settings)
