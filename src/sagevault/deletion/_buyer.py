"""A buyer's other rights (DPP 1: rectify, restrict processing), each recorded as a request
with the same tracking, events and signed certificate as a deletion, and done at once: a
corrected value is never stored outside the record it corrects."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, EventName
from sagevault.errors import PayloadError
from sagevault.identity import Principal, Scope, event_tenant

from ._certificate import build as build_certificate
from ._certificate import sign
from ._requests import SOURCES, DeletionRequest, Deletions
from ._schema import deletion_requests


class BuyerRights:
    def __init__(self, deletions: Deletions) -> None:
        self.d = deletions
        deletions.buyers = self

    def _record_now(
        self,
        conn: Connection,
        *,
        tenant_id: str,
        kind: str,
        scope: str,
        detail: dict[str, Any],
        source: str,
        principal: Principal,
    ) -> int:
        now = self.d._clock()
        key = hashlib.sha256(f"{kind}|{tenant_id}|{json.dumps(detail, sort_keys=True)}".encode()).hexdigest()
        request_id = conn.execute(
            insert(deletion_requests).values(
                tenant_id=tenant_id,
                scope_kind=scope,
                scope=json.dumps(detail, sort_keys=True),
                scope_key=key,
                kind=kind,
                source=source,
                received_at=now,
                due_at=now + self.d.sla,
                state="received",
                counts=json.dumps({}),
                clock_stage=0,
                requested_by=principal.id,
                performed_by=principal.id,
                started_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        self.d._event(
            EventName.DELETION_REQUEST_RECEIVE, principal, int(request_id), tenant_id, f"{kind} {scope} {source}"
        )
        return int(request_id)

    def _finish(
        self, conn: Connection, request_id: int, counts: dict[str, Any], principal: Principal, method: tuple[str, str]
    ) -> DeletionRequest:
        request = self.d._row(conn, request_id)
        now = self.d._clock()
        certificate = build_certificate(request, counts, principal, now)
        certificate["method_code"], certificate["method"] = method
        certificate["sanitization_category"] = "not applicable (a buyer's right, not a sanitization)"
        signer, public = self.d._signer()
        signed = sign(certificate, signer, public)
        self.d._set(
            conn, request_id, state="done", done_at=now, counts=json.dumps(counts), certificate=json.dumps(signed)
        )
        self.d._event(EventName.DELETION_REQUEST_STEP, principal, request_id, request.tenant_id, "done")
        self.d._audit.record(
            AuditEvent(
                name=EventName.DELETION_CERTIFICATE_ISSUE,
                channel=principal.channel,
                actor=principal.id,
                tenant_id=event_tenant(request.tenant_id),
                operation=method[0],
                counts={"request": request_id, "records": int(counts.get("records", 0))},
                fingerprint=hashlib.sha256(json.dumps(signed, sort_keys=True).encode()).hexdigest(),
            )
        )
        return self.d._row(conn, request_id)

    def rectify(
        self,
        conn: Connection,
        *,
        tenant_id: str,
        order_id: str,
        field: str,
        value: str,
        principal: Principal,
        source: str = "buyer-request",
    ) -> DeletionRequest:
        """A buyer's correction of one PII field of an order, done at once (the new value is
        never stored outside the record): recorded as a request with its certificate; the
        verification reads the field back."""
        self.d._check(conn, principal, Scope.DELETION_MANAGE, "deletion rectify")
        if source not in SOURCES:
            raise PayloadError(f"source is one of {', '.join(SOURCES)}")
        detail = {"orders": [order_id], "field": field}
        request_id = self._record_now(
            conn, tenant_id=tenant_id, kind="rectify", scope="orders", detail=detail, source=source, principal=principal
        )
        changed = self.d._vault.rights.rectify(conn, tenant_id, order_id, field, value, principal=principal)
        readback = self.d._vault.rights.read_field(conn, tenant_id, changed, field)
        verification = {"records_changed": len(changed), "reads_back": all(v == value for v in readback)}
        if not verification["reads_back"]:
            raise PayloadError("the rectified value did not read back; nothing was changed")
        counts = {"records": len(changed), "tenant": "held", "verification": verification}
        return self._finish(
            conn, request_id, counts, principal, ("rectification", "the field re-encrypted with the corrected value")
        )

    def restrict(
        self,
        conn: Connection,
        *,
        tenant_id: str,
        principal: Principal,
        orders: Sequence[str] = (),
        buyer: Mapping[str, str] | None = None,
        lift: bool = False,
        source: str = "buyer-request",
    ) -> DeletionRequest:
        """Restrict processing of a buyer's orders (or lift the restriction): nobody reads,
        finds, reveals or exports them meanwhile. Recorded as a request with its certificate."""
        self.d._check(conn, principal, Scope.DELETION_MANAGE, "deletion restrict")
        if source not in SOURCES:
            raise PayloadError(f"source is one of {', '.join(SOURCES)}")
        scope = "buyer" if buyer else "orders"
        detail, _ = self.d._scope(conn, tenant_id, scope, orders, buyer, principal)
        detail["lift"] = lift
        request_id = self._record_now(
            conn, tenant_id=tenant_id, kind="restrict", scope=scope, detail=detail, source=source, principal=principal
        )
        ids = self.d._vault.rights.orders_of(conn, tenant_id, detail.get("orders", []))
        done = self.d._vault.rights.restrict(conn, tenant_id, ids, not lift, principal=principal)
        counts = {"records": done, "tenant": "held", "verification": {"records_flagged": done}}
        what = ("restriction lifted", "processing allowed again") if lift else ("restriction", "processing restricted")
        return self._finish(conn, request_id, counts, principal, what)
