"""Problem details (RFC 9457): how every refusal and error is answered, and which status each of
SageVault's errors is. `detail` says what to do; it never carries a value the client sent (it may
be a password or PII)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from sagevault import errors

# Most specific first: the first class an error is an instance of decides its status.
STATUS: list[tuple[type[Exception], int, str]] = [
    (errors.LoginThrottled, 429, "throttled"),
    (errors.LimiterUnavailable, 503, "limiter-unavailable"),
    (errors.RateLimited, 429, "rate-limited"),
    (errors.NetworkDenied, 403, "network-denied"),
    (errors.AuthenticationFailed, 401, "authentication-failed"),
    (errors.CredentialExpired, 401, "credential-expired"),
    (errors.AccountLocked, 403, "account-locked"),
    (errors.AccountDisabled, 403, "account-disabled"),
    (errors.KillSwitchEngaged, 403, "kill-switch"),
    (errors.PurposeNotAllowed, 403, "purpose-not-allowed"),
    (errors.AccessDenied, 403, "access-denied"),
    (errors.TenantShredded, 410, "tenant-shredded"),
    (errors.UnknownTenant, 404, "unknown-tenant"),
    (errors.TenantExists, 409, "tenant-exists"),
    (errors.RecordNotFound, 404, "not-found"),
    (errors.AuditUnavailable, 503, "audit-unavailable"),
    (errors.StorageBusy, 503, "storage-busy"),
    (errors.NotConfigured, 503, "not-configured"),
    (errors.AuthorizationRevoked, 409, "authorization-revoked"),
    (errors.UpstreamError, 502, "upstream-error"),
    (errors.RotationError, 409, "rotation-conflict"),
    (errors.Conflict, 409, "conflict"),
    (errors.NotFound, 404, "not-found"),
    (errors.AccessError, 400, "bad-request"),
    (errors.PayloadError, 400, "bad-request"),
    (errors.TenantError, 400, "bad-request"),
    (errors.ConfigError, 400, "bad-request"),
]


def problem(
    status: int, kind: str, detail: str, request_id: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An RFC 9457 problem details response."""
    extra = dict(headers or {})
    if status == 401:
        extra["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        {
            "type": f"https://sagevault.dev/problems/{kind}",
            "title": kind.replace("-", " "),
            "status": status,
            "detail": detail,
            "request_id": request_id,
        },
        status_code=status,
        media_type="application/problem+json",
        headers=extra or None,
    )


def status_of(exc: BaseException) -> tuple[int, str]:
    for kind, status, name in STATUS:
        if isinstance(exc, kind):
            return status, name
    return 500, "error"


class Problem(BaseModel):
    """The body of every refusal and error (RFC 9457, `application/problem+json`). Nothing else
    leaves the server about an error, so the schema admits no other member."""

    model_config = ConfigDict(extra="forbid", title="Problem")
    type: str
    title: str
    status: int
    detail: str
    request_id: str


PROBLEM_TYPE = "application/problem+json"
PROBLEM_SCHEMA = {"schema": {"$ref": "#/components/schemas/Problem"}}


def problems_of(method: str, operation: dict[str, Any]) -> dict[int, list[str]]:
    """The problems an operation can answer besides its success: every domain refusal (its service
    call may raise any of them), the body limits of `_Headers`, validation when it takes input, the crash."""
    problems: dict[int, list[str]] = {413: ["body-too-large"], 500: ["error"]}
    for _, status, name in STATUS:
        problems.setdefault(status, []).append(name)
    if method in ("post", "put", "patch"):
        problems[411] = ["length-required"]
    if operation.get("parameters") or operation.get("requestBody"):
        problems[422] = ["invalid-request"]
    return dict(sorted(problems.items()))
