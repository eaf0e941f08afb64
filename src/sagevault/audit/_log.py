"""The security event log: appending (through `GroupCommit`), signed digests, retention, and
the operations an operator or an auditor runs on it (search, export, verify, a digest on
demand), each of which records its own event."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, Unpack

from sqlalchemy import ColumnElement, Engine, delete, func, insert, select, text
from sqlalchemy.engine import Connection

from sagevault.db import reading
from sagevault.errors import AuditError, AuditUnavailable, IntegrityError
from sagevault.identity import Principal, event_tenant
from sagevault.logs import get_logger

from ._commit import ZERO_HASH, GroupCommit
from ._events import AuditEvent, EventName, Outcome, Reason
from ._schema import COLUMNS, audit_anchors, audit_events, audit_head
from ._signing import Digest, DigestFile, Signer, anchor_message, digest_message, load_public_key, seal_message
from ._verify import VerifyReport, verify, walk_chain


@dataclass(frozen=True, slots=True)
class Asker:
    """Who runs an operation on the log, as its event records them: a principal, and for a
    request from the network its request id and the keyed hash of its address."""

    principal: Principal
    request_id: str | None = None
    client_ip_hash: str | None = None

    def event(self, name: EventName, **fields: Any) -> AuditEvent:
        p = self.principal
        return AuditEvent(
            name=name,
            channel=p.channel,
            actor=p.id,
            request_id=self.request_id,
            client_ip_hash=self.client_ip_hash,
            **fields,
        )


class EventFilters(TypedDict, total=False):
    """What `search`, `count` and `export` select by (every one given must hold)."""

    actor: str | None
    tenant_id: str | None
    name: str | None
    since: datetime | None
    until: datetime | None


@dataclass(frozen=True, slots=True)
class Export:
    """An export that has been recorded: `count` events up to `through_seq` (the head when it
    began), read page by page from `events()`."""

    count: int
    through_seq: int
    _log: AuditLog
    _filters: EventFilters

    def events(self, page: int = 500) -> Iterator[dict[str, Any]]:
        """The matching events, read a page per short transaction, so a slow reader never holds a
        read open on the audit database (on SQLite that would pin its WAL)."""
        after = 0
        while batch := list(
            self._log.search(**self._filters, after_seq=after, through_seq=self.through_seq, limit=page)
        ):
            yield from batch
            after = batch[-1]["seq"]


FOLLOW_COLUMNS = (
    "seq",
    "at",
    "name",
    "outcome",
    "reason",
    "actor",
    "tenant_id",
    "client_ip_hash",
    "operation",
    "fingerprint",
    "record_ids",
    "counts",
)
_FOLLOW = text(
    f"SELECT {', '.join(FOLLOW_COLUMNS)} FROM audit_events WHERE seq > :after ORDER BY seq LIMIT :limit"  # noqa: S608
)


_WINDOW = text(
    f"SELECT {', '.join(FOLLOW_COLUMNS)} FROM audit_events WHERE at >= :since AND seq <= :through ORDER BY seq"  # noqa: S608
)


class AuditLog:
    """The one place that writes security events (see `GroupCommit` for how appends commit)."""

    def __init__(
        self,
        engine: Engine,
        *,
        signer: Signer | None,
        digests: DigestFile | None,
        public_key: Path | None = None,
        digest_every: int = 1000,
        digest_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.engine = engine
        self._clock = clock  # stamps every event appended (tests: a `ManualClock`); None = the event's own time
        self._signer = signer
        self._digests = digests
        self._public_key = public_key
        self._digest_every = digest_every
        self._digest_seconds = digest_seconds
        self._last_digest_seq = 0
        self._undigested_since: float | None = None  # when this process appended after its last digest
        self._monotonic = monotonic
        seal = (lambda seq, head: signer.sign(seal_message(seq, head))) if signer is not None else None
        self._listeners: list[Callable[[int], None]] = []
        self._commit = GroupCommit(engine, self._after_group, seal)

    @property
    def transactions(self) -> int:
        """Committed appends so far (how well commits are shared)."""
        return self._commit.transactions

    # --- appending ------------------------------------------------------------------------

    def record(self, event: AuditEvent) -> int:
        """Append `event` and return its sequence number once it is committed (`GroupCommit`).

        Within `deferred()` (in the same thread or task) the event is held instead and this
        returns 0: it is durable only once the block's owner has awaited `record_async`."""
        held = _DEFERRED.get()
        if held is not None and held[0] is self:
            held[1].append(event)
            return 0
        return self._commit.record(self._stamped([event])[0])

    def _stamped(self, events: Sequence[AuditEvent]) -> Sequence[AuditEvent]:
        clock = self._clock
        return events if clock is None else [dataclasses.replace(e, at=clock()) for e in events]

    async def record_async(self, events: Sequence[AuditEvent]) -> list[int]:
        """Append `events`, in order, and return their sequence numbers once they are committed,
        without blocking the event loop (`GroupCommit.record_async`)."""
        return await self._commit.record_async(self._stamped(events))

    def record_many(self, events: Sequence[AuditEvent]) -> list[int]:
        """Append several events in one transaction (batch producers, imports, benchmarks)."""
        return self._commit.record_many(self._stamped(events))

    @contextlib.contextmanager
    def deferred(self) -> Iterator[list[AuditEvent]]:
        """Hold the events that `record` is given within this block (in this thread or task)
        instead of writing them, for an event loop that must not wait for a commit in its own
        thread. The block's owner must `await record_async(events)` and let nothing the events
        describe (an answer with PII, a refusal) out before it returns: that is what keeps the
        log fail-closed. `record` returns 0 for a held event."""
        held: list[AuditEvent] = []
        token = _DEFERRED.set((self, held))
        try:
            yield held
        finally:
            _DEFERRED.reset(token)

    def on_commit(self, listener: Callable[[int], None]) -> None:
        """Call `listener(seq)` after each group this process commits (the detector wakes on it;
        it must be quick and must not raise)."""
        self._listeners.append(listener)

    def follow(self, after_seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Up to `limit` events after `after_seq`, by seq, as rows of `FOLLOW_COLUMNS` (record
        ids and counts as their JSON text): what the detector reads, without per-row objects."""
        with self._reading() as conn:
            return [tuple(r) for r in conn.execute(_FOLLOW, {"after": after_seq, "limit": limit})]

    def window(self, since: datetime, through_seq: int) -> list[tuple[Any, ...]]:
        """The events appended at or after `since` up to `through_seq`, as `follow`'s rows: what
        the detector reads again on a restart to refill its windows."""
        at = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._reading() as conn:
            return [tuple(r) for r in conn.execute(_WINDOW, {"since": at, "through": through_seq})]

    def time_of(self, seq: int) -> datetime | None:
        """When event `seq` was appended (None if there is no such event any more)."""
        with self._reading() as conn:
            at = conn.execute(select(audit_events.c.at).where(audit_events.c.seq == seq)).scalar()
        return datetime.fromisoformat(at) if at else None

    def _after_group(self, seq: int) -> None:
        for listener in self._listeners:
            listener(seq)
        self._digest_if_due(seq)

    def _digest_if_due(self, seq: int) -> None:
        """After a group's callers were told (its events are committed whatever happens here): a
        signed digest when `digest_every` events, or `digest_seconds`, followed the last one.
        While events flow no event waits longer than that; `digest_if_stale` (the scheduler's
        tick in `serve`) covers a log that went quiet, `Deployment.close` what is left."""
        if not self.signs:
            return
        now = self._monotonic()
        if self._undigested_since is None:
            self._undigested_since = now
        if seq - self._last_digest_seq >= self._digest_every or now - self._undigested_since >= self._digest_seconds:
            self._digest_quietly()

    def digest_if_stale(self) -> None:
        """A signed digest if events this process appended have waited `digest_seconds` for one."""
        since = self._undigested_since
        if self.signs and since is not None and self._monotonic() - since >= self._digest_seconds:
            self._digest_quietly()

    def _digest_quietly(self) -> None:
        """A digest that cannot be written is logged (the chain still verifies up to the last
        one) and tried again after the next group."""
        try:
            self.write_digest()
        except Exception as exc:
            get_logger("sagevault.audit").error("audit digest not written", error=type(exc).__name__)

    def _lock_head(self, conn: Connection) -> tuple[int, bytes]:
        query = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        seq, head = conn.execute(query).one()
        return int(seq), bytes(head)

    # --- digests --------------------------------------------------------------------------

    def head(self) -> tuple[int, bytes]:
        with self._reading() as conn:
            seq, digest = conn.execute(select(audit_head.c.seq, audit_head.c.hash)).one()
        return int(seq), bytes(digest)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A read of the log: on SQLite a snapshot that takes no write lock, so a search or an
        export under way never holds up an append (every reveal waits for one)."""
        with self.engine.connect() as conn:
            reading(conn)
            with conn.begin():
                yield conn

    def write_digest(self) -> Digest | None:
        """Sign the current chain head into the digest file (outside the database)."""
        if self._signer is None or self._digests is None:
            return None
        seq, head = self.head()
        if seq in (0, self._last_digest_seq):
            return None
        digest = Digest(seq, head, _now_text(), self._signer.sign(digest_message(seq, head)))
        self._digests.append(digest)
        self._last_digest_seq = seq
        self._undigested_since = None
        return digest

    # --- retention ------------------------------------------------------------------------

    def purge_before(self, cutoff: datetime, asker: Asker) -> int:
        """Delete the oldest events, up to the first one of the month of `cutoff`: the longest
        run of the chain from its start (by sequence number) whose events are all older than that
        month. An event back-dated into the past further on is kept with everything after it. The
        run is verified before it goes; a signed anchor keeps the chain verifiable, and the purge
        is recorded as an event. Returns the events deleted."""
        if self._signer is None:
            raise AuditError("purging needs the audit signing key (it signs the chain anchor)")
        segment_start = cutoff.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        boundary = segment_start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self.engine.begin() as conn:
            head_seq, _ = self._lock_head(conn)
            first = conn.execute(select(func.min(audit_events.c.seq))).scalar()
            if first is None:
                return 0
            first = int(first)
            first_kept = conn.execute(
                select(func.min(audit_events.c.seq)).where(audit_events.c.at >= boundary)
            ).scalar()
            last = int(first_kept) - 1 if first_kept is not None else head_seq
            if last < first:
                return 0
            anchor = self._verified_run(conn, first, last)
            signature = self._signer.sign(anchor_message(last, anchor))
            if conn.dialect.name == "postgresql":
                # The service role may not delete events: the owner's function does, for events
                # past 365 days only, and stores the anchor (migration a003).
                conn.execute(
                    text("SELECT sagevault_audit_purge(:last, :anchor, :at, :sig)"),
                    {"last": last, "anchor": anchor, "at": _now_text(), "sig": signature},
                )
            else:
                conn.execute(delete(audit_events).where(audit_events.c.seq <= last))
                conn.execute(
                    insert(audit_anchors).values(last_seq=last, hash=anchor, purged_at=_now_text(), signature=signature)
                )
        self.record(
            asker.event(
                EventName.AUDIT_SEGMENT_PURGE,
                reason=Reason.RETENTION,
                counts={"first_seq": first, "last_seq": last, "events": last - first + 1},
            )
        )
        return last - first + 1

    @staticmethod
    def _verified_run(conn: Connection, first: int, last: int) -> bytes:
        """The stored hash of event `last`, once events `first`..`last` are checked against the
        chain (each follows the one before, none was changed, none is missing); an
        IntegrityError names the first bad one, and nothing is purged."""
        if first == 1:
            before = ZERO_HASH
        else:
            anchored = conn.execute(select(audit_anchors.c.hash).where(audit_anchors.c.last_seq == first - 1)).scalar()
            if anchored is None:
                raise IntegrityError(
                    f"events 1..{first - 1} are gone without a purge anchor; run `sagevault audit verify`"
                )
            before = bytes(anchored)
        report = VerifyReport()
        rows = conn.execute(
            select(
                *(audit_events.c[c] for c in COLUMNS),
                audit_events.c.prev_hash,
                audit_events.c.hash,
                audit_events.c.seal,
            )
            .where(audit_events.c.seq.between(first, last))
            .order_by(audit_events.c.seq)
        )
        walk = walk_chain(rows, {}, set(), report, start=(first, before))
        if not report.ok or walk.last_seq != last:
            problem = report.problems[0] if report.problems else f"event {walk.last_seq + 1} is missing"
            raise IntegrityError(
                f"the events to purge do not verify ({problem}); nothing was purged: "
                "run `sagevault audit verify` and keep the log as it is for investigation"
            )
        return walk.last_hash

    # --- reading --------------------------------------------------------------------------

    @staticmethod
    def _matching(after_seq: int, through_seq: int | None, filters: EventFilters) -> list[ColumnElement[bool]]:
        where = [audit_events.c.seq > after_seq]
        if through_seq is not None:
            where.append(audit_events.c.seq <= through_seq)
        for column in ("actor", "tenant_id", "name"):
            value = filters.get(column)
            if value:
                where.append(audit_events.c[column] == value)
        since, until = filters.get("since"), filters.get("until")
        if since:
            where.append(audit_events.c.at >= since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        if until:
            where.append(audit_events.c.at < until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        return where

    def count(self, *, after_seq: int = 0, through_seq: int | None = None, **filters: Unpack[EventFilters]) -> int:
        """How many events `search` with the same filters would yield."""
        where = self._matching(after_seq, through_seq, filters)
        with self._reading() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_events).where(*where)).scalar_one())

    def search(
        self,
        *,
        after_seq: int = 0,
        through_seq: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        **filters: Unpack[EventFilters],
    ) -> Iterator[dict[str, Any]]:
        """Events matching every filter given, by sequence number: those after `after_seq` (a
        page's cursor) and up to `through_seq` (an export's snapshot of the head)."""
        query = select(*(audit_events.c[c] for c in COLUMNS)).where(*self._matching(after_seq, through_seq, filters))
        query = query.order_by(audit_events.c.seq.desc() if newest_first else audit_events.c.seq)
        if limit:
            query = query.limit(limit)
        with self._reading() as conn:
            for row in conn.execute(query):
                item = dict(row._mapping)
                item["record_ids"] = json.loads(item["record_ids"])
                item["counts"] = json.loads(item["counts"])
                yield item

    # --- operations that record themselves ------------------------------------------------

    def read(
        self,
        asker: Asker,
        *,
        limit: int,
        after_seq: int = 0,
        newest_first: bool = False,
        **filters: Unpack[EventFilters],
    ) -> list[dict[str, Any]]:
        """Events matching the filters, for a person to read (`audit tail`, `audit search`, the
        API's event list): recorded as audit:log:read, with how many were read, before any is
        handed back. If that cannot be made durable, none is."""
        events = list(self.search(after_seq=after_seq, limit=limit, newest_first=newest_first, **filters))
        self.record(
            asker.event(
                EventName.AUDIT_LOG_READ,
                tenant_id=event_tenant(filters.get("tenant_id")),
                operation="audit read",
                counts={"events": len(events)},
            )
        )
        return events

    def export(self, asker: Asker, **filters: Unpack[EventFilters]) -> Export:
        """Every event matching the filters, up to the newest one now. The export is recorded
        (audit:log:export, with its count) before anything is read out: if that cannot be made
        durable, nothing is exported."""
        through, _ = self.head()
        count = self.count(**filters, through_seq=through)
        self.record(
            asker.event(
                EventName.AUDIT_LOG_EXPORT,
                tenant_id=event_tenant(filters.get("tenant_id")),
                operation="audit export",
                counts={"events": count, "through_seq": through},
            )
        )
        return Export(count, through, self, filters)

    def verify(self, asker: Asker, *, workers: int | None = None) -> VerifyReport:
        """Check the whole chain, its head, purge anchors and every signed digest, and record the
        check (audit:log:verify, failed if anything is wrong). A verification key or digest file
        that cannot be read fails the check (`report.unreadable`). If the check cannot be recorded,
        the report says so (`report.unrecorded`) instead of being lost: its caller shows the verdict
        first, then refuses to call the check done."""
        try:
            if self._public_key is None or self._digests is None:
                raise AuditError("this audit log has no verification key or digest file configured")
            key = load_public_key(self._public_key)
            digests = self._digests.read()
        except AuditError as exc:
            report = VerifyReport(unreadable=True)
            report.fail(None, str(exc))
        else:
            report = verify(self.engine, key, digests, workers=workers)
        try:
            self.record(
                asker.event(
                    EventName.AUDIT_LOG_VERIFY,
                    outcome=Outcome.SUCCESS if report.ok else Outcome.FAILURE,
                    reason=Reason.NONE if report.ok else Reason.INTEGRITY_FAILURE,
                    counts={"events": report.events, "digests": report.digests},
                    operation="audit verify",
                )
            )
        except AuditUnavailable as exc:  # the verdict stands; the caller says it, then that it went unrecorded
            report.unrecorded = exc
        return report

    def undigested(self) -> int:
        """How many events follow the newest signed digest (0 when it covers the head)."""
        seq, _ = self.head()
        last = self._digests.last() if self._digests is not None else None
        return max(0, seq - (last.seq if last is not None else 0))

    @property
    def signs(self) -> bool:
        """Whether this log holds the signing key (and a digest file to write to)."""
        return self._signer is not None and self._digests is not None

    def digest(self, asker: Asker, *, reason: Reason = Reason.ON_DEMAND) -> Digest:
        """Sign the current chain head into the digest file now, recorded as audit:digest:write."""
        if not self.signs:
            raise AuditError("no digest written: the audit signing key is missing; restore it beside the master key")
        self.record(asker.event(EventName.AUDIT_DIGEST_WRITE, reason=reason, operation="audit digest"))
        digest = self.write_digest()
        assert digest is not None  # the event above is in the chain: it is not empty
        return digest

    def close(self) -> None:
        """Stop writing (an append after this opens the connections again) and release them."""
        self._commit.close()
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"AuditLog(engine={self.engine.url.render_as_string(hide_password=True)!r})"


_DEFERRED: ContextVar[tuple[AuditLog, list[AuditEvent]] | None] = ContextVar("sagevault_audit_deferred", default=None)


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
