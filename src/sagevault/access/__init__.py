"""Identity and access: people and service accounts, passwords with TOTP, API keys, lockout,
roles, tenant grants with the two-person rule, IP allow-lists and kill switches.

`AccessControl` is the vault's gate; `decide` is the one function that decides every access.
`AccessService` holds the parts (see its module); `MIGRATIONS` is where this package's tables
are created.
"""

from __future__ import annotations

from pathlib import Path

from ._accounts import Account, Enrolment
from ._controls import AllowEntry
from ._core import AccessCore, TenantDirectory
from ._enrolment import Enrolments, TotpSetup
from ._grants import GrantInfo
from ._keys import ApiKey, ApiKeyInfo
from ._login import Attempt, PasswordChange, PasswordCheck, Session
from ._model import ALL_TENANTS, DEPLOYMENT_SCOPES, PURPOSE_SCOPES, ROLES, SWITCHED, KillSwitch, Role
from ._network import client_address, parse_address, parse_network
from ._passwords import Argon2Hashing, PasswordHasher, check_strength, is_breached
from ._policy import AccessControl, AccessPolicy, Rule, decide, load_policy, parse_time
from ._responses import AlarmResponses, IncidentActions
from ._review import Review
from ._schema import access_metadata
from ._service import AccessService
from ._throttle import LoginThrottle, RequestLimiter

MIGRATIONS = Path(__file__).with_name("migrations")

__all__ = [
    "ALL_TENANTS",
    "DEPLOYMENT_SCOPES",
    "MIGRATIONS",
    "PURPOSE_SCOPES",
    "ROLES",
    "SWITCHED",
    "AccessControl",
    "AccessCore",
    "AccessPolicy",
    "AccessService",
    "Account",
    "AlarmResponses",
    "AllowEntry",
    "ApiKey",
    "ApiKeyInfo",
    "Argon2Hashing",
    "Attempt",
    "Enrolment",
    "Enrolments",
    "GrantInfo",
    "IncidentActions",
    "KillSwitch",
    "LoginThrottle",
    "PasswordChange",
    "PasswordCheck",
    "PasswordHasher",
    "RequestLimiter",
    "Review",
    "Role",
    "Rule",
    "Session",
    "TenantDirectory",
    "TotpSetup",
    "access_metadata",
    "check_strength",
    "client_address",
    "decide",
    "is_breached",
    "load_policy",
    "parse_address",
    "parse_network",
    "parse_time",
]
