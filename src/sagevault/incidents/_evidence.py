"""Evidence of an incident: each item by its SHA-256 (SageVault keeps the hash and the chain of
custody, never the item, which may hold personal data), handed from holder to holder."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from sagevault.audit import EventName, Outcome, Reason
from sagevault.errors import PayloadError, RecordNotFound
from sagevault.identity import Principal, Scope

from ._core import SHA256_HEX, SKEW, IncidentCore, aware, free_text
from ._model import (
    Evidence,
)
from ._schema import (
    incident_custody,
    incident_evidence,
)


class EvidenceLog:
    def __init__(self, core: IncidentCore) -> None:
        self.core = core

    def _past(self, where: str, value: datetime | None) -> datetime:
        """A time a person gives for something that happened: now when not given, never ahead."""
        now = self.core.clock()
        if value is None:
            return now
        when = aware(where, value)
        if when > now + SKEW:
            raise PayloadError(f"{where} is in the future; give the time it happened")
        return when

    def add(
        self,
        conn: Connection,
        incident_id: int,
        *,
        principal: Principal,
        label: str,
        sha256: str,
        location: str,
        collected_by: str,
        collected_at: datetime | None = None,
        size: int | None = None,
        computed: str | None = None,
    ) -> Evidence:
        """Record an evidence item by its SHA-256 (SageVault keeps the hash and the custody, not
        the item, which may hold personal data). `computed`: the hash of the item as received
        here; it must match the one the collector gave."""
        self.core.check(conn, principal, Scope.INCIDENTS_MANAGE, "incidents evidence")
        self.core.open_row(conn, incident_id)
        digest = sha256.strip().lower()
        if not SHA256_HEX.fullmatch(digest):
            raise PayloadError("sha256 must be 64 hexadecimal characters (the item's SHA-256)")
        if computed is not None and computed.lower() != digest:
            self.core.event(
                EventName.INCIDENT_EVIDENCE_ADD,
                principal,
                incident_id,
                outcome=Outcome.FAILURE,
                reason=Reason.INTEGRITY_FAILURE,
                operation="hash mismatch",
            )
            raise PayloadError(
                f"the item's SHA-256 is {computed.lower()}, not the {digest} given: it is not the item that was "
                "collected, or it changed; nothing was recorded"
            )
        when = self._past("collected_at", collected_at)
        if size is not None and size < 0:
            raise PayloadError("size must be a number of bytes >= 0")
        values = {
            "incident_id": incident_id,
            "label": free_text("the label", label, limit=200, required=True),
            "sha256": digest,
            "size": size,
            "location": free_text("the location", location, limit=500, required=True),
            "collected_by": free_text("collected by", collected_by, limit=120, required=True),
            "collected_at": when,
            "recorded_by": principal.id,
        }
        evidence_id = int(conn.execute(insert(incident_evidence).values(**values)).inserted_primary_key[0])  # type: ignore[index]
        self.core.set(conn, incident_id)
        self.core.log(conn, incident_id, principal, "evidence", evidence=evidence_id, sha256=digest)
        self.core.event(
            EventName.INCIDENT_EVIDENCE_ADD, principal, incident_id, fingerprint=digest, evidence=evidence_id
        )
        return self._evidence(conn, incident_id, evidence_id)

    def _evidence(self, conn: Connection, incident_id: int, evidence_id: int) -> Evidence:
        for item in self.core.case(conn, incident_id).evidence:
            if item.id == evidence_id:
                return item
        raise RecordNotFound(
            f"incident {incident_id} has no evidence {evidence_id}; `sagevault incidents show {incident_id}`"
        )

    def handover(
        self,
        conn: Connection,
        incident_id: int,
        evidence_id: int,
        *,
        principal: Principal,
        from_party: str,
        to_party: str,
        purpose: str,
        at: datetime | None = None,
    ) -> Evidence:
        """A link of the chain of custody: who handed the item to whom, when and why. Only its
        holder can hand it on."""
        self.core.check(conn, principal, Scope.INCIDENTS_MANAGE, "incidents evidence")
        self.core.open_row(conn, incident_id)
        item = self._evidence(conn, incident_id, evidence_id)
        giver = free_text("from", from_party, limit=120, required=True)
        taker = free_text("to", to_party, limit=120, required=True)
        if giver != item.holder:
            raise PayloadError(
                f"evidence {evidence_id} is held by {item.holder}, not {giver}; record that handover first"
            )
        if taker == giver:
            raise PayloadError("the item is handed to somebody else than its holder")
        when = self._past("at", at)
        last = item.custody[-1].at if item.custody else item.collected_at
        if when < last:
            raise PayloadError(
                f"a handover cannot be before the item's last change of hands ({last:%Y-%m-%d %H:%M} UTC)"
            )
        conn.execute(
            insert(incident_custody).values(
                evidence_id=evidence_id,
                from_party=giver,
                to_party=taker,
                at=when,
                purpose=free_text("the purpose", purpose, limit=500, required=True),
                recorded_by=principal.id,
            )
        )
        self.core.set(conn, incident_id)
        self.core.log(conn, incident_id, principal, "custody", evidence=evidence_id, handed_to=taker)
        self.core.event(
            EventName.INCIDENT_EVIDENCE_HANDOVER, principal, incident_id, fingerprint=item.sha256, evidence=evidence_id
        )
        return self._evidence(conn, incident_id, evidence_id)

    def verify(
        self, conn: Connection, incident_id: int, evidence_id: int, computed: str, *, principal: Principal
    ) -> bool:
        """Whether an item (its SHA-256 computed now) is the one recorded; the check is recorded."""
        self.core.check(conn, principal, Scope.INCIDENTS_READ, "incidents evidence verify")
        item = self._evidence(conn, incident_id, evidence_id)
        same = computed.lower() == item.sha256
        self.core.event(
            EventName.INCIDENT_EVIDENCE_VERIFY,
            principal,
            incident_id,
            fingerprint=item.sha256,
            evidence=evidence_id,
            outcome=Outcome.SUCCESS if same else Outcome.FAILURE,
            reason=Reason.NONE if same else Reason.INTEGRITY_FAILURE,
        )
        return same
