"""Group commit: how events reach the chain. One transaction per group of concurrent callers,
gap-free sequence numbers, the chain head locked by every append, fail-closed."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from sagevault.db import query_only
from sagevault.errors import AuditError, AuditUnavailable
from sagevault.logs import get_logger

from ._events import AuditEvent
from ._schema import COLUMNS

ZERO_HASH = b"\0" * 32
_COLS = (*COLUMNS, "prev_hash", "hash", "seal")
_INSERT_SQLITE = f"INSERT INTO audit_events ({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))})"  # noqa: S608
_INSERT_PG = f"INSERT INTO audit_events ({', '.join(_COLS)}) VALUES ({', '.join(['%s'] * len(_COLS))})"  # noqa: S608
_GATHER_SECONDS = 0.001  # the longest a group commit waits for callers already under way
canonical_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def chain_hash(prev: bytes, values: Sequence[Any]) -> bytes:  # verify inlines this loop-side
    """SHA-256 over the previous hash and the canonical JSON of the stored row's values
    (`AuditEvent.values`: seq .. fingerprint, in column order)."""
    return hashlib.sha256(prev + canonical_json(values).encode()).digest()  # a tuple encodes as a JSON array


@dataclass(slots=True)
class _Ticket:
    event: AuditEvent
    # Set when a caller of `record` may go on (written, or to lead). `record_many`'s tickets never
    # wait, and creating an Event per event cost a batch a third of its append rate.
    ready: threading.Event | None = None
    # `record_async`'s tickets: the loop to tell and the future it awaits (set on the last of its events).
    waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
    seq: int = 0
    error: BaseException | None = None
    done: bool = False
    lead: bool = False  # woken to lead the next group rather than because it was written


class GroupCommit:
    """Appends events to the chain: one transaction per group of concurrent callers.

    `record` returns only once the event is committed (durable); if it cannot be, it raises
    AuditUnavailable and the caller must refuse the operation. Concurrent callers share
    transactions (group commit): whoever finds no write in progress writes everything queued.
    Appends take the chain head's row lock, so writers in other processes never fork the chain.
    Each group's last event carries `seal(seq, hash)`, a signature over the chain so far, written
    in the group's transaction. `after_group` is called with each group once its callers have been told (the log signs a
    digest there when one is due).
    """

    def __init__(
        self, engine: Engine, after_group: Callable[[int], None], seal: Callable[[int, bytes], bytes] | None = None
    ) -> None:
        self.engine = engine
        self._after_group = after_group
        self._seal = seal  # signs (seq, hash) of each group's last event; None: groups go unsealed
        self._cond = threading.Condition()
        self._pending: list[_Ticket] = []
        self._writing = False
        self._expect = 1  # the last group's size: how many callers the next group waits for
        self.transactions = 0  # committed appends, for monitoring how well commits are shared
        self._writer = threading.Lock()
        # SQLite: writers in several processes (API workers, the CLI) queue on a lock file in the
        # kernel, woken the moment the lock is free, instead of polling SQLite's busy handler
        # (which sleeps 1, 2, 5, 10 ... ms between tries). BEGIN IMMEDIATE still decides.
        path = engine.url.database if engine.dialect.name == "sqlite" else None
        self._lock_path = f"{path}-writer.lock" if path and path != ":memory:" else None
        self._lock_fd: int | None = None
        # Writes for `record_async` callers, who have no thread of their own to lead one: started on first use.
        self._writer_thread: threading.Thread | None = None
        self._writer_pid = 0
        self._writer_lead = False  # the lead was handed to the writer thread
        self._writer_wanted = threading.Event()
        self._closing = False

    def record(self, event: AuditEvent) -> int:
        """Append `event` and return its sequence number once it is committed.

        Group commit by combining: the caller that finds no write in progress leads; it writes
        everything queued, gathering for up to _GATHER_SECONDS as many callers as the last group
        had, wakes each written caller on its own event, and when its own event is durable hands
        the lead to the oldest caller still waiting. Followers never contend for a lock to learn
        that they are done."""
        ready = threading.Event()
        ticket = _Ticket(event, ready)
        lead = self._enqueue([ticket])
        if not lead:
            ready.wait()
            lead = ticket.lead and not ticket.done
        if lead:
            self._lead(ticket)
        _raise_if_failed([ticket])
        return ticket.seq

    def _enqueue(self, tickets: list[_Ticket]) -> bool:
        """Queue `tickets`; whether the caller now leads (no write was in progress)."""
        with self._cond:
            self._pending.extend(tickets)
            self._cond.notify()  # a leader gathering a group may be waiting for these
            lead = not self._writing
            self._writing = True
        return lead

    def _lead(self, own: _Ticket) -> None:
        while not own.done:
            self._write_group(own)
        self._hand_on()

    def _write_group(self, own: _Ticket | None) -> list[_Ticket]:
        """Write the next group and tell its callers (all but `own`, the leader); then the
        digest, if one is due. The group (empty if nothing was queued)."""
        batch = self._write_next()
        self._wake(batch, own)
        self._after(batch)
        return batch

    def _write_next(self) -> list[_Ticket]:
        """Write one group: wait up to _GATHER_SECONDS for as many callers as the last group had
        (they are under way), then everything queued by the time the chain head is locked.
        Callers who arrive while another process holds the head ride along. The group written
        (empty if nothing was queued)."""
        with self._cond:
            deadline = time.monotonic() + _GATHER_SECONDS
            while len(self._pending) < self._expect and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            if not self._pending:
                return []
        try:
            with self._writer, self._file_lock():
                return self._write_locked(None)
        except Exception as exc:  # the lock file could not be had: the queued callers are refused, not stranded
            return self._fail(self._take(), exc)

    @staticmethod
    def _fail(batch: list[_Ticket], exc: BaseException) -> list[_Ticket]:
        for ticket in batch:
            ticket.error, ticket.done = exc, True
        return batch

    def _take(self) -> list[_Ticket]:
        with self._cond:
            batch, self._pending = self._pending, []
            self._expect = max(1, len(batch))
        return batch

    @staticmethod
    def _wake(batch: list[_Ticket], own: _Ticket | None) -> None:
        """Tell the written callers: a thread by its event, an event loop once per batch."""
        loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for ticket in batch:
            if ticket is not own and ticket.ready is not None:
                ticket.ready.set()
            if ticket.waiter is not None:
                loops.setdefault(ticket.waiter[0], []).append(ticket.waiter[1])
        for loop, futures in loops.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, futures)

    def _hand_on(self) -> None:
        """The lead's end: to the oldest waiting thread, or to the writer thread when that caller
        is an event loop's; or no write is in progress any more."""
        with self._cond:
            if not self._pending:
                self._writing = False
                return
            successor = self._pending[0]
            if successor.ready is not None:
                successor.lead = True
                successor.ready.set()
                return
        self._want_writer()

    # --- appending from an event loop ------------------------------------------------------
    async def record_async(self, events: Sequence[AuditEvent]) -> list[int]:
        """Append `events`, in order, and return their sequence numbers once they are committed,
        without blocking the event loop: they join the next group commit (with `record`'s
        callers), written by a thread of this log's, which wakes the loop once per group. Raises
        AuditUnavailable if they could not be made durable."""
        if not events:
            return []
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        tickets = [_Ticket(e) for e in events]
        tickets[-1].waiter = (loop, done)  # a batch is written whole or not at all
        if self._enqueue(tickets):
            self._want_writer()
        await done
        _raise_if_failed(tickets)
        return [t.seq for t in tickets]

    def _want_writer(self) -> None:
        """Give the lead to the writer thread (started on first use)."""
        with self._cond:
            self._writer_lead = True
            thread = self._writer_thread
            if thread is None or not thread.is_alive() or self._writer_pid != os.getpid():  # (a fork has none)
                self._writer_thread = threading.Thread(
                    target=self._writer_loop, name="sagevault-audit-writer", daemon=True
                )
                self._writer_pid = os.getpid()
                self._writer_thread.start()
        self._writer_wanted.set()

    def _writer_loop(self) -> None:
        """Leads for `record_async` callers: writes until nothing is queued, then hands on as
        `record`'s leaders do. Ends when the log closes, once it does not hold the lead."""
        while True:
            self._writer_wanted.wait()
            self._writer_wanted.clear()
            with self._cond:
                lead, self._writer_lead = self._writer_lead, False
            if lead:
                while self._write_group(None):
                    with self._cond:  # a waiting thread leads its own write; this one leads loops' writes
                        if not self._pending or self._pending[0].ready is not None:
                            break
                self._hand_on()
            with self._cond:
                if self._closing and not self._writer_lead:
                    return

    def record_many(self, events: Sequence[AuditEvent]) -> list[int]:
        """Append several events in one transaction (batch producers, imports, benchmarks)."""
        tickets = [_Ticket(e) for e in events]
        try:
            with self._writer, self._file_lock():
                self._write_locked(tickets)
        except Exception as exc:  # the lock file could not be had
            self._fail(tickets, exc)
        self._after(tickets)
        for t in tickets:
            if t.error is not None:
                raise AuditUnavailable(f"security events could not be written ({type(t.error).__name__})") from t.error
        return [t.seq for t in tickets]

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        if self._lock_path is None:
            yield
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @staticmethod
    def _locked_head(raw: Any, cur: Any, sqlite: bool) -> tuple[int, bytes]:
        """Begin the append's transaction and read the chain head, locked until it ends."""
        if sqlite:
            query_only(raw, False)  # whatever the pooled connection's last unit of work was
            cur.execute("BEGIN IMMEDIATE")
            cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
        else:
            cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
        head = cur.fetchone()
        if head is None:
            raise AuditError("the audit chain head row is missing; run the audit migrations")
        return int(head[0]), bytes(head[1])

    def _write_locked(self, batch: list[_Ticket] | None) -> list[_Ticket]:
        """One transaction through the driver's own connection (this is the latency every
        durable caller waits for, so it skips SQLAlchemy's per-statement work): `batch`, or
        (None) everything queued once the chain head is locked. Every ticket written is marked
        done, with the error if the transaction failed: fail closed. Returns the tickets."""
        seq = 0
        taken = batch
        raw: Any = None
        try:
            raw = self.engine.raw_connection()
            cur = raw.cursor()
            sqlite = self.engine.dialect.name == "sqlite"
            seq, prev = self._locked_head(raw, cur, sqlite)
            if taken is None:
                taken = self._take()
            rows = []
            for ticket in taken:
                seq += 1
                values = ticket.event.values(seq)
                digest = chain_hash(prev, values)
                rows.append((*values, prev, digest, None))
                ticket.seq = seq
                prev = digest
            if rows and self._seal is not None:  # the group's seal, on its last event, in its transaction
                rows[-1] = (*rows[-1][:-1], self._seal(seq, prev))
            cur.executemany(_INSERT_SQLITE if sqlite else _INSERT_PG, rows)
            cur.execute(
                "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"
                if sqlite
                else "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1",
                (seq, prev),
            )
            if sqlite:
                cur.execute("COMMIT")
            else:
                raw.commit()
            self.transactions += 1
        except Exception as exc:  # every waiter learns the write failed: fail closed
            if taken is None:
                taken = self._take()
            for ticket in taken:
                ticket.error = exc
            if raw is not None:
                with contextlib.suppress(Exception):
                    raw.rollback() if self.engine.dialect.name != "sqlite" else raw.cursor().execute("ROLLBACK")
        finally:
            if raw is not None:
                with contextlib.suppress(Exception):  # a lost connection: the pool discards it
                    raw.close()
            for ticket in taken or ():
                ticket.done = True
        return taken

    def _after(self, batch: list[_Ticket]) -> None:
        if batch and batch[-1].error is None:
            self._after_group(batch[-1].seq)

    def close(self) -> None:
        """Stop the writer thread once what it leads is written, then release the lock file (an
        append after this opens it again). A write still under way after 10 s keeps it: closing
        under it would strand its callers."""
        with self._cond:  # `_want_writer` makes and starts the thread under it: never seen unstarted
            thread = self._writer_thread
        if thread is not None:
            self._closing = True
            self._writer_wanted.set()
            thread.join(timeout=10)
            with self._cond:
                if self._writer_thread is thread and not thread.is_alive():
                    self._writer_thread = None
                self._closing = False
        if not self._writer.acquire(timeout=10):
            get_logger("sagevault.audit").warning("audit log closed with a write under way")
            return
        try:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
        finally:
            self._writer.release()


def _raise_if_failed(tickets: list[_Ticket]) -> None:
    for t in tickets:
        if t.error is not None:
            raise AuditUnavailable(
                f"the security event {t.event.name} could not be written ({type(t.error).__name__}); "
                "the operation was refused. Check the audit database and retry"
            ) from t.error


def _settle(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # a cancelled caller: its events are written all the same
            future.set_result(None)
