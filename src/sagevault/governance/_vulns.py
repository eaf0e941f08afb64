"""Governance: the vulnerability register: the installed dependencies checked against known
advisories, each finding with its fix deadline (Amazon's DPP: critical within 7 days, high within
30, from the policy profile).

A scan is pip-audit's JSON (`pip-audit --format json`), read as data:
`{"dependencies": [{"name", "version", "vulns": [{"id", "fix_versions", "aliases"?,
"description"?}]}, {"name", "skip_reason"}], "fixes": [...]}`.

Severity: pip-audit's JSON carries none. SageVault takes it, in this order, from a `severity` on
the advisory entry, else from a top-level `"severities": {"<advisory id or alias>": "critical"}`
map (what a recorded advisory file, or a wrapper that looks the advisories up, adds), else it is
"unknown", which gets critical's deadline (fail closed: pip-audit's own JSON rates nothing, so an
advisory nobody rated is treated as the worst case, never as low).

A finding (package, installed version, advisory) is recorded once (governance:vuln:open) with its
deadline; later scans that still find it move `last_seen_at`; a scan that audited the package and
no longer finds it closes it (governance:vuln:close). A finding that comes back keeps its first
deadline, and so does the same advisory in a new guise: a finding that opens keeps the earliest
deadline of any earlier finding of the same package that shares its advisory id or one of its
aliases (an upgrade to a version still vulnerable, or PYSEC switching to GHSA, never resets the
clock). A dependency pip-audit skipped (`skip_reason`, whatever else it carries) is never counted
as audited, so none of its findings is closed. `note_overdue` (the daily job) records
governance:vuln:overdue once per finding past its deadline; the rule `vulnerability-overdue`
raises the alarm."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, AuditSink, EventName, Gate, check_scope
from sagevault.errors import ConfigError, PayloadError, UpstreamError
from sagevault.identity import Channel, Principal, Scope

from ._schema import vulnerabilities

SEVERITIES = ("critical", "high", "medium", "low", "unknown")
_SYNONYMS = {"moderate": "medium", "important": "high", "none": "low", "informational": "low"}
MEDIUM_DAYS, LOW_DAYS = 90, 180
MAX_DEPENDENCIES = 20_000
MAX_VULNS = 200  # advisories of one dependency
VULNS_JOB = Principal.job("vulnerability-deadlines")

_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]{0,59}")
_ADVISORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,79}")


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Finding:
    """One advisory against one installed version, as a scan reported it."""

    package: str
    version: str
    advisory: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]
    severity: str


@dataclass(frozen=True)
class Scanned:
    """A parsed scan: its findings, the packages it audited and those it skipped."""

    findings: list[Finding]
    audited: set[str]
    skipped: int


@dataclass(frozen=True)
class Vulnerability:
    id: int
    package: str
    version: str
    advisory: str
    aliases: list[str]
    severity: str
    fix_versions: list[str]
    found_at: datetime
    due_at: datetime
    last_seen_at: datetime
    closed_at: datetime | None
    overdue_noted_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> Vulnerability:
        return cls(
            id=int(row.id),
            package=row.package,
            version=row.version,
            advisory=row.advisory,
            aliases=list(row.aliases or []),
            severity=row.severity,
            fix_versions=list(row.fix_versions or []),
            found_at=_utc(row.found_at),  # type: ignore[arg-type]
            due_at=_utc(row.due_at),  # type: ignore[arg-type]
            last_seen_at=_utc(row.last_seen_at),  # type: ignore[arg-type]
            closed_at=_utc(row.closed_at),
            overdue_noted_at=_utc(row.overdue_noted_at),
        )

    def overdue(self, now: datetime) -> bool:
        return self.closed_at is None and self.due_at <= now

    def payload(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "package": self.package,
            "version": self.version,
            "advisory": self.advisory,
            "aliases": self.aliases,
            "severity": self.severity,
            "fix_versions": self.fix_versions,
            "found_at": self.found_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "state": "closed" if self.closed_at else "open",
            "overdue": self.overdue(now),
        }


@dataclass(frozen=True)
class ScanResult:
    dependencies: int  # audited (with a version)
    skipped: int  # pip-audit could not audit them (not on PyPI, editable, ...)
    found: int  # findings in this scan
    opened: int
    reopened: int
    closed: int
    open: int  # open after the scan

    def payload(self) -> dict[str, int]:
        return {
            "dependencies": self.dependencies,
            "skipped": self.skipped,
            "found": self.found,
            "opened": self.opened,
            "reopened": self.reopened,
            "closed": self.closed,
            "open": self.open,
        }


def _severity(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise PayloadError(f"{where}: a severity is one of {', '.join(SEVERITIES)}")
    word = value.strip().lower()
    word = _SYNONYMS.get(word, word)
    if word not in SEVERITIES:
        raise PayloadError(f"{where}: a severity is one of {', '.join(SEVERITIES)}")
    return word


def _text_list(value: Any, pattern: re.Pattern[str], where: str, limit: int = 50) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > limit:
        raise PayloadError(f"{where} must be a list of at most {limit} strings")
    for item in value:
        if not isinstance(item, str) or not pattern.fullmatch(item):
            raise PayloadError(f"{where} holds a value that is not an advisory id or version")
    return tuple(value)


def _dependency(dep: Any, where: str, rated: dict[str, str]) -> tuple[str, list[Finding]] | None:
    """One entry of `dependencies`: its name and findings, or None when pip-audit skipped it."""
    if not isinstance(dep, dict) or not isinstance(dep.get("name"), str) or not _PACKAGE.fullmatch(dep["name"]):
        raise PayloadError(f"{where} needs a package name")
    name = dep["name"].lower()
    if "skip_reason" in dep:  # not audited, whatever else it carries: it may close nothing
        return None
    version, vulns = dep.get("version"), dep.get("vulns", [])
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise PayloadError(f"{where} needs a version")
    if not isinstance(vulns, list) or len(vulns) > MAX_VULNS:
        raise PayloadError(f"{where}.vulns must be a list of at most {MAX_VULNS} advisories")
    findings = []
    for m, vuln in enumerate(vulns):
        at = f"{where}.vulns[{m}]"
        if not isinstance(vuln, dict) or not isinstance(vuln.get("id"), str) or not _ADVISORY.fullmatch(vuln["id"]):
            raise PayloadError(f"{at} needs an advisory id (such as PYSEC-2024-1 or GHSA-...)")
        aliases = _text_list(vuln.get("aliases"), _ADVISORY, f"{at}.aliases")
        fixes = _text_list(vuln.get("fix_versions", []), _VERSION, f"{at}.fix_versions")
        if "severity" in vuln:
            severity = _severity(vuln["severity"], f"{at}.severity")
        else:
            keys = [vuln["id"], *aliases]
            severity = next((rated[k.upper()] for k in keys if k.upper() in rated), "unknown")
        findings.append(Finding(name, version, vuln["id"], aliases, fixes, severity))
    return name, findings


def parse_scan(data: Any) -> Scanned:
    """pip-audit's JSON (parsed) as findings, or a PayloadError naming what is wrong (values are
    never echoed). A scan that lists no dependency is refused: it checked nothing, so it may
    close nothing."""
    if isinstance(data, list):  # pip-audit before 2.0 wrote the dependency list alone
        data = {"dependencies": data}
    if not isinstance(data, dict) or not isinstance(data.get("dependencies"), list):
        raise PayloadError('a scan is pip-audit\'s JSON (`pip-audit --format json`): {"dependencies": [...]}')
    deps = data["dependencies"]
    if not deps:
        raise PayloadError("the scan lists no dependency: it checked nothing, so nothing is recorded or closed")
    if len(deps) > MAX_DEPENDENCIES:
        raise PayloadError(f"the scan lists more than {MAX_DEPENDENCIES} dependencies")
    severities_raw = data.get("severities", {})
    if not isinstance(severities_raw, dict):
        raise PayloadError('"severities" must map advisory ids to critical, high, medium or low')
    rated: dict[str, str] = {}
    for key, value in severities_raw.items():
        if not isinstance(key, str) or not _ADVISORY.fullmatch(key):
            raise PayloadError('"severities" holds a key that is not an advisory id')
        rated[key.upper()] = _severity(value, f'"severities"[{key}]')
    findings: list[Finding] = []
    audited: set[str] = set()
    skipped = 0
    for n, dep in enumerate(deps):
        found = _dependency(dep, f"dependencies[{n}]", rated)
        if found is None:
            skipped += 1
            continue
        name, of_dep = found
        audited.add(name)
        findings += of_dep
    unique = {(f.package, f.version, f.advisory): f for f in findings}
    return Scanned(list(unique.values()), audited, skipped)


def _names(advisory: str, aliases: Any) -> set[str]:
    return {advisory.upper(), *(str(a).upper() for a in aliases or ())}


def _carried(earlier: Any, f: Finding, due: datetime) -> datetime:
    """The deadline of a finding that opens: its own, or the earliest of any earlier finding (open
    or closed) of the same package that shares its advisory id or an alias (carried forward)."""
    names = _names(f.advisory, f.aliases)
    for row in earlier:
        if row.package == f.package and names & _names(row.advisory, row.aliases):
            first = _utc(row.due_at)
            if first is not None and first < due:
                due = first
    return due


def audit_installed(*, timeout: float = 900.0) -> Any:
    """Run `pip-audit --format json` on the environment SageVault is installed in and return its
    JSON (parsed). pip-audit asks PyPI's advisory service: this needs the network. Exit code 1
    means "vulnerabilities found" (the JSON is still the answer); anything else is a failure."""
    command = [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off"]
    try:
        ran = subprocess.run(command, capture_output=True, timeout=timeout, check=False)  # noqa: S603 (fixed argv)
    except subprocess.TimeoutExpired:
        raise UpstreamError(f"pip-audit did not finish within {int(timeout)} seconds; run the scan again") from None
    if ran.returncode not in (0, 1):
        if b"No module named pip_audit" in ran.stderr:
            raise ConfigError("pip-audit is not installed in SageVault's environment; pip install pip-audit")
        raise UpstreamError(
            f"pip-audit failed (exit code {ran.returncode}); run `pip-audit --format json` by hand to see why, "
            "or record its output with `sagevault vulns scan --from FILE`"
        )
    try:
        return json.loads(ran.stdout)
    except ValueError:
        raise UpstreamError("pip-audit's output is not JSON; run `pip-audit --format json` by hand") from None


class Vulnerabilities:
    """The register (`vulnerabilities`). Deadlines from the policy profile: critical (and
    unknown, as critical: fail closed) and high, medium 90 days, low 180."""

    def __init__(
        self,
        *,
        audit: AuditSink,
        gate: Gate,
        clock: Callable[[], datetime] | None = None,
        critical_days: int = 7,
        high_days: int = 30,
    ) -> None:
        self._audit = audit
        self._gate = gate
        self._clock = clock or (lambda: datetime.now(UTC))
        self.days = {
            "critical": critical_days,
            "high": high_days,
            "medium": MEDIUM_DAYS,
            "low": LOW_DAYS,
            "unknown": critical_days,
        }

    def now(self) -> datetime:
        return self._clock()

    def scan(self, conn: Connection, findings: Any, *, principal: Principal) -> ScanResult:
        """Record a scan (pip-audit's JSON, parsed): new findings opened with their deadline,
        findings seen again stamped, findings of audited packages no longer reported closed."""
        check_scope(self._gate, self._audit, conn, principal, Scope.GOVERNANCE_MANAGE, "vulns scan")
        scanned = parse_scan(findings)
        now = self._clock()
        rows = {(r.package, r.version, r.advisory): r for r in conn.execute(select(vulnerabilities))}
        events: list[AuditEvent] = []
        opened = reopened = closed = 0
        seen: set[tuple[str, str, str]] = set()
        for f in scanned.findings:
            key = (f.package, f.version, f.advisory)
            seen.add(key)
            row = rows.get(key)
            if row is None:
                due = _carried(rows.values(), f, now + timedelta(days=self.days[f.severity]))
                vuln_id = conn.execute(
                    insert(vulnerabilities).values(
                        package=f.package,
                        version=f.version,
                        advisory=f.advisory,
                        aliases=list(f.aliases),
                        severity=f.severity,
                        fix_versions=list(f.fix_versions),
                        found_at=now,
                        due_at=due,
                        last_seen_at=now,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                opened += 1
                events.append(
                    self._event(EventName.GOVERNANCE_VULN_OPEN, principal, int(vuln_id), f.severity, due, now)
                )
                continue
            values: dict[str, Any] = {"last_seen_at": now, "fix_versions": list(f.fix_versions)}
            if row.closed_at is not None:  # it came back: open again, with its first deadline
                values["closed_at"] = None
                reopened += 1
                first_due = _utc(row.due_at)
                events.append(
                    self._event(EventName.GOVERNANCE_VULN_OPEN, principal, int(row.id), row.severity, first_due, now)
                )
            conn.execute(update(vulnerabilities).where(vulnerabilities.c.id == row.id).values(**values))
        for key, row in rows.items():
            if row.closed_at is None and key not in seen and key[0] in scanned.audited:
                conn.execute(update(vulnerabilities).where(vulnerabilities.c.id == row.id).values(closed_at=now))
                closed += 1
                events.append(self._event(EventName.GOVERNANCE_VULN_CLOSE, principal, int(row.id), row.severity))
        still = len(conn.execute(select(vulnerabilities.c.id).where(vulnerabilities.c.closed_at.is_(None))).all())
        result = ScanResult(
            len(scanned.audited), scanned.skipped, len(scanned.findings), opened, reopened, closed, still
        )
        events.append(
            AuditEvent(
                name=EventName.GOVERNANCE_VULN_SCAN,
                channel=principal.channel,
                actor=principal.id,
                operation="vulns scan",
                counts=result.payload(),
            )
        )
        self._audit.record_many(events)
        return result

    def _event(
        self,
        name: EventName,
        principal: Principal,
        vuln_id: int,
        severity: str,
        due: datetime | None = None,
        now: datetime | None = None,
    ) -> AuditEvent:
        counts = {"vuln": vuln_id}
        if due is not None and now is not None:
            counts["due_days"] = max(0, (due - now).days)
        return AuditEvent(
            name=name,
            channel=principal.channel,
            actor=principal.id,
            operation=f"vuln {vuln_id} {severity}",
            counts=counts,
        )

    def list_vulns(self, conn: Connection, *, principal: Principal, open_only: bool = True) -> list[Vulnerability]:
        """Findings, the nearest deadline first (open ones only, unless `open_only` is False)."""
        check_scope(self._gate, self._audit, conn, principal, Scope.GOVERNANCE_READ, "vulns list")
        query = select(vulnerabilities).order_by(vulnerabilities.c.due_at, vulnerabilities.c.id)
        if open_only:
            query = query.where(vulnerabilities.c.closed_at.is_(None))
        return [Vulnerability.of(r) for r in conn.execute(query)]

    def overdue(self, conn: Connection) -> list[Vulnerability]:
        """Open findings past their fix deadline (no scope check: the report and the jobs read it)."""
        query = (
            select(vulnerabilities)
            .where(vulnerabilities.c.closed_at.is_(None), vulnerabilities.c.due_at <= self._clock())
            .order_by(vulnerabilities.c.due_at)
        )
        return [Vulnerability.of(r) for r in conn.execute(query)]

    def counts(self, conn: Connection) -> dict[str, int]:
        """Open findings per severity (no scope check: counts only, for the report)."""
        out = dict.fromkeys(SEVERITIES, 0)
        for (severity,) in conn.execute(
            select(vulnerabilities.c.severity).where(vulnerabilities.c.closed_at.is_(None))
        ):
            out[severity] = out.get(severity, 0) + 1
        return out

    def note_overdue(self, conn: Connection) -> list[int]:
        """governance:vuln:overdue once for each open finding past its deadline (the marker column
        keeps it to once); returns their ids."""
        now = self._clock()
        found = [v for v in self.overdue(conn) if v.overdue_noted_at is None]
        for v in found:
            conn.execute(update(vulnerabilities).where(vulnerabilities.c.id == v.id).values(overdue_noted_at=now))
        if found:
            self._audit.record_many(
                [
                    AuditEvent(
                        name=EventName.GOVERNANCE_VULN_OVERDUE,
                        channel=Channel.SCHEDULER,
                        actor=VULNS_JOB.id,
                        operation=f"vuln {v.id} {v.severity}",
                        counts={"vuln": v.id, "days_late": max(0, (now - v.due_at).days)},
                    )
                    for v in found
                ]
            )
        return [v.id for v in found]
