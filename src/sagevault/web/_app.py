"""The HTTPS API (first slice): sessions, tenants, masked orders, reveal, kill switches.

Every request goes, in this order: source address (trusted proxies only for X-Forwarded-For) and
the global allow-list → authentication (a session for people, an API key for services) →
the handler, whose vault or access call asks `decide` (scopes, grants, purpose, kill switches)
and records its own security event. Each request is one unit of work (one transaction).
Refusals are RFC 9457 problem details with a request id; nothing else about an error leaves
the server.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from sagevault import errors
from sagevault.audit import Channel
from sagevault.catalog import Purpose
from sagevault.deployment import Deployment
from sagevault.vault import Operation, Principal

API = "/api/v1"

# Most specific first: the first class an error is an instance of decides its status.
_STATUS: list[tuple[type[Exception], int, str]] = [
    (errors.LoginThrottled, 429, "throttled"),
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
    (errors.RecordNotFound, 404, "not-found"),
    (errors.AuditUnavailable, 503, "audit-unavailable"),
    (errors.AccessError, 400, "bad-request"),
    (errors.PayloadError, 400, "bad-request"),
]


def problem(status: int, kind: str, detail: str, request_id: str) -> JSONResponse:
    return JSONResponse(
        {"type": f"https://sagevault.dev/problems/{kind}", "title": kind.replace("-", " "), "status": status,
         "detail": detail, "request_id": request_id},
        status_code=status, media_type="application/problem+json",
        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
    )  # fmt: skip


class _Headers(BaseHTTPMiddleware):
    """A request id on every request; HSTS and the other security headers on every response."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        request.state.request_id = secrets.token_hex(8)
        limit = request.app.state.deployment.settings.api_max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            response: Response = problem(413, "body-too-large", f"request bodies are limited to {limit} bytes "
                                         "(api_max_body_bytes); send smaller batches", request.state.request_id)
        elif length is None and request.method in ("POST", "PUT", "PATCH"):
            response = problem(411, "length-required", "send a Content-Length header (chunked bodies are refused)",
                               request.state.request_id)  # fmt: skip
        else:
            response = await call_next(request)
        response.headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
        response.headers["X-Request-Id"] = request.state.request_id
        return response


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    login: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256, repr=False)
    code: str = Field(min_length=6, max_length=16, repr=False)


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(min_length=1, max_length=32)
    value: str = Field(min_length=1, max_length=320, repr=False)  # PII: in the body, never the URL
    purpose: Purpose


class RevealBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: list[str] = Field(min_length=1, max_length=50)
    purpose: Purpose


def _deployment(request: Request) -> Deployment:
    d: Deployment = request.app.state.deployment
    return d


def source(request: Request) -> str:
    """The client's address: the peer, or X-Forwarded-For as far as trusted proxies vouch for it."""
    peer = request.client.host if request.client else "0.0.0.0"  # noqa: S104 - an address no list allows
    return _deployment(request).access.client_address(peer, request.headers.get("x-forwarded-for"))


def unit_of_work(request: Request) -> Iterator[Connection]:
    """One transaction per request: committed when the handler returns, rolled back if it raises."""
    with _deployment(request).engine.begin() as conn:
        yield conn


Conn = Annotated[Connection, Depends(unit_of_work)]


def principal(request: Request, conn: Conn) -> Principal:
    """The source address against the allow-lists, then the bearer credential: a session
    (people) or an API key (services). No credential, no handler."""
    d = _deployment(request)
    address = source(request)
    auth = request.headers.get("authorization", "")
    token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
    if token.startswith("svk_"):
        return d.access.verify_api_key(conn, token, source=address, channel=Channel.API)
    if token.startswith("svs_"):
        return d.access.authenticate_session(conn, token, source=address, channel=Channel.API)
    raise errors.AuthenticationFailed("this request needs a bearer token: a session (POST /api/v1/sessions) "
                                      "or an API key")  # fmt: skip


Who = Annotated[Principal, Depends(principal)]


def create_app(d: Deployment) -> FastAPI:
    app = FastAPI(title="SageVault", version="1", docs_url=None, redoc_url=None, openapi_url=f"{API}/openapi.json")
    app.state.deployment = d
    app.add_middleware(_Headers)

    @app.exception_handler(errors.SageVaultError)
    async def _refused(request: Request, exc: errors.SageVaultError) -> JSONResponse:
        for kind, status, name in _STATUS:
            if isinstance(exc, kind):
                return problem(status, name, str(exc), request.state.request_id)
        return problem(500, "error", "the request failed; the security log has the details", request.state.request_id)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Say where and what, never echo the value (it may be a password or PII).
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10])
        return problem(422, "invalid-request", where, request.state.request_id)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        return problem(500, "error", "the request failed; the security log has the details", request.state.request_id)

    @app.post(f"{API}/sessions", status_code=201)
    def login(body: LoginBody, request: Request) -> dict[str, Any]:
        with d.engine.begin() as conn:  # committed even when refused: counters and locks are state
            attempt = d.access.login(conn, body.login, body.password, body.code, source=source(request))
        session = attempt.session()
        return {"token": session.token, "principal": session.principal.id, "expires_at": session.expires_at}

    @app.delete(f"{API}/sessions", status_code=204)
    def logout(request: Request, conn: Conn, who: Who) -> Response:
        d.access.logout(conn, request.headers["authorization"].removeprefix("Bearer ").strip())
        return Response(status_code=204)

    @app.get(f"{API}/tenants")
    def tenants(conn: Conn, who: Who) -> dict[str, Any]:
        items = d.vault.list_tenants(conn, principal=who)
        return {"items": [{"id": t.id, "region": t.region, "marketplaces": t.marketplaces,
                           "shredded_at": t.shredded_at} for t in items]}  # fmt: skip

    @app.get(f"{API}/tenants/{{tenant_id}}/orders/{{order_id}}")
    def order(tenant_id: str, order_id: str, conn: Conn, who: Who) -> dict[str, Any]:
        view = d.vault.get(conn, tenant_id, order_id, principal=who)
        return {"tenant_id": view.tenant_id, "order_id": view.order_id, "records": [
            {"record_id": r.record_id, "document": r.document.value, "origin": r.origin, "operation": r.operation,
             "key_version": r.key_version, "data": r.data} for r in view.records]}  # fmt: skip

    @app.post(f"{API}/tenants/{{tenant_id}}/orders/{{order_id}}/reveal")
    def reveal(tenant_id: str, order_id: str, body: RevealBody, conn: Conn, who: Who) -> dict[str, Any]:
        fields = d.vault.reveal(conn, tenant_id, order_id, body.fields, body.purpose, principal=who)
        return {"fields": [{"record_id": f.record_id, "document": f.document.value, "path": f.path,
                            "value": f.value} for f in fields]}  # fmt: skip

    @app.post(f"{API}/tenants/{{tenant_id}}/search")
    def search(tenant_id: str, body: SearchBody, conn: Conn, who: Who) -> dict[str, Any]:
        hits = d.vault.search(conn, tenant_id, body.kind, body.value, purpose=body.purpose, principal=who)
        return {"items": [{"order_id": h.order_id, "record_id": h.record_id, "document": h.document.value}
                          for h in hits]}  # fmt: skip

    @app.post(f"{API}/tenants/{{tenant_id}}/documents", status_code=201)
    def ingest(tenant_id: str, payload: Annotated[Any, Body()], conn: Conn, who: Who,
               operation: str | None = None) -> dict[str, Any]:  # fmt: skip
        """SP-API responses as Amazon returns them (one, or a list): PII encrypted per field."""
        op = Operation.parse(operation) if operation else None
        result = d.vault.ingest(conn, tenant_id, payload if isinstance(payload, list) else [payload], op,
                                principal=who)  # fmt: skip
        return {"records": result.records, "orders": result.orders, "replaced": result.replaced,
                "pii_fields": result.pii_fields, "unknown_fields": result.unknown_fields,
                "documents": dict(result.documents)}  # fmt: skip

    @app.put(f"{API}/killswitches/{{name}}", status_code=204)
    def engage(name: str, conn: Conn, who: Who, tenant: str | None = None) -> Response:
        d.access.set_switch(conn, name, True, actor=who, tenant_id=tenant)
        return Response(status_code=204)

    @app.delete(f"{API}/killswitches/{{name}}", status_code=204)
    def release(name: str, conn: Conn, who: Who, tenant: str | None = None) -> Response:
        d.access.set_switch(conn, name, False, actor=who, tenant_id=tenant)
        return Response(status_code=204)

    return app
