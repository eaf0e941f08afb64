"""Identity and access: people and service accounts, passwords with TOTP, API keys, lockout,
scopes and roles, tenant grants with the two-person rule, IP allow-lists and kill switches.

`AccessControl` is the vault's gate; `decide` is the one function that decides every access.
"""

from __future__ import annotations

from ._model import ALL_TENANTS, DEPLOYMENT_SCOPES, PURPOSE_SCOPES, ROLES, SWITCHED, KillSwitch, Role, Scope
from ._network import client_address, parse_address, parse_network
from ._passwords import check_strength, is_breached
from ._policy import AccessControl, AccessPolicy, Rule, decide, load_policy, parse_time
from ._service import (
    GENERIC_LOGINS,
    AccessService,
    Account,
    AllowEntry,
    ApiKey,
    Enrolment,
    GrantInfo,
    LoginAttempt,
    Review,
    Session,
    TotpSetup,
)
from ._throttle import LoginThrottle, RequestLimiter

__all__ = [
    "ALL_TENANTS",
    "DEPLOYMENT_SCOPES",
    "GENERIC_LOGINS",
    "PURPOSE_SCOPES",
    "ROLES",
    "SWITCHED",
    "AccessControl",
    "AccessPolicy",
    "AccessService",
    "Account",
    "AllowEntry",
    "ApiKey",
    "Enrolment",
    "GrantInfo",
    "KillSwitch",
    "LoginAttempt",
    "LoginThrottle",
    "RequestLimiter",
    "Review",
    "Role",
    "Rule",
    "Scope",
    "Session",
    "TotpSetup",
    "check_strength",
    "client_address",
    "decide",
    "is_breached",
    "load_policy",
    "parse_address",
    "parse_network",
    "parse_time",
]
