"""Access-review campaigns: what a campaign and its items look like, the signed report of a closed
campaign and its offline check, and what the campaigns read from the security log.

The report file is JSON: `{"report": {...}, "signature": {"algorithm", "key_sha256", "value"}}`; the
signature (Ed25519, the deployment's audit signing key, as deletion certificates are signed) is over
the report's canonical JSON (sorted keys, no spaces, UTF-8). `verify_report` needs the public key alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select

from sagevault.audit import AuditLog, EventName, Outcome, Signer, audit_events
from sagevault.db import reading
from sagevault.errors import PayloadError, looks_like_pii

DECISIONS = ("keep", "revoke", "change")
DEFAULTS = ("keep", "revoke", "none")
REPORT_FORMAT = "sagevault-access-review/1"
JUSTIFICATION_MAX = 500


def utc(value: datetime | None) -> datetime | None:
    """A time the database gave back (SQLite: without a zone, in UTC) as an aware UTC time."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    return utc(value).isoformat() if value is not None else None  # type: ignore[union-attr]


@dataclass(frozen=True)
class ReviewItem:
    """One grant or API key of one principal, as the campaign found it and as it was decided."""

    id: int
    campaign_id: int
    subject: str
    subject_kind: str
    subject_status: str
    item_kind: str
    item_ref: str
    item_state: str
    role: str | None
    tenants: list[str] | None
    scopes: list[str] | None
    created_at: datetime | None
    last_login_at: datetime | None
    last_used_at: datetime | None
    last_reveal_at: datetime | None
    recommendation: str
    reason: str
    decision: str | None
    decided_by: str | None
    decided_at: datetime | None
    justification: str | None
    by_default: bool
    note: str | None
    applied: bool

    @classmethod
    def of(cls, row: Any) -> ReviewItem:
        return cls(
            id=int(row.id),
            campaign_id=int(row.campaign_id),
            subject=row.subject,
            subject_kind=row.subject_kind,
            subject_status=row.subject_status,
            item_kind=row.item_kind,
            item_ref=row.item_ref,
            item_state=row.item_state,
            role=row.role,
            tenants=list(row.tenants) if row.tenants is not None else None,
            scopes=list(row.scopes) if row.scopes is not None else None,
            created_at=utc(row.created_at),
            last_login_at=utc(row.last_login_at),
            last_used_at=utc(row.last_used_at),
            last_reveal_at=utc(row.last_reveal_at),
            recommendation=row.recommendation,
            reason=row.reason,
            decision=row.decision,
            decided_by=row.decided_by,
            decided_at=utc(row.decided_at),
            justification=row.justification,
            by_default=bool(row.by_default),
            note=row.note,
            applied=bool(row.applied),
        )

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject": self.subject,
            "subject_kind": self.subject_kind,
            "subject_status": self.subject_status,
            "item_kind": self.item_kind,
            "item_ref": self.item_ref,
            "item_state": self.item_state,
            "role": self.role,
            "tenants": self.tenants,
            "scopes": self.scopes,
            "created_at": iso(self.created_at),
            "last_login_at": iso(self.last_login_at),
            "last_used_at": iso(self.last_used_at),
            "last_reveal_at": iso(self.last_reveal_at),
            "recommendation": self.recommendation,
            "reason": self.reason,
            "decision": self.decision,
            "decided_by": self.decided_by,
            "decided_at": iso(self.decided_at),
            "justification": self.justification,
            "by_default": self.by_default,
            "note": self.note,
            "applied": self.applied,
        }


@dataclass(frozen=True)
class Campaign:
    id: int
    state: str
    started_at: datetime
    started_by: str
    due_at: datetime
    default_decision: str
    unused_days: int
    closed_at: datetime | None
    closed_by: str | None
    report_sha256: str | None
    reminder_stage: int
    counts: dict[str, int] = field(default_factory=dict)
    items: list[ReviewItem] = field(default_factory=list)

    @classmethod
    def of(cls, row: Any, counts: dict[str, int], items: list[ReviewItem] | None = None) -> Campaign:
        return cls(
            id=int(row.id),
            state=row.state,
            started_at=utc(row.started_at),  # type: ignore[arg-type]
            started_by=row.started_by,
            due_at=utc(row.due_at),  # type: ignore[arg-type]
            default_decision=row.default_decision,
            unused_days=int(row.unused_days),
            closed_at=utc(row.closed_at),
            closed_by=row.closed_by,
            report_sha256=row.report_sha256,
            reminder_stage=int(row.reminder_stage or 0),
            counts=counts,
            items=items or [],
        )

    def summary(self, now: datetime) -> dict[str, Any]:
        """What `reviews list --json` and GET /api/v1/reviews give for each campaign."""
        return {
            "id": self.id,
            "state": self.state,
            "started_at": iso(self.started_at),
            "started_by": self.started_by,
            "due_at": iso(self.due_at),
            "overdue": self.state == "open" and now >= self.due_at,
            "default_decision": self.default_decision,
            "unused_days": self.unused_days,
            "closed_at": iso(self.closed_at),
            "closed_by": self.closed_by,
            "report_sha256": self.report_sha256,
            "reminders": self.reminder_stage,
            "counts": dict(self.counts),
        }

    def payload(self, now: datetime) -> dict[str, Any]:
        return {**self.summary(now), "items": [i.payload() for i in self.items]}


@dataclass(frozen=True)
class Overdue:
    """Why access reviews are late: an open campaign past its due date (`past_due`), or no
    campaign started within `every_days` of the last one's start, or of the first account (`none_started`)."""

    kind: str
    campaign_id: int | None  # the open campaign past due, or the last campaign (None: there was none)
    since: datetime  # when it became late

    def summary(self, now: datetime) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "campaign": self.campaign_id,
            "since": self.since.isoformat(),
            "days_late": max(0, (now - self.since).days),
        }


def count_items(items: list[ReviewItem]) -> dict[str, int]:
    """A campaign's counts: its items, how many are decided, and each decision."""
    return {
        "items": len(items),
        "undecided": sum(1 for i in items if i.decision is None),
        "recommended_revoke": sum(1 for i in items if i.recommendation == "revoke"),
        "keep": sum(1 for i in items if i.decision == "keep"),
        "revoke": sum(1 for i in items if i.decision == "revoke"),
        "change": sum(1 for i in items if i.decision == "change"),
        "by_default": sum(1 for i in items if i.by_default),
        "applied": sum(1 for i in items if i.applied),
        "last_admin_kept": sum(1 for i in items if i.note == "last_admin"),
    }


def check_justification(text: str | None) -> str:
    """The justification as stored, or a PayloadError saying what one must be."""
    cleaned = (text or "").strip()
    if not cleaned:
        raise PayloadError(
            "give a justification: why the access is kept, revoked or changed (one line, up to 500 characters)"
        )
    if len(cleaned) > JUSTIFICATION_MAX:
        raise PayloadError(f"the justification is {len(cleaned)} characters long; keep it to {JUSTIFICATION_MAX}")
    if any(ord(c) < 32 or ord(c) == 127 for c in cleaned):
        raise PayloadError("the justification is one line of plain text (no control characters)")
    if looks_like_pii(cleaned):
        raise PayloadError(
            "the justification looks like it holds an e-mail address or phone number; say why without personal data"
        )
    return cleaned


def recommend(
    status: str,
    expired: bool,
    used: datetime | None,
    created: datetime | None,
    reveal: datetime | None,
    stale: datetime,
) -> tuple[str, str]:
    """(recommendation, reason code) for one grant or key."""
    if status == "disabled":
        return "revoke", "account_disabled"
    if expired:
        return "revoke", "expired"
    last = max((t for t in (used, reveal) if t is not None), default=None)
    if last is None:
        return ("revoke", "never_used") if (created or stale) <= stale else ("keep", "new")
    return ("revoke", "unused") if last <= stale else ("keep", "in_use")


def item_row(
    who: Any,
    reveals: dict[str, datetime],
    kind: str,
    ref: str,
    state: str,
    created: datetime | None,
    facts: tuple[str, str],
) -> dict[str, Any]:
    return {
        "subject": who.id,
        "subject_kind": who.kind,
        "subject_status": who.status,
        "item_kind": kind,
        "item_ref": ref,
        "item_state": state,
        "role": None,
        "tenants": None,
        "scopes": None,
        "created_at": created,
        "last_login_at": utc(who.last_active_at),
        "last_used_at": None,
        "last_reveal_at": reveals.get(who.id),
        "recommendation": facts[0],
        "reason": facts[1],
        "decision": None,
        "decided_by": None,
        "decided_at": None,
        "justification": None,
        "by_default": False,
        "note": None,
        "applied": False,
    }


# --- the signed report -------------------------------------------------------------------------


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_sha256(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def build_report(campaign: Campaign, now: datetime) -> dict[str, Any]:
    """The content of a closed campaign's report (before it is signed): ids, dates, decisions."""
    return {
        "format": REPORT_FORMAT,
        "campaign": {k: v for k, v in campaign.summary(now).items() if k not in ("overdue", "report_sha256")},
        "items": [i.payload() for i in campaign.items],
        "counts": dict(campaign.counts),
        "generated_at": now.isoformat(),
    }


def sign_report(report: dict[str, Any], signer: Signer, public: Ed25519PublicKey) -> dict[str, Any]:
    return {
        "report": report,
        "signature": {
            "algorithm": "Ed25519",
            "key_sha256": key_sha256(public),
            "value": base64.b64encode(signer.sign(canonical(report))).decode(),
        },
    }


def document_sha256(signed: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(signed)).hexdigest()


def verify_report(document: Any, public_key: Ed25519PublicKey) -> bool:
    """Whether `document` (a parsed report file) is a campaign report intact and signed by
    `public_key`: False for a changed report, another key, or anything that is not a report."""
    if not isinstance(document, dict) or not isinstance(document.get("report"), dict):
        return False
    signature = document.get("signature")
    if not isinstance(signature, dict) or signature.get("algorithm") != "Ed25519":
        return False
    if signature.get("key_sha256") != key_sha256(public_key):
        return False
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
        public_key.verify(value, canonical(document["report"]))
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


# --- what the campaigns read from the security log ---------------------------------------------

_STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


def last_reveals(log: AuditLog) -> Callable[[], dict[str, datetime]]:
    """For `Campaigns(last_reveals=...)`: each actor's latest successful PII reveal
    (vault:field:reveal) in the security log, read in a snapshot of its own."""

    def read() -> dict[str, datetime]:
        query = (
            select(audit_events.c.actor, func.max(audit_events.c.at))
            .where(
                audit_events.c.name == EventName.VAULT_FIELD_REVEAL.value,
                audit_events.c.outcome == Outcome.SUCCESS.value,
                audit_events.c.actor.is_not(None),
            )
            .group_by(audit_events.c.actor)
        )
        with log.engine.connect() as conn:
            reading(conn)
            with conn.begin():
                rows = conn.execute(query).all()
        return {str(actor): datetime.strptime(at, _STAMP).replace(tzinfo=UTC) for actor, at in rows if at}

    return read


def noted_since(log: AuditLog) -> Callable[[datetime], bool]:
    """For `Campaigns(noted_since=...)`: whether governance:review:overdue was recorded at or after a time."""

    def noted(since: datetime) -> bool:
        return log.count(name=EventName.GOVERNANCE_REVIEW_OVERDUE.value, since=since) > 0

    return noted
