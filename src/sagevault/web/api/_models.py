"""The bodies the routes answer (2xx), as pydantic models, so that the
OpenAPI document describes them and a client (or schemathesis) can check an answer against it.

Every model forbids members it does not declare: a handler that answers a field nobody described
fails its tests (a 500), instead of the document silently lagging behind the code. Secrets shown
once (enrolment secrets, TOTP secrets, API key tokens, recovery codes) never appear in a repr.
Every time is answered as `datetime.isoformat()` writes it, in UTC (`+00:00`): `Timestamp`; a
time the database gave back without a zone (SQLite) is UTC, and is answered as such.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from sagevault.access import KillSwitch
from sagevault.catalog import Purpose
from sagevault.identity import Scope

T = TypeVar("T")

Timestamp = Annotated[
    datetime,
    AfterValidator(lambda at: at if at.tzinfo else at.replace(tzinfo=UTC)),
    PlainSerializer(lambda at: at.isoformat(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageOf(Out, Generic[T]):
    """One page of a list: `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None = Field(description="`cursor` for the next page; null on the last page.")


# --- sessions, tenants and records ---------------------------------------------------------------


class SessionOut(Out):
    token: str = Field(repr=False, description="Shown once: send it as `Authorization: Bearer`. Only a hash is kept.")
    principal: str = Field(description="The principal id of the person logged in.")
    expires_at: Timestamp


class TenantOut(Out):
    id: str
    region: str
    marketplaces: list[str]
    created_at: Timestamp
    shredded_at: Timestamp | None


class OrderSummaryOut(Out):
    """An order as a listing shows it: ids and clear (non-PII) state only, nothing decrypted."""

    order_id: str
    record_ids: list[int]
    documents: list[str]
    order_status: str | None
    purchased_at: str | None = Field(description="As the SP-API document gave it.")
    retrieved_at: Timestamp


class RecordOut(Out):
    record_id: int
    document: str
    origin: str
    operation: str
    key_version: int
    data: dict[str, Any] = Field(description="The document as stored, every PII value replaced by a mask.")


class OrderOut(Out):
    tenant_id: str
    order_id: str
    records: list[RecordOut]


class RevealedFieldOut(Out):
    record_id: int
    document: str
    path: str
    value: Any = Field(repr=False, description="The field's value, in clear.")


class RevealOut(Out):
    fields: list[RevealedFieldOut]


class OrderRevealOut(Out):
    order_id: str
    fields: list[RevealedFieldOut]


class BatchRevealOut(Out):
    orders: list[OrderRevealOut]
    missing: list[str] = Field(description="Order ids the tenant does not hold.")


class SearchHitOut(Out):
    order_id: str
    record_id: int
    document: str


class SearchOut(Out):
    items: list[SearchHitOut]


class IngestOut(Out):
    records: int = Field(ge=0)
    orders: int = Field(ge=0)
    replaced: int = Field(ge=0)
    pii_fields: int = Field(ge=0)
    unknown_fields: int = Field(ge=0)
    documents: dict[str, int] = Field(description="Records stored per document kind.")


# --- accounts -------------------------------------------------------------------------------------


class AccountOut(Out):
    id: str
    login: str
    kind: Literal["person", "service"]
    status: Literal["enrolling", "active", "disabled"]
    locked_until: Timestamp | None = Field(description="Locked after failed log-ins until then; null if not locked.")
    last_active_at: Timestamp | None
    created_at: Timestamp
    password_set_at: Timestamp | None


class EnrolmentOut(Out):
    principal_id: str
    login: str
    enrolment_secret: str = Field(repr=False, description="Shown once: hand it to the person, who enrols with it.")
    expires_at: Timestamp
    pending_grants: int = Field(ge=0, description="Grants put back under the two-person rule by this reset.")


class ServiceOut(Out):
    id: str
    login: str


class CredentialsEnded(Out):
    credentials_ended: int = Field(ge=0, description="Sessions ended and API keys revoked.")


class ExpiringKey(Out):
    key_id: str
    principal_id: str
    expires_at: Timestamp


class ExpiringPassword(Out):
    principal_id: str
    expires_at: Timestamp


class AccessReviewOut(Out):
    inactive: list[AccountOut]
    expiring_keys: list[ExpiringKey]
    expiring_passwords: list[ExpiringPassword]


class TotpSetupOut(Out):
    totp_secret: str = Field(repr=False, description="Base32 TOTP secret for an authenticator app (shown once).")
    provisioning_uri: str = Field(repr=False, description="The same secret as an otpauth:// URI (e.g. a QR code).")


class PasswordChangedOut(Out):
    sessions_ended: int = Field(description="The account's sessions that ended with the change (all of them).")


class RecoveryCodesOut(Out):
    recovery_codes: list[str] = Field(repr=False, description="Ten one-time codes, shown once: keep them offline.")


# --- API keys -------------------------------------------------------------------------------------


class IssuedKeyOut(Out):
    key_id: str
    token: str = Field(repr=False, description="Shown once: send it as `Authorization: Bearer`. Only a hash is kept.")
    principal_id: str
    scopes: list[Scope]
    expires_at: Timestamp
    pending_grants: int = Field(ge=0, description="The service's grants put back under the two-person rule.")


class ApiKeyOut(Out):
    key_id: str
    principal_id: str
    login: str
    scopes: list[Scope]
    created_at: Timestamp
    created_by: str
    expires_at: Timestamp
    last_used_at: Timestamp | None


# --- roles, grants, allow-lists, kill switches ----------------------------------------------------


class RoleOut(Out):
    name: str
    description: str
    scopes: list[Scope]
    purposes: list[Purpose]
    two_person_rule: bool


class ScopeOut(Out):
    name: Scope
    two_person_rule: bool


class GrantOut(Out):
    id: str
    principal_id: str
    login: str
    role: str
    tenants: list[str] = Field(description='Tenant ids, or ["*"] for every tenant.')
    status: Literal["pending", "active", "revoked"]
    not_before: Timestamp | None
    not_after: Timestamp | None
    requested_by: str
    approved_by: str | None


class AllowEntryOut(Out):
    id: str
    list: Literal["global", "role", "principal"]
    target: str | None = Field(description="The role name or principal id; null on the global list.")
    cidr: str


class SwitchOut(Out):
    name: KillSwitch
    tenant: str = Field(description='A tenant id, or "*" for every tenant.')
    engaged: bool
    changed_at: Timestamp


# --- keys, shred, audit ---------------------------------------------------------------------------


class KeyVersionOut(Out):
    purpose: Literal["data", "index"]
    version: int
    status: Literal["primary", "active", "retired"]
    created_at: Timestamp
    retired_at: Timestamp | None
    records: int = Field(ge=0, description="Records this data key version protects (0 for the blind index).")


class KeyStatusOut(Out):
    tenant_id: str
    primary_version: int | None
    rotating: bool
    records_to_move: int = Field(ge=0)
    versions: list[KeyVersionOut]


class RotationStepOut(Out):
    tenant_id: str
    state: Literal["re-encrypting", "complete"]
    primary_version: int
    moved: int = Field(ge=0)
    remaining: int = Field(ge=0)
    retired_versions: list[int] = Field(description="Versions retired (key material erased) by this step.")


class ShredCertificate(BaseModel):
    """As it was stored at the shred: a stored certificate is answered whole, whatever else it holds."""

    model_config = ConfigDict(extra="allow")
    tenant_id: str
    shredded_at: str = Field(json_schema_extra={"format": "date-time"})
    keys_destroyed: list[str] = Field(description='"purpose:vN" of every key version destroyed.')
    master_key_id: str
    method: str


class ShredOut(Out):
    certificate: ShredCertificate
    records_to_purge: int = Field(ge=0)


class PurgeStepOut(Out):
    tenant_id: str
    purged: int = Field(ge=0)
    remaining: int = Field(ge=0)


class AuditEventOut(Out):
    """One security event as stored: ids, names, codes and counts, never a value of a record."""

    seq: int
    at: str = Field(json_schema_extra={"format": "date-time"})
    name: str
    channel: str
    outcome: str
    reason: str
    actor: str | None
    tenant_id: str | None
    record_ids: list[int]
    counts: dict[str, int]
    client_ip_hash: str | None
    request_id: str | None
    operation: str | None
    fingerprint: str | None


class VerifyOut(Out):
    ok: bool
    events: int = Field(ge=0)
    digests: int = Field(ge=0)
    sealed_through: int = Field(ge=0, description="The newest event whose group seal verified.")
    undigested: int = Field(ge=0, description="Events after the newest signed digest.")
    first_bad_seq: int | None
    problems: list[str]
