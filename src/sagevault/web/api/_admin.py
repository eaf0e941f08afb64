"""Administration: users and service accounts, enrolment and passwords, API keys, roles, grants,
allow-lists and kill switches. The HTTPS face of `sagevault users|roles|grants|allowlist|killswitch`.

Every route but enrolment and the password change depends on `Authenticated` (allow-list,
credential, rate limit) and calls the access service, which asks `decide` for `users:admin` (kill switches:
`killswitch:operate`) and records the security event. Enrolment and the password change carry
their proof in the body (one-time secret; current password and TOTP code) and pass the
allow-list check first. Secrets travel in bodies only, are answered once and never appear in a
problem's detail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.responses import Response

from sagevault import errors
from sagevault.access import ROLES, Account, AllowEntry, ApiKey, Enrolment, GrantInfo, KillSwitch
from sagevault.identity import LOGIN_ANY_CASE, Channel, Scope

from .._deps import API, Authenticated, AuthenticatedRead, Conn, CurrentDeployment, edge_refusal, source, transaction
from .._pagination import PageQuery
from ._models import (
    AccessReviewOut,
    AccountOut,
    AllowEntryOut,
    ApiKeyOut,
    CredentialsEnded,
    EnrolmentOut,
    ExpiringKey,
    ExpiringPassword,
    GrantOut,
    IssuedKeyOut,
    PageOf,
    PasswordChangedOut,
    RecoveryCodesOut,
    RoleOut,
    ScopeOut,
    ServiceOut,
    SwitchOut,
    TotpSetupOut,
)

router = APIRouter(prefix=API)

_LOGIN = LOGIN_ANY_CASE  # a login as the access service makes them (any case: it lowers)
Login = Annotated[str, Field(min_length=1, max_length=64)]
LoginPath = Annotated[str, Path(min_length=3, max_length=64, pattern=_LOGIN, description="The account's login.")]
KeyIdPath = Annotated[
    str, Path(min_length=16, max_length=16, pattern=r"^[0-9a-f]{16}$", description="The API key's id (`key_id`).")
]
GrantIdPath = Annotated[
    str, Path(min_length=5, max_length=64, pattern=r"^grt_[a-z]{1,60}$", description="The grant's id.")
]
EntryIdPath = Annotated[
    str, Path(min_length=5, max_length=64, pattern=r"^net_[a-z]{1,60}$", description="The allow-list entry's id.")
]
SwitchPath = Annotated[KillSwitch, Path(description="The kill switch.")]
SwitchTenant = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9._-]{1,63})$",
        description='A tenant id; every tenant ("*") if absent.',
    ),
]


def _in_utc(value: datetime) -> datetime:
    """A time whose UTC instant exists: 9999-12-31T23:59:59-23:59 parses, but lies past the last datetime."""
    try:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        raise ValueError(
            "the time is out of range in UTC; send one between the years 0001 and 9999, such as 2026-11-01T08:00:00Z"
        ) from None


InUtc = Annotated[datetime, AfterValidator(_in_utc)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiKeysQuery(PageQuery):
    login: str | None = Field(None, min_length=3, max_length=64, pattern=_LOGIN, description="Only this account's.")


class GrantsQuery(ApiKeysQuery):
    pending: bool = Field(False, description="Only grants waiting for approval.")


Paged = Annotated[PageQuery, Query()]


class PersonBody(_Body):
    login: str = Field(min_length=1, max_length=64, description="Their own login, not a generic name.")
    email: str = Field(min_length=3, max_length=254, repr=False, description="Their work e-mail address.")
    manager: Login | None = Field(default=None, description="Login of the person who answers for their access.")


class ServiceBody(_Body):
    login: Login
    owner: Login = Field(description="Login of the person who owns the service.")
    purpose: str = Field(min_length=3, max_length=200, description="What the service does, in a few words.")


class EnrolmentBody(_Body):
    login: Login
    enrolment_secret: str = Field(min_length=1, max_length=128, repr=False)


class FinishEnrolmentBody(EnrolmentBody):
    password: str = Field(min_length=1, max_length=256, repr=False)
    code: str = Field(min_length=6, max_length=16, repr=False, description="The current TOTP code.")


class PasswordBody(_Body):
    login: Login
    current_password: str = Field(min_length=1, max_length=256, repr=False)
    new_password: str = Field(min_length=1, max_length=256, repr=False)
    code: str = Field(min_length=6, max_length=16, repr=False, description="A TOTP code (or a recovery code).")


class KeyBody(_Body):
    service: Login = Field(description="The service account's login.")
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope), description="What the key may be used for.")
    days: int | None = Field(default=None, ge=1, le=3650, description="Lifetime (default and most: the policy's).")


class RotateBody(_Body):
    days: int | None = Field(default=None, ge=1, le=3650, description="Lifetime of the new key.")


class GrantBody(_Body):
    login: Login
    role: str = Field(min_length=1, max_length=32)
    tenants: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=100, description='Tenant ids, or ["*"] for every tenant.'
    )
    not_before: InUtc | None = Field(default=None, description="Start of the window (UTC if no offset).")
    not_after: InUtc | None = Field(default=None, description="End of the window (UTC if no offset).")


class AllowBody(_Body):
    cidr: str = Field(min_length=1, max_length=64, description="An IPv4 or IPv6 network, e.g. 203.0.113.0/24.")
    role: str | None = Field(default=None, min_length=1, max_length=32, description="Only for this role's grants.")
    login: Login | None = Field(default=None, description="Only for this account.")


def _account(a: Account) -> AccountOut:
    return AccountOut.model_validate(
        {
            "id": a.id,
            "login": a.login,
            "kind": a.kind,
            "status": a.status,
            "locked_until": a.locked_until,
            "last_active_at": a.last_active_at,
            "created_at": a.created_at,
            "password_set_at": a.password_set_at,
        }
    )


def _enrolment(e: Enrolment) -> EnrolmentOut:
    return EnrolmentOut(
        principal_id=e.principal_id,
        login=e.login,
        enrolment_secret=e.secret,
        expires_at=e.expires_at,
        pending_grants=e.pending_grants,
    )


def _grant(g: GrantInfo) -> GrantOut:
    return GrantOut.model_validate(
        {
            "id": g.id,
            "principal_id": g.principal_id,
            "login": g.login,
            "role": g.role,
            "tenants": list(g.tenants),
            "status": g.status,
            "not_before": g.not_before,
            "not_after": g.not_after,
            "requested_by": g.requested_by,
            "approved_by": g.approved_by,
        }
    )


def _entry(e: AllowEntry) -> AllowEntryOut:
    return AllowEntryOut.model_validate({"id": e.id, "list": e.scope, "target": e.target or None, "cidr": e.cidr})


# --- users and service accounts -----------------------------------------------------------------


@router.get("/users", tags=["users"])
def users(q: Paged, work: AuthenticatedRead) -> PageOf[AccountOut]:
    """Every account (people and services) by login, with status, lock and last activity. Needs `users:admin`."""
    with work as (d, conn, who):
        return PageOf[AccountOut].model_validate(
            q.of(d.access.accounts.list(conn, actor=who), lambda a: a.login, _account)
        )


@router.post("/users", status_code=201, tags=["users"])
def add_person(body: PersonBody, work: Authenticated) -> EnrolmentOut:
    """Add a person. The answer holds their one-time enrolment secret (shown once, valid 72 hours):
    give it to them in person; they enrol with `POST /enrolment/begin` and `/enrolment/finish`.
    Needs `users:admin`."""
    with work as (d, conn, who):
        return _enrolment(d.access.accounts.add_person(conn, body.login, body.email, manager=body.manager, actor=who))


@router.post("/services", status_code=201, tags=["users"])
def add_service(body: ServiceBody, work: Authenticated) -> ServiceOut:
    """Add a service account, owned by a person. It authenticates with API keys (`POST /api-keys`)
    and acts through grants like a person. Needs `users:admin`."""
    with work as (d, conn, who):
        principal_id = d.access.accounts.add_service(
            conn, body.login, owner=body.owner, purpose=body.purpose, actor=who
        )
        return ServiceOut(id=principal_id, login=body.login.strip().lower())


@router.post("/users/{login}/disable", tags=["users"])
def disable(login: LoginPath, work: Authenticated) -> CredentialsEnded:
    """Disable an account now: its sessions end and its API keys are revoked. Answers how many
    credentials ended. Needs `users:admin`; nobody disables their own account."""
    with work as (d, conn, who):
        d.access.core.exists(conn, "account", login, actor=who)
        return CredentialsEnded(credentials_ended=d.access.accounts.disable(conn, login, actor=who))


@router.post("/users/{login}/enable", status_code=204, tags=["users"])
def enable(login: LoginPath, work: Authenticated) -> Response:
    """Enable a disabled account. Its grants that reach PII, keys or administration wait for a
    second party's approval again. Needs `users:admin`."""
    with work as (d, conn, who):
        d.access.core.exists(conn, "account", login, actor=who)
        d.access.accounts.enable(conn, login, actor=who)
        return Response(status_code=204)


@router.post("/users/{login}/unlock", status_code=204, tags=["users"])
def unlock(login: LoginPath, work: Authenticated) -> Response:
    """Unlock a person locked after failed log-ins. Needs `users:admin`."""
    with work as (d, conn, who):
        d.access.core.exists(conn, "account", login, actor=who)
        d.access.accounts.unlock(conn, login, actor=who)
        return Response(status_code=204)


@router.post("/users/{login}/reset", tags=["users"])
def reset(login: LoginPath, work: Authenticated) -> EnrolmentOut:
    """A new enrolment secret for a person (shown once): they set a new password and TOTP. Their
    sessions end now, and their grants that reach PII, keys or administration wait for a second
    party again (`pending_grants` says how many). Needs `users:admin`."""
    with work as (d, conn, who):
        d.access.core.exists(conn, "account", login, actor=who)
        return _enrolment(d.access.accounts.reset(conn, login, actor=who))


@router.get("/access-review", tags=["users"])
def access_review(work: AuthenticatedRead) -> AccessReviewOut:
    """The access review: accounts inactive for the policy's period (90 days), and API keys and
    passwords that expire within 30 days. Recorded as a review run. Needs `users:admin`."""
    with work as (d, conn, who):
        review = d.access.reviews.run(conn, actor=who)
        return AccessReviewOut(
            inactive=[_account(a) for a in review.inactive],
            expiring_keys=[ExpiringKey(key_id=k, principal_id=p, expires_at=e) for k, p, e in review.expiring_keys],
            expiring_passwords=[ExpiringPassword(principal_id=p, expires_at=e) for p, e in review.expiring_passwords],
        )


# --- enrolment and passwords (no session: the proof is in the body) ------------------------------


def _admitted(request: Request, d: CurrentDeployment, conn: Conn) -> None:
    """The allow-list, then the request rate of the source address (there is no principal yet)."""
    address = d.access.allowlists.admit_source(conn, source(request), channel=Channel.API)
    route = request.scope.get("route")
    try:
        request.app.state.limiter.admit(
            f"source:{d.access.core.source_key(conn, address)}",
            f"{request.method} {getattr(route, 'path', request.url.path)}",
        )
    except errors.RateLimited as exc:
        raise edge_refusal(d, conn, exc, None, address) from None


@router.post("/enrolment/begin", tags=["enrolment"])
def begin_enrolment(body: EnrolmentBody, request: Request, d: CurrentDeployment, conn: Conn) -> TotpSetupOut:
    """First step of a new person's enrolment, with the one-time secret an admin gave them: the
    TOTP secret and its `otpauth://` URI for an authenticator app (6 digits, 30 seconds). Calling
    it again makes a new TOTP secret."""
    _admitted(request, d, conn)
    setup = d.access.enrolment.begin(conn, body.login, body.enrolment_secret)
    return TotpSetupOut(totp_secret=setup.secret, provisioning_uri=setup.uri)


@router.post("/enrolment/finish", status_code=201, tags=["enrolment"])
def finish_enrolment(body: FinishEnrolmentBody, request: Request, d: CurrentDeployment) -> RecoveryCodesOut:
    """Second step: the first password and a current TOTP code. Answers ten recovery codes, shown
    once (each works once in place of a TOTP code). The enrolment secret is then spent; the person
    logs in with `POST /sessions`."""
    with transaction(d, read_only=True) as conn:  # the password is hashed here, holding no write lock
        _admitted(request, d, conn)
        prepared = d.access.enrolment.prepare_password(conn, body.login, body.enrolment_secret, body.password)
    with transaction(d) as conn:
        codes = d.access.enrolment.finish(
            conn, body.login, body.enrolment_secret, body.password, body.code, prepared=prepared
        )
    return RecoveryCodesOut(recovery_codes=codes)


@router.post("/password", tags=["enrolment"])
def change_password(body: PasswordBody, request: Request, d: CurrentDeployment) -> PasswordChangedOut:
    """Change your own password: current password, new password and a TOTP code. It counts like a
    log-in (allow-list, throttle, failures lock the account), so it also works when the password
    has expired. Refused when the new one is weak, breached or one of your last 10, or the current
    one is less than a day old. Every session of the account ends: `sessions_ended` says how many
    (log in again with the new password)."""
    where = source(request)
    with transaction(d, read_only=True) as conn:  # Argon2 here, holding no write lock
        prepared = d.access.authn.prepare_password_change(
            conn, body.login, body.current_password, body.new_password, source=where, channel=Channel.API
        )
    with transaction(d) as conn:  # committed even when refused: failure counters and locks are state
        attempt = d.access.authn.change_password(
            conn,
            body.login,
            body.current_password,
            body.new_password,
            body.code,
            source=where,
            channel=Channel.API,
            prepared=prepared,
        )
    attempt.check()
    return PasswordChangedOut(sessions_ended=attempt.sessions_ended)


# --- API keys -----------------------------------------------------------------------------------


def _issued(key: ApiKey) -> IssuedKeyOut:
    return IssuedKeyOut(
        key_id=key.key_id,
        token=key.token,
        principal_id=key.principal_id,
        scopes=[Scope(s) for s in sorted(key.scopes)],
        expires_at=key.expires_at,
        pending_grants=key.pending_grants,
    )


@router.get("/api-keys", tags=["API keys"])
def api_keys(q: Annotated[ApiKeysQuery, Query()], work: AuthenticatedRead) -> PageOf[ApiKeyOut]:
    """Live API keys (all services, or one with `?login=`): id, scopes, dates, last use. Never the
    secret, which is not stored. Needs `users:admin`."""
    with work as (d, conn, who):
        keys = d.access.api_keys.list(conn, actor=who, login=q.login)
        return PageOf[ApiKeyOut].model_validate(
            q.of(
                keys,
                lambda k: [k.login, k.key_id],
                lambda k: {
                    "key_id": k.key_id,
                    "principal_id": k.principal_id,
                    "login": k.login,
                    "scopes": list(k.scopes),
                    "created_at": k.created_at,
                    "created_by": k.created_by,
                    "expires_at": k.expires_at,
                    "last_used_at": k.last_used_at,
                },
            )
        )


@router.post("/api-keys", status_code=201, tags=["API keys"])
def issue_key(body: KeyBody, work: Authenticated) -> IssuedKeyOut:
    """Issue an API key to a service account. `token` is shown once (send it as
    `Authorization: Bearer`); only a keyed hash is kept. A key with a sensitive scope puts the
    service's sensitive grants back under the two-person rule (`pending_grants`). Needs `users:admin`."""
    with work as (d, conn, who):
        return _issued(d.access.api_keys.issue(conn, body.service, scopes=body.scopes, days=body.days, actor=who))


@router.post("/api-keys/{key_id}/rotate", status_code=201, tags=["API keys"])
def rotate_key(key_id: KeyIdPath, work: Authenticated, body: RotateBody | None = None) -> IssuedKeyOut:
    """Replace an API key: a new one with the same scopes (its `token` shown once); the old one
    stops now. Needs `users:admin`."""
    with work as (d, conn, who):
        d.access.core.exists(conn, "api-key", key_id, actor=who)
        return _issued(d.access.api_keys.rotate(conn, key_id, days=body.days if body else None, actor=who))


@router.delete("/api-keys/{key_id}", status_code=204, tags=["API keys"])
def revoke_key(key_id: KeyIdPath, work: Authenticated) -> Response:
    """Revoke an API key now. Needs `users:admin`."""
    with work as (d, conn, who):
        d.access.core.exists(conn, "api-key", key_id, actor=who)
        d.access.api_keys.revoke(conn, key_id, actor=who)
        return Response(status_code=204)


# --- roles and scopes ---------------------------------------------------------------------------


@router.get("/roles", tags=["roles"])
def roles(q: Paged, work: AuthenticatedRead) -> PageOf[RoleOut]:
    """The roles: their scopes, the purposes they may reveal PII for, and whether a grant of the
    role needs a second party's approval. Needs `users:admin`."""
    with work as (d, conn, who):
        d.access.core.authorize(conn, who, Scope.USERS_ADMIN)
        listed = q.of(
            ROLES.values(),
            lambda r: r.name,
            lambda r: RoleOut(
                name=r.name,
                description=r.description,
                scopes=sorted(r.scopes, key=lambda s: s.value),
                purposes=sorted(r.purposes, key=lambda p: p.value),
                two_person_rule=r.sensitive,
            ),
        )
        return PageOf[RoleOut].model_validate(listed)


@router.get("/scopes", tags=["roles"])
def scopes(q: Paged, work: AuthenticatedRead) -> PageOf[ScopeOut]:
    """Every scope, and whether it falls under the two-person rule. Needs `users:admin`."""
    with work as (d, conn, who):
        d.access.core.authorize(conn, who, Scope.USERS_ADMIN)
        listed = q.of(Scope, lambda s: s.value, lambda s: ScopeOut(name=s, two_person_rule=s.sensitive))
        return PageOf[ScopeOut].model_validate(listed)


# --- grants -------------------------------------------------------------------------------------


@router.get("/grants", tags=["grants"])
def grants(q: Annotated[GrantsQuery, Query()], work: AuthenticatedRead) -> PageOf[GrantOut]:
    """Live grants (pending and active), by login then grant id; `?login=` for one account's.
    Needs `users:admin`."""
    with work as (d, conn, who):
        rows = d.access.grants.list(conn, actor=who, login=q.login, pending=q.pending)
        return PageOf[GrantOut].model_validate(q.of(rows, lambda g: [g.login, g.id], _grant))


@router.post("/grants", status_code=201, tags=["grants"])
def request_grant(body: GrantBody, work: Authenticated) -> GrantOut:
    """Grant a role on tenants, optionally in a time window. A role that reaches PII, keys or
    account administration is answered `"status": "pending"` and works only once another admin
    approves it (`POST /grants/{id}/approve`). Nobody grants themself. Needs `users:admin`."""
    with work as (d, conn, who):
        g = d.access.grants.grant(
            conn, body.login, body.role, body.tenants, actor=who, not_before=body.not_before, not_after=body.not_after
        )
        return _grant(g)


@router.post("/grants/{grant_id}/approve", tags=["grants"])
def approve_grant(grant_id: GrantIdPath, work: Authenticated) -> GrantOut:
    """Approve a pending grant as the second party: an admin who neither asked for it nor
    receives it (403 otherwise). Needs `users:admin`."""
    with work as (d, conn, who):
        d.access.core.exists(conn, "grant", grant_id, actor=who)
        return _grant(d.access.grants.approve(conn, grant_id, actor=who))


@router.delete("/grants/{grant_id}", status_code=204, tags=["grants"])
def revoke_grant(grant_id: GrantIdPath, work: Authenticated) -> Response:
    """Revoke a grant now (pending or active). Needs `users:admin`."""
    with work as (d, conn, who):
        d.access.core.exists(conn, "grant", grant_id, actor=who)
        d.access.grants.revoke(conn, grant_id, actor=who)
        return Response(status_code=204)


# --- allow-lists --------------------------------------------------------------------------------


@router.get("/allowlist", tags=["allow-lists"])
def allowlist(q: Paged, work: AuthenticatedRead) -> PageOf[AllowEntryOut]:
    """Every allow-list entry: `list` is `global`, `role` or `principal`, `target` the role name or
    principal id. With no global entry only loopback may connect. Needs `users:admin`."""
    with work as (d, conn, who):
        entries = d.access.allowlists.list(conn, actor=who)
        return PageOf[AllowEntryOut].model_validate(q.of(entries, lambda e: [e.scope, e.target, e.cidr], _entry))


@router.post("/allowlist", status_code=201, tags=["allow-lists"])
def allow(body: AllowBody, work: Authenticated) -> AllowEntryOut:
    """Allow a network: globally (the default), for a role's grants, or for one account. Mind that
    a global entry replaces the loopback default: add your own network first. Needs `users:admin`."""
    with work as (d, conn, who):
        return _entry(d.access.allowlists.add(conn, body.cidr, actor=who, role=body.role, login=body.login))


@router.delete("/allowlist/{entry_id}", status_code=204, tags=["allow-lists"])
def disallow(entry_id: EntryIdPath, work: Authenticated) -> Response:
    """Remove an allow-list entry. Needs `users:admin`."""
    with work as (d, conn, who):
        d.access.core.exists(conn, "allow-entry", entry_id, actor=who)
        d.access.allowlists.remove(conn, entry_id, actor=who)
        return Response(status_code=204)


# --- kill switches ------------------------------------------------------------------------------


@router.get("/killswitches", tags=["kill switches"])
def switches(q: Paged, work: AuthenticatedRead) -> PageOf[SwitchOut]:
    """Every kill switch that was ever flipped (for all tenants, `"*"`, or one), its state and
    when it last changed. Needs `killswitch:operate`."""
    with work as (d, conn, who):
        rows = d.access.switches.list(conn, actor=who)
        return PageOf[SwitchOut].model_validate(
            q.of(
                rows,
                lambda r: [r[0], r[1]],
                lambda r: SwitchOut(name=KillSwitch(r[0]), tenant=r[1], engaged=r[2], changed_at=r[3]),
            )
        )


@router.put("/killswitches/{name}", status_code=204, tags=["kill switches"])
def engage(name: SwitchPath, work: Authenticated, tenant: SwitchTenant = None) -> Response:
    """Engage a kill switch (`pii-access`, `sp-api-sync`, `exports`) for all tenants or `?tenant=`.
    It takes effect on the next decision everywhere and stays until released. Needs `killswitch:operate`."""
    with work as (d, conn, who):
        d.access.switches.set(conn, name, True, actor=who, tenant_id=tenant)
        return Response(status_code=204)


@router.delete("/killswitches/{name}", status_code=204, tags=["kill switches"])
def release(name: SwitchPath, work: Authenticated, tenant: SwitchTenant = None) -> Response:
    """Release a kill switch. Needs `killswitch:operate`."""
    with work as (d, conn, who):
        d.access.switches.set(conn, name, False, actor=who, tenant_id=tenant)
        return Response(status_code=204)
