"""Keys, shredding and the security event log: key status and rotation, crypto-shredding with
its certificate and the purge that follows, audit search, export and verification.

Rotation, purge and export do bounded work per request. A rotation step re-encrypts at most
`batch` records and answers 202 with how many remain; the client calls again until it gets 200
(the step that moved the last record also retires the old key versions). Purge works the same way.
An export streams the events that match its filters up to the newest event when it began.

Every route's unit of work commits before it answers (`Authenticated`, ended by the handler's `with`
block). Shred and the last rotation step then push the erased key pages out of the database's
journal, and an export or a verification ends its transaction before it reads the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from sagevault.access import parse_time
from sagevault.audit import Asker, EventFilters, EventName
from sagevault.errors import PayloadError, RecordNotFound, looks_like_pii, shown
from sagevault.identity import Scope, is_tenant_id

from .._deps import API, Authenticated, AuthenticatedRead, TenantPath
from .._pagination import PageQuery
from ._models import (
    AuditEventOut,
    KeyStatusOut,
    PageOf,
    PurgeStepOut,
    RotationStepOut,
    ShredCertificate,
    ShredOut,
    VerifyOut,
)

router = APIRouter(prefix=API)

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$"  # the audit log's own id format
_EVENT_NAMES = frozenset(e.value for e in EventName)
_EXPORT_CHUNK = 500  # events per write: a thread hop per event would dominate a large export


class BatchQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch: int = Field(500, ge=1, le=5000, description="The most records this request moves or deletes.")


class ShredBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confirm: Literal[True] = Field(description="true: every record of the tenant becomes unreadable forever.")


class AuditFilters(BaseModel):
    """The `sagevault audit search` filters. Ids only: the log holds no PII, so none is asked for."""

    model_config = ConfigDict(extra="forbid")
    actor: str | None = Field(None, pattern=_ID_PATTERN, description="A principal id (usr_…, svc_…, operator:…).")
    tenant: str | None = Field(None, pattern=_ID_PATTERN, description="A tenant id.")
    name: str | None = Field(None, max_length=48, description="An event name, e.g. vault:field:reveal.")
    since: str | None = Field(None, max_length=40, description="Events at or after this time (ISO 8601).")
    until: str | None = Field(None, max_length=40, description="Events before this time (ISO 8601).")

    def checked(self) -> EventFilters:
        """The filters as `AuditLog.search` takes them; a 400 that says what to send instead."""
        if self.tenant is not None and not is_tenant_id(self.tenant):
            raise PayloadError("tenant must be a tenant id: upper-case letters and digits, e.g. A2EUQ1WTGCTBG2")
        for field, value in (("actor", self.actor), ("tenant", self.tenant)):
            if value is not None and looks_like_pii(value):
                raise PayloadError(
                    f"{field} must be an id; the security log holds no e-mail addresses or phone "
                    "numbers, so search by the principal or tenant id"
                )
        if self.name is not None and self.name not in _EVENT_NAMES:
            raise PayloadError(
                "name is not an event name; use one such as vault:field:reveal "
                "(`sagevault audit events` lists them all)"
            )
        since, until = parse_time(self.since, "since"), parse_time(self.until, "until")
        if since is not None and until is not None and since >= until:
            raise PayloadError("since must be earlier than until; swap them or widen the window")
        return EventFilters(actor=self.actor, tenant_id=self.tenant, name=self.name, since=since, until=until)


class AuditSearchQuery(AuditFilters, PageQuery):
    pass


# --- keys ---------------------------------------------------------------------------------


@router.get("/tenants/{tenant_id}/keys", tags=["keys"])
def key_status(tenant_id: TenantPath, work: AuthenticatedRead) -> KeyStatusOut:
    """The tenant's key versions (data and blind index), their state, and how many records each
    data version protects. Never the key material."""
    with work as (d, conn, who):
        versions = d.vault.keys.status(conn, tenant_id, principal=who)
    data = [k for k in versions if k.purpose == "data"]
    primary = next((k.version for k in data if k.status == "primary"), None)
    return KeyStatusOut.model_validate(
        {
            "tenant_id": tenant_id,
            "primary_version": primary,
            "rotating": any(k.status == "active" for k in data),
            "records_to_move": sum(k.records for k in data if k.version != primary),
            "versions": [
                {
                    "purpose": k.purpose,
                    "version": k.version,
                    "status": k.status,
                    "created_at": k.created_at,
                    "retired_at": k.retired_at,
                    "records": k.records,
                }
                for k in versions
            ],
        }
    )


@router.post(
    "/tenants/{tenant_id}/keys/rotation",
    tags=["keys"],
    responses={202: {"model": RotationStepOut, "description": "Records still to move: call again."}},
)
def rotate(
    tenant_id: TenantPath, q: Annotated[BatchQuery, Query()], response: Response, work: Authenticated
) -> RotationStepOut:
    """One step of a key rotation: begin it (a new primary data key version) or resume the one
    under way, re-encrypt up to `batch` records, and once none is left retire the old versions.
    202 with `remaining` while records are left (call again), 200 when the rotation is complete.
    A call after a complete rotation begins the next one."""
    with work as (d, conn, who):
        d.access.core.authorize(conn, who, Scope.KEYS_READ, tenant_id)  # the answer reports progress: a read
        step = d.vault.keys.rotate_step(conn, tenant_id, principal=who, limit=q.batch)
    if step.retired:
        d.release_deleted_pages()  # the retired keys' erased pages out of the journal too
    response.status_code = 200 if step.complete else 202
    return RotationStepOut(
        tenant_id=tenant_id,
        state="complete" if step.complete else "re-encrypting",
        primary_version=step.primary_version,
        moved=step.moved,
        remaining=step.remaining,
        retired_versions=step.retired,
    )


# --- shred --------------------------------------------------------------------------------


@router.post("/tenants/{tenant_id}/shred", status_code=201, tags=["shred"])
def shred(tenant_id: TenantPath, body: ShredBody, response: Response, work: Authenticated) -> ShredOut:
    """Crypto-shred the tenant: every copy of its keys destroyed, its records unreadable from
    now on (reads answer 410). Answers the shred certificate; `records_to_purge` rows are left
    for `POST .../purge` to delete."""
    with work as (d, conn, who):
        receipt = d.vault.shred(conn, tenant_id, principal=who).as_json()
        left = d.vault.unpurged_records(conn, tenant_id, principal=who)
    d.release_deleted_pages()  # as `sagevault shred`: no page image of a destroyed key is kept
    response.headers["Location"] = f"{API}/tenants/{tenant_id}/shred-certificate"
    return ShredOut(certificate=ShredCertificate.model_validate(receipt), records_to_purge=left)


@router.get("/tenants/{tenant_id}/shred-certificate", tags=["shred"])
def shred_certificate(tenant_id: TenantPath, work: AuthenticatedRead) -> ShredCertificate:
    """The certificate of a shredded tenant (what was destroyed, when, under which master key)."""
    with work as (d, conn, who):
        receipt = d.vault.shred_receipt(conn, tenant_id, principal=who)
        if receipt is None:
            raise RecordNotFound(f"tenant {shown(tenant_id)} is not shredded, so it has no shred certificate")
    return ShredCertificate.model_validate(receipt)


@router.post(
    "/tenants/{tenant_id}/purge",
    tags=["shred"],
    responses={202: {"model": PurgeStepOut, "description": "Rows still to delete: call again."}},
)
def purge(
    tenant_id: TenantPath, q: Annotated[BatchQuery, Query()], response: Response, work: Authenticated
) -> PurgeStepOut:
    """Delete up to `batch` unreadable rows of a shredded tenant. 202 with `remaining` while rows
    are left (call again); 200 when none is, after the freed storage was scrubbed as `sagevault
    shred` does."""
    with work as (d, conn, who):
        step = d.vault.purge_step(conn, tenant_id, principal=who, limit=q.batch)
    if not step.remaining:
        d.release_deleted_pages()  # freed pages zeroed, WAL emptied (SQLite); dead tuples pruned (PostgreSQL)
    response.status_code = 202 if step.remaining else 200
    return PurgeStepOut(tenant_id=tenant_id, purged=step.purged, remaining=step.remaining)


# --- audit --------------------------------------------------------------------------------


@router.get("/audit/events", tags=["audit"])
def audit_events(
    q: Annotated[AuditSearchQuery, Query()], request: Request, work: AuthenticatedRead
) -> PageOf[AuditEventOut]:
    """Security events matching the filters, oldest first, a page at a time (the cursor is a
    position in the chain, so new events never shift a page)."""
    with work as (d, conn, who):
        d.access.core.authorize(conn, who, Scope.AUDIT_READ)
        filters = q.checked()
        after = q.position(int)
        asker = Asker(who, request.state.request_id, d.access.core.client_ip_hash(conn, who.source_ip))
    items = d.audit.read(asker, **filters, after_seq=after or 0, limit=q.limit + 1)
    return PageOf[AuditEventOut].model_validate(q.keyset(items, lambda e: e["seq"], lambda e: e))


@router.get(
    "/audit/export",
    tags=["audit"],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "One event per line (JSON)."}},
)
def audit_export(q: Annotated[AuditFilters, Query()], request: Request, work: AuthenticatedRead) -> StreamingResponse:
    """Every event matching the filters, as JSON lines, up to the newest event when the export
    began. The export is itself recorded (audit:log:export, with its event count) before the
    first line leaves; if that cannot be made durable, nothing is sent."""
    with work as (d, conn, who):
        d.access.core.authorize(conn, who, Scope.AUDIT_READ)
        asker = Asker(who, request.state.request_id, d.access.core.client_ip_hash(conn, who.source_ip))
    filters = q.checked()  # after authentication: an unauthenticated caller learns nothing from its filters
    export = d.audit.export(asker, **filters)
    return StreamingResponse(
        _ndjson(export.events(_EXPORT_CHUNK)),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="sagevault-audit.ndjson"'},
    )


def _ndjson(events: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    lines: list[str] = []
    for event in events:
        lines.append(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
        if len(lines) == _EXPORT_CHUNK:
            yield ("\n".join(lines) + "\n").encode()
            lines = []
    if lines:
        yield ("\n".join(lines) + "\n").encode()


@router.post("/audit/verify", tags=["audit"])
def audit_verify(request: Request, work: AuthenticatedRead) -> VerifyOut:
    """`sagevault audit verify`: the whole chain, its head, purge anchors, every signed digest
    and the newest group seal. `ok` false names the first bad sequence number. The check is
    itself recorded."""
    with work as (d, conn, who):
        d.access.core.authorize(conn, who, Scope.AUDIT_READ)
        asker = Asker(who, request.state.request_id, d.access.core.client_ip_hash(conn, who.source_ip))
    report = d.audit.verify(asker, workers=1)  # never fork a serving process
    if report.unrecorded is not None:  # a check that was not recorded is not answered
        raise report.unrecorded
    if report.unreadable:  # the server's file paths stay on the server
        report.problems[:] = [
            "the audit signing public key or the digest file cannot be read; run "
            "`sagevault audit verify` on the server, which names the file"
        ]
    return VerifyOut(
        ok=report.ok,
        events=report.events,
        digests=report.digests,
        sealed_through=report.sealed_through,
        undigested=report.undigested,
        first_bad_seq=report.first_bad_seq,
        problems=report.problems,
    )
