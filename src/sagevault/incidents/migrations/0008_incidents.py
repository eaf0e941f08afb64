"""Incident response: the plan's versions and approvals, incidents, their timeline, tasks,
evidence, custody, containment actions and reports.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_CHANGING = ("incidents", "incident_tasks")
_APPEND_ONLY = (
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
_SEQUENCES = (
    "irp_approvals_id_seq",
    "incidents_id_seq",
    "incident_timeline_id_seq",
    "incident_tasks_id_seq",
    "incident_evidence_id_seq",
    "incident_custody_id_seq",
    "incident_actions_id_seq",
)


def upgrade() -> None:
    op.create_table(
        "irp_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("version", name="pk_irp_versions"),
    )
    op.create_table(
        "irp_approvals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("approved_by", sa.String(128), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_review_due", sa.DateTime(timezone=True), nullable=False),
        sa.Column("infrastructure", sa.Text(), nullable=False),
        sa.Column("note", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_irp_approvals"),
    )
    op.create_table(
        "irp_notices",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_irp_notices"),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(12), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("amazon", sa.String(8), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(128), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("tenants", sa.Text(), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("records_affected", sa.BigInteger(), nullable=True),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("root_cause", sa.Text(), nullable=True),
        sa.Column("remediation", sa.Text(), nullable=True),
        sa.Column("corrective_controls", sa.Text(), nullable=True),
        sa.Column("notify_due", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clock_stage", sa.Integer(), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notify_reference", sa.String(200), nullable=True),
        sa.Column("draft_sha256", sa.String(64), nullable=True),
        sa.Column("impoc", sa.String(300), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(128), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
    )
    op.create_index("ix_incidents_state", "incidents", ["state"])
    op.create_table(
        "incident_alarms",
        sa.Column("incident_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("alarm_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("principal", sa.String(128), nullable=True),
        sa.Column("tenant", sa.String(128), nullable=True),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "alarm_id", name="pk_incident_alarms"),
    )
    op.create_index("ix_incident_alarms_alarm", "incident_alarms", ["alarm_id"])
    op.create_table(
        "incident_timeline",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incident_timeline"),
    )
    op.create_index("ix_incident_timeline_incident", "incident_timeline", ["incident_id"])
    op.create_table(
        "incident_tasks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(500), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("changed_by", sa.String(128), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_incident_tasks"),
    )
    op.create_index("ix_incident_tasks_incident", "incident_tasks", ["incident_id"])
    op.create_table(
        "incident_evidence",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("location", sa.String(500), nullable=False),
        sa.Column("collected_by", sa.String(120), nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incident_evidence"),
    )
    op.create_index("ix_incident_evidence_incident", "incident_evidence", ["incident_id"])
    op.create_table(
        "incident_custody",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=False),
        sa.Column("from_party", sa.String(120), nullable=False),
        sa.Column("to_party", sa.String(120), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purpose", sa.String(500), nullable=False),
        sa.Column("recorded_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incident_custody"),
    )
    op.create_index("ix_incident_custody_evidence", "incident_custody", ["evidence_id"])
    op.create_table(
        "incident_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(128), nullable=True),
        sa.Column("tenant", sa.String(128), nullable=True),
        sa.Column("result", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incident_actions"),
    )
    op.create_index("ix_incident_actions_incident", "incident_actions", ["incident_id"])
    op.create_table(
        "incident_reports",
        sa.Column("incident_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "format", name="pk_incident_reports"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON {', '.join(_CHANGING)} TO sagevault_app")
        # The record of the plan and of each incident is only ever added to.
        op.execute(f"GRANT SELECT, INSERT ON {', '.join(_APPEND_ONLY)} TO sagevault_app")
        op.execute(f"GRANT USAGE ON SEQUENCE {', '.join(_SEQUENCES)} TO sagevault_app")


def downgrade() -> None:
    for table in reversed((*_CHANGING, *_APPEND_ONLY)):
        op.drop_table(table)
