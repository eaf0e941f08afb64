"""Deletion and return requests (DPP 9): the list with the 72-hour clock, a form to record a request,
one request with its progress, "Run now" and, once done, its signed certificate (shown, checked and
downloadable). Each action is the call `web/api/_deletion.py` makes, with the person as principal:
`deletion:read` to read, `deletion:manage` to record and carry out (the domain decides and records)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request
from starlette.responses import RedirectResponse, Response

from sagevault import errors
from sagevault.deletion import SOURCES, DeletionRequest, verify_certificate
from sagevault.identity import Scope
from sagevault.incidents import parse_time
from sagevault.jobs import carry_out

from .._problems import status_of
from ._pages import attempt, held, page, run, run_form
from ._render import PREFIX, error_page, render
from ._session import ConsoleWork

router = APIRouter(prefix=PREFIX, include_in_schema=False)

RequestId = Annotated[int, Path(ge=1, le=2**31 - 1)]
T = TypeVar("T")
SCOPES = ("tenant", "orders", "buyer")
KINDS = ("delete", "return")
KEPT = ("tenant", "scope", "orders", "kind", "recipient", "source", "received_at")  # never a buyer's identifier
BUYER_FIELDS = {"email": 320, "phone": 64, "name": 200, "postal_code": 32}  # as the API's `Buyer`
STAGES = ("received", "scoped", "returning", "deleting", "verifying", "done")
STAGE_TEXT = {
    "received": "Received: recorded with its deadline",
    "scoped": "Scoped: the records of the scope resolved",
    "returning": "Returning: a bundle encrypted to the recipient",
    "deleting": "Deleting: crypto-shred then purge (a tenant), or row by row",
    "verifying": "Verifying: no row left, nothing that can be opened",
    "done": "Done: certificate signed",
}


def _bad(message: str) -> Response:
    return error_page(400, message, signed_in=True)


# --- the list and the form ------------------------------------------------------------------------


def _list_page(
    work: ConsoleWork, status: int = 200, refused: str | None = None, kept: dict[str, str] | None = None
) -> Response:
    d = work.d
    found = d.deletion.list_requests(work.conn, principal=work.who, limit=200)  # deletion:read
    now = d.deletion.now()
    rows = [(r, r.payload(now)) for r in found]
    scopes, _ = held(work)
    return render(
        "deletions.html",
        status,
        **page(
            work,
            title="Deletion requests",
            now=now,
            rows=rows,
            refused=refused,
            kept=kept or {},
            can_manage=Scope.DELETION_MANAGE in scopes,
            sources=SOURCES,
            sla_hours=int(d.deletion.sla.total_seconds() // 3600),
        ),
    )


@router.get("/deletions")
async def deletions(request: Request) -> Response:
    return await run(request, _list_page, read_only=True)


def _orders(text: str) -> list[str] | None:
    found = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
    if len(found) > 10_000 or any(len(o) > 64 for o in found):
        return None
    return found


def _checked(form: dict[str, str]) -> dict[str, Any] | str:
    """The request as `POST /api/v1/deletion-requests` takes it, or what is wrong with the form."""
    tenant, scope, kind = form.get("tenant", "").strip(), form.get("scope", ""), form.get("kind", "delete")
    source, received, recipient = form.get("source", ""), form.get("received_at", "").strip(), form.get("recipient", "")
    if not tenant or len(tenant) > 64:
        return "Give the tenant (its seller id) the request is for."
    if scope not in SCOPES or kind not in KINDS or source not in SOURCES:
        return "Choose what is deleted (a whole tenant, orders or one buyer), the kind and the source."
    if len(received) > 64 or len(recipient) > 200:
        return "The time received or the recipient is too long."
    orders = _orders(form.get("orders", ""))
    if orders is None:
        return "Give at most 10,000 order ids, one a line."
    buyer = {k: form.get(k, "").strip() for k in BUYER_FIELDS if form.get(k, "").strip()}
    if any(len(v) > BUYER_FIELDS[k] for k, v in buyer.items()):
        return "A buyer identifier is too long."
    if (scope == "buyer") != bool(buyer) or (scope == "orders") != bool(orders):
        return "Give order ids with the scope orders, a buyer's identifiers with the scope buyer, neither for a tenant."
    return {
        "tenant_id": tenant,
        "scope": scope,
        "orders": orders,
        "buyer": buyer,
        "kind": kind,
        "source": source,
        "received": received,
        "recipient": recipient.strip() or None,
    }


@router.post("/deletions")
async def record(request: Request) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        facts = _checked(form)
        if isinstance(facts, str):
            return _bad(facts)
        received = facts.pop("received")

        def call() -> DeletionRequest:  # the call of POST /api/v1/deletion-requests (deletion:manage)
            return work.d.deletion.request(
                work.conn,
                principal=work.who,
                received_at=parse_time("received_at", received) if received else None,
                **facts,
            )

        made, refused = attempt(work, call)
        if isinstance(refused, errors.AccessDenied):
            raise refused  # no deletion:manage: the refusal page (recorded once, as the API's)
        if made is None:  # the form again with why, filled in again except the buyer's identifiers
            kept = {k: v for k, v in form.items() if k in KEPT}
            return _list_page(work, status_of(refused)[0] if refused else 400, str(refused), kept)
        return RedirectResponse(f"{PREFIX}/deletions/{made.id}", status_code=303)

    return await run_form(request, action)


# --- one request ----------------------------------------------------------------------------------


def _stages(request: DeletionRequest) -> list[tuple[str, str, str]]:
    """Each stage of the request's way with `done`, `current` or `todo` (a return passes `returning`)."""
    way = [s for s in STAGES if s != "returning" or request.kind == "return"]
    if request.state in ("failed", "linked"):
        reached = way.index(request.counts.get("failed_in", "received")) if request.state == "failed" else 0
        return [(s, STAGE_TEXT[s], "done" if i < reached else "todo") for i, s in enumerate(way)]
    at = way.index(request.state) if request.state in way else 0
    return [(s, STAGE_TEXT[s], "done" if i < at else "current" if i == at else "todo") for i, s in enumerate(way)]


def _certificate(work: ConsoleWork, request: DeletionRequest) -> dict[str, Any] | None:
    """The signed certificate (a linked request's is its first's), what it says, and whether its
    signature verifies with this deployment's public key (as `sagevault deletion verify-certificate`)."""
    if request.state not in ("done", "linked"):
        return None
    try:
        signed = work.d.deletion.certificate(work.conn, request.id, principal=work.who)  # a read: nothing to undo
    except errors.RecordNotFound:
        return None
    public = work.d.settings.resolved_audit_signing_key_file.with_suffix(".pub")
    try:
        verify_certificate(signed, public)
        verified, problem = True, None
    except (errors.SageVaultError, OSError, ValueError):  # the reason may name a server path: not shown
        verified, problem = (
            False,
            "it could not be verified with this deployment's public key; "
            "`sagevault deletion verify-certificate` says why",
        )

    document = json.dumps(signed, sort_keys=True)
    return {
        "cert": signed["certificate"],
        "signature": signed["signature"],
        "verified": verified,
        "problem": problem,
        "sha256": hashlib.sha256(document.encode()).hexdigest(),
    }


def _detail(work: ConsoleWork, request_id: int) -> Response:
    d = work.d
    found = d.deletion.get(work.conn, request_id, principal=work.who)  # deletion:read
    now = d.deletion.now()
    scopes, _ = held(work)
    context = page(
        work,
        title=f"Deletion request {found.id}",
        r=found,
        p=found.payload(now),
        now=now,
        stages=_stages(found),
        certificate=_certificate(work, found),
        can_manage=Scope.DELETION_MANAGE in scopes,
    )
    return render("deletion.html", **context)


@router.get("/deletions/{request_id}")
async def deletion(request: Request, request_id: RequestId) -> Response:
    return await run(request, lambda work: _detail(work, request_id), read_only=True)


@router.post("/deletions/{request_id}/run")
async def run_now(request: Request, request_id: RequestId) -> Response:
    def action(work: ConsoleWork) -> Response:
        # As POST /api/v1/deletion-requests/{id}/run: the page's own unit of work is closed first
        # (authenticated, CSRF checked), then each step commits on its own (deletion:manage, recorded).
        who = work.who
        work.end()
        try:
            carry_out(work.d, request_id, who)
        except (errors.AccessDenied, errors.RecordNotFound):
            raise  # the person may not, or there is no such request: nothing about it changed
        except errors.SageVaultError:
            pass  # a step failed: the request is marked failed with its reason, shown on its page
        return RedirectResponse(f"{PREFIX}/deletions/{request_id}", status_code=303)

    return await run(request, action, posted=True)


@router.get("/deletions/{request_id}/certificate")
async def certificate(request: Request, request_id: RequestId) -> Response:
    def action(work: ConsoleWork) -> Response:
        # The call of GET /api/v1/deletion-requests/{id}/certificate (deletion:read). The file is the
        # certificate's JSON with sorted keys: its SHA-256 is the one shown and recorded when it was issued.
        signed = work.d.deletion.certificate(work.conn, request_id, principal=work.who)
        return Response(
            json.dumps(signed, sort_keys=True),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="deletion-certificate-{request_id}.json"'},
        )

    return await run(request, action, read_only=True)
