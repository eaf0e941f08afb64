"""Every requirement of the policy profile, evaluated on the live deployment.

A check that cannot read its evidence (a part not built, a service that refuses, an error) gives
ATTENTION with the reason: the report never says PASS for what it could not see. Each check runs in
a savepoint of the caller's unit of work, so a failed read leaves the others unharmed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, EventName, check_scope
from sagevault.errors import AccessDenied, SageVaultError
from sagevault.identity import Principal, Scope

from . import _checks_access as access
from . import _checks_data as data
from . import _checks_response as response
from ._context import Context, Unreadable
from ._model import Item, Report, Result, Status

if TYPE_CHECKING:
    from sagevault.deployment import Deployment


@dataclass(frozen=True)
class Requirement:
    id: str
    clause: str  # "1".."9": the seed policy's clause; "Amazon": only Amazon's current DPP asks it
    title: str
    check: Callable[[Context], Result]


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        "dpp-1-asset-inventory", "1", "Inventory of assets with access to PII, kept up to date", data.asset_inventory
    ),
    Requirement("dpp-1-ropa", "1", "Record of processing for every PII field", data.record_of_processing),
    Requirement(
        "dpp-1-policy-register", "1", "Privacy and data-handling policies kept and reviewed", data.policy_register
    ),
    Requirement(
        "dpp-1-retention", "1", "PII kept 30 days after delivery, other data 18 months (Amazon)", data.retention
    ),
    Requirement(
        "dpp-1-subject-rights", "1", "Rectify, erase or stop processing a customer's data", data.subject_rights
    ),
    Requirement(
        "dpp-2-encryption-at-rest",
        "2",
        "PII encrypted at rest (AES-256), keys only for processes",
        data.encryption_at_rest,
    ),
    Requirement("dpp-2-key-management", "2", "Master key in a key management system (Amazon)", data.key_management),
    Requirement(
        "dpp-3-least-privilege", "3", "Fine-grained roles; PII behind roles on need-to-know", data.least_privilege
    ),
    Requirement(
        "dpp-4-log-retention", "4", "Security logs kept at least 12 months (seed: 90 days)", data.log_retention
    ),
    Requirement("dpp-4-log-integrity", "4", "Logs protected from tampering, verified regularly", data.log_integrity),
    Requirement("dpp-4-alarm-rules", "4", "Alarms on unauthorized calls, rate, volume and canaries", data.alarm_rules),
    Requirement("dpp-4-open-alarms", "4", "Every alarm investigated", data.open_alarms),
    Requirement("dpp-5-network", "5", "Unauthorized IP addresses denied", access.network),
    Requirement(
        "dpp-6-unique-ids", "6", "A unique ID per person; no generic, shared or default accounts", access.unique_ids
    ),
    Requirement("dpp-6-mfa", "6", "MFA on every user account (Amazon)", access.mfa),
    Requirement("dpp-6-lockout", "6", "Account lockout after at most 10 failed log-ins", access.lockout),
    Requirement("dpp-6-passwords", "6", "Password policy (Amazon: 12+ characters, age, history)", access.passwords),
    Requirement("dpp-6-access-review", "6", "Access reviewed at least every 90 days", access.access_review),
    Requirement("dpp-6-leavers", "6", "Leavers lose access within 24 hours", access.leavers),
    Requirement(
        "dpp-6-api-keys", "6", "Programmatic credentials rotated every 12 months (Amazon)", access.api_key_rotation
    ),
    Requirement("dpp-7-tls", "7", "HTTPS only, TLS 1.2 or newer", access.tls),
    Requirement("dpp-7-outbound", "7", "Internal and outbound channels encrypted", access.outbound),
    Requirement("dpp-8-ir-plan", "8", "Incident response plan reviewed every 6 months", response.ir_plan),
    Requirement("dpp-8-impoc", "8", "Incident management point of contact named (Amazon)", response.impoc),
    Requirement("dpp-8-incidents", "8", "Incidents investigated; Amazon told within 24 hours", response.incidents),
    Requirement(
        "dpp-9-deletion-sla", "9", "Deletion or return within 72 hours of Amazon's request", response.deletion_sla
    ),
    Requirement("dpp-9-live-copies", "9", "Backups and live copies gone within 90 days", response.live_copies),
    Requirement(
        "amazon-vulnerabilities",
        "Amazon",
        "Scans every 30 days; critical fixed in 7 days, high in 30",
        response.vulnerabilities,
    ),
    Requirement(
        "amazon-data-attribution",
        "Amazon",
        "Each stored record tagged with its Amazon origin",
        response.data_attribution,
    ),
)


def unreadable(exc: BaseException) -> str:
    """Why the evidence could not be read, without anything that could hold PII."""
    if isinstance(exc, Unreadable):
        return str(exc)
    if isinstance(exc, AccessDenied):
        return "access denied: the principal may not read this evidence"
    if isinstance(exc, SageVaultError):
        return f"{type(exc).__name__}: {exc}"[:300]
    return f"{type(exc).__name__} while reading it"


def _one(req: Requirement, c: Context) -> Item:
    try:
        with c.conn.begin_nested():
            result = req.check(c)
    except Exception as exc:
        result = Result(
            Status.ATTENTION,
            f"could not read the evidence: {unreadable(exc)}",
            {},
            "fix what stops the evidence being read, then run the report again",
        )
    return Item(req.id, req.clause, req.title, result.status, result.summary, result.evidence, result.fix)


def register_own_assets(d: Deployment, conn: Connection, *, principal: Principal) -> int:
    """Register the deployment's own parts in the asset inventory first (as listing the assets
    does), so the inventory item reads a complete one; a writing unit of work. Returns how many
    were new; 0 when this deployment's inventory has no such operation."""
    parts = getattr(d, "own_assets", None)
    sync = getattr(d.governance.assets, "sync_deployment", None)
    if not callable(parts) or not callable(sync):
        return 0
    return len(sync(conn, parts(), principal=principal))


def evaluate(d: Deployment, conn: Connection, *, principal: Principal) -> Report:
    """Evaluate every requirement on the live deployment (`conn`: the caller's unit of work), and
    record compliance:report:create with the counts per status. Needs `governance:read`."""
    check_scope(d.access.control, d.audit, conn, principal, Scope.GOVERNANCE_READ, "report")
    now = d.now()
    c = Context(d, conn, principal, now)
    items = [_one(req, c) for req in REQUIREMENTS]
    facts = {
        "database": d.engine.dialect.name,
        "key_provider": d.settings.key_provider,
        "master_key_id": d.keys.key_id,
        "requirements": len(items),
    }
    report = Report(now, principal.id, facts, items)
    counts = report.counts
    d.audit.record(
        AuditEvent(
            name=EventName.COMPLIANCE_REPORT_CREATE,
            channel=principal.channel,
            actor=principal.id,
            operation="report",
            counts={"pass": counts["PASS"], "fail": counts["FAIL"], "attention": counts["ATTENTION"]},
        )
    )
    return report
