"""Every error SageVault raises on purpose.

Messages are sentences a user can act on. They name tenants, orders and fields by id or
catalog path only, never by value, so an exception can be logged without leaking PII.

    SageVaultError
    ├── ConfigError                 unsafe or invalid configuration; SageVault refuses to start
    ├── NotInitialized              the data dir has no deployment yet (run `sagevault init`)
    ├── AlreadyInitialized          `sagevault init` on a data dir that already has one
    ├── KeyProviderError            the master key is missing, wrong, unreadable or unsafe
    ├── IntegrityError              a ciphertext failed authentication (tampered or moved)
    ├── PayloadError                input that is not an SP-API payload SageVault can store
    ├── TenantError
    │   ├── UnknownTenant
    │   ├── TenantExists
    │   └── TenantShredded          the tenant's keys were destroyed; its data cannot be read
    ├── RecordNotFound
    ├── RotationError               a key rotation step cannot run in the current state
    ├── AuditError
    │   ├── AuditEventError         an event with a bad field (never written)
    │   └── AuditUnavailable        the event could not be made durable: the operation is refused
    ├── AccessError                 access administration refused: weak password, generic login,
    │   │                           bad CIDR, grant to an unknown tenant, self-grant ...
    │   ├── Conflict                the current state forbids it: a login taken, an account not
    │   │                           disabled or not locked, a grant not pending, a revoked key ...
    │   └── NotFound                the account, grant, API key or allow-list entry does not exist
    └── AccessDenied                a principal may not do this (scope, tenant, window, purpose)
        ├── PurposeNotAllowed       the catalog (or the role) does not allow this purpose
        ├── AuthenticationFailed    wrong login, password, code or key: one message for all
        ├── AccountLocked           too many failures; cool-off running or an admin must unlock
        ├── AccountDisabled
        ├── LoginThrottled          per-IP, global or spraying limit hit, or the limiter is down
        ├── NetworkDenied           the source address is outside the allow-lists
        ├── KillSwitchEngaged
        └── CredentialExpired       a password past its maximum age, an expired API key

Errors that stand for a security event carry `reason`, a code from `sagevault.audit.Reason`.
"""

from __future__ import annotations

import re
from datetime import datetime

_SHOWABLE = re.compile(r"[A-Za-z][A-Za-z0-9._:/\[\]-]{0,63}|\d{3}-\d{7}-\d{7}")
_AMAZON_ORDER_ID = re.compile(r"\d{3}-\d{7}-\d{7}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")


def looks_like_pii(value: str) -> bool:
    """Whether `value` holds something shaped like an e-mail address or a phone number: the one
    check every place that must keep PII out (error messages, security events, ids) asks."""
    return bool(_EMAIL.search(value) or _PHONE.search(value))


def shown(value: object) -> str:
    """`value` as an error message may show it: ids (tenant, order, field names) as they are;
    anything else a user typed, which could be PII put in the wrong place, is withheld."""
    text = str(value)
    if _SHOWABLE.fullmatch(text) and (_AMAZON_ORDER_ID.fullmatch(text) or not looks_like_pii(text)):
        return text
    return "<withheld: not an id>"


class SageVaultError(Exception):
    """Base class: a refusal with a message that says what to do next."""

    reason: str = ""

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ConfigError(SageVaultError):
    pass


class NotConfigured(ConfigError):
    """A part of the deployment is not set up yet (the SP-API application's credentials): the
    service cannot do what was asked until an operator configures it."""


class NotInitialized(SageVaultError):
    pass


class AlreadyInitialized(SageVaultError):
    pass


class KeyProviderError(SageVaultError):
    pass


class IntegrityError(SageVaultError):
    pass


class PayloadError(SageVaultError):
    pass


class TenantError(SageVaultError):
    pass


class UnknownTenant(TenantError):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(
            f"tenant {shown(tenant_id)} does not exist; add it with "
            f"`sagevault tenants add {shown(tenant_id)} --marketplace MARKETPLACE_ID`"
        )
        self.tenant_id = tenant_id


class TenantExists(TenantError):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"tenant {shown(tenant_id)} already exists; see `sagevault tenants list`")
        self.tenant_id = tenant_id


class TenantShredded(TenantError):
    def __init__(self, tenant_id: str, shredded_at: datetime) -> None:
        super().__init__(
            f"tenant {shown(tenant_id)} was shredded on {shredded_at:%Y-%m-%d %H:%M:%S} UTC; its data cannot be read"
        )
        self.tenant_id = tenant_id
        self.shredded_at = shredded_at


class RecordNotFound(SageVaultError):
    pass


class RotationError(SageVaultError):
    pass


class AuditError(SageVaultError):
    pass


class AuditEventError(AuditError):
    pass


class AuditUnavailable(AuditError):
    pass


class AccessError(SageVaultError):
    reason = "bad_input"


class Conflict(AccessError):
    """The request is well formed but the current state forbids it (enable an account that is not
    disabled, approve a grant that is no longer pending, revoke what is revoked already). The
    message says what the state is and what to do instead."""


class NotFound(AccessError):
    """The account, grant, API key or allow-list entry named does not exist (in any state)."""

    reason = "record_not_found"


class AccessDenied(SageVaultError):
    reason = "access_denied"


class PurposeNotAllowed(AccessDenied):
    reason = "purpose_not_allowed"


class ProcessingRestricted(AccessDenied):
    """A buyer restricted the processing of the record: nobody reads, reveals or exports it."""

    reason = "processing_restricted"


class AuthenticationFailed(AccessDenied):
    reason = "bad_credentials"


class AccountLocked(AccessDenied):
    reason = "account_locked"


class AccountDisabled(AccessDenied):
    reason = "account_disabled"


class LoginThrottled(AccessDenied):
    reason = "throttled"


class NetworkDenied(AccessDenied):
    reason = "network_denied"


class KillSwitchEngaged(AccessDenied):
    reason = "kill_switch"


class CredentialExpired(AccessDenied):
    reason = "credential_expired"


class RateLimited(AccessDenied):
    """A principal (or one principal on one route, or a source of refused requests) went over
    its request rate."""

    reason = "rate_limited"


class LimiterUnavailable(RateLimited):
    """The rate limiter's store cannot be reached: requests are refused, not let through uncounted."""

    reason = "limiter_unavailable"


class StorageBusy(SageVaultError):
    """Storage work that must finish (emptying the write-ahead log after a shred) could not, for
    now; running it again completes it."""


class RuleError(ConfigError):
    """A detection rule file that cannot be used: the message names the file, the line and what is wrong."""


class UpstreamError(SageVaultError):
    """Amazon (SP-API or LWA) did not answer usefully: unreachable, 5xx or 429 after every retry, or
    an answer that is not what its model says."""


class AuthorizationRevoked(UpstreamError):
    """Amazon refused the seller's authorisation (a revoked or expired refresh token, a 403)."""


class SinkError(SageVaultError):
    """An alarm sink did not take a delivery (unreachable, refused, bad answer): the outbox retries it."""
