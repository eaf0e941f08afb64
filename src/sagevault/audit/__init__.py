"""Security events: PII-free by construction, hash-chained, signed, exported.

AuditEvent (typed, validated)  ->  AuditLog.record (group commit, fail closed)
                               ->  audit_events (chain)  +  digests.jsonl (Ed25519, outside the DB)
AuditLog.verify checks chain, head, purge anchors and digests; it, export and an on-demand digest
each record their own event. The audit tables have a migration chain of their own
(`MIGRATIONS`), so the embedded deployment can keep them in a database of their own.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from sagevault.db import MigrationChain, migrate

from ._commit import chain_hash
from ._events import AuditEvent, AuditSink, EventName, Outcome, Reason, outcome_of
from ._export import SyslogTlsSink, to_jsonl, to_syslog
from ._gate import Gate, check_scope
from ._log import Asker, AuditLog, EventFilters, Export
from ._schema import audit_anchors, audit_events, audit_head, audit_metadata
from ._signing import DigestFile, Signer, create_signing_key, load_public_key, public_path
from ._verify import VerifyReport, verify

MIGRATIONS = Path(__file__).with_name("migrations")
AUDIT_CHAIN = MigrationChain("alembic_version_audit", (MIGRATIONS,))


def migrate_audit(engine: Engine) -> None:
    """Bring the audit tables to the newest migration (their own chain and version table)."""
    migrate(engine, AUDIT_CHAIN)


__all__ = [
    "AUDIT_CHAIN",
    "MIGRATIONS",
    "Asker",
    "AuditEvent",
    "AuditLog",
    "AuditSink",
    "DigestFile",
    "EventFilters",
    "EventName",
    "Export",
    "Gate",
    "Outcome",
    "Reason",
    "Signer",
    "SyslogTlsSink",
    "VerifyReport",
    "audit_anchors",
    "audit_events",
    "audit_head",
    "audit_metadata",
    "chain_hash",
    "check_scope",
    "create_signing_key",
    "load_public_key",
    "migrate_audit",
    "outcome_of",
    "public_path",
    "to_jsonl",
    "to_syslog",
    "verify",
]
