"""What retention shows and takes: a legal hold, the status of what goes when, a run's counts;
and the checks of what people give (a hold's reason, a time with its UTC offset)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sagevault.errors import PayloadError, looks_like_pii
from sagevault.vault import ORDER_ID

WHOLE_TENANT = "*"  # a hold's order_id that covers every order of its tenant
MAX_HOLD_DAYS = 3653  # a hold ends within ten years; extend it with a new one when the matter goes on
ORDER_PATTERN = re.compile(ORDER_ID)
# Dates, times and IP addresses are not personal data, but their digit runs look like phone
# numbers to `looks_like_pii`: they are blanked before a reason is checked.
_NOT_PII = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|\b\d{1,2}:\d{2}(?::\d{2})?\b|\b\d{1,3}(?:\.\d{1,3}){3}\b"
)


def utc(value: datetime | None) -> datetime | None:
    """A stored time in UTC (SQLite hands timestamps back without their zone: they are UTC)."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def aware(where: str, value: datetime) -> datetime:
    """A time given by a person: it must carry its UTC offset; it is kept in UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise PayloadError(f"{where} has no UTC offset; give it as e.g. 2027-06-30T00:00:00Z or +01:00")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PayloadError(f"{where} is outside the calendar SageVault keeps; give a time near today") from None


def parse_time(where: str, text: str) -> datetime:
    """An ISO 8601 time from the command line or a request body, with its UTC offset."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PayloadError(f"{where} is not a time; give it as e.g. 2027-06-30T00:00:00Z") from None
    return aware(where, value)


def hold_reason(value: str | None) -> str:
    """A hold's reason: required, at most 500 characters, and no e-mail address or phone number
    (name the matter, the case or the authority, never a buyer)."""
    text = (value or "").strip()
    if not text:
        raise PayloadError("a legal hold needs a reason (--reason): the matter, case or authority it serves")
    if len(text) > 500:
        raise PayloadError("a hold's reason is longer than 500 characters; shorten it")
    if looks_like_pii(_NOT_PII.sub(" ", text)):
        raise PayloadError(
            "the hold's reason looks like it holds an e-mail address or phone number; name the matter or case "
            "number, never a buyer's details"
        )
    return text


@dataclass(frozen=True)
class RetentionRun:
    pii: int  # records whose PII fields were purged
    records: int  # records deleted whole (non-PII past its retention)
    more: bool = False  # a kind reached `limit`: run again for the rest


@dataclass(frozen=True)
class LegalHold:
    id: int
    tenant_id: str
    order_id: str  # "*": every order of the tenant
    reason: str
    until: datetime
    created_by: str
    created_at: datetime
    released_by: str | None
    released_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> LegalHold:
        return cls(
            int(row.id),
            row.tenant_id,
            row.order_id,
            row.reason,
            utc(row.until),  # type: ignore[arg-type]
            row.created_by,
            utc(row.created_at),  # type: ignore[arg-type]
            row.released_by,
            utc(row.released_at),
        )

    def state(self, now: datetime) -> str:
        """active, ended (past its end date) or released."""
        if self.released_at is not None:
            return "released"
        return "active" if self.until > now else "ended"

    def payload(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "order_id": None if self.order_id == WHOLE_TENANT else self.order_id,
            "whole_tenant": self.order_id == WHOLE_TENANT,
            "reason": self.reason,
            "until": self.until.isoformat(),
            "state": self.state(now),
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "released_by": self.released_by,
            "released_at": iso(self.released_at),
        }


@dataclass(frozen=True)
class Buckets:
    """Records by when something of them goes: past due (the next run takes them), within 7 days,
    within 30 days, later; `undated`: no date (stored before records were dated)."""

    overdue: int = 0
    within_7_days: int = 0
    within_30_days: int = 0
    later: int = 0
    undated: int = 0


@dataclass(frozen=True)
class HeldBy:
    hold: LegalHold
    records: int  # records of the hold's scope whose PII is still there
    overdue: int  # of them, past their PII date: kept only by a hold


@dataclass(frozen=True)
class TenantRetention:
    tenant_id: str
    pii: Buckets  # records whose PII is still there and no hold covers, by their PII date
    records: Buckets  # records no hold covers, by the date they go whole
    pii_purged: int  # records kept without their PII
    held: int  # records whose PII is still there under an active hold
    holds: list[HeldBy]


@dataclass(frozen=True)
class OrderRetention:
    tenant_id: str
    order_id: str
    state: str  # purged | held | overdue | kept
    pii_expires_at: datetime | None
    expires_at: datetime | None
    pii_purged_at: datetime | None
    documents: list[dict[str, Any]]
    held_by: list[LegalHold]


@dataclass(frozen=True)
class RetentionStatus:
    now: datetime
    tenants: list[TenantRetention]
    order: OrderRetention | None = None

    def payload(self) -> dict[str, Any]:
        now = self.now
        order = None
        if (o := self.order) is not None:
            order = {
                **{k: v for k, v in asdict(o).items() if k not in ("held_by",)},
                "pii_expires_at": iso(o.pii_expires_at),
                "expires_at": iso(o.expires_at),
                "pii_purged_at": iso(o.pii_purged_at),
                "held_by": [h.payload(now) for h in o.held_by],
            }
        return {
            "now": now.isoformat(),
            "tenants": [
                {
                    "tenant_id": t.tenant_id,
                    "pii": asdict(t.pii),
                    "records": asdict(t.records),
                    "pii_purged": t.pii_purged,
                    "held": t.held,
                    "holds": [{**h.hold.payload(now), "records": h.records, "overdue": h.overdue} for h in t.holds],
                }
                for t in self.tenants
            ],
            "order": order,
        }
