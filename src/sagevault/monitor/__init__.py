"""Monitoring: detection rules over the security event log, baselines, canary records, alarms
and the sinks that carry them (DPP 4, its second half).

    rules (TOML, `monitor/rules/` + `<data_dir>/rules/`) -> Detector (per kind, in memory)
    -> Monitor.evaluate (alarms, outbox, baselines, cursor: one unit of work)
    -> sinks (alarm table, application log, webhook, e-mail) fed from the outbox

The follower that reads the event table and the outbox delivery run on the jobs edge
(`sagevault.jobs.Watch`); `MIGRATIONS` is where this package's tables are created.
"""

from __future__ import annotations

from pathlib import Path

from sagevault.audit import Gate, check_scope  # re-exported: the monitor's callers took them from here

from ._canary import CanaryRegistry, create_canary_key, fake_orders
from ._detect import Detector, Firing, Seen
from ._rules import FIELDS, Kind, Response, Rule, Severity, load_rules, parse_rule
from ._schema import alarm_outbox, alarms, canary_tokens, monitor_baselines, monitor_cursor, monitor_metadata
from ._service import MONITOR, Alarm, Evaluated, IncidentOpener, Monitor, Responder, State
from ._sinks import LogSink, MemorySink, Sink, SmtpSink, WebhookSink, sign_webhook, verify_webhook

MIGRATIONS = Path(__file__).with_name("migrations")

__all__ = [
    "FIELDS",
    "MIGRATIONS",
    "MONITOR",
    "Alarm",
    "CanaryRegistry",
    "Detector",
    "Evaluated",
    "Firing",
    "Gate",
    "IncidentOpener",
    "Kind",
    "LogSink",
    "MemorySink",
    "Monitor",
    "Responder",
    "Response",
    "Rule",
    "Seen",
    "Severity",
    "Sink",
    "SmtpSink",
    "State",
    "WebhookSink",
    "alarm_outbox",
    "alarms",
    "canary_tokens",
    "check_scope",
    "create_canary_key",
    "fake_orders",
    "load_rules",
    "monitor_baselines",
    "monitor_cursor",
    "monitor_metadata",
    "parse_rule",
    "sign_webhook",
    "verify_webhook",
]
