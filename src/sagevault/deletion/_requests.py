"""Deletion and return requests (DPP 9): Amazon's notice, a seller leaving or revoking the app's
authorisation, a buyer's request; each done within `policy.deletion_sla_hours` (72).

    received -> scoped -> [returning] -> deleting -> verifying -> done   (or failed, with a reason)

`step` does the next step in the caller's unit of work and records it (deletion:request:step),
so a crash resumes where it stopped: a whole tenant is crypto-shredded (its keys destroyed, O(1))
then purged in batches; part of a tenant (orders, a buyer's orders) is deleted row by row. Then a
scan verifies that no row of the scope is left and no ciphertext of it can be opened, and only
then is the request done and its certificate signed. A request for a tenant or buyer SageVault
does not hold is done with a certificate saying nothing was held. A second request for the same
scope is linked to the first, not carried out twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, AuditSink, EventName, Gate, Signer, check_scope
from sagevault.errors import (
    Conflict,
    PayloadError,
    RecordNotFound,
    TenantShredded,
    UnknownTenant,
    looks_like_pii,
    shown,
)
from sagevault.identity import Channel, Principal, Scope, check_tenant_id, event_tenant
from sagevault.vault import ORDER_ID, Vault

from ._bundle import recipient_of, write_bundle
from ._certificate import build as build_certificate
from ._certificate import sign
from ._copies import DELETION, LiveCopies
from ._copies import utc as _utc
from ._schema import deletion_requests

if TYPE_CHECKING:
    from ._buyer import BuyerRights

SOURCES = ("amazon-notice", "seller-offboarding", "authorisation-revoked", "buyer-request")
KINDS = ("delete", "return")  # what `request` records; `rectify` and `restrict` are their own calls
SCOPES = ("tenant", "orders", "buyer")
STATES = ("received", "scoped", "returning", "deleting", "verifying", "done", "failed", "linked")
PURGE_BATCH = 20_000
OPEN = ("received", "scoped", "returning", "deleting", "verifying")
ORDER_ID_PATTERN = re.compile(ORDER_ID)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class DeletionRequest:
    id: int
    tenant_id: str
    scope_kind: str
    scope: dict[str, Any]
    kind: str
    source: str
    received_at: datetime
    due_at: datetime
    state: str
    reason: str | None
    linked_to: int | None
    recipient: str | None
    record_ids: list[int] | None
    counts: dict[str, Any]
    clock_stage: int
    requested_by: str
    performed_by: str | None
    started_at: datetime | None
    done_at: datetime | None
    certificate: dict[str, Any] | None

    @classmethod
    def of(cls, row: Any) -> DeletionRequest:
        return cls(
            id=int(row.id),
            tenant_id=row.tenant_id,
            scope_kind=row.scope_kind,
            scope=json.loads(row.scope),
            kind=row.kind,
            source=row.source,
            received_at=_utc(row.received_at),  # type: ignore[arg-type]
            due_at=_utc(row.due_at),  # type: ignore[arg-type]
            state=row.state,
            reason=row.reason,
            linked_to=row.linked_to,
            recipient=row.recipient,
            record_ids=json.loads(row.record_ids) if row.record_ids else None,
            counts=json.loads(row.counts),
            clock_stage=int(row.clock_stage),
            requested_by=row.requested_by,
            performed_by=row.performed_by,
            started_at=_utc(row.started_at),
            done_at=_utc(row.done_at),
            certificate=json.loads(row.certificate) if row.certificate else None,
        )

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "linked")

    def summary(self) -> dict[str, Any]:
        """What `deletion list --json` gives for each request."""
        return {
            "id": self.id,
            "tenant": self.tenant_id,
            "scope": self.scope_kind,
            "kind": self.kind,
            "source": self.source,
            "state": self.state,
            "received_at": self.received_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "done_at": _iso(self.done_at),
            "linked_to": self.linked_to,
        }

    def payload(self, now: datetime) -> dict[str, Any]:
        left = int((self.due_at - now).total_seconds())
        return {
            **self.summary(),
            "scope_detail": self.scope,
            "reason": self.reason,
            "recipient": self.recipient,
            "records": len(self.record_ids) if self.record_ids is not None else self.counts.get("records"),
            "counts": self.counts,
            "requested_by": self.requested_by,
            "performed_by": self.performed_by,
            "started_at": _iso(self.started_at),
            "seconds_left": None if self.finished else left,
            "overdue": (not self.finished and left <= 0) or (self.done_at is not None and self.done_at > self.due_at),
            "certificate_sha256": (
                hashlib.sha256(json.dumps(self.certificate, sort_keys=True).encode()).hexdigest()
                if self.certificate
                else None
            ),
        }


class Deletions:
    """Deletion, return and buyer-rights requests of one deployment."""

    def __init__(
        self,
        *,
        audit: AuditSink,
        gate: Gate,
        vault: Vault,
        copies: LiveCopies,
        returns_dir: Path,
        signer: Callable[[], tuple[Signer, Ed25519PublicKey]],
        sla_hours: int = 72,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._audit = audit
        self._gate = gate
        self._vault = vault
        self._copies = copies
        self._returns = returns_dir
        self._signer = signer
        self.sla = timedelta(hours=sla_hours)
        self._clock = clock or (lambda: datetime.now(UTC))
        self.buyers: BuyerRights  # a buyer's other rights (rectify, restrict): set by `BuyerRights`

    def now(self) -> datetime:
        return self._clock()

    # --- plumbing -----------------------------------------------------------------------------

    def _check(self, conn: Connection, principal: Principal, scope: Scope, operation: str) -> None:
        check_scope(self._gate, self._audit, conn, principal, scope, operation)

    def _event(
        self, name: EventName, principal: Principal, request: int, tenant: str | None, operation: str, **counts: int
    ) -> None:
        self._audit.record(
            AuditEvent(
                name=name,
                channel=principal.channel,
                actor=principal.id,
                tenant_id=event_tenant(tenant),
                operation=operation,
                counts={"request": request, **counts},
            )
        )

    def _row(self, conn: Connection, request_id: int) -> DeletionRequest:
        row = conn.execute(select(deletion_requests).where(deletion_requests.c.id == request_id)).first()
        if row is None:
            raise RecordNotFound(f"no deletion request {request_id}; `sagevault deletion list` shows them")
        return DeletionRequest.of(row)

    def _set(self, conn: Connection, request_id: int, **values: Any) -> None:
        conn.execute(
            update(deletion_requests)
            .where(deletion_requests.c.id == request_id)
            .values(updated_at=self._clock(), **values)
        )

    # --- receiving ----------------------------------------------------------------------------

    def request(
        self,
        conn: Connection,
        *,
        tenant_id: str,
        principal: Principal,
        scope: str = "tenant",
        orders: Sequence[str] = (),
        buyer: Mapping[str, str] | None = None,
        kind: str = "delete",
        source: str = "amazon-notice",
        received_at: datetime | None = None,
        recipient: str | None = None,
    ) -> DeletionRequest:
        """Record a request: its scope, kind, source and 72-hour deadline from receipt. A buyer
        is found now by blind index; the identifiers are not kept. A request whose scope an open
        or done request already covers is linked to it."""
        self._check(conn, principal, Scope.DELETION_MANAGE, "deletion request")
        check_tenant_id(tenant_id)
        if scope not in SCOPES:
            raise PayloadError(f"scope is one of {', '.join(SCOPES)}")
        if kind not in KINDS:
            raise PayloadError(f"kind is delete or return (return, then delete); not {shown(kind)}")
        if source not in SOURCES:
            raise PayloadError(f"source is one of {', '.join(SOURCES)}")
        now = self._clock()
        received = received_at or now
        if received.tzinfo is None or received.utcoffset() is None:
            raise PayloadError("received_at has no UTC offset; give it as e.g. 2026-12-06T09:30:00Z")
        received = received.astimezone(UTC)
        if received > now + timedelta(minutes=5):
            raise PayloadError("received_at is in the future; give the time the request arrived")
        if kind == "return":
            if not recipient:
                raise PayloadError("a return needs the recipient's age public key (--recipient age1...)")
            recipient_of(recipient)
        detail, key = self._scope(conn, tenant_id, scope, orders, buyer, principal)
        first = conn.execute(
            select(deletion_requests.c.id)
            .where(
                deletion_requests.c.scope_key == key,
                deletion_requests.c.state.in_(OPEN),  # a done request does not cover data stored since
                deletion_requests.c.kind == kind,
            )
            .order_by(deletion_requests.c.id)
            .limit(1)
        ).scalar()
        request_id = conn.execute(
            insert(deletion_requests).values(
                tenant_id=tenant_id,
                scope_kind=scope,
                scope=json.dumps(detail, sort_keys=True),
                scope_key=key,
                kind=kind,
                source=source,
                received_at=received,
                due_at=received + self.sla,
                state="linked" if first is not None else "received",
                linked_to=first,
                recipient=recipient.strip() if recipient else None,
                counts=json.dumps({}),
                clock_stage=0,
                requested_by=principal.id,
                updated_at=now,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        self._event(
            EventName.DELETION_REQUEST_RECEIVE,
            principal,
            int(request_id),
            tenant_id,
            f"{kind} {scope} {source}"[:64],
            linked_to=int(first or 0),
        )
        return self._row(conn, int(request_id))

    def _scope(
        self,
        conn: Connection,
        tenant_id: str,
        scope: str,
        orders: Sequence[str],
        buyer: Mapping[str, str] | None,
        principal: Principal,
    ) -> tuple[dict[str, Any], str]:
        """The scope as stored (no PII) and the key that links a second request for it."""
        if scope == "tenant":
            return {}, hashlib.sha256(f"tenant|{tenant_id}".encode()).hexdigest()
        if scope == "orders":
            wanted = sorted(set(orders))
            if not wanted or len(wanted) > 10_000:
                raise PayloadError("give the orders (1 to 10,000 order ids)")
            bad = [o for o in wanted if not ORDER_ID_PATTERN.fullmatch(o)]
            if bad:
                raise PayloadError(f"{shown(bad[0])} is not an order id")
            key = hashlib.sha256(("orders|" + tenant_id + "|" + ",".join(wanted)).encode()).hexdigest()
            return {"orders": wanted}, key
        identifiers = dict(buyer or {})
        try:
            found, fingerprint = self._vault.rights.buyer_orders(conn, tenant_id, identifiers, principal=principal)
        except (UnknownTenant, TenantShredded):  # nothing held: recorded, answered with a certificate of that
            found, fingerprint = [], secrets.token_hex(16)  # no index key: nothing keyed to link it by
        key = hashlib.sha256(f"buyer|{tenant_id}|{fingerprint}".encode()).hexdigest()
        return {"identified_by": sorted(identifiers), "orders": found}, key

    # --- carrying it out ----------------------------------------------------------------------

    def step(self, conn: Connection, request_id: int, *, principal: Principal) -> DeletionRequest:
        """Do the request's next step (see the module). Idempotent: a step interrupted before
        its unit of work committed is done again; a finished request is returned as it is."""
        self._check(conn, principal, Scope.DELETION_MANAGE, "deletion run")
        request = self._row(conn, request_id)
        if request.finished:
            return request
        step = {
            "received": self._scoping,
            "scoped": self._after_scoping,
            "returning": self._returning,
            "deleting": self._deleting,
            "verifying": self._verifying,
        }[request.state]
        step(conn, request, principal)
        after = self._row(conn, request_id)
        if after.state != request.state:
            self._event(
                EventName.DELETION_REQUEST_STEP,
                principal,
                request_id,
                request.tenant_id,
                after.state,
                records=int(after.counts.get("records", 0)),
            )
        return after

    def _tenant_state(self, conn: Connection, tenant_id: str) -> str:
        """held, shredded or unknown."""
        states = self._vault.tenant_states(conn, [tenant_id])
        if tenant_id not in states:
            return "unknown"
        return "shredded" if states[tenant_id] is not None else "held"

    def _scoping(self, conn: Connection, request: DeletionRequest, principal: Principal) -> None:
        held = self._tenant_state(conn, request.tenant_id)
        rights = self._vault.rights
        if held == "unknown" or request.scope_kind == "tenant":  # a tenant is counted as it is shredded
            ids: list[int] = []
        else:
            ids = rights.orders_of(conn, request.tenant_id, request.scope.get("orders", []))
        counts = {"records": len(ids), "orders": len(request.scope.get("orders", [])), "tenant": held}
        stored = None if request.scope_kind == "tenant" else json.dumps(ids)
        now = self._clock()
        self._set(
            conn,
            request.id,
            state="scoped",
            record_ids=stored,
            counts=json.dumps(counts),
            started_at=now,
            performed_by=principal.id,
        )

    def _after_scoping(self, conn: Connection, request: DeletionRequest, _principal: Principal) -> None:
        nothing = request.counts.get("records", 0) == 0 and request.counts.get("tenant") != "held"
        if nothing or (request.counts.get("records", 0) == 0 and request.scope_kind != "tenant"):
            self._set(conn, request.id, state="verifying")
            return
        self._set(conn, request.id, state="returning" if request.kind == "return" else "deleting")

    def _returning(self, conn: Connection, request: DeletionRequest, principal: Principal) -> None:
        ids = request.record_ids
        if ids is None:
            ids = self._vault.rights.tenant_records(conn, request.tenant_id)
        exported, withheld = self._vault.rights.export(conn, request.tenant_id, ids, principal=principal)
        assert request.recipient is not None
        bundle = write_bundle(
            exported,
            recipient=request.recipient,
            directory=self._returns,
            request_id=request.id,
            tenant_id=request.tenant_id,
            withheld=len(withheld),
            now=self._clock(),
        )
        copy = self._copies.register(
            conn,
            kind="return-bundle",
            location=str(bundle.path),
            sha256=bundle.sha256,
            size=bundle.size,
            principal=principal,
            tenant_id=request.tenant_id,
            request_id=request.id,
        )
        signer, public = self._signer()
        manifest = sign({**bundle.manifest, "live_copy": copy.id}, signer, public)
        manifest_path = bundle.path.with_name(bundle.path.name.removesuffix(".jsonl.age") + ".manifest.json")
        fd = os.open(manifest_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        counts = {**request.counts, "returned": len(exported), "withheld_restricted": len(withheld)}
        counts["bundle"] = {"file": bundle.path.name, "sha256": bundle.sha256, "manifest": manifest_path.name}
        self._set(conn, request.id, state="deleting", counts=json.dumps(counts))

    def _deleting(self, conn: Connection, request: DeletionRequest, principal: Principal) -> None:
        counts = dict(request.counts)
        if request.scope_kind == "tenant":
            if request.kind == "return" and "bundle" not in counts:  # never deleted before it is returned
                self._set(conn, request.id, state="returning")
                return
            if self._tenant_state(conn, request.tenant_id) == "held":
                counts["records"] = self._vault.unpurged_records(conn, request.tenant_id, principal=principal)
                receipt = self._vault.shred(conn, request.tenant_id, principal=principal)
                counts["keys_destroyed"] = [f"{purpose} v{version}" for purpose, version in receipt.keys_destroyed]
                counts["master_key"] = receipt.master_key_id
                counts["shredded_at"] = receipt.shredded_at.isoformat()
                self._set(conn, request.id, counts=json.dumps(counts))
                return  # the data is unreadable from here: the commit of this step
            purged = self._vault.purge_shredded(conn, request.tenant_id, principal=principal, limit=PURGE_BATCH)
            counts["purged"] = int(counts.get("purged", 0)) + purged
            left = self._vault.unpurged_records(conn, request.tenant_id, principal=principal)
            self._set(conn, request.id, counts=json.dumps(counts), state="deleting" if left else "verifying")
            return
        if request.kind == "return" and "bundle" not in counts:  # never deleted before it is returned
            self._set(conn, request.id, state="returning")
            return
        # By order, read now: an order ingested again since scoping has new record ids.
        ids = self._vault.rights.orders_of(conn, request.tenant_id, request.scope.get("orders", []))
        deleted = self._vault.rights.delete(conn, request.tenant_id, ids, principal=principal)
        counts["deleted"] = int(counts.get("deleted", 0)) + deleted
        self._set(conn, request.id, counts=json.dumps(counts), state="verifying")

    def _verifying(self, conn: Connection, request: DeletionRequest, principal: Principal) -> None:
        held = self._tenant_state(conn, request.tenant_id)
        if held == "unknown":
            rows = openable = keys = 0
        else:
            scope_ids = (
                None
                if request.scope_kind == "tenant"
                else self._vault.rights.orders_of(conn, request.tenant_id, request.scope.get("orders", []))
            )
            scan = self._vault.rights.scan(conn, request.tenant_id, scope_ids)
            rows, openable, keys = scan.rows, scan.openable, scan.live_keys
            if request.scope_kind == "tenant" and held != "shredded":
                keys = max(keys, 1)
        verification = {"rows_remaining": rows, "ciphertexts_openable": openable, "key_versions_remaining": keys}
        counts = {**request.counts, "verification": verification}
        if rows or openable or keys:  # never reported done early
            reason = f"verification found {rows} rows, {openable} openable, {keys} live key versions; run again"
            counts["failed_in"] = "deleting"
            self._set(conn, request.id, counts=json.dumps(counts), state="failed", reason=reason)
            self._event(EventName.DELETION_REQUEST_FAIL, principal, request.id, request.tenant_id, "verification")
            return
        now = self._clock()
        done = DeletionRequest.of(
            conn.execute(select(deletion_requests).where(deletion_requests.c.id == request.id)).one()
        )
        certificate = build_certificate(done, counts, principal, now)
        signer, public = self._signer()
        signed = sign(certificate, signer, public)
        self._set(
            conn,
            request.id,
            state="done",
            done_at=now,
            counts=json.dumps(counts),
            certificate=json.dumps(signed, sort_keys=True),
        )
        self._audit.record(
            AuditEvent(
                name=EventName.DELETION_CERTIFICATE_ISSUE,
                channel=principal.channel,
                actor=principal.id,
                tenant_id=event_tenant(request.tenant_id),
                operation=certificate["method_code"],
                counts={"request": request.id, "records": int(counts.get("records", 0))},
                fingerprint=hashlib.sha256(json.dumps(signed, sort_keys=True).encode()).hexdigest(),
            )
        )

    def fail(self, conn: Connection, request_id: int, reason: str, *, principal: Principal) -> DeletionRequest:
        """Mark a request failed with a reason (a step that cannot succeed: run it again after fixing)."""
        self._check(conn, principal, Scope.DELETION_MANAGE, "deletion fail")
        request = self._row(conn, request_id)
        if request.finished:
            raise Conflict(f"request {request_id} is {request.state}")
        text = reason if not looks_like_pii(reason) else "error"
        counts = {**request.counts, "failed_in": request.state}
        self._set(conn, request_id, state="failed", reason=text[:500], counts=json.dumps(counts))
        self._event(EventName.DELETION_REQUEST_FAIL, principal, request_id, request.tenant_id, "error")
        return self._row(conn, request_id)

    def retry(self, conn: Connection, request_id: int, *, principal: Principal) -> DeletionRequest:
        """A failed request goes back to where it can go on: verifying again."""
        self._check(conn, principal, Scope.DELETION_MANAGE, "deletion retry")
        request = self._row(conn, request_id)
        if request.state != "failed":
            raise Conflict(f"request {request_id} is {request.state}; only a failed request is retried")
        back = request.counts.get("failed_in") or ("deleting" if request.started_at else "received")
        self._set(conn, request_id, state=back, reason=None)
        return self._row(conn, request_id)

    # --- reading ------------------------------------------------------------------------------

    def list_requests(
        self, conn: Connection, *, principal: Principal, state: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[DeletionRequest]:
        self._check(conn, principal, Scope.DELETION_READ, "deletion list")
        query = select(deletion_requests).order_by(deletion_requests.c.id.desc()).limit(limit)
        if state is not None:
            if state not in STATES:
                raise PayloadError(f"state is one of {', '.join(STATES)}")
            query = query.where(deletion_requests.c.state == state)
        if after_id:
            query = query.where(deletion_requests.c.id < after_id)
        return [DeletionRequest.of(r) for r in conn.execute(query)]

    def get(self, conn: Connection, request_id: int, *, principal: Principal) -> DeletionRequest:
        self._check(conn, principal, Scope.DELETION_READ, "deletion show")
        return self._row(conn, request_id)

    def certificate(self, conn: Connection, request_id: int, *, principal: Principal) -> dict[str, Any]:
        """The signed certificate of a done request (a linked one's is its first request's)."""
        request = self.get(conn, request_id, principal=principal)
        if request.state == "linked" and request.linked_to is not None:
            request = self._row(conn, request.linked_to)
        if request.certificate is None:
            raise RecordNotFound(f"request {request.id} is {request.state}; it has a certificate once it is done")
        return request.certificate

    # --- the 72-hour clock --------------------------------------------------------------------

    def clocks(self, conn: Connection) -> list[tuple[int, str]]:
        """deletion:clock:warn at 48 h and 66 h after receipt (of 72), deletion:clock:overdue at
        the deadline, each once, for every request not finished."""
        now = self._clock()
        first, second = self.sla - timedelta(hours=24), self.sla - timedelta(hours=6)
        moved: list[tuple[int, str]] = []
        events: list[AuditEvent] = []
        rows = conn.execute(
            select(
                deletion_requests.c.id,
                deletion_requests.c.tenant_id,
                deletion_requests.c.received_at,
                deletion_requests.c.due_at,
                deletion_requests.c.clock_stage,
            ).where(deletion_requests.c.state.not_in(("done", "linked")), deletion_requests.c.clock_stage < 3)
        ).all()
        for request_id, tenant_id, received, due, current in rows:
            elapsed = now - _utc(received)  # type: ignore[operator]
            stage = 3 if now >= _utc(due) else 2 if elapsed >= second else 1 if elapsed >= first else 0  # type: ignore[operator]
            if stage <= current:
                continue
            done = conn.execute(
                update(deletion_requests)
                .where(deletion_requests.c.id == request_id, deletion_requests.c.clock_stage == current)
                .values(clock_stage=stage)
            ).rowcount
            if not done:
                continue
            label = f"{int({1: first, 2: second}.get(stage, self.sla).total_seconds() // 3600)}h"
            name = EventName.DELETION_CLOCK_OVERDUE if stage == 3 else EventName.DELETION_CLOCK_WARN
            events.append(
                AuditEvent(
                    name=name,
                    channel=Channel.SCHEDULER,
                    actor=DELETION.id,
                    tenant_id=event_tenant(tenant_id),
                    operation=f"request {request_id} {label}",
                    counts={"request": int(request_id)},
                )
            )
            moved.append((int(request_id), name.value))
        if events:
            self._audit.record_many(events)
        return moved
