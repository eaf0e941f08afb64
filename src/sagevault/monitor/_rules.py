"""Detection rules as data: one TOML file per rule.

The rules SageVault ships are in `monitor/rules/`; a file in `<data_dir>/rules/` with the same
`id` replaces the shipped rule (say `enabled = false` to turn it off), one with a new `id` adds
a rule. A file that cannot be used is refused with its path, the line and what is wrong, and
the service does not start on it: an unknown key, an unknown event name, a threshold that can
never be reached, a response that does not exist.

A rule counts the events it names that pass its `where` filters and have a value for each of its
`group_by` fields (an event that names no source is not counted by a per-source rule).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from sagevault.audit import EventName, Outcome, Reason
from sagevault.errors import RuleError


class Kind(StrEnum):
    THRESHOLD = "threshold"  # >= N matching events (or distinct values) per group in a sliding window
    RATE = "rate"  # per-minute count against a learned baseline (EWMA), a floor and a hard cap
    VOLUME = "volume"  # PII fields or records per window against median + MAD, and a hard cap
    CANARY = "canary"  # any event that touches a canary record
    EVENT = "event"  # any single matching event
    SCHEDULE = "schedule"  # a matching event outside the policy's allowed hours


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Response(StrEnum):
    LOCK_PRINCIPAL = "lock-principal"
    REVOKE_SESSIONS = "revoke-sessions"
    KILL_SWITCH = "kill-switch"
    OPEN_INCIDENT = "open-incident"


# Rules of these kinds always open an incident of this type (DPP 4: canary access and bulk retrieval
# are incidents, whatever else the rule says).
ALWAYS_OPENS = {Kind.CANARY: "canary-access", Kind.VOLUME: "bulk-exfiltration"}


# The event fields a rule may group by, filter on or count distinct values of.
FIELDS = ("actor", "tenant", "source", "name", "operation", "outcome", "reason", "fingerprint")
MEASURES = {"fields": "PII fields revealed", "records": "records read, found or revealed"}
_ID = re.compile(r"[a-z][a-z0-9-]{1,62}[a-z0-9]")
# Fields whose values come from a closed list: a `where` on another value is refused.
_CLOSED: dict[str, frozenset[str]] = {
    "outcome": frozenset(o.value for o in Outcome),
    "reason": frozenset(r.value for r in Reason),
    "name": frozenset(e.value for e in EventName),
}
_CLAUSE = re.compile(r"\d{1,2}(\.\d{1,2}){0,2}")

_COMMON = {"id", "version", "title", "clause", "severity", "kind", "events", "enabled", "description"}
_COMMON |= {"where", "group_by", "suppress_seconds", "responses", "incident"}
_KEYS: dict[Kind, set[str]] = {
    Kind.THRESHOLD: {"window_seconds", "threshold", "distinct"},
    Kind.RATE: {"floor", "cap", "ratio", "sigmas", "alpha", "warmup_minutes"},
    Kind.VOLUME: {"measure", "window_seconds", "floor", "cap", "mads", "min_windows"},
    Kind.CANARY: set(),
    Kind.EVENT: set(),
    Kind.SCHEDULE: {"hours"},
}


@dataclass(frozen=True)
class Rule:
    id: str
    version: int
    title: str
    clause: str
    severity: Severity
    kind: Kind
    events: frozenset[EventName]
    source: str  # the file it came from ("package:<name>" for a shipped rule)
    enabled: bool = True
    description: str = ""
    where: Mapping[str, frozenset[str]] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    suppress_seconds: int = 900
    responses: tuple[Response, ...] = ()
    incident: str | None = None  # the type of incident open-incident opens
    params: Mapping[str, Any] = field(default_factory=dict)

    def param(self, name: str) -> Any:
        return self.params[name]

    def fingerprint(self) -> str:
        """SHA-256 of the rule's every setting, canonical (where it came from is not a setting)."""
        data = {
            **{k: v for k, v in self.summary().items() if k != "source"},
            "where": {k: sorted(v) for k, v in sorted(self.where.items())},
            "suppress_seconds": self.suppress_seconds,
            "params": dict(sorted(self.params.items())),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "clause": self.clause,
            "severity": self.severity.value,
            "kind": self.kind.value,
            "enabled": self.enabled,
            "events": sorted(e.value for e in self.events),
            "group_by": list(self.group_by),
            "responses": [r.value for r in self.responses],
            "incident": self.incident,
            "source": self.source,
        }


# Defaults of the kinds' parameters (a rule file may set any of them).
_DEFAULTS: dict[Kind, dict[str, Any]] = {
    Kind.THRESHOLD: {"distinct": None},
    Kind.RATE: {"ratio": 10.0, "sigmas": 6.0, "alpha": 0.1, "warmup_minutes": 10},
    Kind.VOLUME: {"mads": 6.0, "min_windows": 6},
    Kind.SCHEDULE: {"hours": None},
}
_REQUIRED: dict[Kind, tuple[str, ...]] = {
    Kind.THRESHOLD: ("window_seconds", "threshold"),
    Kind.RATE: ("floor", "cap"),
    Kind.VOLUME: ("measure", "window_seconds", "floor", "cap"),
}


class _Problem(Exception):
    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _line_of(text: str, key: str | None) -> int:
    """The line a setting is on: `a.b` is `b = ` (in a [a] table) or else `a = { ... }` (inline)."""
    for part in reversed((key or "").split(".")):
        pattern = re.compile(rf"^\s*{re.escape(part)}\s*=|^\s*\[{re.escape(part)}\]", re.MULTILINE)
        match = pattern.search(text)
        if part and match:
            return text.count("\n", 0, match.start()) + 1
    return 1


def parse_rule(text: str, source: str) -> Rule:
    """One rule from its file's text; RuleError names `source`, the line and what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = "" if "line" in str(exc) else f" (line {text.rstrip(chr(10)).count(chr(10)) + 1}, the last)"
        raise RuleError(f"{source}: not valid TOML: {exc}{where}") from None
    try:
        return _build(data, source)
    except _Problem as problem:
        raise RuleError(f"{source} line {_line_of(text, problem.key)}: {problem.message}") from None


def _want(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in data:
        raise _Problem(None, f"{key} is missing ({what})")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _Problem(key, f"{key} must be {what}")
    return value


def _number(data: Mapping[str, Any], key: str, *, minimum: float, whole: bool = True) -> Any:
    value = data[key]
    ok = isinstance(value, int) if whole else isinstance(value, int | float)
    if not ok or isinstance(value, bool) or value < minimum:
        raise _Problem(key, f"{key} must be a {'whole ' if whole else ''}number >= {minimum:g}")
    return value


def _event(name: Any) -> EventName:
    try:
        return EventName(name)
    except ValueError:
        near = difflib.get_close_matches(str(name), [e.value for e in EventName], n=1)
        hint = f"; did you mean {near[0]}?" if near else "; `sagevault audit events` lists them"
        raise _Problem("events", f"unknown event name {name!r}{hint}") from None


def _build(data: dict[str, Any], source: str) -> Rule:  # noqa: PLR0912 (one check per setting)
    rule_id = _want(data, "id", str, "the rule's id, e.g. denied-calls-principal")
    if not _ID.fullmatch(rule_id):
        raise _Problem("id", "id must be 3-64 lower-case letters, digits and dashes")
    kind_text = _want(data, "kind", str, f"one of {', '.join(k.value for k in Kind)}")
    try:
        kind = Kind(kind_text)
    except ValueError:
        raise _Problem("kind", f"kind must be one of {', '.join(k.value for k in Kind)}") from None
    unknown = sorted(set(data) - _COMMON - _KEYS[kind])
    if unknown:
        raise _Problem(unknown[0], f"{unknown[0]} is not a setting of a {kind.value} rule")
    version = _want(data, "version", int, "a whole number >= 1, raised on every change")
    _number(data, "version", minimum=1)
    clause = _want(data, "clause", str, "the DPP clause it serves, e.g. 4.2")
    if not _CLAUSE.fullmatch(clause):
        raise _Problem("clause", "clause must be a DPP clause number such as 4 or 4.2")
    try:
        severity = Severity(_want(data, "severity", str, "low, medium, high or critical"))
    except ValueError:
        raise _Problem("severity", "severity must be low, medium, high or critical") from None
    names = _want(data, "events", list, "a list of event names")
    if not names:
        raise _Problem("events", "events must name at least one event")
    events = frozenset(_event(n) for n in names)
    own = sorted(e.value for e in events if e.value.startswith("monitor:alarm:"))
    if own:
        raise _Problem("events", f"a rule may not read the monitor's own alarm events ({own[0]}): it would feed itself")
    where = _where(data.get("where", {}))
    group_by = tuple(_want(data, "group_by", list, "a list of fields") if "group_by" in data else ())
    for name in group_by:
        if name not in FIELDS:
            raise _Problem("group_by", f"group_by field {name!r} is not one of {', '.join(FIELDS)}")
    suppress = _number(data, "suppress_seconds", minimum=0) if "suppress_seconds" in data else 900
    responses = tuple(_response(r) for r in (data.get("responses") or []))
    responses, incident = _incident(kind, responses, data.get("incident"))
    params = {**_DEFAULTS.get(kind, {}), **{k: data[k] for k in _KEYS[kind] if k in data}}
    for key in _REQUIRED.get(kind, ()):
        if key not in data:
            raise _Problem(None, f"{key} is missing (a {kind.value} rule needs {', '.join(_REQUIRED[kind])})")
    _check_params(kind, params, group_by, events)
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _Problem("enabled", "enabled must be true or false")
    title = _want(data, "title", str, "a one-line title")
    if not 0 < len(title) <= 200 or "\n" in title:
        raise _Problem("title", "title must be one line of at most 200 characters")
    return Rule(
        id=rule_id,
        version=version,
        title=title,
        clause=clause,
        severity=severity,
        kind=kind,
        events=events,
        source=source,
        enabled=enabled,
        description=str(data.get("description", "")),
        where=where,
        group_by=group_by,
        suppress_seconds=suppress,
        responses=responses,
        incident=incident,
        params=params,
    )


def _where(value: Any) -> dict[str, frozenset[str]]:
    if not isinstance(value, dict):
        raise _Problem("where", "where must be a table of field = [values]")
    out: dict[str, frozenset[str]] = {}
    for key, allowed in value.items():
        if key not in FIELDS:
            raise _Problem(f"where.{key}", f"where field {key!r} is not one of {', '.join(FIELDS)}")
        items = allowed if isinstance(allowed, list) else [allowed]
        if not items or not all(isinstance(i, str) for i in items):
            raise _Problem(f"where.{key}", f"where.{key} must be a string or a list of strings")
        closed = _CLOSED.get(key)
        wrong = sorted(i for i in items if closed is not None and i not in closed)
        if wrong:  # a value no event can carry: the rule would never fire
            raise _Problem(
                f"where.{key}", f"where.{key} = {wrong[0]!r} is not one of: {', '.join(sorted(closed or ()))}"
            )
        out[key] = frozenset(items)
    return out


def _incident(kind: Kind, responses: tuple[Response, ...], value: Any) -> tuple[tuple[Response, ...], str | None]:
    """The responses with open-incident where the kind always opens one, and the incident type."""
    if value is not None and (not isinstance(value, str) or not _ID.fullmatch(value)):
        raise _Problem("incident", "incident must be an incident type of the plan, e.g. credential-compromise")
    always = ALWAYS_OPENS.get(kind)
    if always is not None and value not in (None, always):
        raise _Problem("incident", f"a {kind.value} rule always opens a {always} incident")
    if always is not None and Response.OPEN_INCIDENT not in responses:
        responses = (*responses, Response.OPEN_INCIDENT)
    if Response.OPEN_INCIDENT not in responses:
        if value is not None:
            raise _Problem("incident", "incident is the type open-incident opens: add open-incident to responses")
        return responses, None
    return responses, value or always or "unauthorized-access"


def _response(value: Any) -> Response:
    try:
        return Response(value)
    except ValueError:
        raise _Problem("responses", f"responses may be {', '.join(r.value for r in Response)}; not {value!r}") from None


def _check_params(  # noqa: PLR0912 (one branch per kind and setting)
    kind: Kind, p: dict[str, Any], group_by: tuple[str, ...], events: frozenset[EventName]
) -> None:
    """Types and ranges, and the settings under which the rule could never fire."""
    if kind is Kind.THRESHOLD:
        _number(p, "window_seconds", minimum=1)
        _number(p, "threshold", minimum=1)
        distinct = p["distinct"]
        if distinct is not None:
            if distinct not in FIELDS:
                raise _Problem("distinct", f"distinct must be one of {', '.join(FIELDS)}")
            if distinct in group_by and p["threshold"] > 1:
                raise _Problem("distinct", f"can never fire: one group holds one {distinct}, threshold is higher")
    elif kind is Kind.RATE:
        for key in ("floor", "cap", "warmup_minutes"):
            _number(p, key, minimum=1)
        for key in ("ratio", "sigmas"):
            _number(p, key, minimum=1, whole=False)
        if not isinstance(p["alpha"], int | float) or not 0 < p["alpha"] <= 1:
            raise _Problem("alpha", "alpha must be a number in (0, 1]")
        if p["floor"] >= p["cap"]:
            raise _Problem("floor", "can never fire on the baseline: floor must be below cap (the cap fires first)")
    elif kind is Kind.VOLUME:
        if p["measure"] not in MEASURES:
            raise _Problem("measure", f"measure must be one of {', '.join(MEASURES)}")
        if p["measure"] == "fields" and EventName.VAULT_FIELD_REVEAL not in events:
            raise _Problem("measure", "can never fire: only vault:field:reveal events carry PII field counts")
        for key in ("window_seconds", "floor", "cap", "min_windows"):
            _number(p, key, minimum=1)
        _number(p, "mads", minimum=1, whole=False)
        if p["floor"] >= p["cap"]:
            raise _Problem("floor", "can never fire on the baseline: floor must be below cap (the cap fires first)")
    elif kind is Kind.SCHEDULE and p["hours"] is not None:
        try:
            parse_hours(p["hours"])
        except ValueError as exc:
            raise _Problem("hours", str(exc)) from None


def parse_hours(text: Any) -> tuple[int, int]:
    """'08:00-20:00' as minutes of the day (start, end); end may be 24:00."""
    match = re.fullmatch(r"(\d\d):(\d\d)-(\d\d):(\d\d)", str(text))
    if not match:
        raise ValueError("hours must look like 08:00-20:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60 or end <= start:
        raise ValueError("hours must be a start before an end within one day, e.g. 08:00-20:00")
    return start, end


def _shipped() -> Iterable[tuple[str, str]]:
    folder = resources.files("sagevault.monitor") / "rules"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            yield f"package:{entry.name}", entry.read_text(encoding="utf-8")


def load_rules(override_dir: Path | None = None) -> list[Rule]:
    """The shipped rules, with the files of `override_dir` replacing or adding to them."""
    rules: dict[str, Rule] = {}
    for source, text in _shipped():
        rule = parse_rule(text, source)
        if rule.id in rules:
            raise RuleError(f"{source}: rule id {rule.id} is used twice")
        rules[rule.id] = rule
    if override_dir is not None and override_dir.is_dir():
        seen: dict[str, str] = {}
        for path in sorted(override_dir.glob("*.toml")):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise RuleError(f"{path}: cannot be read ({type(exc).__name__})") from None
            rule = parse_rule(text, str(path))
            if rule.id in seen:
                raise RuleError(f"{path}: rule id {rule.id} is also in {seen[rule.id]}")
            seen[rule.id] = str(path)
            rules[rule.id] = rule
    return sorted(rules.values(), key=lambda r: r.id)
