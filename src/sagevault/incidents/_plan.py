"""The incident response plan as versioned data (DPP 8, first half).

A plan is TOML (`plan.toml` in this package is the shipped default): the roles, the incident
types that may touch Amazon Information with a procedure (an ordered checklist) each, the
escalation path, and the IMPOC, the named person Amazon writes to. Every change is a new
version; a version in force was approved by a named principal, and its next review is due
`ir_plan_review_days` after approval, or at once after a major change of the infrastructure it
was approved for (the master key, the database, the schema revision).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from importlib import resources
from typing import Any

import tomli_w
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as DBAPIIntegrityError

from sagevault.audit import AuditEvent, AuditSink, EventName, Gate, check_scope
from sagevault.errors import Conflict, PayloadError, RecordNotFound, looks_like_pii, shown
from sagevault.identity import Channel, Principal, Scope
from sagevault.monitor import Severity

from ._schema import irp_approvals, irp_notices, irp_versions

AMAZON_SECURITY = "security@amazon.com"
REQUIRED_ROLES = ("incident-commander", "investigator", "communications", "legal", "impoc")
REQUIRED_TYPES = (
    "unauthorized-access",
    "credential-compromise",
    "canary-access",
    "bulk-exfiltration",
    "lost-device",
    "key-compromise",
    "misconfiguration-exposure",
    "malware",
    "vendor-breach",
    "legal-request",
)
INCIDENTS = Principal.job("incidents")
_ID = re.compile(r"[a-z][a-z0-9-]{1,62}[a-z0-9]")
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_TOP = {"organisation", "impoc", "roles", "types", "escalation"}


class Involvement(StrEnum):
    """Whether Amazon Information is involved: yes or possibly start the 24-hour clock."""

    YES = "yes"
    POSSIBLE = "possible"
    NO = "no"


@dataclass(frozen=True)
class IncidentType:
    id: str
    title: str
    description: str
    severity: Severity
    amazon: Involvement
    procedure: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    data: dict[str, Any]  # as parsed and checked: what `text()` writes back

    @property
    def organisation(self) -> str:
        return str(self.data.get("organisation", ""))

    @property
    def impoc(self) -> tuple[str, str]:
        """The IMPOC's name and e-mail ("" when the plan names nobody yet)."""
        impoc = self.data.get("impoc", {})
        return str(impoc.get("name", "")), str(impoc.get("email", ""))

    @property
    def roles(self) -> dict[str, dict[str, str]]:
        return {r["id"]: r for r in self.data["roles"]}

    @property
    def types(self) -> dict[str, IncidentType]:
        return {
            t["id"]: IncidentType(
                t["id"],
                t["title"],
                t.get("description", ""),
                Severity(t["severity"]),
                Involvement(t["amazon"]),
                tuple(t["procedure"]),
            )
            for t in self.data["types"]
        }

    def type(self, type_id: str) -> IncidentType:
        types = self.types
        if type_id not in types:
            raise PayloadError(f"incident type must be one of {', '.join(types)}; not {shown(type_id)}")
        return types[type_id]

    def text(self) -> str:
        return tomli_w.dumps(self.data)

    def with_impoc(self, name: str, email: str, organisation: str | None = None) -> Plan:
        data = {**self.data, "impoc": {"name": name, "email": email}}
        if organisation is not None:
            data["organisation"] = organisation
        return parse_plan(tomli_w.dumps(data), "set-impoc")


def default_plan_text() -> str:
    return (resources.files("sagevault.incidents") / "plan.toml").read_text(encoding="utf-8")


def _text(where: str, value: Any, *, limit: int, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        need = "a non-empty text" if required else "a text"
        raise PayloadError(f"{where} must be {need} of at most {limit} characters")
    if looks_like_pii(value.replace(AMAZON_SECURITY, "Amazon Security")):  # Amazon's address may be named
        raise PayloadError(
            f"{where} looks like it holds an e-mail address or phone number; the plan holds no personal data "
            "(only the IMPOC's e-mail, set with `sagevault irp set-impoc`)"
        )
    return value


def _table_list(data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    items = data.get(key)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise PayloadError(f"the plan needs [[{key}]] tables")
    return items


def _keys(where: str, item: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise PayloadError(f"{where}: {unknown[0]} is not a setting here; allowed: {', '.join(sorted(allowed))}")


def parse_plan(text: str, source: str) -> Plan:
    """A plan from TOML; PayloadError says what is wrong and what the plan must hold."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PayloadError(f"{source}: the plan is not valid TOML: {exc}") from None
    _keys(source, data, _TOP)
    data.setdefault("organisation", "")
    _text("organisation", data["organisation"], limit=200, required=False)
    _impoc(data.setdefault("impoc", {"name": "", "email": ""}))
    roles = _roles(_table_list(data, "roles"))
    _types(_table_list(data, "types"))
    _escalation(_table_list(data, "escalation"), roles)
    return Plan(data)


def _impoc(impoc: Any) -> None:
    if not isinstance(impoc, dict):
        raise PayloadError("[impoc] must be a table with name and email")
    _keys("[impoc]", impoc, {"name", "email"})
    impoc.setdefault("name", "")
    impoc.setdefault("email", "")
    _text("impoc.name", impoc["name"], limit=120, required=False)
    if not isinstance(impoc["email"], str) or (impoc["email"] and not _EMAIL.fullmatch(impoc["email"])):
        raise PayloadError("impoc.email must be an e-mail address such as security-lead@example.com")
    if bool(impoc["name"].strip()) != bool(impoc["email"]):
        raise PayloadError("the IMPOC needs both a name and an e-mail address (or neither)")


def _roles(roles: list[dict[str, Any]]) -> list[str]:
    for role in roles:
        _keys("[[roles]]", role, {"id", "title", "responsibilities", "assignee"})
        if not isinstance(role.get("id"), str) or not _ID.fullmatch(role["id"]):
            raise PayloadError("every role needs an id of lower-case letters, digits and dashes")
        _text(f"role {role['id']} title", role.get("title"), limit=200)
        _text(f"role {role['id']} responsibilities", role.get("responsibilities"), limit=1000)
        role.setdefault("assignee", "")
        _text(f"role {role['id']} assignee", role["assignee"], limit=120, required=False)
    ids = [r["id"] for r in roles]
    missing = [r for r in REQUIRED_ROLES if r not in ids]
    if missing or len(set(ids)) != len(ids):
        raise PayloadError(f"the plan must define each of the roles {', '.join(REQUIRED_ROLES)} once")
    return ids


def _types(types: list[dict[str, Any]]) -> None:
    for item in types:
        _keys("[[types]]", item, {"id", "title", "description", "severity", "amazon", "procedure"})
        if not isinstance(item.get("id"), str) or not _ID.fullmatch(item["id"]):
            raise PayloadError("every incident type needs an id of lower-case letters, digits and dashes")
        where = f"type {item['id']}"
        _text(f"{where} title", item.get("title"), limit=200)
        item.setdefault("description", "")
        _text(f"{where} description", item["description"], limit=1000, required=False)
        if item.get("severity") not in {s.value for s in Severity}:
            raise PayloadError(f"{where}: severity must be low, medium, high or critical")
        if item.get("amazon") not in {i.value for i in Involvement}:
            raise PayloadError(f"{where}: amazon must be yes, possible or no (is Amazon Information involved?)")
        steps = item.get("procedure")
        if not isinstance(steps, list) or not steps:
            raise PayloadError(f"{where}: procedure must be an ordered list of at least one step")
        for number, step in enumerate(steps, 1):
            _text(f"{where} procedure step {number}", step, limit=500)
    type_ids = [t["id"] for t in types]
    missing = [t for t in REQUIRED_TYPES if t not in type_ids]
    if missing:
        raise PayloadError(
            f"the plan must define the incident types that may touch Amazon Information; missing: {', '.join(missing)}"
        )
    if len(set(type_ids)) != len(type_ids):
        raise PayloadError("each incident type may be defined once")


def _escalation(steps: list[dict[str, Any]], roles: list[str]) -> None:
    last = -1.0
    for step in steps:
        _keys("[[escalation]]", step, {"within_hours", "role", "action"})
        hours = step.get("within_hours")
        if not isinstance(hours, int | float) or isinstance(hours, bool) or hours < 0 or hours < last:
            raise PayloadError("escalation steps need within_hours, a number of hours that never decreases")
        last = float(hours)
        if step.get("role") not in roles:
            raise PayloadError(f"escalation step role {shown(step.get('role'))} is not a role of the plan")
        _text("escalation action", step.get("action"), limit=500)
    if not any(s["role"] == "impoc" and s["within_hours"] <= 24 for s in steps):  # the DPP's 24 hours
        raise PayloadError("the escalation path must end with the IMPOC notifying Amazon within 24 hours")


_PARSED: dict[str, Plan] = {}


def _parsed(sha256: str, body: str) -> Plan:
    """A stored version's plan, parsed once per process: the text is checked against its SHA-256
    every time, and the parse of that text reused."""
    if _digest(body) != sha256:
        raise PayloadError("a stored plan version does not match its SHA-256; the plan table was changed")
    plan = _PARSED.get(sha256)
    if plan is None:
        plan = _PARSED[sha256] = parse_plan(body, "a stored plan version")
    return plan


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PlanVersion:
    version: int  # 0: the shipped default, never saved
    plan: Plan
    sha256: str
    author: str
    created_at: datetime | None
    note: str | None = None
    # From the version's latest approval (reviews add approvals; none: waiting, or superseded).
    approved_by: str | None = None
    approved_at: datetime | None = None
    next_review_due: datetime | None = None
    infrastructure: dict[str, str] | None = None
    approval: int | None = None  # the approval's id

    @property
    def approved(self) -> bool:
        return self.approved_at is not None

    @classmethod
    def of(cls, row: Any, approval: Any = None) -> PlanVersion:
        return cls(
            version=int(row.version),
            plan=_parsed(row.sha256, row.body),
            sha256=row.sha256,
            author=row.author,
            created_at=_utc(row.created_at),
            note=row.note,
            approved_by=approval.approved_by if approval is not None else None,
            approved_at=_utc(approval.approved_at) if approval is not None else None,
            next_review_due=_utc(approval.next_review_due) if approval is not None else None,
            infrastructure=json.loads(approval.infrastructure) if approval is not None else None,
            approval=int(approval.id) if approval is not None else None,
        )

    def summary(self) -> dict[str, Any]:
        name, email = self.plan.impoc
        return {
            "version": self.version,
            "sha256": self.sha256,
            "author": self.author,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "note": self.note,
            "approved_by": self.approved_by,
            "approved_at": self.approved_at.isoformat() if self.approved_at else None,
            "next_review_due": self.next_review_due.isoformat() if self.next_review_due else None,
            "impoc": {"name": name, "email": email},
        }


@dataclass(frozen=True)
class PlanStatus:
    in_force: PlanVersion
    draft: PlanVersion | None  # a newer version waiting for approval
    reasons: list[tuple[str, str]]  # (key, what makes a review due), empty when none is

    @property
    def due(self) -> bool:
        return bool(self.reasons)


_CHANGES = {
    "master_key": "the master key changed (rotation) since the plan was approved",
    "database": "the database changed ({was} to {now}) since the plan was approved",
    "schema": "the schema was migrated ({was} to {now}) since the plan was approved",
}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class PlanBook:
    """The plan's versions and their approvals in the vault's database (both only ever added
    to), and the review due dates."""

    def __init__(
        self, *, audit: AuditSink, gate: Gate, review_days: int, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._audit = audit
        self._gate = gate
        self._review = timedelta(days=review_days)
        self._clock = clock or (lambda: datetime.now(UTC))

    def check(self, conn: Connection, principal: Principal, scope: Scope, operation: str) -> None:
        check_scope(self._gate, self._audit, conn, principal, scope, operation)

    # --- reading ----------------------------------------------------------------------------

    @staticmethod
    def _approval(conn: Connection, version: int) -> Any:
        return conn.execute(
            select(irp_approvals).where(irp_approvals.c.version == version).order_by(irp_approvals.c.id.desc()).limit(1)
        ).first()

    def _version(self, conn: Connection, row: Any) -> PlanVersion:
        return PlanVersion.of(row, self._approval(conn, int(row.version)))

    def _latest(self, conn: Connection) -> PlanVersion:
        row = conn.execute(select(irp_versions).order_by(irp_versions.c.version.desc()).limit(1)).first()
        return self._default() if row is None else self._version(conn, row)

    def in_force(self, conn: Connection) -> PlanVersion:
        """The version approved last (a review approves the version in force again); before any
        approval, the newest version (or the shipped default)."""
        approval = conn.execute(select(irp_approvals).order_by(irp_approvals.c.id.desc()).limit(1)).first()
        if approval is None:
            return self._latest(conn)
        row = conn.execute(select(irp_versions).where(irp_versions.c.version == approval.version)).one()
        return PlanVersion.of(row, approval)

    def version(self, conn: Connection, version: int | None, *, principal: Principal) -> PlanVersion:
        self.check(conn, principal, Scope.INCIDENTS_READ, "irp show")
        if version is None:
            return self.in_force(conn)
        if version == 0:
            return self._default()
        row = conn.execute(select(irp_versions).where(irp_versions.c.version == version)).first()
        if row is None:
            raise RecordNotFound(f"no plan version {version}; `sagevault irp show --versions` lists them")
        return self._version(conn, row)

    def versions(self, conn: Connection, *, principal: Principal) -> list[PlanVersion]:
        self.check(conn, principal, Scope.INCIDENTS_READ, "irp versions")
        rows = conn.execute(select(irp_versions).order_by(irp_versions.c.version)).all()
        return [self._version(conn, r) for r in rows] or [self._default()]

    @staticmethod
    def _default() -> PlanVersion:
        text = default_plan_text()
        return PlanVersion(0, _parsed(_digest(text), text), _digest(text), "sagevault", None)

    def diff(self, conn: Connection, a: int | None, b: int | None, *, principal: Principal) -> str:
        """A unified diff between two versions (default: the version in force and the newest)."""
        self.check(conn, principal, Scope.INCIDENTS_READ, "irp diff")
        old = self.version(conn, a, principal=principal) if a is not None else self.in_force(conn)
        new = self.version(conn, b, principal=principal) if b is not None else self._latest(conn)
        lines = difflib.unified_diff(
            old.plan.text().splitlines(keepends=True),
            new.plan.text().splitlines(keepends=True),
            fromfile=f"version {old.version}",
            tofile=f"version {new.version}",
        )
        return "".join(lines)

    def status(self, conn: Connection, infrastructure: Mapping[str, str]) -> PlanStatus:
        """Whether a review is due, and why: never approved, six months passed, a major change.
        Each reason comes with a key that names that occasion (`notify_due` gives each once)."""
        current = self.in_force(conn)
        latest = self._latest(conn)
        draft = latest if latest.version > current.version else None
        reasons: list[tuple[str, str]] = []
        if not current.approved:
            reasons.append(("unapproved", "no version of the plan has been approved; run `sagevault irp approve`"))
        else:
            due = current.next_review_due
            if due is not None and self._clock() >= due:
                reasons.append(
                    (f"overdue:{due.isoformat()}", f"the six-monthly review was due {due:%Y-%m-%d %H:%M} UTC")
                )
            for key, was in sorted((current.infrastructure or {}).items()):
                now = infrastructure.get(key)
                if key in _CHANGES and now is not None and now != was:
                    short = {"was": was[:24], "now": now[:24]}
                    occasion = f"change:{key}:{_digest(was)[:12]}:{_digest(now)[:12]}"
                    reasons.append((occasion, _CHANGES[key].format(**short)))
        return PlanStatus(current, draft, reasons)

    # --- writing ----------------------------------------------------------------------------

    def _save(self, conn: Connection, plan: Plan, principal: Principal, note: str | None) -> int:
        text = plan.text()
        version = self._latest(conn).version + 1
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(irp_versions).values(
                        version=version,
                        body=text,
                        sha256=_digest(text),
                        author=principal.id,
                        created_at=self._clock(),
                        note=note,
                    )
                )
        except DBAPIIntegrityError:
            raise Conflict("another change saved a plan version at the same moment; look at it and run again") from None
        return version

    def _approve(self, conn: Connection, version: int, principal: Principal, note: str | None, **carried: Any) -> None:
        now = self._clock()
        values = {
            "version": version,
            "approved_by": principal.id,
            "approved_at": now,
            "next_review_due": now + self._review,
            "note": note,
            **carried,
        }
        conn.execute(insert(irp_approvals).values(**values))

    def _event(self, name: EventName, principal: Principal, version: PlanVersion, operation: str) -> None:
        self._audit.record(
            AuditEvent(
                name=name,
                channel=principal.channel,
                actor=principal.id,
                operation=operation,
                counts={"version": version.version},
                fingerprint=version.sha256,
            )
        )

    def edit(self, conn: Connection, text: str, *, principal: Principal, note: str = "") -> PlanVersion:
        """Save `text` as a new version, waiting for approval. A plan that names no IMPOC keeps
        the one the newest version names (contact data is set with `set_impoc`)."""
        self.check(conn, principal, Scope.INCIDENTS_MANAGE, "irp edit")
        _text("the note", note, limit=500, required=False)
        plan = parse_plan(text, "the new plan")
        latest = self._latest(conn).plan
        if not plan.impoc[1] and latest.impoc[1]:
            plan = plan.with_impoc(*latest.impoc, plan.organisation or latest.organisation)
        if plan.text() == latest.text():
            raise Conflict("the plan is unchanged; nothing was saved")
        version = self._save(conn, plan, principal, note or None)
        saved = self.version(conn, version, principal=principal)
        self._event(EventName.INCIDENT_PLAN_EDIT, principal, saved, "irp edit")
        return saved

    def approve(
        self,
        conn: Connection,
        infrastructure: Mapping[str, str],
        *,
        principal: Principal,
        note: str = "",
        version: int | None = None,
    ) -> PlanVersion:
        """Approve the newest version, or the one in force again (a review). `version`: the one the
        approver read; refused when it is neither (a newer draft was saved meanwhile). The next
        review is due in `review_days`; the infrastructure approved for is recorded."""
        self.check(conn, principal, Scope.INCIDENTS_MANAGE, "irp approve")
        _text("the note", note, limit=500, required=False)
        latest, current = self._latest(conn), self.in_force(conn)
        target = latest.version if version is None else version
        if target not in (latest.version, current.version) or (target == 0 and latest.version != 0):
            raise Conflict(
                f"version {target} is neither the newest ({latest.version}) nor the one in force ({current.version}); "
                "`sagevault irp diff` shows what changed"
            )
        if target == 0:  # the shipped plan, approved as it is: saved first
            target = self._save(conn, latest.plan, principal, "the shipped plan")
        self._approve(
            conn, target, principal, note or None, infrastructure=json.dumps(dict(infrastructure), sort_keys=True)
        )
        approved = self.version(conn, target, principal=principal)
        self._event(EventName.INCIDENT_PLAN_APPROVE, principal, approved, "irp approve")
        return approved

    def set_impoc(
        self, conn: Connection, name: str, email: str, *, principal: Principal, organisation: str | None = None
    ) -> PlanVersion:
        """Name the IMPOC. A contact change is not a content change: the version in force gets a
        successor with the new contact and the same review date; a waiting draft gets one too."""
        self.check(conn, principal, Scope.INCIDENTS_MANAGE, "irp set-impoc")
        if not name.strip() or not email.strip():
            raise PayloadError("give the IMPOC's name and e-mail address")
        current, latest = self.in_force(conn), self._latest(conn)
        contact = current.plan.with_impoc(name, email, organisation)
        if contact.text() == current.plan.text():
            raise Conflict("the plan names this IMPOC already; nothing was saved")
        number = self._save(conn, contact, principal, f"IMPOC set; otherwise as version {current.version}")
        if current.approved:
            assert current.approved_at is not None
            self._approve(
                conn,
                number,
                principal,
                f"contact change; content as approved in version {current.version} by {current.approved_by} "
                f"on {current.approved_at:%Y-%m-%d}",
                next_review_due=current.next_review_due,
                infrastructure=json.dumps(current.infrastructure or {}, sort_keys=True),
            )
        if latest.version > current.version:  # the draft keeps the new contact when it is approved
            draft = latest.plan.with_impoc(name, email, organisation)
            self._save(conn, draft, principal, f"IMPOC set; otherwise as draft {latest.version}")
        saved = self.version(conn, number, principal=principal)
        self._event(EventName.INCIDENT_PLAN_EDIT, principal, saved, "irp set-impoc")
        return saved

    def notify_due(self, conn: Connection, infrastructure: Mapping[str, str]) -> list[str]:
        """Record incident:plan:due once for each occasion a review is due (the irp-review-due
        rule raises the alarm on it). Returns the reasons newly recorded."""
        status = self.status(conn, infrastructure)
        given = []
        for key, reason in status.reasons:
            notice = key[:200]
            if conn.execute(select(irp_notices.c.key).where(irp_notices.c.key == notice)).first() is not None:
                continue
            conn.execute(insert(irp_notices).values(key=notice, at=self._clock()))
            kind = key.split(":")[0]
            operation = {"unapproved": "plan not approved", "overdue": "review overdue"}.get(kind)
            self._audit.record(
                AuditEvent(
                    name=EventName.INCIDENT_PLAN_DUE,
                    channel=Channel.SCHEDULER,
                    actor=INCIDENTS.id,
                    operation=operation or f"major change {key.split(':')[1]}",
                    counts={"version": status.in_force.version},
                    fingerprint=status.in_force.sha256,
                )
            )
            given.append(reason)
        return given
