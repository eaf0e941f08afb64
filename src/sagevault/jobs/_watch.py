"""The monitor's edge: follow the security event log, evaluate, deliver alarms.

`Watch.step` reads the events after the monitor's cursor (by seq, so every node's events are
seen, once) and evaluates them in one unit of work with the alarms they raise. `Watch.deliver`
sends what the outbox holds to the sinks, each delivery its own unit of work, a failure
retried with backoff. `Watch.running()` does both in a thread: woken by this process's commits
(`AuditLog.on_commit`) and polling for other processes', and only while it leads (one detector
per deployment: a PostgreSQL advisory lock, or a lock file beside the SQLite database).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

from sagevault.audit import AuditEvent, EventName, outcome_of
from sagevault.errors import SinkError
from sagevault.identity import Channel
from sagevault.logs import get_logger
from sagevault.monitor import MONITOR, Evaluated, Seen

from ._runner import leader

if TYPE_CHECKING:
    from sagevault.deployment import Deployment

log = get_logger("sagevault.monitor")


class Watch:
    def __init__(self, d: Deployment, *, batch: int = 5000, poll: float = 0.5) -> None:
        self.d = d
        self.monitor = d.monitor
        self.batch = batch
        self.poll = poll
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refreshed = 0.0
        self.leading = threading.Event()  # set while this process's thread leads
        self.failed_passes = 0  # passes failed in a row
        d.audit.on_commit(lambda _seq: self._wake.set())

    def step(self) -> int:
        """Evaluate the next batch of events; how many there were."""
        monitor = self.monitor
        if monitor.cursor < 0:
            with self.d.unit_of_work() as conn:
                monitor.resume(conn)
            self._warm()
        if time.monotonic() - self._refreshed > 2.0:  # canaries another process planted
            monitor.canaries.refresh(self.d.engine)
            self._refreshed = time.monotonic()
        rows = self.d.audit.follow(monitor.cursor, self.batch)
        if not rows:
            return 0
        events = [Seen.from_row(r) for r in rows]
        try:
            with self.d.unit_of_work() as conn:
                result: Evaluated = monitor.evaluate(conn, events)
        except BaseException:
            monitor.cursor = -1  # what the detectors hold is ahead of the database: reload it
            raise
        for alarm in result.raised:
            log.warning("alarm raised", alarm=alarm.id, rule=alarm.rule, severity=alarm.severity, count=alarm.count)
        return len(rows)

    def _warm(self) -> None:
        """After a (re)start: read again the events of the longest window before the cursor, so
        an attack that straddles the restart is still seen whole."""
        cursor = self.monitor.cursor
        last = self.d.audit.time_of(cursor) if cursor else None
        if last is None:
            return
        since = last - timedelta(seconds=self.monitor.detector.horizon)
        self.monitor.warm([Seen.from_row(r) for r in self.d.audit.window(since, cursor)])

    def catch_up(self) -> int:
        """Evaluate until no event is left; how many there were."""
        total = 0
        while True:
            n = self.step()
            total += n
            if n < self.batch:
                return total

    def deliver(self) -> int:
        """Deliver what is due in the outbox; how many were delivered."""
        with self.d.unit_of_work() as conn:
            due = self.monitor.due(conn)
        delivered = 0
        for outbox_id, sink_name, attempts, alarm in due:
            sink = self.d.sinks.get(sink_name)
            try:
                if sink is None:
                    raise SinkError(f"sink {sink_name} is not configured any more")
                sink.deliver(alarm.payload())
            except Exception as exc:  # any failure of one delivery: retried, counted, the others go on
                cause = str(exc) if isinstance(exc, SinkError) else f"{sink_name} failed ({type(exc).__name__})"
                with self.d.unit_of_work() as conn:
                    self.monitor.failed(conn, outbox_id, sink_name, attempts, cause)
                log.warning("alarm not delivered", alarm=alarm.id, sink=sink_name, attempts=attempts + 1)
                continue
            with self.d.unit_of_work() as conn:
                self.monitor.delivered(conn, outbox_id)
            delivered += 1
        return delivered

    # --- the thread ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            with leader(self.d.engine, "monitor") as leads:
                if not leads:
                    self._stop.wait(2.0)
                    continue
                self.leading.set()
                try:
                    self._lead()
                finally:
                    self.leading.clear()

    def run_pass(self, *, deliver: bool = True) -> bool:
        """One pass (evaluate what is new, deliver what is due); False if it failed. The third
        failure in a row, and every 60th after, is recorded as scheduler:job:fail (operation
        `monitor`), which the job-failed rule raises an alarm on once a pass works again."""
        try:
            self.catch_up()
            if deliver:
                self.deliver()
        except Exception as exc:  # the database or the log is away: the caller tries again shortly
            self.failed_passes += 1
            log.error("monitor pass failed", error=type(exc).__name__, failed_passes=self.failed_passes)  # noqa: TRY400 (no traceback: it may hold values)
            if self.failed_passes % 60 == 3:
                with contextlib.suppress(Exception):  # the log may be what is away
                    outcome, reason = outcome_of(exc)
                    self.d.audit.record(
                        AuditEvent(
                            name=EventName.SCHEDULER_JOB_FAIL,
                            channel=Channel.SCHEDULER,
                            actor=MONITOR.id,
                            outcome=outcome,
                            reason=reason,
                            operation="monitor",
                            counts={"failed_passes": self.failed_passes},
                        )
                    )
            return False
        self.failed_passes = 0
        return True

    def _lead(self) -> None:
        self.monitor.cursor = -1  # another node may have led meanwhile: start from the database
        next_delivery = 0.0
        while not self._stop.is_set():
            due = time.monotonic() >= next_delivery
            if not self.run_pass(deliver=due):
                self._stop.wait(1.0)
            elif due:
                next_delivery = time.monotonic() + 1.0
            self._wake.wait(self.poll)
            self._wake.clear()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sagevault-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    @contextlib.contextmanager
    def running(self) -> Iterator[Watch]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
