"""Checks of DPP clauses 5 to 7: network protection, access management (with Amazon's numbers
for passwords, MFA, API keys and reviews), encryption in transit.

The access facts are counts read from the access tables: the compliance role reads them without
`users:admin` (which manages accounts), and no login, name or address leaves this module."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from sqlalchemy import select

from sagevault.access._schema import allowlist, api_keys, principals
from sagevault.config import database_problem, https_problem, redis_problem
from sagevault.crypto import server_context

from ._context import Context, aware, method
from ._model import Result, Status, numbers

PASS, FAIL, ATTENTION = Status.PASS, Status.FAIL, Status.ATTENTION
GENERIC_LOGINS = frozenset({"admin", "administrator", "root", "default", "guest", "test", "shared", "user", "demo"})
CERT_WARN_DAYS = 30


# --- 5. Network protection -----------------------------------------------------------------------


def network(c: Context) -> Result:
    rows = c.conn.execute(select(allowlist.c.scope, allowlist.c.cidr)).all()
    by_scope: dict[str, int] = {}
    open_to_all: list[str] = []
    for scope, cidr in rows:
        by_scope[scope] = by_scope.get(scope, 0) + 1
        if ipaddress.ip_network(cidr, strict=False).prefixlen == 0:
            open_to_all.append(f"{scope}:{cidr}")
    proxies_open = [p for p in c.d.settings.trusted_proxies if ipaddress.ip_network(p).prefixlen == 0]
    evidence: dict[str, Any] = {
        "allowlist_entries": by_scope,
        "global_allowlist": "loopback only (the default)" if not by_scope.get("global") else "configured",
        "entries_open_to_every_address": open_to_all,
        "trusted_proxies": len(c.d.settings.trusted_proxies),
    }
    if open_to_all or proxies_open:
        return Result(
            FAIL,
            "an allow-list (or trusted_proxies) admits every address: public access is not restricted",
            evidence,
            "remove the 0.0.0.0/0 or ::/0 entry (`sagevault allowlist list`, `allowlist remove ID`); name the networks",
        )
    return Result(PASS, "every API route admits only the allow-listed networks", evidence)


# --- 6. Access management ------------------------------------------------------------------------


def _people(c: Context) -> list[Any]:
    return list(
        c.conn.execute(
            select(principals.c.kind, principals.c.login, principals.c.status, principals.c.owner_id).where(
                principals.c.status != "disabled"
            )
        )
    )


def unique_ids(c: Context) -> Result:
    rows = _people(c)
    generic = sum(1 for r in rows if r.login in GENERIC_LOGINS)
    ownerless = sum(1 for r in rows if r.kind == "service" and not r.owner_id)
    evidence = {
        "people": sum(1 for r in rows if r.kind == "person"),
        "service_accounts": sum(1 for r in rows if r.kind == "service"),
        "generic_logins": generic,
        "service_accounts_without_owner": ownerless,
        "default_credentials": 0,
    }
    if generic or ownerless:
        return Result(
            FAIL,
            "an account is generic or shared (a generic login, or a service account nobody owns)",
            evidence,
            "give each person their own account and each service account an owner; disable the rest",
        )
    if not rows:
        return Result(
            ATTENTION,
            "no person or service account exists yet: there is nothing to show unique IDs on",
            evidence,
            "enrol each person with their own account (`sagevault users add`), then run the report again",
        )
    return Result(PASS, "every account is one person's or one owned service's; none has default credentials", evidence)


def mfa(c: Context) -> Result:
    rows = c.conn.execute(
        select(principals.c.status, principals.c.totp_secret.is_not(None)).where(principals.c.kind == "person")
    ).all()
    active = [has for status, has in rows if status == "active"]
    without = sum(1 for has in active if not has)
    evidence = {
        "people_active": len(active),
        "people_with_totp": sum(1 for has in active if has),
        "people_without_totp": without,
        "people_enrolling": sum(1 for status, _ in rows if status == "enrolling"),
    }
    if without:
        return Result(
            FAIL,
            f"{without} active people log in without TOTP",
            evidence,
            "reset them (`sagevault users reset`) so they enrol again with TOTP",
        )
    if not active:
        return Result(
            ATTENTION,
            "no active person yet: MFA coverage cannot be shown on nobody",
            evidence,
            "enrol the people who use SageVault (`sagevault users add`; each enrols with TOTP), then run it again",
        )
    return Result(PASS, "every active person logs in with a password and TOTP", evidence)


def lockout(c: Context) -> Result:
    facts, loose = numbers(c.policy, ("lockout_threshold",))
    evidence = {**facts, "lockout_base_minutes": c.d.settings.lockout_base_minutes}
    if loose:
        return Result(
            FAIL,
            "accounts lock too late: " + "; ".join(loose),
            evidence,
            "set policy.lockout_threshold = 10 (or fewer)",
        )
    return Result(PASS, f"an account locks after {facts['lockout_threshold']} failed log-ins", evidence)


def passwords(c: Context) -> Result:
    names = ("password_min_length", "password_max_age_days", "password_min_age_days", "password_history")
    facts, loose = numbers(c.policy, names)
    if loose:
        return Result(
            FAIL, "the password policy is looser than Amazon's: " + "; ".join(loose), facts, "tighten [policy]"
        )
    return Result(PASS, "passwords: 12+ characters, mixed classes, no part of the login, aged and not reused", facts)


def access_review(c: Context) -> Result:
    facts, loose = numbers(c.policy, ("access_review_days", "inactive_account_days"))
    reviews = c.d.governance.reviews
    last = method(reviews, "last_closed")(c.conn)
    late = method(reviews, "overdue")(c.conn)
    evidence: dict[str, Any] = {**facts}
    if last is not None:
        evidence.update({"last_closed_campaign": last.get("id"), "last_closed_at": last.get("closed_at")})
    if late is not None:
        evidence["overdue"] = getattr(late, "kind", None) or str(late)[:80]
    if loose:
        return Result(
            FAIL, "access reviews are looser than the policy: " + "; ".join(loose), evidence, "tighten [policy]"
        )
    if late is not None:
        return Result(
            FAIL,
            "the access review is overdue",
            evidence,
            "start or finish a campaign: `sagevault reviews start`, decide its items, `sagevault reviews close`",
        )
    if last is None:
        return Result(
            ATTENTION,
            "no access-review campaign has been closed yet (none is due)",
            evidence,
            "run the first campaign: `sagevault reviews start`",
        )
    return Result(PASS, f"access reviewed within {facts['access_review_days']} days", evidence)


def leavers(c: Context) -> Result:
    """The 24-hour leaver clock: accounts marked leaving (`sagevault users leave`) are disabled by
    the hourly `leavers` job; one still enabled past its date plus the policy's hours is a FAIL.
    SageVault reads no identity source, so whether every leaver was marked is a person's to show:
    without an overdue one the item is ATTENTION, never a PASS."""
    facts, loose = numbers(c.policy, ("leaver_disable_hours",))
    limit = c.now - timedelta(hours=int(facts["leaver_disable_hours"]))
    rows = c.conn.execute(
        select(principals.c.leaving_at, principals.c.status).where(principals.c.leaving_at.is_not(None))
    ).all()
    overdue = sum(1 for at, status in rows if status != "disabled" and (aware(at) or limit) <= limit)
    evidence: dict[str, Any] = {**facts, "marked_leavers": len(rows), "leavers_overdue": overdue}
    if loose:
        return Result(FAIL, "leavers may keep access too long: " + "; ".join(loose), evidence, "tighten [policy]")
    if overdue:
        return Result(
            FAIL,
            f"{overdue} leaver(s) still have access more than {facts['leaver_disable_hours']} hours after their date",
            evidence,
            "run `sagevault jobs run leavers` (and check that `sagevault serve` runs its scheduler)",
        )
    return Result(
        ATTENTION,
        "marked leavers are disabled within an hour of their date (the `leavers` job); SageVault reads no identity "
        "source, so that every leaver is marked is the leaver process's to show",
        evidence,
        "mark each leaver on their last day (`sagevault users leave LOGIN --at DATE`) and keep the leaver "
        "process's record for the auditor",
    )


def api_key_rotation(c: Context) -> Result:
    facts, loose = numbers(c.policy, ("api_key_max_age_days",))
    limit = timedelta(days=facts["api_key_max_age_days"])
    rows = c.conn.execute(
        select(api_keys.c.created_at, api_keys.c.expires_at).where(api_keys.c.revoked_at.is_(None))
    ).all()
    live = [(aware(a), aware(b)) for a, b in rows if (aware(b) or datetime.min.replace(tzinfo=UTC)) > c.now]
    too_long = sum(1 for a, b in live if a is not None and b is not None and b - a > limit)
    evidence = {**facts, "api_keys_live": len(live), "api_keys_living_too_long": too_long}
    if loose:
        return Result(FAIL, "API keys may live too long: " + "; ".join(loose), evidence, "tighten [policy]")
    if too_long:
        return Result(
            FAIL,
            f"{too_long} live API keys outlive {facts['api_key_max_age_days']} days",
            evidence,
            "rotate them: `sagevault users rotate-key`",
        )
    return Result(PASS, f"every API key expires within {facts['api_key_max_age_days']} days", evidence)


# --- 7. Encryption in transit --------------------------------------------------------------------


def tls(c: Context) -> Result:
    s = c.d.settings
    cert_file, key_file = s.resolved_tls_cert_file, s.resolved_tls_key_file
    if not cert_file.is_file() or not key_file.is_file():
        return Result(
            FAIL,
            "the service has no TLS certificate and key",
            {"certificate_present": cert_file.is_file(), "key_present": key_file.is_file()},
            "run `sagevault init` (local CA) or set tls_cert_file and tls_key_file",
        )
    context = server_context(cert_file, key_file, s.resolved_tls_client_ca_file)
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    expires = cert.not_valid_after_utc
    evidence = {
        "minimum_tls_version": context.minimum_version.name,
        "plaintext_listener": False,
        "certificate_expires": expires.isoformat(),
        "mutual_tls": s.resolved_tls_client_ca_file is not None,
    }
    if context.minimum_version < ssl.TLSVersion.TLSv1_2:
        return Result(FAIL, "the service accepts TLS older than 1.2", evidence, "upgrade SageVault")
    if expires <= c.now:
        return Result(FAIL, "the service's TLS certificate has expired", evidence, "renew the certificate")
    if expires - c.now < timedelta(days=CERT_WARN_DAYS):
        return Result(ATTENTION, f"the TLS certificate expires within {CERT_WARN_DAYS} days", evidence, "renew it now")
    return Result(PASS, "HTTPS only, TLS 1.2 or newer, no plaintext listener", evidence)


def outbound(c: Context) -> Result:
    s = c.d.settings
    problems = [
        p
        for p in (
            *(
                database_problem(n, u)
                for n, u in (("database_url", s.database_url), ("audit_database_url", s.audit_database_url))
                if u
            ),
            redis_problem("rate_limit_storage_url", s.rate_limit_storage_url),
            https_problem("kms_endpoint_url", s.kms_endpoint_url) if s.kms_endpoint_url else None,
            https_problem("alarm_webhook_url", s.alarm_webhook_url) if s.alarm_webhook_url else None,
        )
        if p
    ]
    evidence = {
        "database": c.d.engine.dialect.name,
        "counters": s.rate_limit_storage_url.split(":", 1)[0],
        "alarm_email": f"SMTP with {s.alarm_smtp_security}" if s.alarm_smtp_host else "not configured",
        "alarm_webhook": "https" if s.alarm_webhook_url else "not configured",
        "siem_export": "syslog over TLS or JSON lines",
        "channels_in_clear": len(problems),
    }
    if problems:
        return Result(FAIL, "an outbound channel is not encrypted", evidence, "; ".join(problems))
    return Result(PASS, "every outbound channel (database, Redis, KMS, alarms) is encrypted or local", evidence)
