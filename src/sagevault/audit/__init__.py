"""Security events: PII-free by construction, hash-chained, signed, exported.

AuditEvent (typed, validated)  ->  AuditLog.record (group commit, fail closed)
                               ->  audit_events (chain)  +  digests.jsonl (Ed25519, outside the DB)
verify() checks chain, head, purge anchors and digests.
"""

from __future__ import annotations

from ._events import AuditEvent, Channel, EventName, Outcome, Reason, looks_like_pii, outcome_of
from ._export import SyslogTlsSink, to_jsonl, to_syslog
from ._log import AuditLog, chain_hash
from ._migrate import migrate_audit
from ._schema import audit_anchors, audit_events, audit_head, audit_metadata
from ._signing import DigestFile, Signer, create_signing_key, load_public_key, public_path
from ._verify import VerifyReport, verify

__all__ = [
    "AuditEvent",
    "AuditLog",
    "Channel",
    "DigestFile",
    "EventName",
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
    "create_signing_key",
    "load_public_key",
    "looks_like_pii",
    "migrate_audit",
    "outcome_of",
    "public_path",
    "to_jsonl",
    "to_syslog",
    "verify",
]
