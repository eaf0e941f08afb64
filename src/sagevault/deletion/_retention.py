"""Retention (skeleton: being built; see the interface below)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from sagevault.audit import AuditSink
from sagevault.identity import Principal
from sagevault.monitor import Gate


@dataclass(frozen=True)
class RetentionRun:
    pii: int  # records whose PII fields were purged
    records: int  # records deleted whole (non-PII past its retention)


class Retention:
    def __init__(self, *, audit: AuditSink, gate: Gate, clock: Callable[[], datetime] | None = None) -> None:
        self._audit = audit
        self._gate = gate
        self._clock = clock or (lambda: datetime.now(UTC))

    def run(self, conn: Connection, *, principal: Principal, limit: int = 50_000) -> RetentionRun:
        raise NotImplementedError
