"""The access tables: principals and their credentials, grants, allow-lists, kill switches and
the one-row access state, as SQLAlchemy Core. The Alembic revisions in `migrations/` create the
same schema (a test compares them)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)

from sagevault.db import NAMING_CONVENTION

access_metadata = MetaData(naming_convention=NAMING_CONVENTION)

# A person or a service account. `id` is the pseudonymous id events carry (usr_/svc_ + 12
# random consonants, so it can never look like a phone number);
# login and e-mail stay in this table and never reach an event or a log line.
principals = Table(
    "principals",
    access_metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(8), nullable=False),  # person | service
    Column("login", String(64), nullable=False, unique=True),
    Column("email", String(254), nullable=True),
    Column("manager_id", String(40), nullable=True),  # people: who answers for their access
    Column("owner_id", String(40), nullable=True),  # services: the person who owns it
    Column("purpose", String(200), nullable=True),  # services: what it is for
    Column("status", String(12), nullable=False),  # enrolling | active | disabled
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("enrolment_hash", LargeBinary(32), nullable=True),
    Column("enrolment_expires_at", DateTime(timezone=True), nullable=True),
    Column("password_hash", String(200), nullable=True),
    Column("password_set_at", DateTime(timezone=True), nullable=True),
    Column("totp_secret", LargeBinary, nullable=True),  # wrapped by the master key
    Column("totp_last_step", BigInteger, nullable=True),  # replay guard
    Column("last_active_at", DateTime(timezone=True), nullable=True),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    # A leaver: from this time the account is disabled (by the `leavers` job, hourly: within
    # the policy's `leaver_disable_hours`, 24), whatever else has happened to it.
    Column("leaving_at", DateTime(timezone=True), nullable=True),
    Column("locked_until", DateTime(timezone=True), nullable=True),
    Column("lock_count", Integer, nullable=False, server_default=text("0")),
    # people: the admin who saw their live enrolment secret (add or reset); None for the operator
    Column("credential_issued_by", String(64), nullable=True),
)

password_history = Table(
    "password_history",
    access_metadata,
    Column("principal_id", String(40), ForeignKey("principals.id"), primary_key=True),
    Column("set_at", DateTime(timezone=True), primary_key=True),
    Column("password_hash", String(200), nullable=False),
)

recovery_codes = Table(
    "recovery_codes",
    access_metadata,
    Column("principal_id", String(40), ForeignKey("principals.id"), primary_key=True),
    Column("code_hash", LargeBinary(32), primary_key=True),
    Column("used_at", DateTime(timezone=True), nullable=True),
)

# Service credentials: `id` is the public part of the key; only a keyed hash of the secret part
# is stored.
api_keys = Table(
    "api_keys",
    access_metadata,
    Column("id", String(24), primary_key=True),
    Column("principal_id", String(40), ForeignKey("principals.id"), nullable=False, index=True),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("scopes", JSON, nullable=False),  # the most this key may do; the grants still decide
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)

sessions = Table(
    "sessions",
    access_metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("principal_id", String(40), ForeignKey("principals.id"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # A session the web console started: when it was last used (the console's idle timeout); NULL for
    # sessions of the API, which the console does not accept.
    Column("console_seen_at", DateTime(timezone=True), nullable=True),
)

# A principal holds a role for some tenants ("*" = all) in an optional window. Grants of roles
# that reach PII or keys stay `pending` until a second administrator approves them.
grants = Table(
    "grants",
    access_metadata,
    Column("id", String(24), primary_key=True),
    Column("principal_id", String(40), ForeignKey("principals.id"), nullable=False, index=True),
    Column("role", String(32), nullable=False),
    Column("tenants", JSON, nullable=False),
    Column("not_before", DateTime(timezone=True), nullable=True),
    Column("not_after", DateTime(timezone=True), nullable=True),
    Column("status", String(12), nullable=False),  # pending | active | revoked
    Column("requested_by", String(64), nullable=False),
    Column("approved_by", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

allowlist = Table(
    "allowlist",
    access_metadata,
    Column("id", String(24), primary_key=True),
    Column("scope", String(12), nullable=False),  # global | role | principal
    Column("target", String(40), nullable=False),  # "" | role name | principal id
    Column("cidr", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=False),
    UniqueConstraint("scope", "target", "cidr"),
)

kill_switches = Table(
    "kill_switches",
    access_metadata,
    Column("name", String(32), primary_key=True),
    Column("tenant_id", String(64), primary_key=True),  # "*" = every tenant
    Column("engaged", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("changed_by", String(64), nullable=False),
)

# One row: a counter every access change bumps (so each process knows its cached decisions are
# stale) and the access secret (keyed hashes of API keys, codes, sessions, client IPs), wrapped
# by the master key.
access_state = Table(
    "access_state",
    access_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("generation", BigInteger, nullable=False),
    Column("secret", LargeBinary, nullable=True),
    Column("master_key_id", String(200), nullable=True),
)
