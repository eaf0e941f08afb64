from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import limits
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from sagevault.errors import ConfigError

from ._channels import database_problem, https_problem, redis_problem

# Each policy number with the direction in which it may move and the limit it may not pass.
# "max": the setting may be lowered (stricter) but not raised above the limit;
# "min": the setting may be raised (stricter) but not lowered below the limit.
_POLICY_LIMITS: dict[str, tuple[Literal["max", "min"], int, str]] = {
    "deletion_sla_hours": ("max", 72, "Amazon deletion requests must be done within 72 hours"),
    "live_copies_days": ("max", 90, "live copies and backups must be gone within 90 days"),
    "pii_retention_days_after_delivery": ("max", 30, "PII may be kept 30 days after delivery"),
    "non_pii_retention_days": ("max", 548, "non-PII may be kept 18 months"),
    "security_log_retention_days": ("min", 365, "security logs must be kept at least 12 months (Amazon's DPP)"),
    "lockout_threshold": ("max", 10, "accounts must lock after at most 10 failed log-ins"),
    "password_min_length": ("min", 12, "passwords must have at least 12 characters"),
    "password_max_age_days": ("max", 365, "passwords must be changed at least every 365 days"),
    "password_min_age_days": ("min", 1, "passwords may be changed at most once a day"),
    "password_history": ("min", 10, "the last 10 passwords may not be reused"),
    "access_review_days": ("max", 90, "access must be reviewed at least every 90 days"),
    "leaver_disable_hours": ("max", 24, "leavers must be disabled within 24 hours"),
    "api_key_max_age_days": ("max", 365, "programmatic credentials must rotate within 365 days"),
    "inactive_account_days": ("max", 90, "accounts unused for 90 days must be flagged for review"),
    "ir_plan_review_days": ("max", 183, "the incident response plan must be reviewed every 6 months"),
    "amazon_notify_hours": ("max", 24, "Amazon must be told of an incident within 24 hours"),
    "critical_vuln_fix_days": ("max", 7, "critical vulnerabilities must be fixed within 7 days"),
    "high_vuln_fix_days": ("max", 30, "high vulnerabilities must be fixed within 30 days"),
}


class PolicyProfile(BaseModel):
    """The numbers SageVault enforces: the stricter of the seed DPP and Amazon's current DPP."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deletion_sla_hours: int = 72
    live_copies_days: int = 90
    pii_retention_days_after_delivery: int = 30
    non_pii_retention_days: int = 548
    security_log_retention_days: int = 365
    lockout_threshold: int = 10
    password_min_length: int = 12
    password_max_age_days: int = 365
    password_min_age_days: int = 1
    password_history: int = 10
    access_review_days: int = 90
    leaver_disable_hours: int = 24
    api_key_max_age_days: int = 365
    inactive_account_days: int = 90
    ir_plan_review_days: int = 183
    amazon_notify_hours: int = 24
    # An order whose payload gives no delivery date (nor a latest promised one) is taken as
    # delivered this many days after its purchase, for the 30-day PII retention.
    delivery_margin_days: int = 30
    critical_vuln_fix_days: int = 7
    high_vuln_fix_days: int = 30
    # When PII may be revealed (the pii-outside-hours rule alarms outside them), in `timezone`.
    pii_access_hours: str = "00:00-24:00"
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _within_policy(self) -> PolicyProfile:
        problems = []
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]|24):[0-5]\d", self.pii_access_hours) or (
            self.pii_access_hours[6:] <= self.pii_access_hours[:5]
        ):
            problems.append(f"policy.pii_access_hours={self.pii_access_hours!r} must look like 08:00-20:00")
        try:
            ZoneInfo(self.timezone)
        except (ValueError, ZoneInfoNotFoundError):
            problems.append(f"policy.timezone={self.timezone!r} is not a time zone name such as Europe/Berlin")
        for name, (direction, limit, why) in _POLICY_LIMITS.items():
            value = getattr(self, name)
            if value <= 0 or (direction == "max" and value > limit) or (direction == "min" and value < limit):
                bound = f"<= {limit}" if direction == "max" else f">= {limit}"
                problems.append(f"policy.{name}={value} is unsafe: {why} (set it {bound})")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Settings(BaseSettings):
    """Deployment settings. Paths are resolved against the data dir."""

    model_config = SettingsConfigDict(env_prefix="SAGEVAULT_", env_nested_delimiter="__", extra="forbid", frozen=True)

    data_dir: Path = Path("var")
    database_url: str | None = None
    # PostgreSQL: the tables' owner, for migrations only (`init`, upgrades). The service connects
    # with `database_url` and takes the role `sagevault_app` (no DDL; the security log append-only).
    database_admin_url: str | None = None
    # PostgreSQL: connections each process keeps open to each database (the vault's, the security
    # log's); beyond them up to as many again are opened for a burst and closed after it (opening
    # one costs a PostgreSQL backend). The API runs up to 80 requests at a time per process (40
    # reveals, 40 others): those that find no connection wait for one (30 s, then a 503).
    database_pool_size: int = 20
    key_provider: Literal["local", "aws-kms"] = "local"
    master_key_file: Path | None = None
    kms_key_id: str | None = None
    # A master key rotation under way: the new KMS key, which wraps; `kms_key_id` still unwraps.
    kms_next_key_id: str | None = None
    kms_endpoint_url: str | None = None
    kms_region: str = "us-east-1"
    key_cache_ttl_seconds: float = 300.0
    ingest_batch_size: int = 1000
    audit_database_url: str | None = None
    audit_database_admin_url: str | None = None  # as database_admin_url, for a security log of its own
    audit_signing_key_file: Path | None = None
    audit_digest_every: int = 1000
    # The longest an appended event waits for a signed digest: each process signs the chain head
    # this long after the first event it appended since its last digest (and at close). The
    # scheduler's audit-digest job (every minute, `serve`) covers what other processes left.
    audit_digest_seconds: float = 5.0
    # Log-in throttling: "memory://" for the embedded deployment, "redis://host:6379/0" (or
    # "rediss://") shared by every node of a distributed one. Unreachable = logins refused.
    rate_limit_storage_url: str = "memory://"
    rate_limit_key_prefix: str = "sagevault"
    login_ip_failures: int = 30  # failed log-ins per source address per 15 minutes
    login_spray_accounts: int = 10  # distinct accounts failed from one source per 15 minutes
    login_global_failures_per_minute: int = 600
    lockout_base_minutes: int = 15  # first lock; each further lock doubles it, up to 24 hours
    session_hours: int = 12
    trusted_proxies: list[str] = []  # CIDRs whose X-Forwarded-For is believed
    password_hash_memory_kib: int = 65536  # Argon2id
    password_hash_time_cost: int = 3
    password_hash_parallelism: int = 4
    # TLS for the service: a configured certificate and key (PEM), or the local CA's that
    # `sagevault init` makes under <data_dir>/tls.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Mutual TLS: with a CA certificate (PEM) here, every client must present a certificate it
    # signed (`sagevault tls client-cert` issues them from the local CA), on top of its credential.
    tls_client_ca_file: Path | None = None
    api_max_body_bytes: int = 10 * 1024 * 1024  # larger request bodies are refused (413)
    # API request rates (`limits` notation), counted in rate_limit_storage_url: every principal's
    # total, and per principal on a route ("METHOD /api/v1/path/{template}" -> limit).
    api_rate_per_principal: str = "6000 per minute"
    # Refused requests (no, wrong or expired credential) one source address may make before it
    # is refused unheard, with no credential check and no further event, until the window moves.
    api_refusals_per_source: str = "120 per minute"
    api_route_rates: dict[str, str] = {
        "POST /api/v1/tenants/{tenant_id}/orders/{order_id}/reveal": "3000 per minute",
        "POST /api/v1/tenants/{tenant_id}/reveal": "60 per minute",  # up to 500 orders each
        "POST /api/v1/tenants/{tenant_id}/search": "600 per minute",
        "GET /api/v1/audit/export": "30 per minute",
        "POST /api/v1/audit/verify": "2 per minute",
    }
    policy: PolicyProfile = PolicyProfile()
    # Alarm sinks besides the alarm table and the application log (docs/monitoring.md). The
    # webhook is HTTPS only, its bodies signed with HMAC-SHA256 under the secret file (made at
    # first use, 0600); e-mail goes over SMTP with STARTTLS or implicit TLS, never in clear.
    alarm_webhook_url: str | None = None
    alarm_webhook_secret_file: Path | None = None
    alarm_webhook_ca_file: Path | None = None
    alarm_smtp_host: str | None = None
    alarm_smtp_port: int = 587
    alarm_smtp_security: Literal["starttls", "tls"] = "starttls"
    alarm_smtp_sender: str | None = None
    alarm_smtp_recipients: list[str] = []
    alarm_smtp_ca_file: Path | None = None
    alarm_smtp_username: str | None = None
    alarm_smtp_password_file: Path | None = None
    # The SP-API connector (docs/connector.md): the application's LWA credentials live in a TOML file
    # of their own (0600; `sagevault connect app` writes the secret wrapped by the master key).
    sp_api_app_file: Path | None = None
    sp_api_sync_minutes: int = 5  # how often the sp-api-sync job pulls new and updated orders
    sp_api_timeout_seconds: float = 30.0  # one HTTP exchange with SP-API or LWA

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _config_file()
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @model_validator(mode="after")
    def _checks(self) -> Settings:
        if not 0 < self.key_cache_ttl_seconds <= 3600:
            raise ValueError(
                f"key_cache_ttl_seconds={self.key_cache_ttl_seconds} is unsafe: unwrapped keys may stay "
                "in memory for at most 3600 seconds (set 1..3600)"
            )
        if not 1 <= self.audit_digest_every <= 1_000_000:
            raise ValueError("audit_digest_every must be between 1 and 1000000")
        if not 1 <= self.audit_digest_seconds <= 3600:
            raise ValueError(
                "audit_digest_seconds must be between 1 and 3600: the unsigned tail of the log stays short"
            )
        if not 1 <= self.sp_api_sync_minutes <= 1440 or not 1 <= self.sp_api_timeout_seconds <= 300:
            raise ValueError("sp_api_sync_minutes must be 1..1440 and sp_api_timeout_seconds 1..300")
        if not 1 <= self.database_pool_size <= 200:
            raise ValueError("database_pool_size must be between 1 and 200 (connections per process and database)")
        if not 1 <= self.ingest_batch_size <= 100_000:
            raise ValueError("ingest_batch_size must be between 1 and 100000")
        problems = [
            *(
                database_problem(n, u)
                for n, u in (
                    ("database_url", self.database_url),
                    ("database_admin_url", self.database_admin_url),
                    ("audit_database_url", self.audit_database_url),
                    ("audit_database_admin_url", self.audit_database_admin_url),
                )
                if u
            ),
            redis_problem("rate_limit_storage_url", self.rate_limit_storage_url),
            https_problem("kms_endpoint_url", self.kms_endpoint_url) if self.kms_endpoint_url else None,
            _webhook_problem(self.alarm_webhook_url) if self.alarm_webhook_url is not None else None,
        ]
        found = [p for p in problems if p]
        if found:
            raise ValueError("; ".join(found))
        if self.alarm_smtp_host and not (self.alarm_smtp_sender and self.alarm_smtp_recipients):
            raise ValueError("alarm_smtp_host needs alarm_smtp_sender and alarm_smtp_recipients (who gets the alarms)")
        if self.key_provider == "aws-kms" and not self.kms_key_id:
            raise ValueError("key_provider=aws-kms needs kms_key_id (SAGEVAULT_KMS_KEY_ID)")
        return self

    @model_validator(mode="after")
    def _access_checks(self) -> Settings:
        if self.password_hash_memory_kib < 19456 or self.password_hash_time_cost < 2:
            raise ValueError(
                "password hashing below Argon2id m=19456 KiB, t=2 (OWASP's floor) is unsafe; raise "
                "password_hash_memory_kib / password_hash_time_cost"
            )
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError:
                raise ValueError(f"trusted_proxies: {cidr!r} is not a network in CIDR form (e.g. 10.0.0.0/8)") from None
        if not 1 <= self.session_hours <= 24:
            raise ValueError("session_hours must be between 1 and 24")
        if not self.rate_limit_storage_url.startswith(("memory://", "redis://", "rediss://", "redis+unix://")):
            raise ValueError("rate_limit_storage_url must be memory://, redis://, rediss:// or redis+unix://")
        for name in (
            "login_ip_failures",
            "login_spray_accounts",
            "login_global_failures_per_minute",
            "lockout_base_minutes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for where, rate in [
            ("api_rate_per_principal", self.api_rate_per_principal),
            ("api_refusals_per_source", self.api_refusals_per_source),
            *((f"api_route_rates[{k!r}]", v) for k, v in self.api_route_rates.items()),
        ]:
            try:
                limits.parse(rate)
            except ValueError:
                raise ValueError(f"{where}: {rate!r} is not a rate; write e.g. '600 per minute'") from None
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both, or neither for the local CA's")
        return self

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'sagevault.db'}"

    @property
    def resolved_audit_database_url(self) -> str:
        """The embedded deployment keeps events in a database file of their own; a server
        database (PostgreSQL) holds them beside the vault's tables unless told otherwise."""
        if self.audit_database_url:
            return self.audit_database_url
        if self.database_url and not self.database_url.startswith("sqlite"):
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'audit.db'}"

    @property
    def resolved_database_admin_url(self) -> str:
        """Where the migrations of the vault's database run: the owner's URL, or the service's."""
        return self.database_admin_url or self.resolved_database_url

    @property
    def resolved_audit_database_admin_url(self) -> str:
        """Where the security log's migrations run (the vault database's owner when they share it)."""
        if self.audit_database_admin_url:
            return self.audit_database_admin_url
        if self.resolved_audit_database_url == self.resolved_database_url:
            return self.resolved_database_admin_url
        return self.resolved_audit_database_url

    @property
    def resolved_audit_signing_key_file(self) -> Path:
        if self.audit_signing_key_file is not None:
            path = self.audit_signing_key_file.expanduser()
            return (path if path.is_absolute() else self.resolved_data_dir / path).resolve()
        return self.resolved_data_dir / "keys" / "audit-signing.key"

    @property
    def digest_file(self) -> Path:
        return self.resolved_data_dir / "audit" / "digests.jsonl"

    @property
    def tls_dir(self) -> Path:
        return self.resolved_data_dir / "tls"

    @property
    def resolved_tls_cert_file(self) -> Path:
        return self._in_data_dir(self.tls_cert_file) if self.tls_cert_file else self.tls_dir / "server.pem"

    @property
    def resolved_tls_client_ca_file(self) -> Path | None:
        return self._in_data_dir(self.tls_client_ca_file) if self.tls_client_ca_file else None

    @property
    def resolved_tls_key_file(self) -> Path:
        return self._in_data_dir(self.tls_key_file) if self.tls_key_file else self.tls_dir / "server.key"

    def _in_data_dir(self, path: Path) -> Path:
        path = path.expanduser()
        return (path if path.is_absolute() else self.resolved_data_dir / path).resolve()

    @property
    def rules_dir(self) -> Path:
        """Rule files that replace or add to the shipped ones (`sagevault rules list` shows which)."""
        return self.resolved_data_dir / "rules"

    @property
    def backup_dir(self) -> Path:
        """Where `sagevault backup create` writes backups unless told otherwise."""
        return self.resolved_data_dir / "backups"

    @property
    def backup_key_file(self) -> Path:
        """The deployment's backup identity (age X25519, 0600): backups are encrypted to it."""
        return self.resolved_data_dir / "keys" / "backup.key"

    @property
    def resolved_sp_api_app_file(self) -> Path:
        if self.sp_api_app_file is not None:
            return self._in_data_dir(self.sp_api_app_file)
        return self.resolved_data_dir / "keys" / "sp-api-app.toml"

    @property
    def canary_key_file(self) -> Path:
        return self.resolved_data_dir / "keys" / "canary.key"

    @property
    def resolved_alarm_webhook_secret_file(self) -> Path:
        if self.alarm_webhook_secret_file is not None:
            return self._in_data_dir(self.alarm_webhook_secret_file)
        return self.resolved_data_dir / "keys" / "alarm-webhook.secret"

    @property
    def resolved_master_key_file(self) -> Path:
        if self.master_key_file is not None:
            path = self.master_key_file.expanduser()
            return (path if path.is_absolute() else self.resolved_data_dir / path).resolve()
        return self.resolved_data_dir / "keys" / "master.key"


def _webhook_problem(url: str) -> str | None:
    parts = urlsplit(url)
    try:
        (parts.hostname or "").encode("idna")
    except UnicodeError:
        return "alarm_webhook_url has a host name that is not valid (an empty or over-long label); fix the URL"
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        return (
            "alarm_webhook_url must be an https:// URL with a host and no user or password in it "
            "(alarms never go in clear)"
        )
    return None


def _config_file() -> Path | None:
    explicit = os.environ.get("SAGEVAULT_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"SAGEVAULT_CONFIG points to {path}, which is not a file; fix the path")
        return path
    default = Path("sagevault.toml")
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Settings from environment and TOML, or a ConfigError that lists every problem in one line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(msg if msg.startswith(("policy.", where)) else f"{where}: {msg}")
        raise ConfigError("refusing to start: " + "; ".join(problems)) from None
