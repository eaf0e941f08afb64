"""The monitor's tables, in the vault's database: where the detector stopped, the baselines it
learned, the alarms, the outbox that feeds the sinks, and the keyed canary registry."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text

from sagevault.db import NAMING_CONVENTION

monitor_metadata = MetaData(naming_convention=NAMING_CONVENTION)

# One row: the last security event (seq) the detector has evaluated. It moves in the same
# transaction as the alarms those events raised, so a restart neither skips nor repeats one.
monitor_cursor = Table(
    "monitor_cursor",
    monitor_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
)

# What a rule learned about one group (a principal's per-minute rate, its reveal volume): JSON.
monitor_baselines = Table(
    "monitor_baselines",
    monitor_metadata,
    Column("rule", String(64), primary_key=True),
    Column("group_key", String(200), primary_key=True),
    Column("state", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

alarms = Table(
    "alarms",
    monitor_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(64), nullable=False),
    Column("rule_version", Integer, nullable=False),
    Column("clause", String(16), nullable=False),
    Column("severity", String(12), nullable=False),
    Column("title", String(200), nullable=False),
    Column("state", String(16), nullable=False),  # open | acknowledged | resolved | false_positive
    Column("group_key", String(200), nullable=False),
    Column("principal", String(128), nullable=True),
    Column("tenant", String(128), nullable=True),
    Column("first_at", DateTime(timezone=True), nullable=False),
    Column("last_at", DateTime(timezone=True), nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("evidence", Text, nullable=False),  # JSON: event seqs, counts, the baseline compared with
    Column("responses", Text, nullable=False),  # JSON: what the rule's responses did
    Column("changed_by", String(128), nullable=True),
    Column("changed_at", DateTime(timezone=True), nullable=True),
    Column("note", String(500), nullable=True),
    Index("ix_alarms_state", "state"),
    Index("ix_alarms_rule_group", "rule", "group_key"),
)

# One row per alarm and sink: retried with backoff until delivered.
alarm_outbox = Table(
    "alarm_outbox",
    monitor_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alarm_id", Integer, nullable=False),
    Column("sink", String(32), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("last_error", String(200), nullable=True),
    Index("ix_alarm_outbox_due", "delivered_at", "next_at"),
)

# Which records are canaries: HMAC(canary key, tenant/record id). The key is a file outside the
# database, so a reader of the database (or of the API) cannot tell a canary from an order.
canary_tokens = Table(
    "canary_tokens",
    monitor_metadata,
    Column("token", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Index("ix_canary_tokens_tenant", "tenant_id"),
)
