"""The event vocabulary and the typed event: PII cannot be passed in.

Names are `<source>:<subject>:<action>`. Every field of an event is typed and checked: ids must
look like ids, reasons are codes from a closed list, and a string that looks like an e-mail
address or a phone number is refused wherever it appears.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from sagevault import errors
from sagevault.errors import AuditEventError, looks_like_pii
from sagevault.identity import Channel


class EventName(StrEnum):
    """Every security event SageVault records (alphabetical; a test keeps it so)."""

    ACCESS_ACCOUNT_CREATE = "access:account:create"
    ACCESS_ACCOUNT_DISABLE = "access:account:disable"
    ACCESS_ACCOUNT_ENABLE = "access:account:enable"
    ACCESS_ACCOUNT_ENROL = "access:account:enrol"
    ACCESS_ACCOUNT_LEAVE = "access:account:leave"
    ACCESS_ACCOUNT_LOCK = "access:account:lock"
    ACCESS_ACCOUNT_RESET = "access:account:reset"
    ACCESS_ACCOUNT_UNLOCK = "access:account:unlock"
    ACCESS_ALLOWLIST_ADD = "access:allowlist:add"
    ACCESS_ALLOWLIST_REMOVE = "access:allowlist:remove"
    ACCESS_APIKEY_CREATE = "access:apikey:create"
    ACCESS_APIKEY_FAILURE = "access:apikey:failure"
    ACCESS_APIKEY_REVOKE = "access:apikey:revoke"
    ACCESS_GRANT_APPROVE = "access:grant:approve"
    ACCESS_GRANT_CREATE = "access:grant:create"
    ACCESS_GRANT_REVOKE = "access:grant:revoke"
    ACCESS_KILLSWITCH_ENGAGE = "access:killswitch:engage"
    ACCESS_KILLSWITCH_RELEASE = "access:killswitch:release"
    ACCESS_LOGIN_FAILURE = "access:login:failure"
    ACCESS_LOGIN_SUCCESS = "access:login:success"
    ACCESS_NETWORK_DENY = "access:network:deny"
    ACCESS_PASSWORD_CHANGE = "access:password:change"  # noqa: S105 (an event/reason name)
    ACCESS_PERMISSION_DENY = "access:permission:deny"
    ACCESS_REVIEW_RUN = "access:review:run"
    ACCESS_SESSION_END = "access:session:end"
    ACCESS_SPRAY_DETECT = "access:spray:detect"
    ADMIN_CONFIG_CHANGE = "admin:config:change"
    API_REQUEST_FAIL = "api:request:fail"
    API_REQUEST_REFUSE = "api:request:refuse"
    AUDIT_DIGEST_WRITE = "audit:digest:write"
    AUDIT_LOG_EXPORT = "audit:log:export"
    AUDIT_LOG_READ = "audit:log:read"
    AUDIT_LOG_VERIFY = "audit:log:verify"
    AUDIT_SEGMENT_PURGE = "audit:segment:purge"
    CLI_COMMAND_FAIL = "cli:command:fail"
    CLI_COMMAND_RUN = "cli:command:run"
    COMPLIANCE_PACK_CREATE = "compliance:pack:create"
    COMPLIANCE_REPORT_CREATE = "compliance:report:create"
    CONNECTOR_AUTH_CONNECT = "connector:auth:connect"
    CONNECTOR_AUTH_DISCONNECT = "connector:auth:disconnect"
    CONNECTOR_AUTH_REVOKE = "connector:auth:revoke"
    CONNECTOR_FIELD_UNKNOWN = "connector:field:unknown"
    CONNECTOR_RDT_CREATE = "connector:rdt:create"
    CONNECTOR_SYNC_FAIL = "connector:sync:fail"
    CONNECTOR_SYNC_FINISH = "connector:sync:finish"
    CONNECTOR_SYNC_PAGE = "connector:sync:page"
    CONNECTOR_SYNC_START = "connector:sync:start"
    CONNECTOR_TOKEN_REFRESH = "connector:token:refresh"  # noqa: S105 (an event name)
    DELETION_BACKUP_CREATE = "deletion:backup:create"
    DELETION_BACKUP_RESTORE = "deletion:backup:restore"
    DELETION_CERTIFICATE_ISSUE = "deletion:certificate:issue"
    DELETION_CLOCK_OVERDUE = "deletion:clock:overdue"
    DELETION_CLOCK_WARN = "deletion:clock:warn"
    DELETION_COPY_DESTROY = "deletion:copy:destroy"
    DELETION_COPY_OVERDUE = "deletion:copy:overdue"
    DELETION_COPY_REGISTER = "deletion:copy:register"
    DELETION_REQUEST_FAIL = "deletion:request:fail"
    DELETION_REQUEST_RECEIVE = "deletion:request:receive"
    DELETION_REQUEST_STEP = "deletion:request:step"
    GOVERNANCE_ASSET_ADD = "governance:asset:add"
    GOVERNANCE_ASSET_DISPOSE = "governance:asset:dispose"
    GOVERNANCE_ASSET_REVIEW = "governance:asset:review"
    GOVERNANCE_POLICY_ADD = "governance:policy:add"
    GOVERNANCE_POLICY_APPROVE = "governance:policy:approve"
    GOVERNANCE_POLICY_OVERDUE = "governance:policy:overdue"
    GOVERNANCE_REVIEW_CLOSE = "governance:review:close"
    GOVERNANCE_REVIEW_DECIDE = "governance:review:decide"
    GOVERNANCE_REVIEW_OVERDUE = "governance:review:overdue"
    GOVERNANCE_REVIEW_REMIND = "governance:review:remind"
    GOVERNANCE_REVIEW_START = "governance:review:start"
    GOVERNANCE_ROPA_EXPORT = "governance:ropa:export"
    GOVERNANCE_VULN_CLOSE = "governance:vuln:close"
    GOVERNANCE_VULN_OPEN = "governance:vuln:open"
    GOVERNANCE_VULN_OVERDUE = "governance:vuln:overdue"
    GOVERNANCE_VULN_SCAN = "governance:vuln:scan"
    INCIDENT_ACTION_TAKE = "incident:action:take"
    INCIDENT_CASE_CLOSE = "incident:case:close"
    INCIDENT_CASE_OPEN = "incident:case:open"
    INCIDENT_CASE_TRANSITION = "incident:case:transition"
    INCIDENT_CASE_UPDATE = "incident:case:update"
    INCIDENT_CLOCK_OVERDUE = "incident:clock:overdue"
    INCIDENT_CLOCK_WARN = "incident:clock:warn"
    INCIDENT_EVIDENCE_ADD = "incident:evidence:add"
    INCIDENT_EVIDENCE_HANDOVER = "incident:evidence:handover"
    INCIDENT_EVIDENCE_VERIFY = "incident:evidence:verify"
    INCIDENT_NOTIFICATION_DRAFT = "incident:notification:draft"
    INCIDENT_NOTIFICATION_RECORD = "incident:notification:record"
    INCIDENT_PLAN_APPROVE = "incident:plan:approve"
    INCIDENT_PLAN_DUE = "incident:plan:due"
    INCIDENT_PLAN_EDIT = "incident:plan:edit"
    INCIDENT_REPORT_WRITE = "incident:report:write"
    INCIDENT_TASK_UPDATE = "incident:task:update"
    MONITOR_ALARM_ACK = "monitor:alarm:ack"
    MONITOR_ALARM_DISMISS = "monitor:alarm:dismiss"
    MONITOR_ALARM_RAISE = "monitor:alarm:raise"
    MONITOR_ALARM_RESOLVE = "monitor:alarm:resolve"
    MONITOR_CANARY_SEED = "monitor:canary:seed"
    MONITOR_SINK_FAIL = "monitor:sink:fail"
    RETENTION_HOLD_ADD = "retention:hold:add"
    RETENTION_HOLD_RELEASE = "retention:hold:release"
    RETENTION_PII_PURGE = "retention:pii:purge"
    RETENTION_RECORD_PURGE = "retention:record:purge"
    SCHEDULER_JOB_FAIL = "scheduler:job:fail"
    STORAGE_KEYSET_CREATE = "storage:keyset:create"
    STORAGE_KEYSET_DESTROY = "storage:keyset:destroy"
    STORAGE_KEYSET_RETIRE = "storage:keyset:retire"
    STORAGE_KEYSET_ROTATE = "storage:keyset:rotate"
    STORAGE_MASTERKEY_RETIRE = "storage:masterkey:retire"
    STORAGE_MASTERKEY_ROTATE = "storage:masterkey:rotate"
    STORAGE_RECORD_DELETE = "storage:record:delete"
    STORAGE_RECORD_PURGE = "storage:record:purge"
    VAULT_FIELD_RECTIFY = "vault:field:rectify"
    VAULT_FIELD_REVEAL = "vault:field:reveal"
    VAULT_RECORD_EXPORT = "vault:record:export"
    VAULT_RECORD_INGEST = "vault:record:ingest"
    VAULT_RECORD_READ = "vault:record:read"
    VAULT_RECORD_RESTRICT = "vault:record:restrict"
    VAULT_RECORD_SEARCH = "vault:record:search"
    VAULT_TENANT_CREATE = "vault:tenant:create"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS: dict[EventName, str] = {
    EventName.ACCESS_ACCOUNT_CREATE: "a person or service account was created",
    EventName.ACCESS_ACCOUNT_DISABLE: "an account was disabled; its sessions and API keys died with it",
    EventName.ACCESS_ACCOUNT_ENABLE: "a disabled account was enabled again",
    EventName.ACCESS_ACCOUNT_ENROL: "a person set their first password and TOTP",
    EventName.ACCESS_ACCOUNT_LEAVE: "an account was marked leaving: it is disabled at that time (within 24 hours)",
    EventName.ACCESS_ACCOUNT_LOCK: "an account was locked after repeated failed log-ins",
    EventName.ACCESS_ACCOUNT_RESET: "an administrator issued a new enrolment secret",
    EventName.ACCESS_ACCOUNT_UNLOCK: "a locked account was unlocked (by an administrator, or when its cool-off ended)",
    EventName.ACCESS_ALLOWLIST_ADD: "a network was added to an IP allow-list",
    EventName.ACCESS_ALLOWLIST_REMOVE: "a network was removed from an IP allow-list",
    EventName.ACCESS_APIKEY_CREATE: "an API key was issued to a service account",
    EventName.ACCESS_APIKEY_FAILURE: "an API key was refused (unknown, wrong, expired, revoked)",
    EventName.ACCESS_APIKEY_REVOKE: "an API key was revoked",
    EventName.ACCESS_GRANT_APPROVE: "a second administrator approved a grant",
    EventName.ACCESS_GRANT_CREATE: "a role was granted (or requested) for tenants",
    EventName.ACCESS_GRANT_REVOKE: "a grant was revoked",
    EventName.ACCESS_KILLSWITCH_ENGAGE: "a kill switch was engaged",
    EventName.ACCESS_KILLSWITCH_RELEASE: "a kill switch was released",
    EventName.ACCESS_LOGIN_FAILURE: "a log-in was refused",
    EventName.ACCESS_LOGIN_SUCCESS: "a person logged in with password and TOTP",
    EventName.ACCESS_NETWORK_DENY: "a request from outside the IP allow-lists was refused",
    EventName.ACCESS_PASSWORD_CHANGE: "a password change was made or refused",
    EventName.ACCESS_PERMISSION_DENY: "a principal was refused an action (scope, purpose or gate)",
    EventName.ACCESS_REVIEW_RUN: "accounts and keys were reviewed (inactive, expiring)",
    EventName.ACCESS_SESSION_END: "a person ended their session (logged out)",
    EventName.ACCESS_SPRAY_DETECT: "one source failed log-ins on many accounts; it is blocked",
    EventName.ADMIN_CONFIG_CHANGE: "the effective configuration differs from the last one recorded",
    EventName.API_REQUEST_FAIL: "an API request failed with an unexpected error (its type and request id only)",
    EventName.API_REQUEST_REFUSE: "an API request was refused before any credential was checked, or over its rate",
    EventName.AUDIT_DIGEST_WRITE: "a signed digest of the chain head was written",
    EventName.AUDIT_LOG_EXPORT: "security events were exported",
    EventName.AUDIT_LOG_READ: "security events were searched or listed (tail, search, the API's event list)",
    EventName.AUDIT_LOG_VERIFY: "the event chain and digests were verified",
    EventName.AUDIT_SEGMENT_PURGE: "events older than the retention period were purged, chain anchor kept",
    EventName.CLI_COMMAND_FAIL: "an operator command failed with an error",
    EventName.CLI_COMMAND_RUN: "an operator command ran to completion",
    EventName.COMPLIANCE_PACK_CREATE: "a signed DPP evidence pack was written (its SHA-256)",
    EventName.COMPLIANCE_REPORT_CREATE: "the DPP report was evaluated on the live deployment (counts per status)",
    EventName.CONNECTOR_AUTH_CONNECT: "a seller's SP-API authorisation was stored (its refresh token sealed)",
    EventName.CONNECTOR_AUTH_DISCONNECT: "a seller's SP-API authorisation was removed (its refresh token deleted)",
    EventName.CONNECTOR_AUTH_REVOKE: "Amazon refused a seller's authorisation: its sync stopped",
    EventName.CONNECTOR_FIELD_UNKNOWN: "a synced page held fields the catalog does not know (stored encrypted)",
    EventName.CONNECTOR_RDT_CREATE: "a Restricted Data Token was obtained for a seller (its data elements)",
    EventName.CONNECTOR_SYNC_FAIL: "a seller's sync stopped on an error (its reason code); the checkpoint held",
    EventName.CONNECTOR_SYNC_FINISH: "a seller's sync run ended (pages and orders stored)",
    EventName.CONNECTOR_SYNC_PAGE: "a page of a seller's orders was stored with its checkpoint",
    EventName.CONNECTOR_SYNC_START: "a seller's sync run began",
    EventName.CONNECTOR_TOKEN_REFRESH: "an LWA access token was obtained for a seller (kept in memory only)",
    EventName.DELETION_BACKUP_CREATE: "an encrypted backup of the vault's database was written and registered",
    EventName.DELETION_BACKUP_RESTORE: "a backup was restored, every deletion since it was taken applied first",
    EventName.DELETION_CERTIFICATE_ISSUE: "a signed deletion certificate was issued (its SHA-256)",
    EventName.DELETION_CLOCK_OVERDUE: "a deletion or return request is past its 72-hour deadline",
    EventName.DELETION_CLOCK_WARN: "a deletion or return request's 72-hour deadline is getting close",
    EventName.DELETION_COPY_DESTROY: "a tracked live copy (backup, export, bundle) was destroyed",
    EventName.DELETION_COPY_OVERDUE: "a tracked live copy outlived its expiry (90 days at most)",
    EventName.DELETION_COPY_REGISTER: "a live copy (backup, export, return bundle) was registered with its expiry",
    EventName.DELETION_REQUEST_FAIL: "a deletion or return request failed (its reason code)",
    EventName.DELETION_REQUEST_RECEIVE: "a deletion, return or buyer-rights request was recorded",
    EventName.DELETION_REQUEST_STEP: "a deletion or return request moved to its next state",
    EventName.GOVERNANCE_ASSET_ADD: "an asset was added to the inventory (by a person or the deployment itself)",
    EventName.GOVERNANCE_ASSET_DISPOSE: "an asset was disposed of, with its sanitisation record",
    EventName.GOVERNANCE_ASSET_REVIEW: "an asset's entry was reviewed",
    EventName.GOVERNANCE_POLICY_ADD: "a policy document's version was registered (its SHA-256)",
    EventName.GOVERNANCE_POLICY_APPROVE: "a policy document's version was approved",
    EventName.GOVERNANCE_POLICY_OVERDUE: "a policy document is past its review date",
    EventName.GOVERNANCE_REVIEW_CLOSE: "an access-review campaign was closed (counts, the signed report's SHA-256)",
    EventName.GOVERNANCE_REVIEW_DECIDE: "an access-review item was decided (keep, revoke or change)",
    EventName.GOVERNANCE_REVIEW_OVERDUE: "an access-review campaign is past its due date, or none ran in time",
    EventName.GOVERNANCE_REVIEW_REMIND: "an access-review campaign due in a week (then a day) has undecided items",
    EventName.GOVERNANCE_REVIEW_START: "an access-review campaign was started with its items",
    EventName.GOVERNANCE_ROPA_EXPORT: "the record of processing was generated and exported",
    EventName.GOVERNANCE_VULN_CLOSE: "a vulnerability was no longer found by a scan and was closed",
    EventName.GOVERNANCE_VULN_OPEN: "a vulnerability was found in a dependency (advisory id, severity, deadline)",
    EventName.GOVERNANCE_VULN_OVERDUE: "a vulnerability is open past its fix deadline",
    EventName.GOVERNANCE_VULN_SCAN: "the installed dependencies were checked against known advisories",
    EventName.INCIDENT_ACTION_TAKE: "a containment action (kill switch, lock-out, revocation) taken for an incident",
    EventName.INCIDENT_CASE_CLOSE: "an incident was closed with its description, root cause, remediation and controls",
    EventName.INCIDENT_CASE_OPEN: "an incident was opened (by hand or from an alarm)",
    EventName.INCIDENT_CASE_TRANSITION: "an incident moved to another phase",
    EventName.INCIDENT_CASE_UPDATE: "an incident's facts, roles or documentation changed",
    EventName.INCIDENT_CLOCK_OVERDUE: "Amazon was not notified of an incident within the policy's hours",
    EventName.INCIDENT_CLOCK_WARN: "an incident's deadline to notify Amazon is getting close",
    EventName.INCIDENT_EVIDENCE_ADD: "an evidence item (its SHA-256) was added to an incident",
    EventName.INCIDENT_EVIDENCE_HANDOVER: "an evidence item changed hands (chain of custody)",
    EventName.INCIDENT_EVIDENCE_VERIFY: "an evidence item was checked against its recorded SHA-256",
    EventName.INCIDENT_NOTIFICATION_DRAFT: "the notification to Amazon was drafted (its SHA-256)",
    EventName.INCIDENT_NOTIFICATION_RECORD: "sending the notification to Amazon was recorded; the clock stopped",
    EventName.INCIDENT_PLAN_APPROVE: "a version of the incident response plan was approved (or reviewed)",
    EventName.INCIDENT_PLAN_DUE: "the incident response plan is due for review (six months, or a major change)",
    EventName.INCIDENT_PLAN_EDIT: "a new version of the incident response plan was written",
    EventName.INCIDENT_REPORT_WRITE: "an incident report was written (its SHA-256)",
    EventName.INCIDENT_TASK_UPDATE: "a task of an incident's procedure was done or skipped",
    EventName.MONITOR_ALARM_ACK: "an alarm was acknowledged by a person",
    EventName.MONITOR_ALARM_DISMISS: "an alarm was closed as a false positive",
    EventName.MONITOR_ALARM_RAISE: "a detection rule raised an alarm (rule, version and evidence in the alarm)",
    EventName.MONITOR_ALARM_RESOLVE: "an alarm was resolved",
    EventName.MONITOR_CANARY_SEED: "canary records were planted in a tenant",
    EventName.MONITOR_SINK_FAIL: "an alarm could not be delivered to a sink (it is retried)",
    EventName.RETENTION_HOLD_ADD: "a legal hold was placed on records (reason and end date kept)",
    EventName.RETENTION_HOLD_RELEASE: "a legal hold was released",
    EventName.RETENTION_PII_PURGE: "PII fields past their retention date were purged",
    EventName.RETENTION_RECORD_PURGE: "records past the non-PII retention date were deleted",
    EventName.SCHEDULER_JOB_FAIL: "a scheduled job failed (its name and the error's type only)",
    EventName.STORAGE_KEYSET_CREATE: "a tenant's keys were created",
    EventName.STORAGE_KEYSET_DESTROY: "a tenant's keys were destroyed (crypto-shred)",
    EventName.STORAGE_KEYSET_RETIRE: "old data or index key versions were retired and their material erased",
    EventName.STORAGE_KEYSET_ROTATE: "a new primary data or index key version was made and records moved to it",
    EventName.STORAGE_MASTERKEY_RETIRE: "a master key rotation ended: the old master key was destroyed",
    EventName.STORAGE_MASTERKEY_ROTATE: "tenant keys and access secrets were re-wrapped by a new master key",
    EventName.STORAGE_RECORD_DELETE: "records of a tenant were deleted (a request's scope); their ids",
    EventName.STORAGE_RECORD_PURGE: "unreadable rows of a shredded tenant were deleted",
    EventName.VAULT_FIELD_RECTIFY: "a buyer's PII field was corrected (rectification)",
    EventName.VAULT_FIELD_REVEAL: "PII fields were decrypted for a purpose",
    EventName.VAULT_RECORD_EXPORT: "records were decrypted for export (a return bundle)",
    EventName.VAULT_RECORD_INGEST: "SP-API documents were stored",
    EventName.VAULT_RECORD_READ: "records were read with PII masked",
    EventName.VAULT_RECORD_RESTRICT: "processing of records was restricted, or the restriction lifted",
    EventName.VAULT_RECORD_SEARCH: "records were looked up by blind index",
    EventName.VAULT_TENANT_CREATE: "a tenant was added",
}


class Outcome(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    FAILURE = "failure"


class Reason(StrEnum):
    """Why an event has the outcome it has: codes, never free text."""

    NONE = ""
    ACCESS_DENIED = "access_denied"
    PURPOSE_NOT_ALLOWED = "purpose_not_allowed"
    PROCESSING_RESTRICTED = "processing_restricted"
    TENANT_SHREDDED = "tenant_shredded"
    UNKNOWN_TENANT = "unknown_tenant"
    RECORD_NOT_FOUND = "record_not_found"
    INTEGRITY_FAILURE = "integrity_failure"
    BAD_INPUT = "bad_input"
    KEY_PROVIDER = "key_provider"
    CONFIG = "config"
    ERROR = "error"
    RETENTION = "retention"
    ON_DEMAND = "on_demand"
    INTERVAL = "interval"
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_LOCKED = "account_locked"
    BAD_CREDENTIALS = "bad_credentials"
    BAD_TOTP = "bad_totp"
    BREACHED_PASSWORD = "breached_password"  # noqa: S105 (an event/reason name)
    COOL_OFF = "cool_off"
    CREDENTIAL_EXPIRED = "credential_expired"
    KILL_SWITCH = "kill_switch"
    LIMITER_UNAVAILABLE = "limiter_unavailable"
    NO_CREDENTIAL = "no_credential"
    NETWORK_DENIED = "network_denied"
    PASSWORD_REUSED = "password_reused"  # noqa: S105 (an event/reason name)
    PASSWORD_TOO_YOUNG = "password_too_young"  # noqa: S105 (an event/reason name)
    RATE_LIMITED = "rate_limited"
    RECOVERY_CODE = "recovery_code"
    REVOKED = "revoked"
    SESSION_ENDED = "session_ended"
    SINK_UNAVAILABLE = "sink_unavailable"
    SELF_GRANT = "self_grant"
    SPRAYING = "spraying"
    THROTTLED = "throttled"
    TOTP_REPLAY = "totp_replay"
    TWO_PERSON_RULE = "two_person_rule"
    UPSTREAM = "upstream"
    WEAK_PASSWORD = "weak_password"  # noqa: S105 (an event/reason name)


def outcome_of(error: BaseException) -> tuple[Outcome, Reason]:
    """How a refused or failed operation is recorded: the one mapping from SageVault's errors to
    outcomes and reason codes, used by the vault, the access layer and the CLI alike. A refusal
    (AccessDenied, a shredded tenant) is `denied`; anything else is a `failure`."""
    if not isinstance(error, errors.SageVaultError):
        return Outcome.FAILURE, Reason.ERROR
    try:
        reason = Reason(error.reason or _REASONS.get(type(error), "error"))
    except ValueError:
        reason = Reason.ERROR
    denied = isinstance(error, errors.AccessDenied | errors.TenantShredded)
    return (Outcome.DENIED if denied else Outcome.FAILURE), reason


_REASONS: dict[type[Exception], str] = {
    errors.TenantShredded: "tenant_shredded",
    errors.UnknownTenant: "unknown_tenant",
    errors.RecordNotFound: "record_not_found",
    errors.IntegrityError: "integrity_failure",
    errors.PayloadError: "bad_input",
    errors.KeyProviderError: "key_provider",
    errors.ConfigError: "config",
    errors.SinkError: "sink_unavailable",
    errors.AuthorizationRevoked: "revoked",
    errors.UpstreamError: "upstream",
}


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_OPERATION = re.compile(r"[a-z][a-z0-9 ._:-]{0,63}")
_COUNT_KEY = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
_HEX = re.compile(r"[0-9a-f]{16,64}")


def _ints_json(ids: Sequence[int]) -> str:
    """The canonical JSON of `ids` (compact, as `json.dumps(..., separators=(",", ":"))`), for ids
    already checked to be `int` (whose JSON is their `str`), without an encoder's per-call work: a
    batch reveal makes 500 events at once."""
    return "[" + ",".join(map(str, ids)) + "]"


def _counts_json(counts: Mapping[str, int]) -> str:
    """The canonical JSON of `counts` (compact, keys sorted), for keys already checked against
    `_COUNT_KEY` (nothing in them to escape) and `int` values."""
    return "{" + ",".join(f'"{k}":{v}' for k, v in sorted(counts.items())) + "}"


# Free values already found valid, per (value, pattern, free): actors, tenants and operations repeat on
# every request, and the PII check is the costly part of making an event. Only accepted values are kept (never
# one that was refused), at most _VALID_KEPT of them; then the checks simply run each time.
_VALID: dict[tuple[str, re.Pattern[str], bool], None] = {}
_VALID_KEPT = 4096


def _check_id(name: str, value: str | None, pattern: re.Pattern[str] = _ID, *, free: bool = True) -> None:
    """`free` fields are ones a caller could fill with anything: they must also not look like PII.
    Hex digests and request ids have closed formats and are checked by pattern alone."""
    if value is None:
        return
    if type(value) is str and (value, pattern, free) in _VALID:
        return
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise AuditEventError(f"audit field {name} must be an id ({pattern.pattern}); got a {type(value).__name__}")
    if free and looks_like_pii(value):
        raise AuditEventError(f"audit field {name} looks like an e-mail address or phone number; pass an id instead")
    if free and type(value) is str and len(_VALID) < _VALID_KEPT:  # ids that repeat; request ids do not
        _VALID[(value, pattern, free)] = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One security event. Construct it with keywords; `validate` runs on creation."""

    name: EventName
    channel: Channel
    outcome: Outcome = Outcome.SUCCESS
    actor: str | None = None
    tenant_id: str | None = None
    record_ids: Sequence[int] = ()
    reason: Reason = Reason.NONE
    client_ip_hash: str | None = None
    request_id: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    operation: str | None = None  # e.g. "keys rotate", "reveal": an identifier, never a value
    fingerprint: str | None = None  # a hex digest (configuration, file), never a value
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _stored: list[Any] = field(init=False, repr=False, compare=False, default_factory=list)

    def __post_init__(self) -> None:
        for attr, enum in (("name", EventName), ("channel", Channel), ("outcome", Outcome), ("reason", Reason)):
            value = getattr(self, attr)
            if not isinstance(value, enum):
                try:
                    object.__setattr__(self, attr, enum(value))
                except ValueError:
                    raise AuditEventError(
                        f"audit field {attr}={value!r} is not one of: {', '.join(e.value for e in enum) or '-'}"
                    ) from None
        _check_id("actor", self.actor)
        _check_id("tenant_id", self.tenant_id)
        _check_id("request_id", self.request_id, _REQUEST_ID, free=False)
        _check_id("client_ip_hash", self.client_ip_hash, _HEX, free=False)
        _check_id("operation", self.operation, _OPERATION)
        _check_id("fingerprint", self.fingerprint, _HEX, free=False)
        for r in self.record_ids:
            if type(r) is not int:
                raise AuditEventError("audit field record_ids must be a list of integer record ids")
        for key, count in self.counts.items():
            if not isinstance(key, str) or not _COUNT_KEY.fullmatch(key) or type(count) is not int:
                raise AuditEventError("audit field counts must map short lower-case names to integers")
        if self.at.tzinfo is None:
            raise AuditEventError("audit field at must be timezone-aware")
        object.__setattr__(
            self,
            "_stored",
            [
                self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                self.name.value,
                self.channel.value,
                self.outcome.value,
                self.reason.value,
                self.actor,
                self.tenant_id,
                _ints_json(self.record_ids),
                _counts_json(self.counts),
                self.client_ip_hash,
                self.request_id,
                self.operation,
                self.fingerprint,
            ],
        )

    def values(self, seq: int) -> list[Any]:
        """The event as stored, in column order: record ids and counts as their canonical JSON
        text (built once, when the event is made). The chain hashes the canonical JSON of
        exactly this list."""
        return [seq, *self._stored]


class AuditSink(Protocol):
    """Where a domain service sends its security events. `AuditLog` is the real one: `record`
    returns the event's sequence number once it is durable, and raises `AuditUnavailable` when
    it cannot be, so the caller refuses what the event describes."""

    def record(self, event: AuditEvent) -> int: ...

    def record_many(self, events: Sequence[AuditEvent]) -> list[int]:
        """Several events made durable together (all or none), their sequence numbers."""
        ...
