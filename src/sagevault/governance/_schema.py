"""The governance tables: the asset inventory and its disposals, the policy register, the
vulnerability register, and access-review campaigns with their items. Each part of the package
owns its tables here; the Alembic revisions in `migrations/` create the same schema."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from sagevault.db import NAMING_CONVENTION

governance_metadata = MetaData(naming_convention=NAMING_CONVENTION)

# --- assets (`_assets.py`) ---------------------------------------------------------------------
# Everything that holds or reaches Amazon Information. `source`: "deployment" for the parts the
# deployment registers itself (its database, key provider, backup locations, sinks), "manual" for
# the rest. `state`: active or disposed; a disposal keeps the row and writes `disposal` (an SP 800-88
# style record: method, media, verified by, at).
assets = Table(
    "assets",
    governance_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(120), nullable=False, unique=True),
    Column("kind", String(24), nullable=False),
    Column("owner", String(120), nullable=False),
    Column("environment", String(24), nullable=False),
    Column("region", String(40), nullable=True),
    Column("amazon_data", Boolean, nullable=False),  # holds or reaches Amazon Information
    Column("encrypted_at_rest", Boolean, nullable=True),  # None: unknown
    Column("mfa", Boolean, nullable=True),
    Column("source", String(12), nullable=False),
    Column("state", String(12), nullable=False),
    Column("notes", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("last_reviewed_at", DateTime(timezone=True), nullable=True),
    Column("last_reviewed_by", String(128), nullable=True),
    Column("next_review_at", DateTime(timezone=True), nullable=False),
    Column("disposed_at", DateTime(timezone=True), nullable=True),
    Column("disposal", JSON, nullable=True),
)

# --- policy register (`_policies.py`) -----------------------------------------------------------
# One row per version of a company document (this DPP, the IR plan, others), with its SHA-256.
policies = Table(
    "policies",
    governance_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(120), nullable=False),
    Column("version", String(40), nullable=False),
    Column("owner", String(120), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("approved_at", DateTime(timezone=True), nullable=True),
    Column("approved_by", String(128), nullable=True),
    Column("next_review_at", DateTime(timezone=True), nullable=True),
    # When the overdue review was recorded (governance:policy:overdue), once per occasion: cleared
    # when the version is approved again.
    Column("overdue_noted_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("name", "version"),
)

# --- vulnerability register (`_vulns.py`) -------------------------------------------------------
# One row per (package, installed version, advisory) found; closed when a later scan no longer finds it.
vulnerabilities = Table(
    "vulnerabilities",
    governance_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("package", String(120), nullable=False),
    Column("version", String(60), nullable=False),
    Column("advisory", String(80), nullable=False),
    Column("aliases", JSON, nullable=False),
    Column("severity", String(12), nullable=False),  # critical, high, medium, low, unknown
    Column("fix_versions", JSON, nullable=False),
    Column("found_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("overdue_noted_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("package", "version", "advisory"),
)

# --- access-review campaigns (`_reviews.py`) ----------------------------------------------------
# One row per campaign. `report`: the closed campaign's signed report ({"report", "signature"}).
# `overdue_noted_at`: when its being past due was recorded (once); `reminder_stage`: reminders sent
# (1: a week before the due date, 2: a day before).
review_campaigns = Table(
    "review_campaigns",
    governance_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", String(12), nullable=False),  # open, closed
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("started_by", String(128), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("default_decision", String(12), nullable=False),  # keep, revoke, none
    Column("unused_days", Integer, nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("closed_by", String(128), nullable=True),
    Column("report", JSON, nullable=True),  # the closed campaign's report, signed
    Column("report_sha256", String(64), nullable=True),
    Column("overdue_noted_at", DateTime(timezone=True), nullable=True),
    Column("reminder_stage", Integer, nullable=False, server_default=text("0")),
)

# One item: a grant or an API key of one principal (person or service account) at the start.
# Ids only: the subject's login and e-mail stay in the access tables.
review_items = Table(
    "review_items",
    governance_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", Integer, ForeignKey("review_campaigns.id"), nullable=False, index=True),
    Column("subject", String(128), nullable=False),  # the principal id
    Column("subject_kind", String(12), nullable=False),  # person, service
    Column("subject_status", String(12), nullable=False),  # enrolling, active, disabled (at the start)
    Column("item_kind", String(12), nullable=False),  # grant, api_key
    Column("item_ref", String(128), nullable=False),  # the grant or key id
    Column("item_state", String(12), nullable=False),  # grant: pending, active; key: live; or expired
    Column("role", String(40), nullable=True),  # grants
    Column("tenants", JSON, nullable=True),  # grants: tenant ids or ["*"]
    Column("scopes", JSON, nullable=True),  # API keys: the most the key may do
    Column("created_at", DateTime(timezone=True), nullable=True),  # the grant's or key's
    Column("last_login_at", DateTime(timezone=True), nullable=True),  # the account's last log-in or key use
    Column("last_used_at", DateTime(timezone=True), nullable=True),  # API keys: this key's last use
    Column("last_reveal_at", DateTime(timezone=True), nullable=True),  # the subject's last PII reveal
    Column("recommendation", String(12), nullable=False),  # keep, revoke
    Column("reason", String(200), nullable=False),  # a code: in_use, unused, never_used, expired, ...
    Column("decision", String(12), nullable=True),  # keep, revoke, change
    Column("decided_by", String(128), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("justification", Text, nullable=True),
    Column("by_default", Boolean, nullable=False),
    Column("note", String(40), nullable=True),  # a code: last_admin, already_revoked
    Column("applied", Boolean, nullable=False),
)
