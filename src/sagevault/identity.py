"""Who acts, through which channel, with which permission: the words every package shares.

`Principal` is a person, a service account, the local operator or a scheduled job; `Channel` is
the way its request came in; `Scope` is one permission. The rules for the two ids people type
(a tenant id, a login) are written here once, for the vault, access, the audit log and the edges.
This module imports nothing of SageVault's but `errors`.
"""

from __future__ import annotations

import getpass
import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from sagevault.errors import AccessError, PayloadError, looks_like_pii, shown


class Channel(StrEnum):
    """How a principal reached SageVault; every security event names one."""

    API = "api"
    STORAGE = "storage"
    ADMIN = "admin"
    CLI = "cli"
    SCHEDULER = "scheduler"
    LIBRARY = "library"


class Scope(StrEnum):
    """Every permission SageVault checks (alphabetical)."""

    ALARMS_MANAGE = "alarms:manage"
    ALARMS_READ = "alarms:read"
    AUDIT_READ = "audit:read"
    BACKUPS_MANAGE = "backups:manage"
    BACKUPS_READ = "backups:read"
    DELETION_MANAGE = "deletion:manage"
    DELETION_READ = "deletion:read"
    GOVERNANCE_MANAGE = "governance:manage"
    GOVERNANCE_READ = "governance:read"
    INCIDENTS_MANAGE = "incidents:manage"
    INCIDENTS_READ = "incidents:read"
    KEYS_READ = "keys:read"
    KEYS_ROTATE = "keys:rotate"
    KILLSWITCH_OPERATE = "killswitch:operate"
    PII_EXPORT = "pii:export"
    PII_REVEAL = "pii:reveal"
    RECORDS_INGEST = "records:ingest"
    RECORDS_READ = "records:read"
    RECORDS_SEARCH = "records:search"
    RETENTION_MANAGE = "retention:manage"
    RETENTION_READ = "retention:read"
    TENANTS_ADMIN = "tenants:admin"
    TENANTS_SHRED = "tenants:shred"
    USERS_ADMIN = "users:admin"

    @property
    def sensitive(self) -> bool:
        """Scopes under the two-person rule: a grant that carries one needs a second party.
        `users:admin` is one too: an admin could otherwise make a second identity and approve
        their own grants through it."""
        return self.value.startswith(("pii:", "keys:")) or self is Scope.USERS_ADMIN


_POSIX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_DIGIT_RUN = re.compile(r"\d[\d_-]{5,}")
_LETTERS = "bcdfghjkmnpqrstvwxz"  # no digits (an id must never look like a phone number), no vowels


@dataclass(frozen=True, slots=True)
class Principal:
    """Who acts: a pseudonymous id (never an e-mail address), a kind, the channel, and for
    requests from the network the source address and the most its credential may do."""

    id: str
    kind: Literal["operator", "person", "service"]
    channel: Channel = Channel.LIBRARY
    source_ip: str | None = None
    scopes: frozenset[str] | None = None  # an API key's scopes; None = what the grants give

    @classmethod
    def local_operator(cls, channel: Channel = Channel.CLI) -> Principal:
        """The operator at this machine's shell: `operator:<login>` when the login is a plain
        POSIX name, else a pseudonym derived from it (a login could be an e-mail address, or
        hold a run of digits that reads like a phone number)."""
        user = getpass.getuser()
        if not _POSIX_USER.fullmatch(user) or _DIGIT_RUN.search(user):
            digest = hashlib.sha256(user.encode()).digest()
            user = "u" + "".join(_LETTERS[b % len(_LETTERS)] for b in digest[:12])
        return cls(id=f"operator:{user}", kind="operator", channel=channel)

    @classmethod
    def job(cls, name: str) -> Principal:
        """A scheduled job of this deployment (`job:<name>`). It runs inside the deployment,
        which holds the master key, so it acts with the local operator's standing."""
        return cls(id=f"job:{name}", kind="operator", channel=Channel.SCHEDULER)


# --- tenant ids ------------------------------------------------------------------------------

# A selling partner id as Amazon writes them (e.g. A2EUQ1WTGCTBG2): 2-64 upper-case letters and
# digits. The one definition: the vault's `add_tenant`, the API's tenant paths and the security
# log's tenant column all take exactly these. It is strict on purpose: a credential sent where a
# tenant id belongs (SageVault's tokens and Amazon's hold lower-case letters, `_`, `|`) is never one,
# so it never reaches the append-only log verbatim.
TENANT_ID = r"^[A-Z0-9]{2,64}$"
_TENANT_ID = re.compile(TENANT_ID)


def is_tenant_id(value: str) -> bool:
    """Whether `value` could name a tenant: the tenant-id form, and not shaped like PII."""
    return _TENANT_ID.fullmatch(value) is not None and not looks_like_pii(value)


def check_tenant_id(value: str) -> str:
    """`value` if it may name a new tenant; a PayloadError that says what one looks like otherwise."""
    if not _TENANT_ID.fullmatch(value):
        raise PayloadError(
            f"{shown(value)} is not a selling partner id; use upper-case letters and digits (2-64 characters), "
            "as Amazon writes them (e.g. A2EUQ1WTGCTBG2)"
        )
    if looks_like_pii(value):
        raise PayloadError("a tenant id is a selling partner id (like A2EUQ1WTGCTBG2), not a phone number or e-mail")
    return value


def event_tenant(value: str | None) -> str | None:
    """A tenant id fit for a security event: input that cannot be one (it may be anything a
    caller sent) is left out rather than recorded."""
    return value if value is not None and is_tenant_id(value) else None


# --- logins ----------------------------------------------------------------------------------

# Logins as an account is created with them (lower case); the API's paths also take any case,
# which the access service lowers.
LOGIN = r"^[a-z][a-z0-9._-]{2,63}$"
LOGIN_ANY_CASE = r"^[A-Za-z][A-Za-z0-9._-]{2,63}$"
_LOGIN = re.compile(LOGIN)

GENERIC_LOGINS = frozenset(
    {
        "admin",
        "administrator",
        "root",
        "test",
        "tester",
        "testing",
        "shared",
        "team",
        "user",
        "users",
        "guest",
        "demo",
        "default",
        "service",
        "support",
        "operator",
        "ops",
        "dev",
        "sagevault",
        "system",
        "sysadmin",
        "superuser",
        "su",
        "info",
        "office",
        "staff",
        "all",
        "everyone",
        "temp",
        "sa",
        "api",
        "svc",
        "bot",
    }
)


def normalise_login(login: str) -> str:
    return login.strip().lower()


def check_new_login(login: str) -> str:
    """The login a new account gets (trimmed, lower case), if the DPP allows it: unique accounts
    mean no generic or shared names. The caller checks that it is not taken."""
    login = normalise_login(login)
    if not _LOGIN.fullmatch(login):
        raise AccessError(
            f"login {shown(login)} is not allowed: use 3-64 characters, a letter first, then letters, digits, "
            "'.', '_' or '-' (not an e-mail address)"
        )
    base = re.sub(r"[\d._-]+$", "", login)
    if login in GENERIC_LOGINS or base in GENERIC_LOGINS:
        raise AccessError(
            f"login {login} is a generic name; every account belongs to one person or one service, "
            "so give it that person's or service's own name"
        )
    return login
