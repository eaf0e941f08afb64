"""Checks of DPP clauses 1 to 4: governance, encryption at rest, least privilege, logging and
monitoring. Each reads the live deployment and returns a `Result`; evidence is ids, counts, dates
and settings, never PII."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from sagevault._private_files import loose_entries
from sagevault.access import ROLES
from sagevault.access._schema import grants
from sagevault.catalog import CATALOG
from sagevault.deletion import BuyerRights
from sagevault.deletion._requests import KINDS as REQUEST_KINDS
from sagevault.identity import Scope
from sagevault.vault._schema import tenant_keys

from ._context import Context, event_time, method, paged
from ._model import Result, Status, numbers

PASS, FAIL, ATTENTION = Status.PASS, Status.FAIL, Status.ATTENTION
VERIFY_EVERY_DAYS = 14  # Amazon: logs reviewed in real time or every two weeks


def _count(value: Any) -> int:
    if isinstance(value, list | tuple | set | dict):
        return len(value)
    for attr in ("rows", "fields", "items", "entries"):
        inner = getattr(value, attr, None)
        if isinstance(inner, list | tuple):
            return len(inner)
    raise TypeError("not countable")


# --- 1. Data governance -------------------------------------------------------------------------


def asset_inventory(c: Context) -> Result:
    assets = c.d.governance.assets
    listed = method(assets, "list_assets")(c.conn, principal=c.principal)
    due = method(assets, "due")(c.conn)
    active = [a for a in listed if getattr(a, "state", "active") == "active"]
    evidence = {
        "assets": len(active),
        "holding_or_reaching_amazon_data": sum(1 for a in active if getattr(a, "amazon_data", False)),
        "past_review_date": len(due),
    }
    if not active:
        return Result(FAIL, "the asset inventory is empty", evidence, "register the assets: `sagevault assets add`")
    if due:
        return Result(
            FAIL,
            f"{len(due)} assets are past their review date",
            evidence,
            "review each: `sagevault assets list` shows which, `sagevault assets review ID` records it",
        )
    return Result(PASS, f"{len(active)} assets inventoried, every one reviewed in time", evidence)


def record_of_processing(c: Context) -> Result:
    """Every catalogued PII path (document and path) has a PII row in the generated record: a set
    comparison, so extra or duplicate rows cannot make up for a missing one."""
    assets = method(c.d.governance.assets, "list_assets")(c.conn, principal=c.principal)
    generated = method(c.d.governance.ropa, "generate")(c.conn, principal=c.principal, assets=assets)
    catalogued = {(str(f["document"]), str(f["path"])) for f in CATALOG.describe() if f["pii"]}
    try:
        covered = {(str(r["document"]), str(r["path"])) for r in generated if r["pii"]}
        rows = len(generated)
    except (TypeError, KeyError):
        return Result(
            ATTENTION,
            "the record of processing was generated but its rows could not be read as fields",
            {"catalogued_pii_fields": len(catalogued)},
            "check `sagevault ropa` by hand",
        )
    missing = sorted(catalogued - covered)
    evidence: dict[str, Any] = {
        "ropa_rows": rows,
        "catalogued_pii_fields": len(catalogued),
        "catalogued_pii_paths_without_a_row": len(missing),
        "missing_paths": [f"{doc}:{path}" for doc, path in missing[:20]],  # field names, never values
    }
    if not catalogued:
        return Result(
            ATTENTION, "the field catalog lists no PII field: nothing to compare", evidence, "check the catalog"
        )
    if missing:
        return Result(
            FAIL,
            f"the record of processing leaves {len(missing)} catalogued PII fields out",
            evidence,
            "regenerate it: `sagevault ropa`",
        )
    return Result(PASS, "the record of processing is generated from the field catalog, every PII field in it", evidence)


def policy_register(c: Context) -> Result:
    register = c.d.governance.policies
    listed = method(register, "list_policies")(c.conn, principal=c.principal)
    overdue = method(register, "overdue")(c.conn)
    current = [p for p in listed if getattr(p, "current", True)]
    evidence = {
        "documents_registered": len(current),
        "versions_registered": len(listed),
        "documents_past_review": len(overdue),
    }
    if overdue:
        return Result(
            FAIL,
            f"{len(overdue)} policy documents are past their review date",
            evidence,
            "review and approve them: `sagevault policies list` shows which",
        )
    if not current:
        return Result(
            ATTENTION,
            "no policy document is registered: nothing shows the policies are kept and reviewed",
            evidence,
            "register and approve this Data Protection Policy and the IR plan (and any other policy): "
            "`sagevault policies add`, `sagevault policies approve`",
        )
    return Result(PASS, f"{len(current)} policy documents registered, none past its review date", evidence)


def retention(c: Context) -> Result:
    facts, loose = numbers(c.policy, ("pii_retention_days_after_delivery", "non_pii_retention_days"))
    status = c.d.retention.status(c.conn, principal=c.principal)
    pii_overdue = sum(t.pii.overdue for t in status.tenants)
    records_overdue = sum(t.records.overdue for t in status.tenants)
    evidence = {
        **facts,
        "tenants": len(status.tenants),
        "records_with_pii_past_retention": pii_overdue,
        "records_past_retention": records_overdue,
        "records_kept_by_legal_hold": sum(t.held for t in status.tenants),
    }
    if loose:
        return Result(FAIL, "retention is looser than the policy: " + "; ".join(loose), evidence, "tighten [policy]")
    if pii_overdue or records_overdue:
        return Result(
            FAIL,
            f"a retention backlog: {pii_overdue} records keep PII and {records_overdue} records stay past their date",
            evidence,
            "run `sagevault retention run` and keep the scheduler (`sagevault serve`) running its retention job",
        )
    return Result(PASS, "no PII or record is kept past its retention date (legal holds aside)", evidence)


def subject_rights(c: Context) -> Result:
    can = {
        "erase": "delete" in REQUEST_KINDS,
        "return": "return" in REQUEST_KINDS,
        "rectify": callable(getattr(BuyerRights, "rectify", None)),
        "restrict": callable(getattr(BuyerRights, "restrict", None)),
    }
    requests = list(c.d.deletion.list_requests(c.conn, principal=c.principal, limit=1000))
    evidence = {**{f"can_{k}": v for k, v in can.items()}, "requests_on_record": len(requests)}
    if not all(can.values()):
        return Result(FAIL, "a buyer's right is not supported", evidence, "upgrade SageVault")
    return Result(PASS, "erase, return, rectify and restrict are each a request with a signed certificate", evidence)


# --- 2. Encryption and storage -------------------------------------------------------------------


def encryption_at_rest(c: Context) -> Result:
    d = c.d
    key_id = d.keys.key_id
    rows = c.conn.execute(
        select(tenant_keys.c.master_key_id, func.count())
        .where(tenant_keys.c.wrapped.is_not(None))
        .group_by(tenant_keys.c.master_key_id)
    ).all()
    wrapped = sum(int(n) for _, n in rows)
    foreign = sum(int(n) for k, n in rows if k != key_id)
    loose = loose_entries(d.settings.resolved_data_dir)
    evidence = {
        "field_cipher": "AES-256-GCM, per-tenant keysets (envelope encryption)",
        "key_provider": d.settings.key_provider,
        "master_key_id": key_id,
        "tenant_keys_wrapped": wrapped,
        "tenant_keys_under_another_master_key": foreign,
        "data_dir_entries_open_to_others": len(loose),
    }
    if loose:
        return Result(
            FAIL,
            "the data dir (keys, database) is readable by other accounts",
            evidence,
            f"chmod -R go-rwx {d.settings.resolved_data_dir}",
        )
    if foreign:
        return Result(
            ATTENTION,
            f"{foreign} tenant keys are wrapped by another master key (a rotation under way?)",
            evidence,
            "finish the master key rotation: `sagevault keys rotate-master`",
        )
    return Result(PASS, "PII is sealed with AES-256-GCM under tenant keys wrapped by the master key", evidence)


def key_management(c: Context) -> Result:
    provider = c.d.settings.key_provider
    evidence = {"key_provider": provider, "master_key_id": c.d.keys.key_id}
    if provider == "aws-kms":
        return Result(PASS, "the master key is held by a key management service (AWS KMS)", evidence)
    return Result(
        ATTENTION,
        "the master key is a local key file (0600, outside the database); Amazon's current DPP asks for a key "
        "management system",
        evidence,
        "for production, set key_provider = aws-kms with kms_key_id (README, Configuration)",
    )


# --- 3. Least privilege --------------------------------------------------------------------------


def least_privilege(c: Context) -> Result:
    pii_scopes = {Scope.PII_REVEAL, Scope.PII_EXPORT}
    pii_roles = [r for r in ROLES.values() if r.scopes & pii_scopes]
    unbound = [r.name for r in pii_roles if not r.purposes]
    active = c.conn.execute(
        select(grants.c.role, func.count()).where(grants.c.status == "active").group_by(grants.c.role)
    ).all()
    evidence = {
        "roles": len(ROLES),
        "roles_that_reveal_pii": [r.name for r in pii_roles],
        "pii_roles_without_purposes": unbound,
        "active_grants_by_role": {str(role): int(n) for role, n in active},
    }
    if unbound:
        return Result(FAIL, "a role reveals PII without naming its purposes", evidence, "give each PII role purposes")
    return Result(
        PASS, "access is by role and tenant grant; every role that reveals PII is bound to its purposes", evidence
    )


# --- 4. Logging and monitoring -------------------------------------------------------------------


def log_retention(c: Context) -> Result:
    facts, loose = numbers(c.policy, ("security_log_retention_days",))
    first = c.first_event()
    evidence = {**facts, "oldest_event": event_time(first).isoformat() if first else None}
    if loose:
        return Result(
            FAIL,
            "security logs are kept for less than 12 months: " + "; ".join(loose),
            evidence,
            "set policy.security_log_retention_days = 365 (or more)",
        )
    return Result(PASS, f"security events are kept {facts['security_log_retention_days']} days", evidence)


def log_integrity(c: Context) -> Result:
    signs = c.d.audit.signs
    last = c.last_event("audit:log:verify")
    evidence: dict[str, Any] = {"signing_key_present": signs}
    if not signs:
        return Result(
            FAIL,
            "the audit signing key is missing: no digest or seal is written",
            evidence,
            "restore the audit signing key beside the master key",
        )
    if last is None:
        fix = f"run `sagevault audit verify`, then at least every {VERIFY_EVERY_DAYS} days"
        return Result(ATTENTION, "the security log has never been verified", evidence, fix)
    at = event_time(last)
    evidence.update(
        {"last_verify_at": at.isoformat(), "last_verify_outcome": last["outcome"], **dict(last.get("counts") or {})}
    )
    if last["outcome"] != "success":
        return Result(
            FAIL,
            "the last verification of the security log failed",
            evidence,
            "run `sagevault audit verify`, read its problems, open an incident if events were changed",
        )
    if c.now - at > timedelta(days=VERIFY_EVERY_DAYS):
        return Result(
            ATTENTION,
            f"the last verification is older than {VERIFY_EVERY_DAYS} days",
            evidence,
            "run `sagevault audit verify`",
        )
    return Result(PASS, "the hash chain and signed digests verified recently", evidence)


# What the policy's alarms are, and the shipped rules that raise them.
ALARMS = {
    "multiple unauthorized calls": ("denied-calls-principal", "denied-calls-source"),
    "unexpected request rate": ("request-rate",),
    "data retrieval volume": ("read-volume", "reveal-volume"),
    "canary records": ("canary-touched",),
    "brute force": ("login-brute-force",),
    "password spraying": ("password-spraying",),
}


def alarm_rules(c: Context) -> Result:
    loaded = {rid for rid, rule in c.d.monitor.rules.items() if getattr(rule, "enabled", True)}
    missing = [what for what, rules in ALARMS.items() if not loaded & set(rules)]
    evidence = {"rules_loaded": len(loaded), "alarms_without_a_rule": missing}
    if missing:
        return Result(
            FAIL,
            "no detection rule for: " + ", ".join(missing),
            evidence,
            "restore the shipped rules (`sagevault rules list`)",
        )
    return Result(PASS, "every alarm the policy names has a detection rule loaded", evidence)


def open_alarms(c: Context) -> Result:
    """Every open or acknowledged alarm, paged by state: no number of newer resolved alarms can
    hide an old open one."""
    found: list[Any] = []
    for state in ("open", "acknowledged"):
        found += paged(
            lambda state=state, **kw: c.d.monitor.list_alarms(c.conn, principal=c.principal, state=state, **kw)
        )
    alarms = sorted(found, key=lambda a: a.id, reverse=True)
    by_severity: dict[str, int] = {}
    for a in alarms:
        by_severity[a.severity] = by_severity.get(a.severity, 0) + 1
    evidence = {"open_alarms": len(alarms), "by_severity": by_severity, "ids": [a.id for a in alarms[:20]]}
    if alarms:
        return Result(
            ATTENTION,
            f"{len(alarms)} alarms are open: each needs an investigation, documented as the IR plan says",
            evidence,
            "`sagevault alarms list`; resolve or dismiss each with a note, or open an incident",
        )
    return Result(PASS, "no alarm is waiting for an investigation", evidence)
