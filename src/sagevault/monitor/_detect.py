"""The detectors: each rule kind evaluated on events one at a time, in memory.

`Detector.feed` takes one security event (`Seen`, as stored) and returns what fired. Only the
rules that read the event's name look at it. Windows are kept per group and pruned as they go;
what a rule learns (a principal's per-minute rate, its reveal volume per window) is `state` and
is saved with the alarms, so a restart goes on from it.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sagevault.logs import get_logger

from ._rules import Kind, Rule, parse_hours

_log = get_logger("sagevault.monitor")

EVIDENCE_SEQS = 20  # event sequence numbers an alarm keeps as evidence (the first ones seen)


class Seen(NamedTuple):
    """One security event as the detectors read it (from the audit table's row)."""

    seq: int
    at: float  # seconds since the epoch
    name: str
    outcome: str
    reason: str
    actor: str | None
    tenant: str | None
    source: str | None  # the hashed client IP
    operation: str | None
    fingerprint: str | None  # a keyed hash (the login a failed log-in tried) or a digest
    record_ids: tuple[int, ...]
    counts: Mapping[str, int]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Seen:
        """From a row of `AuditLog.follow` (`FOLLOW_COLUMNS` order)."""
        seq, at, name, outcome, reason, actor, tenant, source, operation, fingerprint, ids, counts = row
        return cls(
            int(seq),
            datetime.fromisoformat(at).timestamp(),
            name,
            outcome,
            reason,
            actor,
            tenant,
            source,
            operation,
            fingerprint,
            tuple(json.loads(ids)) if ids != "[]" else (),
            json.loads(counts) if counts != "{}" else {},
        )

    @classmethod
    def from_export(cls, item: Mapping[str, Any]) -> Seen:
        """From an exported event (`audit export --format jsonl`, one JSON object per line)."""
        return cls(
            int(item["seq"]),
            datetime.fromisoformat(str(item["at"])).timestamp(),
            str(item["name"]),
            str(item.get("outcome") or "success"),
            str(item.get("reason") or ""),
            item.get("actor"),
            item.get("tenant_id"),
            item.get("client_ip_hash"),
            item.get("operation"),
            item.get("fingerprint"),
            tuple(int(i) for i in item.get("record_ids") or ()),
            {str(k): int(v) for k, v in (item.get("counts") or {}).items()},
        )


@dataclass
class Firing:
    """A rule fired on an event: the group it fired for and the evidence."""

    rule: Rule
    group_key: str
    at: float
    seqs: list[int]  # the events behind it (for a window: the window's, up to EVIDENCE_SEQS)
    events: int  # how many events those are (the alarm's count when it is new)
    actor: str | None
    tenant: str | None
    evidence: dict[str, Any] = field(default_factory=dict)
    last_seq: int = 0  # the event it fired on


CanaryCheck = Callable[[str | None, Sequence[int]], list[int]]


def _value(event: Seen, name: str) -> str | None:
    return getattr(event, name)  # type: ignore[no-any-return]


class _Eval:
    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.learning = True  # False while a restart refills the windows: what it sees was learned already
        self._where = list(rule.where.items())
        self._group = rule.group_by

    def matches(self, event: Seen) -> bool:
        """The `where` filters hold, and the event has a value for every `group_by` field (one
        that cannot be attributed, such as a refusal with no source address, is not counted)."""
        return all(_value(event, k) in allowed for k, allowed in self._where) and all(
            _value(event, k) is not None for k in self._group
        )

    def key(self, event: Seen) -> str:
        return "|".join(f"{k}={_value(event, k)}" for k in self._group) or "all"

    def fire(self, event: Seen, key: str, seqs: list[int], events: int, **evidence: Any) -> Firing:
        return Firing(self.rule, key, event.at, seqs, events, event.actor, event.tenant, evidence, event.seq)

    def see(self, event: Seen) -> Firing | None:
        raise NotImplementedError

    def state(self) -> dict[str, dict[str, Any]]:
        """What this rule has learned, per group (only rules with baselines have any)."""
        return {}

    def load(self, key: str, state: dict[str, Any]) -> None:
        """Take back a group's learned state after a restart."""

    def sweep(self, now: float) -> None:
        """Forget groups whose windows hold nothing any more."""


class _Single(_Eval):
    """`event`: every matching event fires."""

    def see(self, event: Seen) -> Firing | None:
        return self.fire(event, self.key(event), [event.seq], 1, event_name=event.name, outcome=event.outcome)


class _Schedule(_Eval):
    """`schedule`: a matching event outside the allowed hours (policy profile, or the rule's)."""

    def __init__(self, rule: Rule, hours: str, zone: str) -> None:
        super().__init__(rule)
        self.hours = rule.param("hours") or hours
        self._start, self._end = parse_hours(self.hours)
        self._zone = ZoneInfo(zone)
        self._zone_name = zone

    def see(self, event: Seen) -> Firing | None:
        local = datetime.fromtimestamp(event.at, self._zone)
        minute = local.hour * 60 + local.minute
        if self._start <= minute < self._end:
            return None
        return self.fire(
            event,
            self.key(event),
            [event.seq],
            1,
            local_time=local.strftime("%H:%M"),
            allowed=self.hours,
            zone=self._zone_name,
        )


class _Canary(_Eval):
    def __init__(self, rule: Rule, canaries: CanaryCheck) -> None:
        super().__init__(rule)
        self._canaries = canaries

    def see(self, event: Seen) -> Firing | None:
        if not event.record_ids:
            return None
        touched = self._canaries(event.tenant, event.record_ids)
        if not touched:
            return None
        return self.fire(event, self.key(event), [event.seq], 1, event_name=event.name, canary_records=touched[:20])


class _Threshold(_Eval):
    """>= threshold matching events (or distinct values of a field) per group in a sliding window."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.window = float(rule.param("window_seconds"))
        self.threshold = int(rule.param("threshold"))
        self.distinct: str | None = rule.param("distinct")
        self._windows: dict[str, deque[tuple[float, int, str | None]]] = {}
        self._values: dict[str, Counter[str | None]] = {}

    def see(self, event: Seen) -> Firing | None:
        key = self.key(event)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = deque()
        value = _value(event, self.distinct) if self.distinct else None
        window.append((event.at, event.seq, value))
        values = self._values.setdefault(key, Counter()) if self.distinct else None
        if values is not None:
            values[value] += 1
        horizon = event.at - self.window
        while window[0][0] <= horizon:
            _, _, old = window.popleft()
            if values is not None:
                values[old] -= 1
                if not values[old]:
                    del values[old]
        reached = len(values) if values is not None else len(window)
        if reached < self.threshold:
            return None
        seqs = [s for _, s, _ in list(window)[:EVIDENCE_SEQS]]
        extra = {"distinct": self.distinct, "distinct_values": reached} if self.distinct else {}
        return self.fire(
            event,
            key,
            seqs,
            len(window),
            window_seconds=self.window,
            threshold=self.threshold,
            observed=reached,
            **extra,
        )

    def sweep(self, now: float) -> None:
        horizon = now - self.window
        for key in [k for k, w in self._windows.items() if not w or w[-1][0] <= horizon]:
            del self._windows[key]
            self._values.pop(key, None)


@dataclass
class _Minute:
    minute: int = -1
    count: int = 0
    seqs: list[int] = field(default_factory=list)
    mean: float = 0.0
    var: float = 0.0
    minutes: int = 0  # active minutes learned


class _Rate(_Eval):
    """Per-minute counts per group against an EWMA of the group's active minutes: fires over
    the hard cap from the first minute, and once `warmup_minutes` are learned, over
    max(floor, mean x ratio, mean + sigmas x sd)."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.floor, self.cap = int(rule.param("floor")), int(rule.param("cap"))
        self.ratio, self.sigmas = float(rule.param("ratio")), float(rule.param("sigmas"))
        self.alpha, self.warmup = float(rule.param("alpha")), int(rule.param("warmup_minutes"))
        self._groups: dict[str, _Minute] = {}
        self.changed: set[str] = set()

    def _close(self, g: _Minute) -> None:
        if g.count and self.learning:
            if g.minutes == 0:
                g.mean, g.var = float(g.count), 0.0
            else:
                diff = g.count - g.mean
                g.mean += self.alpha * diff
                g.var = (1 - self.alpha) * (g.var + self.alpha * diff * diff)
            g.minutes += 1

    def limit(self, g: _Minute) -> float:
        if g.minutes < self.warmup:
            return float(self.cap)
        return min(
            float(self.cap), max(float(self.floor), g.mean * self.ratio, g.mean + self.sigmas * math.sqrt(g.var))
        )

    def see(self, event: Seen) -> Firing | None:
        key = self.key(event)
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = _Minute()
        minute = int(event.at // 60)
        if minute != g.minute:
            if minute < g.minute:  # an event from an earlier minute (clock skew between nodes): count it now
                minute = g.minute
            else:
                self._close(g)
                g.minute, g.count, g.seqs = minute, 0, []
                self.changed.add(key)
        g.count += 1
        if len(g.seqs) < EVIDENCE_SEQS:
            g.seqs.append(event.seq)
        limit = self.limit(g)
        if g.count <= limit:
            return None
        baseline = {"mean_per_minute": round(g.mean, 2), "sd": round(math.sqrt(g.var), 2), "minutes": g.minutes}
        return self.fire(
            event,
            key,
            list(g.seqs),
            g.count,
            observed_per_minute=g.count,
            limit=round(limit, 2),
            hard_cap=self.cap,
            baseline=baseline,
        )

    def state(self) -> dict[str, dict[str, Any]]:
        out = {}
        for key in self.changed:
            g = self._groups.get(key)
            if g is not None:
                out[key] = {"mean": g.mean, "var": g.var, "minutes": g.minutes}
        self.changed.clear()
        return out

    def load(self, key: str, state: dict[str, Any]) -> None:
        self._groups[key] = _Minute(mean=float(state["mean"]), var=float(state["var"]), minutes=int(state["minutes"]))

    def sweep(self, now: float) -> None:
        minute = int(now // 60)
        for key, g in list(self._groups.items()):
            if g.minute < minute - 1 and g.count:
                self._close(g)  # learn the finished minute; keep what was learned, drop the window
                g.minute, g.count, g.seqs = -1, 0, []
                self.changed.add(key)


@dataclass
class _Volume:
    window: int = -1
    total: int = 0
    seqs: list[int] = field(default_factory=list)
    history: list[int] = field(default_factory=list)  # totals of the last windows with any volume


class _VolumeEval(_Eval):
    """PII fields revealed (or records touched) per group per window, against median + mads x MAD
    of the group's past windows (once it has `min_windows`), above `floor`; and a hard cap."""

    KEEP = 48

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.measure = rule.param("measure")
        self.window = int(rule.param("window_seconds"))
        self.floor, self.cap = int(rule.param("floor")), int(rule.param("cap"))
        self.mads, self.min_windows = float(rule.param("mads")), int(rule.param("min_windows"))
        self._groups: dict[str, _Volume] = {}
        self.changed: set[str] = set()

    def amount(self, event: Seen) -> int:
        if self.measure == "fields":
            return int(event.counts.get("fields", 0))
        return len(event.record_ids) or int(event.counts.get("orders", 0))

    def limit(self, g: _Volume) -> float:
        if len(g.history) < self.min_windows:
            return float(self.cap)
        median = statistics.median(g.history)
        mad = statistics.median(abs(h - median) for h in g.history)
        return min(float(self.cap), max(float(self.floor), median + self.mads * 1.4826 * mad))

    def see(self, event: Seen) -> Firing | None:
        amount = self.amount(event)
        if amount <= 0:
            return None
        key = self.key(event)
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = _Volume()
        window = int(event.at // self.window)
        if window > g.window:
            self._close(g)
            g.window, g.total, g.seqs = window, 0, []
            self.changed.add(key)
        g.total += amount
        if len(g.seqs) < EVIDENCE_SEQS:
            g.seqs.append(event.seq)
        limit = self.limit(g)
        if g.total <= limit:
            return None
        baseline = {"windows": len(g.history), "median": statistics.median(g.history) if g.history else 0}
        return self.fire(
            event,
            key,
            list(g.seqs),
            len(g.seqs),
            measure=self.measure,
            observed=g.total,
            window_seconds=self.window,
            limit=round(limit, 2),
            hard_cap=self.cap,
            baseline=baseline,
        )

    def _close(self, g: _Volume) -> None:
        if g.total and self.learning:
            g.history = [*g.history, g.total][-self.KEEP :]

    def state(self) -> dict[str, dict[str, Any]]:
        out = {k: {"history": g.history} for k in self.changed if (g := self._groups.get(k)) is not None}
        self.changed.clear()
        return out

    def load(self, key: str, state: dict[str, Any]) -> None:
        self._groups[key] = _Volume(history=[int(h) for h in state["history"]][-self.KEEP :])

    def sweep(self, now: float) -> None:
        window = int(now // self.window)
        for key, g in list(self._groups.items()):
            if g.window < window and g.total:
                self._close(g)
                g.window, g.total, g.seqs = -1, 0, []
                self.changed.add(key)


class Detector:
    """Every enabled rule, indexed by the event names it reads."""

    SWEEP_EVERY = 10_000

    def __init__(self, rules: Iterable[Rule], *, canaries: CanaryCheck, hours: str, zone: str = "UTC") -> None:
        self.rules = [r for r in rules if r.enabled]
        self._evals: dict[str, _Eval] = {}
        self._by_name: dict[str, list[_Eval]] = {}
        for rule in self.rules:
            ev: _Eval
            if rule.kind is Kind.THRESHOLD:
                ev = _Threshold(rule)
            elif rule.kind is Kind.RATE:
                ev = _Rate(rule)
            elif rule.kind is Kind.VOLUME:
                ev = _VolumeEval(rule)
            elif rule.kind is Kind.CANARY:
                ev = _Canary(rule, canaries)
            elif rule.kind is Kind.SCHEDULE:
                ev = _Schedule(rule, hours, zone)
            else:
                ev = _Single(rule)
            self._evals[rule.id] = ev
            for name in rule.events:
                self._by_name.setdefault(name.value, []).append(ev)
        self._seen = 0
        self.last_at = 0.0
        self.failures: dict[str, int] = {}  # rule id -> events it failed on

    @property
    def horizon(self) -> float:
        """The longest window any rule keeps, in seconds (what a restart reads again)."""
        spans = [60.0]
        for ev in self._evals.values():
            window = ev.rule.params.get("window_seconds")
            if window:
                spans.append(float(window))
        return max(spans)

    def feed(self, event: Seen) -> list[Firing]:
        self._seen += 1
        self.last_at = max(self.last_at, event.at)
        if self._seen % self.SWEEP_EVERY == 0:
            self.sweep(event.at)
        fired = []
        for ev in self._by_name.get(event.name, ()):
            try:
                firing = ev.see(event) if ev.matches(event) else None
            except Exception as exc:  # one rule's failure must not blind the others
                self.failures[ev.rule.id] = self.failures.get(ev.rule.id, 0) + 1
                _log.error("rule failed on an event", rule=ev.rule.id, seq=event.seq, error=type(exc).__name__)
                continue
            if firing is not None:
                fired.append(firing)
        return fired

    def sweep(self, now: float) -> None:
        for ev in self._evals.values():
            ev.sweep(now)

    def refill(self, events: Iterable[Seen]) -> None:
        """See `events` again (already evaluated before a restart) to refill the windows, without
        learning from them twice or reporting what fires."""
        for ev in self._evals.values():
            ev.learning = False
        try:
            for event in events:
                self.feed(event)
        finally:
            for ev in self._evals.values():
                ev.learning = True

    def learned(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(rule, group, state) for every group whose baseline changed since the last call."""
        return [(rule_id, key, state) for rule_id, ev in self._evals.items() for key, state in ev.state().items()]

    def restore(self, rule_id: str, key: str, state: dict[str, Any]) -> None:
        ev = self._evals.get(rule_id)
        if ev is not None:
            with contextlib.suppress(KeyError, TypeError, ValueError):  # another version's: learnt again
                ev.load(key, state)
