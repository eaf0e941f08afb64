"""Access-review campaigns: the HTTPS face of `sagevault reviews`.

Reading needs `governance:read`, starting, deciding and closing `governance:manage` (both held by
the `compliance` role). A revoke or change is applied at once through access. Every action is a
security event (`governance:review:*`; the revocations `access:grant:revoke`, `access:apikey:revoke`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import Field

from .._deps import API, Authenticated, AuthenticatedRead
from ._models import Out

router = APIRouter(prefix=API)

CampaignIdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="The campaign's id.")]
ItemIdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="The review item's id.")]
Time = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class CampaignSummaryOut(Out):
    id: int
    state: Literal["open", "closed"]
    started_at: Time
    started_by: str
    due_at: Time
    overdue: bool = Field(description="Open and past its due date.")
    default_decision: Literal["keep", "revoke", "none"]
    unused_days: int = Field(description="Revoking is recommended for what was unused this long.")
    closed_at: Time | None
    closed_by: str | None
    report_sha256: str | None = Field(description="SHA-256 of the signed report (canonical JSON), once closed.")
    reminders: int = Field(description="Reminders given: 1 a week before the due date, 2 a day before.")
    counts: dict[str, int]


class ItemOut(Out):
    id: int
    subject: str = Field(description="The principal id (never a login or e-mail address).")
    subject_kind: Literal["person", "service"]
    subject_status: str
    item_kind: Literal["grant", "api_key"]
    item_ref: str = Field(description="The grant's or API key's id.")
    item_state: str
    role: str | None
    tenants: list[str] | None
    scopes: list[str] | None
    created_at: Time | None
    last_login_at: Time | None
    last_used_at: Time | None
    last_reveal_at: Time | None
    recommendation: Literal["keep", "revoke"]
    reason: str = Field(description="A code: in_use, new, unused, never_used, expired, account_disabled.")
    decision: Literal["keep", "revoke", "change"] | None
    decided_by: str | None
    decided_at: Time | None
    justification: str | None
    by_default: bool
    note: str | None = Field(description="A code: last_admin (kept: never revoked), already_revoked.")
    applied: bool = Field(description="The grant or key was revoked through access.")


class CampaignOut(CampaignSummaryOut):
    items: list[ItemOut]


class StartBody(Out):
    due_days: int | None = Field(None, ge=1, le=90, description="Days until the due date (default the policy's).")
    default_decision: Literal["keep", "revoke", "none"] = Field(
        "keep", description="What undecided items become at the due date; none: every item must be decided."
    )
    unused_days: int | None = Field(None, ge=1, le=3650, description="Default: the policy's inactive_account_days.")


class DecisionBody(Out):
    decision: Literal["keep", "revoke", "change"]
    justification: str = Field(max_length=500, description="Why: one line, no personal data.")


class ReviewCloseBody(Out):
    default_decision: Literal["keep", "revoke"] | None = Field(
        None, description="Set the default for undecided items first."
    )


@router.get("/reviews", tags=["governance"])
def list_campaigns(work: AuthenticatedRead) -> list[CampaignSummaryOut]:
    """Every campaign, newest first, with its counts. Needs `governance:read`."""
    with work as (d, conn, who):
        found = d.governance.reviews.list_campaigns(conn, principal=who)
        now = d.governance.reviews.now()
        return [CampaignSummaryOut.model_validate(c.summary(now)) for c in found]


@router.post("/reviews", status_code=201, tags=["governance"])
def start_campaign(body: StartBody, work: Authenticated) -> CampaignOut:
    """Start a campaign over every grant and API key. Needs `governance:manage`."""
    with work as (d, conn, who):
        campaign = d.governance.reviews.start(
            conn,
            principal=who,
            due_days=body.due_days,
            default_decision=body.default_decision,
            unused_days=body.unused_days,
        )
        return CampaignOut.model_validate(campaign.payload(d.governance.reviews.now()))


@router.get("/reviews/{campaign_id}", tags=["governance"])
def get_campaign(campaign_id: CampaignIdPath, work: AuthenticatedRead) -> CampaignOut:
    """One campaign with its items. Needs `governance:read`."""
    with work as (d, conn, who):
        campaign = d.governance.reviews.get(conn, campaign_id, principal=who)
        return CampaignOut.model_validate(campaign.payload(d.governance.reviews.now()))


@router.post("/reviews/items/{item_id}/decision", tags=["governance"])
def decide_item(item_id: ItemIdPath, body: DecisionBody, work: Authenticated) -> ItemOut:
    """Keep, revoke or change one item (a revoke or change is applied at once); never by its
    own subject. Needs `governance:manage`."""
    with work as (d, conn, who):
        item = d.governance.reviews.decide(conn, item_id, body.decision, body.justification, principal=who)
        return ItemOut.model_validate(item.payload())


@router.post("/reviews/{campaign_id}/close", tags=["governance"])
def close_campaign(
    campaign_id: CampaignIdPath, work: Authenticated, body: ReviewCloseBody | None = None
) -> CampaignOut:
    """Close a campaign; after its due date undecided items take the default (never revoking the
    last admin); the report is signed. Needs `governance:manage`."""
    default = body.default_decision if body is not None else None
    with work as (d, conn, who):
        campaign = d.governance.reviews.close(conn, campaign_id, principal=who, default=default)
        return CampaignOut.model_validate(campaign.payload(d.governance.reviews.now()))


@router.get("/reviews/{campaign_id}/report", tags=["governance"])
def campaign_report(campaign_id: CampaignIdPath, work: AuthenticatedRead) -> dict[str, Any]:
    """The signed report of a closed campaign (`{"report", "signature"}`, Ed25519 over the
    report's canonical JSON; `sagevault reviews verify FILE` checks it offline). Needs `governance:read`."""
    with work as (d, conn, who):
        return d.governance.reviews.export(conn, campaign_id, principal=who)
