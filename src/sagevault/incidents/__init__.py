"""Incident response (DPP 8): the plan as versioned data, incidents worked through their
phases, the 24-hour clock to notify Amazon, evidence with chain of custody, and the report.

    alarm (a rule with open-incident) or a person -> Incidents.open -> tasks from the plan's
    procedure -> timeline, evidence, containment actions -> notify-draft / notified (the clock
    stops) -> close (documentation checked) -> report (JSON, Markdown; SHA-256 in the log)

The clocks and the plan's review dates are checked by a scheduled job (`incident-clocks`);
`MIGRATIONS` is where this package's tables are created.
"""

from __future__ import annotations

from pathlib import Path

from ._amazon import AmazonNotice
from ._core import Containment, IncidentCore, aware, free_text, parse_time
from ._evidence import EvidenceLog
from ._model import (
    ACTIONS,
    CLOSING_FIELDS,
    MOVES,
    NIST_PHASE,
    Action,
    Case,
    Document,
    Entry,
    Evidence,
    Incident,
    State,
    Task,
)
from ._plan import (
    AMAZON_SECURITY,
    INCIDENTS,
    REQUIRED_ROLES,
    REQUIRED_TYPES,
    IncidentType,
    Involvement,
    Plan,
    PlanBook,
    PlanStatus,
    PlanVersion,
    default_plan_text,
    parse_plan,
)
from ._schema import incidents_metadata
from ._service import Incidents

MIGRATIONS = Path(__file__).with_name("migrations")

__all__ = [
    "ACTIONS",
    "AMAZON_SECURITY",
    "CLOSING_FIELDS",
    "INCIDENTS",
    "MIGRATIONS",
    "MOVES",
    "NIST_PHASE",
    "REQUIRED_ROLES",
    "REQUIRED_TYPES",
    "Action",
    "AmazonNotice",
    "Case",
    "Containment",
    "Document",
    "Entry",
    "Evidence",
    "EvidenceLog",
    "Incident",
    "IncidentCore",
    "IncidentType",
    "Incidents",
    "Involvement",
    "Plan",
    "PlanBook",
    "PlanStatus",
    "PlanVersion",
    "State",
    "Task",
    "aware",
    "default_plan_text",
    "free_text",
    "incidents_metadata",
    "parse_plan",
    "parse_time",
]
