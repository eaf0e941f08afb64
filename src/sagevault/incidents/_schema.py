"""The incident response tables, in the vault's database: the plan's versions and approvals,
the incidents with their timeline, tasks, evidence and chain of custody, containment actions and
reports.

All but `incidents` and `incident_tasks` are append-only (`APPEND_ONLY`): the service only
inserts into them, and on PostgreSQL the service's role is granted nothing else on them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text

from sagevault.db import NAMING_CONVENTION

incidents_metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Every version of the plan ever written (TOML text as stored, its SHA-256), who wrote it and why.
irp_versions = Table(
    "irp_versions",
    incidents_metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("body", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("author", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("note", String(500), nullable=True),
)

# Every approval (a review approves the version in force again): who, when, when the next review
# is due, and the infrastructure it was approved for (master key, database, schema revision): a
# change of those is a major change. The plan in force is the version of the newest approval.
irp_approvals = Table(
    "irp_approvals",
    incidents_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", Integer, nullable=False),
    Column("approved_by", String(128), nullable=False),
    Column("approved_at", DateTime(timezone=True), nullable=False),
    Column("next_review_due", DateTime(timezone=True), nullable=False),
    Column("infrastructure", Text, nullable=False),
    Column("note", String(500), nullable=True),
)

# Notices already given (plan review due, one per version and reason): each is given once.
irp_notices = Table(
    "irp_notices",
    incidents_metadata,
    Column("key", String(200), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

incidents = Table(
    "incidents",
    incidents_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("severity", String(12), nullable=False),
    Column("state", String(16), nullable=False),
    Column("title", String(200), nullable=False),
    Column("amazon", String(8), nullable=False),  # yes | possible | no
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("opened_by", String(128), nullable=False),
    Column("plan_version", Integer, nullable=False),
    Column("tenants", Text, nullable=False),  # JSON list of tenant ids
    Column("categories", Text, nullable=False),  # JSON list of data categories
    Column("records_affected", BigInteger, nullable=True),
    Column("roles", Text, nullable=False),  # JSON {role id: who}
    Column("description", Text, nullable=True),
    Column("root_cause", Text, nullable=True),
    Column("remediation", Text, nullable=True),
    Column("corrective_controls", Text, nullable=True),
    Column("notify_due", DateTime(timezone=True), nullable=True),
    Column("clock_stage", Integer, nullable=False),  # 0, 1 (first warning), 2 (second), 3 (overdue)
    Column("notified_at", DateTime(timezone=True), nullable=True),
    Column("notify_reference", String(200), nullable=True),
    Column("draft_sha256", String(64), nullable=True),
    Column("impoc", String(300), nullable=True),  # who the draft was from: "Name <address>" (staff contact)
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("closed_by", String(128), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_incidents_state", incidents.c.state)

incident_alarms = Table(
    "incident_alarms",
    incidents_metadata,
    Column("incident_id", Integer, primary_key=True),
    Column("alarm_id", Integer, primary_key=True),
    Column("rule", String(64), nullable=False),
    Column("principal", String(128), nullable=True),
    Column("tenant", String(128), nullable=True),
    Column("linked_at", DateTime(timezone=True), nullable=False),
)
Index("ix_incident_alarms_alarm", incident_alarms.c.alarm_id)

incident_timeline = Table(
    "incident_timeline",
    incidents_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("detail", Text, nullable=False),  # JSON
)
Index("ix_incident_timeline_incident", incident_timeline.c.incident_id)

incident_tasks = Table(
    "incident_tasks",
    incidents_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("text", String(500), nullable=False),
    Column("state", String(8), nullable=False),  # open | done | skipped
    Column("changed_by", String(128), nullable=True),
    Column("changed_at", DateTime(timezone=True), nullable=True),
    Column("note", String(500), nullable=True),
)
Index("ix_incident_tasks_incident", incident_tasks.c.incident_id)

incident_evidence = Table(
    "incident_evidence",
    incidents_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, nullable=False),
    Column("label", String(200), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=True),
    Column("location", String(500), nullable=False),
    Column("collected_by", String(120), nullable=False),
    Column("collected_at", DateTime(timezone=True), nullable=False),
    Column("recorded_by", String(128), nullable=False),
)
Index("ix_incident_evidence_incident", incident_evidence.c.incident_id)

incident_custody = Table(
    "incident_custody",
    incidents_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("evidence_id", Integer, nullable=False),
    Column("from_party", String(120), nullable=False),
    Column("to_party", String(120), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("purpose", String(500), nullable=False),
    Column("recorded_by", String(128), nullable=False),
)
Index("ix_incident_custody_evidence", incident_custody.c.evidence_id)

incident_actions = Table(
    "incident_actions",
    incidents_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String(128), nullable=True),
    Column("tenant", String(128), nullable=True),
    Column("result", String(500), nullable=False),
)
Index("ix_incident_actions_incident", incident_actions.c.incident_id)

incident_reports = Table(
    "incident_reports",
    incidents_metadata,
    Column("incident_id", Integer, primary_key=True),
    Column("format", String(8), primary_key=True),  # json | markdown
    Column("body", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("written_at", DateTime(timezone=True), nullable=False),
)

# Only ever added to: the service's role may not change or delete their rows on PostgreSQL.
APPEND_ONLY = (
    "irp_versions",
    "irp_approvals",
    "irp_notices",
    "incident_alarms",
    "incident_timeline",
    "incident_evidence",
    "incident_custody",
    "incident_actions",
    "incident_reports",
)
