"""Wiring: one deployment = settings + database + master key + audit log + vault.

`init_deployment` creates a new embedded deployment (data dir, master key file, audit signing
key, schemas); `open_deployment` opens an existing one and refuses if anything is missing or
unsafe. Opening records a configuration change when the effective settings differ from the
last ones recorded.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypedDict, Unpack

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from sagevault import access, connector, deletion, governance, incidents, jobs, monitor, vault
from sagevault._private_files import check_private
from sagevault._settings_changes import record_settings
from sagevault.access import (
    AccessControl,
    AccessCore,
    AccessService,
    AlarmResponses,
    IncidentActions,
    LoginThrottle,
    PasswordHasher,
)
from sagevault.audit import (
    AUDIT_CHAIN,
    AuditLog,
    DigestFile,
    Signer,
    create_signing_key,
    load_public_key,
    public_path,
)
from sagevault.catalog import CATALOG
from sagevault.config import Settings, make_private_dir
from sagevault.connector import Connector, SpApiClient, load_app
from sagevault.crypto import (
    KeyCache,
    KeyProvider,
    create_local_key_file,
    create_local_tls,
    held_in_process,
    master_keys_from_settings,
    tls_files,
)
from sagevault.db import (
    SERVICE_ROLE,
    MigrationChain,
    create_engine_for,
    is_sqlite,
    migrate,
    migrate_if_behind,
    query_only,
    reading,
    statements_on_their_own,
)
from sagevault.deletion import Backups, BuyerRights, Deletions, LiveCopies, Retention
from sagevault.errors import AlreadyInitialized, ConfigError, NotInitialized, StorageBusy
from sagevault.governance import (
    AssetPart,
    Assets,
    Campaigns,
    Governance,
    Policies,
    Ropa,
    Vulnerabilities,
    deployment_parts,
)
from sagevault.identity import Principal
from sagevault.incidents import IncidentCore, Incidents, PlanBook
from sagevault.monitor import CanaryRegistry, LogSink, Monitor, Sink, SmtpSink, WebhookSink, load_rules
from sagevault.vault import RetentionDays, TenantKeyring, Vault

Clock = Callable[[], datetime]

# The tables of the vault's database, each domain's revisions in its own folder, one chain.
STORE_CHAIN = MigrationChain(
    "alembic_version",
    (
        vault.MIGRATIONS,
        access.MIGRATIONS,
        jobs.MIGRATIONS,
        monitor.MIGRATIONS,
        incidents.MIGRATIONS,
        deletion.MIGRATIONS,
        connector.MIGRATIONS,
        governance.MIGRATIONS,
    ),
)


def migrate_store(engine: Engine) -> None:
    """Bring the vault's database (every domain's tables) to the newest migration."""
    migrate(engine, STORE_CHAIN)


@dataclass
class Deployment:
    settings: Settings
    engine: Engine
    keys: KeyProvider
    audit: AuditLog
    vault: Vault
    access: AccessService
    monitor: Monitor
    sinks: dict[str, Sink]
    incidents: Incidents
    copies: LiveCopies
    retention: Retention
    deletion: Deletions
    backups: Backups
    connector: Connector
    governance: Governance

    def infrastructure(self, conn: Connection | None = None) -> dict[str, str]:
        """What the incident response plan is approved for: a change of any of these (a master
        key rotation, a move to another database, a schema migration) is a major change that
        makes the plan due for review. `conn`: the caller's unit of work, if it is in one."""
        query = text("SELECT version_num FROM alembic_version")
        if conn is not None:
            revision = conn.execute(query).scalar()
        else:
            with self.engine.connect() as own:
                revision = own.execute(query).scalar()
        return {"master_key": self.keys.key_id, "database": self.engine.dialect.name, "schema": str(revision)}

    def own_assets(self) -> list[AssetPart]:
        """The deployment's own parts for the asset inventory, from its settings (hosts, paths and
        key ids, never credentials): see `governance.deployment_parts`."""
        s = self.settings
        return deployment_parts(
            hostname=socket.gethostname(),
            data_dir=s.resolved_data_dir,
            database_url=s.resolved_database_url,
            audit_database_url=s.resolved_audit_database_url,
            kms_key=(s.kms_key_id, s.kms_region) if s.key_provider == "aws-kms" else None,
            master_key_file=s.resolved_master_key_file,
            backup_dir=s.backup_dir,
            webhook_url=s.alarm_webhook_url,
            smtp_host=s.alarm_smtp_host,
            sp_api_app_file=s.resolved_sp_api_app_file,
        )

    def release_deleted_pages(self, *, patience: float = 10.0) -> None:
        """Push deletions (shredded keys) out of the write-ahead log and free pages now.

        SQLite runs with secure_delete, so freed pages are zeroed; a TRUNCATE checkpoint also
        empties the WAL, which would otherwise keep the old page images. A reader still on an
        older snapshot makes the checkpoint busy: it is retried for up to `patience` seconds,
        then refused with an error that says to run it again. PostgreSQL: VACUUM the key table, as
        its owner (`database_admin_url`, else `database_url`), so the deleted tuples are pruned
        from its pages.
        """
        if is_sqlite(self.engine):
            deadline = time.monotonic() + patience
            while True:
                raw = self.engine.raw_connection()  # outside any transaction, as a checkpoint must be
                try:
                    cursor = raw.cursor()
                    query_only(raw, False)  # whatever the connection's last unit of work was
                    cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    row = cursor.fetchone()
                    busy = bool(row and row[0])
                finally:
                    raw.close()
                if not busy:
                    return
                if time.monotonic() > deadline:
                    raise StorageBusy(
                        "the write-ahead log could not be emptied (readers kept it busy), so copies of deleted "
                        "keys may remain in it; run the purge (or `sagevault shred` resume) again"
                    )
                time.sleep(0.05)
        else:  # as the owner: the service's role may not vacuum (PostgreSQL would skip the table, only warning)
            with (
                _owner(self.settings.resolved_database_admin_url) as owner,
                owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
            ):
                if not conn.execute(text(_OWNS_KEY_TABLE)).scalar():
                    raise ConfigError(
                        "the deleted keys stay in the pages of tenant_keys until its owner vacuums it: give the "
                        "owner's URL as database_admin_url, or run VACUUM tenant_keys as the owner now"
                    )
                conn.execute(text("VACUUM tenant_keys, records"))  # shredded keys; deleted or purged rows

    def now(self) -> datetime:
        """The deployment's clock (a `ManualClock` in tests): policy dates, jobs' cut-offs."""
        return self.access.core.now()

    @contextmanager
    def unit_of_work(self, *, read_only: bool = False, statements: bool = False) -> Iterator[Connection]:
        """One unit of work on the vault's database, for an edge (a request, a command, a job):
        committed when the block ends, rolled back if it raises. `read_only`: the work writes
        nothing to this database (its security events go to the audit log), so on SQLite it is a
        snapshot read that neither takes nor waits for the write lock. Work that writes must not
        be marked so. `statements` (with `read_only`, for the reveal's hot path): on PostgreSQL
        each statement runs on its own (autocommit: no BEGIN and COMMIT round trips); it reads
        what is committed statement by statement, as its READ COMMITTED transaction did, and
        must take no savepoint."""
        with self.engine.connect() as conn:
            if read_only:
                reading(conn)
            if read_only and statements and not is_sqlite(self.engine):
                with statements_on_their_own(conn), conn.begin():
                    yield conn
            else:
                with conn.begin():
                    yield conn

    @property
    def local_reads(self) -> bool:
        """Whether a unit of work's reads stay on this machine and wait for nothing: an SQLite
        database (WAL: readers take no lock) and a master key held in process, not a KMS. The
        API then serves its hot path in the event loop (`web._deps.OneHop`)."""
        return is_sqlite(self.engine) and held_in_process(self.keys)

    def close(self) -> None:
        self.connector.close()
        self.audit.write_digest()
        self.engine.dispose()
        self.audit.close()


def _audit_log(settings: Settings, audit_engine: Engine | None, clock: Clock | None = None) -> AuditLog:
    key_file = settings.resolved_audit_signing_key_file
    signer = Signer(key_file) if key_file.exists() else None
    engine = audit_engine or service_engine(settings.resolved_audit_database_url, settings.database_pool_size)
    return AuditLog(
        engine,
        signer=signer,
        digests=DigestFile(settings.digest_file),
        public_key=public_path(key_file),
        digest_every=settings.audit_digest_every,
        digest_seconds=settings.audit_digest_seconds,
        clock=clock,
    )


class Parts(TypedDict, total=False):
    """What a caller (a test, an embedding application) may bring instead of what the settings
    would build: a key provider, engines, a log-in throttle, a password hasher, a clock."""

    keys: KeyProvider
    engine: Engine
    audit_engine: Engine
    throttle: LoginThrottle
    hasher: PasswordHasher
    clock: Clock
    event_clock: Clock  # stamps security events (tests of time rules: a reveal "at 03:00")


def service_engine(url: str, pool_size: int = 20) -> Engine:
    """The engine the service works through: on PostgreSQL every connection takes the role
    `sagevault_app` (rows only, no DDL, the security log append-only), whatever the login, from a
    pool of `pool_size` kept connections (`Settings.database_pool_size`; as many again for a burst)."""
    if url.startswith("sqlite"):
        return create_engine_for(url, role=SERVICE_ROLE)
    # SQLAlchemy's default pool (5) opened and closed a PostgreSQL connection per request beyond the
    # fifth at once: 546 → 836 reveals/s, p99 73 → 35 ms, at 16 requests at a time (bench/api.py, pg_redis).
    return create_engine_for(url, role=SERVICE_ROLE, pool_size=pool_size, max_overflow=pool_size)


@contextmanager
def _owner(url: str) -> Iterator[Engine]:
    """An engine as the tables' owner, for migrations only, disposed after them."""
    engine = create_engine_for(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _migrate(settings: Settings, *, behind_only: bool) -> None:
    """The vault's database and the security log to their newest revisions, as their owner."""
    for url, chain in (
        (settings.resolved_database_admin_url, STORE_CHAIN),
        (settings.resolved_audit_database_admin_url, AUDIT_CHAIN),
    ):
        with _owner(url) as engine:
            migrate_if_behind(engine, chain) if behind_only else migrate(engine, chain)


_OWNS_KEY_TABLE = (
    "SELECT pg_has_role(current_user, tableowner, 'USAGE') FROM pg_tables "
    "WHERE tablename = 'tenant_keys' AND schemaname = current_schema()"
)

_OWNER_POWERS = """
SELECT has_table_privilege('audit_events', 'UPDATE') OR has_table_privilege('audit_events', 'DELETE')
    OR has_table_privilege('audit_events', 'TRUNCATE') OR has_schema_privilege(current_schema(), 'CREATE'),
    current_user
"""


def check_service_role(engine: Engine) -> None:
    """Refuse a PostgreSQL connection that could rewrite the security log or change the schema:
    the service works as `sagevault_app`, which can only append events and use rows."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        powerful, user = conn.execute(text(_OWNER_POWERS)).one()
    if powerful:
        raise ConfigError(
            f"the service's PostgreSQL connection acts as {user}, which may change or delete security events "
            "or create tables; connect as the role sagevault_app (or a login that can SET ROLE to it), give "
            "the owner's URL as database_admin_url for migrations, and revoke CREATE on the schema from PUBLIC"
        )


def _build(settings: Settings, parts: Parts) -> Deployment:
    keys = parts.get("keys") or master_keys_from_settings(settings)
    engine = parts.get("engine") or service_engine(settings.resolved_database_url, settings.database_pool_size)
    audit = _audit_log(settings, parts.get("audit_engine"), parts.get("event_clock"))
    keyring = TenantKeyring(keys, KeyCache(settings.key_cache_ttl_seconds))
    clock = parts.get("clock")
    control = AccessControl(clock)  # the vault's gate and the access service's decision: one
    policy = settings.policy
    days = RetentionDays(
        policy.pii_retention_days_after_delivery, policy.non_pii_retention_days, policy.delivery_margin_days
    )
    the_vault = Vault(keyring, audit=audit, gate=control, retention=days)
    core = AccessCore(
        settings, keys, audit, tenants=the_vault, control=control, throttle=parts.get("throttle"), clock=clock
    )
    the_access = AccessService(core, hasher=parts.get("hasher"))
    sinks = alarm_sinks(settings)
    the_monitor = Monitor(
        load_rules(settings.rules_dir),
        audit=audit,
        gate=control,
        canaries=CanaryRegistry(settings.canary_key_file),
        sinks=sorted(sinks),
        responder=AlarmResponses(the_access),
        hours=settings.policy.pii_access_hours,
        zone=settings.policy.timezone,
        clock=clock,
    )
    the_vault.hidden = the_monitor.canaries
    plans = PlanBook(audit=audit, gate=control, review_days=settings.policy.ir_plan_review_days, clock=clock)
    the_incidents = Incidents(
        IncidentCore(
            audit=audit,
            gate=control,
            plans=plans,
            containment=IncidentActions(the_access),
            notify_hours=settings.policy.amazon_notify_hours,
            clock=clock,
        )
    )
    the_monitor.incidents = the_incidents
    copies = LiveCopies(audit=audit, gate=control, max_days=policy.live_copies_days, clock=clock)
    retention = Retention(audit=audit, gate=control, clock=clock)
    deletions = Deletions(
        audit=audit,
        gate=control,
        vault=the_vault,
        copies=copies,
        returns_dir=settings.resolved_data_dir / "returns",
        signer=lambda: _certificate_signer(settings),
        sla_hours=policy.deletion_sla_hours,
        clock=clock,
    )
    BuyerRights(deletions)
    backups = Backups(
        settings=settings,
        engine=engine,
        keys=keys,
        audit=audit,
        gate=control,
        copies=copies,
        retention=retention,
        chain=STORE_CHAIN,
        forget_keys=keyring.forget_all,  # a restore: no tenant key cached from before it is used after
        clock=clock,
    )
    the_connector = Connector(
        vault=the_vault,
        audit=audit,
        gate=control,
        client=lambda: SpApiClient(
            load_app(settings.resolved_sp_api_app_file, keys), timeout=settings.sp_api_timeout_seconds
        ),
        clock=clock,
    )
    the_governance = Governance(
        assets=Assets(audit=audit, gate=control, clock=clock),
        policies=Policies(audit=audit, gate=control, clock=clock),
        ropa=Ropa(
            catalog=CATALOG,
            audit=audit,
            gate=control,
            pii_days=policy.pii_retention_days_after_delivery,
            record_days=policy.non_pii_retention_days,
        ),
        reviews=Campaigns(
            audit=audit,
            gate=control,
            access=the_access,
            every_days=policy.access_review_days,
            unused_days=policy.inactive_account_days,
            signer=lambda: _certificate_signer(settings),
            log=audit,  # the security log it reads: last PII reveals, overdue notices recorded
            clock=clock,
        ),
        vulns=Vulnerabilities(
            audit=audit,
            gate=control,
            clock=clock,
            critical_days=policy.critical_vuln_fix_days,
            high_days=policy.high_vuln_fix_days,
        ),
    )
    return Deployment(
        settings,
        engine,
        keys,
        audit,
        the_vault,
        the_access,
        the_monitor,
        sinks,
        the_incidents,
        copies,
        retention,
        deletions,
        backups,
        the_connector,
        the_governance,
    )


def _certificate_signer(settings: Settings) -> tuple[Signer, Ed25519PublicKey]:
    """The key that signs deletion certificates and return manifests: the audit signing key."""
    key_file = settings.resolved_audit_signing_key_file
    return Signer(key_file), load_public_key(public_path(key_file))


def _secret_file(path: Path) -> bytes:
    """A secret kept in a file of its own (0600), made on first use."""
    if not path.exists():
        make_private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode())
    check_private(path)
    return path.read_bytes().strip()


def alarm_sinks(settings: Settings) -> dict[str, Sink]:
    """Where alarms go besides the alarm table: the application log always, and the webhook
    and e-mail when they are configured."""
    sinks: dict[str, Sink] = {"log": LogSink()}
    if settings.alarm_webhook_url:
        sinks["webhook"] = WebhookSink(
            settings.alarm_webhook_url,
            _secret_file(settings.resolved_alarm_webhook_secret_file),
            ca_file=settings.alarm_webhook_ca_file,
        )
    if settings.alarm_smtp_host and settings.alarm_smtp_sender:
        password = None
        if settings.alarm_smtp_password_file is not None:
            check_private(settings.alarm_smtp_password_file)
            password = settings.alarm_smtp_password_file.read_text().strip()
        sinks["email"] = SmtpSink(
            settings.alarm_smtp_host,
            settings.alarm_smtp_port,
            security=settings.alarm_smtp_security,
            sender=settings.alarm_smtp_sender,
            recipients=settings.alarm_smtp_recipients,
            ca_file=settings.alarm_smtp_ca_file,
            username=settings.alarm_smtp_username,
            password=password,
        )
    return sinks


_NO_ROLE = re.compile(r'role ".+" does not exist')


def _has_schema(engine: Engine) -> bool:
    """Whether the database holds SageVault's tables. On PostgreSQL the service role is made by the
    first migration: a server that has no such role holds no SageVault schema (its connections,
    which take the role, are refused: `role "..." does not exist`). Any other error is raised."""
    try:
        return "tenants" in inspect(engine).get_table_names()
    except DBAPIError as exc:
        diag = getattr(exc.orig, "diag", None)
        message = getattr(diag, "message_primary", None) or ""
        if getattr(exc.orig, "sqlstate", None) == "22023" and _NO_ROLE.fullmatch(message):
            return False
        raise


def init_deployment(settings: Settings, *, actor: Principal | None = None, **parts: Unpack[Parts]) -> Deployment:
    """Create the data dir, the master key file (local provider), the audit signing key and the schemas."""
    keys = parts.get("keys")
    data_dir = settings.resolved_data_dir
    key_file = settings.resolved_master_key_file
    if settings.key_provider == "local" and keys is None and key_file.exists():
        raise AlreadyInitialized(
            f"{data_dir} already holds a SageVault deployment (master key {key_file}); "
            "use it as it is, or point SAGEVAULT_DATA_DIR at a new directory"
        )
    make_private_dir(data_dir)
    check_private(data_dir)  # an existing directory others can read is refused before anything is put in it
    engine = parts.get("engine") or service_engine(settings.resolved_database_url, settings.database_pool_size)
    if _has_schema(engine):
        raise AlreadyInitialized(
            f"the database {engine.url.render_as_string(hide_password=True)} already holds a SageVault "
            "schema; use it as it is, or configure a new database"
        )
    if settings.key_provider == "local" and keys is None:
        create_local_key_file(key_file)
    if not settings.resolved_audit_signing_key_file.exists():
        create_signing_key(settings.resolved_audit_signing_key_file)
    if settings.tls_cert_file is None and not tls_files(settings.tls_dir).key.exists():
        create_local_tls(settings.tls_dir)
    _migrate(settings, behind_only=False)
    deployment = _build(settings, {**parts, "engine": engine})
    check_service_role(deployment.engine)
    check_service_role(deployment.audit.engine)
    with deployment.engine.begin() as conn:
        deployment.access.core.make_secret(conn)
    record_settings(deployment.audit, settings, actor, deployment.monitor.rule_fingerprints())
    return deployment


def open_deployment(settings: Settings, *, actor: Principal | None = None, **parts: Unpack[Parts]) -> Deployment:
    """Open an initialised deployment; NotInitialized says how to make one. A change of the
    effective settings since the last open is recorded, naming `actor` (who opens it)."""
    if settings.database_url is None and not Path(settings.resolved_database_url.removeprefix("sqlite:///")).exists():
        raise NotInitialized(f"no SageVault deployment in {settings.resolved_data_dir}; run `sagevault init` first")
    check_private(settings.resolved_data_dir)
    deployment = _build(settings, parts)
    if not _has_schema(deployment.engine):
        raise NotInitialized(
            f"the database {deployment.engine.url.render_as_string(hide_password=True)} has no SageVault "
            "schema; run `sagevault init` first"
        )
    _migrate(settings, behind_only=True)
    check_service_role(deployment.engine)
    check_service_role(deployment.audit.engine)
    with deployment.engine.begin() as conn:  # a deployment from before access control gets its secret now
        deployment.access.core.make_secret(conn)
    if settings.tls_cert_file is None and not tls_files(settings.tls_dir).key.exists():
        create_local_tls(settings.tls_dir)  # ... and one from before the service its local CA
    record_settings(deployment.audit, settings, actor, deployment.monitor.rule_fingerprints())
    return deployment


def open_audit(settings: Settings, *, audit_engine: Engine | None = None) -> AuditLog:
    """Only the audit log: what `audit verify`, `export` and `search` need. No master key is
    loaded, so an auditor can verify without being able to decrypt anything."""
    url = settings.resolved_audit_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise NotInitialized(f"no SageVault audit log in {settings.resolved_data_dir}; run `sagevault init` first")
    check_private(settings.resolved_data_dir)
    return _audit_log(settings, audit_engine)
