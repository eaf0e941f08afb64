"""Access-review campaigns (DPP 6): the campaigns with their due dates and counts, a start form, one
campaign's items (person or service account, grant or key, last log-in, last reveal, recommendation
and reason) with keep/revoke/change decisions and a justification, closing, and the signed report
as a download once closed. Each action is the call `web/api/_reviews.py` makes, with the person as
principal: `governance:read` to read, `governance:manage` to start, decide and close. The domain
refuses a decision about the reviewer's own access; the page says so where it was asked."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import RedirectResponse, Response

from sagevault import errors
from sagevault.audit import load_public_key
from sagevault.governance._reviews import verify_report
from sagevault.governance._reviews_report import canonical
from sagevault.identity import Scope

from .._problems import status_of
from ._pages import attempt, held, page, run, run_form
from ._render import PREFIX, error_page, render
from ._session import ConsoleWork

router = APIRouter(prefix=PREFIX, include_in_schema=False)

CampaignId = Annotated[int, Path(ge=1, le=2**31 - 1)]
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]
DECISIONS = ("keep", "revoke", "change")
START_DEFAULTS = ("keep", "revoke", "none")
REASONS = {
    "in_use": "in use",
    "new": "new, not used yet",
    "unused": "unused for {days} days",
    "never_used": "never used",
    "expired": "the grant or key expired",
    "account_disabled": "the account is disabled",
}
NOTES = {"last_admin": "kept: the last administrator is never revoked", "already_revoked": "it was revoked already"}


def _bad(message: str) -> Response:
    return error_page(400, message, signed_in=True)


def _number(text: str, low: int, high: int) -> int | str | None:
    """An optional whole number from a form: None if empty, "bad" if not a number in [low, high]."""
    text = text.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not low <= int(text) <= high:
        return "bad"
    return int(text)


# --- the list and the start form ------------------------------------------------------------------


def _list_page(work: ConsoleWork, status: int = 200, refused: str | None = None) -> Response:
    reviews = work.d.governance.reviews
    found = reviews.list_campaigns(work.conn, principal=work.who)  # governance:read
    now = reviews.now()
    scopes, _ = held(work)
    open_one = next((c for c in found if c.state == "open"), None)
    return render(
        "reviews.html",
        status,
        **page(
            work,
            title="Access reviews",
            now=now,
            campaigns=[(c, c.summary(now)) for c in found],
            open_one=open_one,
            refused=refused,
            can_manage=Scope.GOVERNANCE_MANAGE in scopes,
            every_days=reviews.every_days,
            unused_days=reviews.unused_days,
        ),
    )


@router.get("/reviews")
async def campaigns(request: Request) -> Response:
    return await run(request, _list_page, read_only=True)


@router.post("/reviews")
async def start(request: Request) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        due = _number(form.get("due_days", ""), 1, 90)
        unused = _number(form.get("unused_days", ""), 1, 3650)
        default = form.get("default_decision", "keep")
        if due == "bad" or unused == "bad" or default not in START_DEFAULTS:
            return _bad(
                "Give the days until the due date (1 to 90), the days after which unused access is recommended "
                "for revoking (1 to 3650), or leave them empty for the policy's; and a default decision."
            )
        reviews = work.d.governance.reviews
        made, refused = attempt(  # the call of POST /api/v1/reviews (governance:manage)
            work,
            lambda: reviews.start(
                work.conn,
                principal=work.who,
                due_days=due if isinstance(due, int) else None,
                default_decision=default,
                unused_days=unused if isinstance(unused, int) else None,
            ),
        )
        if isinstance(refused, errors.AccessDenied):
            raise refused  # no governance:manage: the refusal page (recorded once, as the API's)
        if made is None:
            return _list_page(work, status_of(refused)[0] if refused else 400, str(refused))
        return RedirectResponse(f"{PREFIX}/reviews/{made.id}", status_code=303)

    return await run_form(request, action)


# --- one campaign ---------------------------------------------------------------------------------


def _report(work: ConsoleWork, campaign_id: int) -> dict[str, Any] | None:
    """The closed campaign's signed report: whether it verifies with this deployment's public key
    (as `sagevault reviews verify`)."""
    signed = work.d.governance.reviews.export(work.conn, campaign_id, principal=work.who)
    try:
        public = load_public_key(work.d.settings.resolved_audit_signing_key_file.with_suffix(".pub"))
        verified = verify_report(signed, public)
    except (errors.SageVaultError, OSError, ValueError):  # no key here, or not one: "does not verify", no path
        verified = False
    return {"verified": verified, "key_sha256": signed.get("signature", {}).get("key_sha256")}


def _campaign_page(
    work: ConsoleWork, campaign_id: int, status: int = 200, refused: str | None = None, item: int | None = None
) -> Response:
    reviews = work.d.governance.reviews
    campaign = reviews.get(work.conn, campaign_id, principal=work.who)  # governance:read
    now = reviews.now()
    scopes, _ = held(work)
    summary = campaign.summary(now)
    reasons = {k: v.format(days=campaign.unused_days) for k, v in REASONS.items()}
    return render(
        "review.html",
        status,
        **page(
            work,
            title=f"Access review {campaign.id}",
            c=campaign,
            s=summary,
            decided=campaign.counts.get("items", 0) - campaign.counts.get("undecided", 0),
            seconds_left=int((campaign.due_at - now).total_seconds()),
            report=_report(work, campaign.id) if campaign.state == "closed" else None,
            refused=refused,
            refused_item=item,
            me=work.who.id,
            reasons=reasons,
            notes=NOTES,
            can_manage=Scope.GOVERNANCE_MANAGE in scopes,
        ),
    )


@router.get("/reviews/{campaign_id}")
async def campaign(request: Request, campaign_id: CampaignId) -> Response:
    return await run(request, lambda work: _campaign_page(work, campaign_id), read_only=True)


@router.post("/reviews/{campaign_id}/items/{item_id}")
async def decide(request: Request, campaign_id: CampaignId, item_id: ItemId) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        decision, justification = form.get("decision", ""), form.get("justification", "")
        reviews = work.d.governance.reviews
        items = {i.id for i in reviews.get(work.conn, campaign_id, principal=work.who).items}  # governance:read
        if item_id not in items:
            return error_page(404, f"Campaign {campaign_id} has no review item {item_id}.", signed_in=True)
        if decision not in DECISIONS or len(justification) > 500:
            return _bad("Choose keep, revoke or change, with a justification of at most 500 characters.")
        _, refused = attempt(  # the call of POST /api/v1/reviews/items/{id}/decision (governance:manage)
            work, lambda: reviews.decide(work.conn, item_id, decision, justification, principal=work.who)
        )
        if refused is not None:  # its own access, a revoked item, the last admin, no justification...
            return _campaign_page(work, campaign_id, status_of(refused)[0], str(refused), item_id)
        return RedirectResponse(f"{PREFIX}/reviews/{campaign_id}#item-{item_id}", status_code=303)

    return await run_form(request, action)


@router.post("/reviews/{campaign_id}/close")
async def close(request: Request, campaign_id: CampaignId) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        default = form.get("default_decision", "")
        if default not in ("", "keep", "revoke"):
            return _bad("Choose the default for undecided items: the campaign's own, keep or revoke.")
        reviews = work.d.governance.reviews
        reviews.get(work.conn, campaign_id, principal=work.who)  # governance:read: the page to come back to
        _, refused = attempt(  # the call of POST /api/v1/reviews/{id}/close (governance:manage)
            work, lambda: reviews.close(work.conn, campaign_id, principal=work.who, default=default or None)
        )
        if refused is not None:
            return _campaign_page(work, campaign_id, status_of(refused)[0], str(refused))
        return RedirectResponse(f"{PREFIX}/reviews/{campaign_id}", status_code=303)

    return await run_form(request, action)


@router.get("/reviews/{campaign_id}/report")
async def report(request: Request, campaign_id: CampaignId) -> Response:
    def action(work: ConsoleWork) -> Response:
        # The call of GET /api/v1/reviews/{id}/report (governance:read). The file is the report's
        # canonical JSON: its SHA-256 is the campaign's report_sha256, recorded when it was closed.
        signed = work.d.governance.reviews.export(work.conn, campaign_id, principal=work.who)
        return Response(
            canonical(signed),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="access-review-{campaign_id}-report.json"'},
        )

    return await run(request, action, read_only=True)
