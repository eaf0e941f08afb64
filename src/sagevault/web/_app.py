"""The HTTPS API: the app factory, the outer middleware and the error handlers.

Every request goes, in this order (each step refuses before the next runs):
1. `_Headers` middleware: a request id; bodies without a length or over `api_max_body_bytes`
   refused (411/413); security headers on every answer.
2. the source address (X-Forwarded-For only from trusted proxies): its budget of refused requests
   (a source over it is still served, but its further refusals are not recorded), then the global
   allow-list;
3. authentication: a session (people) or an API key (services), each bound to its own allow-list;
4. rate limits: the principal's total and its rate on this route (`RequestLimiter`);
5. validation of the request (pydantic; 422 problem details that echo no value). A body that is
   not JSON at all is the exception: FastAPI parses it before any dependency runs, so it is a 422
   even without a credential (not on reveal: its `OneHop` route parses the body after step 4; not
   on ingest: it reads its body raw after step 4 and parses it once the vault allowed the ingest);
6. the handler, whose vault or access call asks `decide` (scopes, grants, purpose, kill
   switches), does the work and records its security event in the same unit of work (one
   transaction); an audit write that fails refuses the request (503).
Steps 2-4 are the `Authenticated` dependency (`_deps.principal`). Refusals are RFC 9457 problem details
with a request id; nothing else about an error leaves the server.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sagevault import errors
from sagevault.access import RequestLimiter
from sagevault.audit import AuditEvent, EventName, Outcome, Reason
from sagevault.db import lock_not_had
from sagevault.deployment import Deployment
from sagevault.identity import Channel
from sagevault.logs import get_logger

from ._deps import API
from ._pagination import CURSOR_KEY
from ._problems import PROBLEM_SCHEMA, PROBLEM_TYPE, Problem, problem, problems_of, status_of
from .api import ROUTERS
from .console import CONSOLE_CSP
from .console import PREFIX as CONSOLE
from .console import STATIC as CONSOLE_STATIC
from .console import error_page as console_error
from .console import router as console_router


def _crashed(request: Request, exc: Exception) -> Response:
    """An unexpected error: recorded as api:request:fail (the error's type and the request id,
    nothing of the request), answered as a bare 500 problem."""
    d: Deployment = request.app.state.deployment
    message = "the request failed; the security log has the details (quote the request id)"
    try:
        d.audit.record(
            AuditEvent(
                name=EventName.API_REQUEST_FAIL,
                channel=Channel.API,
                outcome=Outcome.FAILURE,
                reason=Reason.ERROR,
                operation=type(exc).__name__.lower(),
                request_id=request.state.request_id,
            )
        )
    except errors.SageVaultError:
        message = "the request failed and could not be recorded; quote the request id to the operator"
    get_logger("sagevault.web").error("request failed", request_id=request.state.request_id, error=type(exc).__name__)
    return problem(500, "error", message, request.state.request_id)


_SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
# The console's pages: the same headers, with a policy that lets them load their own stylesheet
# and post their own forms (and nothing else: no script at all).
_CONSOLE_HEADERS = {**_SECURITY_HEADERS, "Content-Security-Policy": CONSOLE_CSP}


def _raw(headers: dict[str, str]) -> tuple[frozenset[bytes], list[tuple[bytes, bytes]]]:
    """Headers as an ASGI message carries them (lower-case names, encoded once), with their names."""
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    return frozenset(name for name, _ in raw) | {b"x-request-id"}, raw


_SECURITY_RAW = _raw(_SECURITY_HEADERS)
_CONSOLE_RAW = _raw(_CONSOLE_HEADERS)


def _console(path: str) -> bool:
    return path == CONSOLE or path.startswith(CONSOLE + "/")


class _Headers:
    """A request id on every request; HSTS and the other security headers on every response.

    A plain ASGI middleware: Starlette's `BaseHTTPMiddleware` runs the app in a task of its own
    and relays the request body and the response through memory streams, which cost a reveal
    about 0.5 ms of server CPU (bench/api.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        request_id = request.state.request_id = secrets.token_hex(8)
        CURSOR_KEY.set(request.app.state.cursor_key)  # this request's context (and its worker threads')
        started = False
        names, answered = _CONSOLE_RAW if _console(scope["path"]) else _SECURITY_RAW

        async def secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # Ours replace any the route set (as MutableHeaders' set would), in one pass.
                headers = [h for h in message.get("headers", ()) if h[0].lower() not in names]
                headers += answered
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message["headers"] = headers
            await send(message)

        limit = request.app.state.deployment.settings.api_max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and (not (length.isascii() and length.isdigit()) or int(length) > limit):
            response: Response = problem(
                413,
                "body-too-large",
                f"request bodies are limited to {limit} bytes (api_max_body_bytes); send smaller batches",
                request_id,
            )
        elif length is None and "transfer-encoding" in request.headers:
            response = problem(
                411, "length-required", "send a Content-Length header (chunked bodies are refused)", request_id
            )
        else:
            try:
                await self.app(scope, receive, secured)
            except Exception as exc:  # the one place an unexpected error becomes an answer
                if started:  # too late for an answer: the connection is cut
                    raise
                if lock_not_had(exc):  # load, not a fault
                    response = problem(
                        503,
                        "storage-busy",
                        "the database is busy; retry in a moment",
                        request.state.request_id,
                        headers={"Retry-After": "1"},
                    )
                else:
                    response = await run_in_threadpool(_crashed, request, exc)
            else:
                return
        await response(scope, receive, secured)


class _Api(FastAPI):
    """FastAPI whose OpenAPI document declares, on every operation, the problem details it can
    answer (not FastAPI's own 422 body, which this API never sends)."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = super().openapi()
            shared = document.setdefault("components", {}).setdefault("responses", {})
            for path in document.get("paths", {}).values():
                for method, operation in path.items():
                    responses = operation.setdefault("responses", {})
                    for status, kinds in problems_of(method, operation).items():
                        shared[f"Problem{status}"] = {
                            "description": "A problem: " + ", ".join(sorted(set(kinds))),
                            "content": {PROBLEM_TYPE: PROBLEM_SCHEMA},
                        }
                        responses[str(status)] = {"$ref": f"#/components/responses/Problem{status}"}
                    operation["responses"] = dict(sorted(responses.items()))
            document["components"]["responses"] = dict(sorted(shared.items()))
            schemas = document["components"].setdefault("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            schemas["Problem"] = Problem.model_json_schema()
            self.openapi_schema = document
        return self.openapi_schema


def _routes() -> FastAPI:
    """Every route of the API, with no deployment behind them yet."""
    app = _Api(
        title="SageVault",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=f"{API}/openapi.json",
        # FastAPI's own OpenTelemetry: off. With any tracer, meter or logger provider in the process
        # (an embedding application's, an instrumentation agent's) it would send every request's
        # path, query, addresses and exceptions to an exporter outside the security log's rules.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    for router in ROUTERS:
        app.include_router(router)
    return app


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document, as served at /api/v1/openapi.json (no deployment needed)."""
    return _routes().openapi()


def create_app(d: Deployment, *, limiter: RequestLimiter | None = None) -> FastAPI:
    """The API of deployment `d`. Request rates are counted by `limiter` (by default one built
    from the settings: memory or Redis)."""
    app = _routes()
    app.state.deployment = d
    app.state.limiter = limiter or RequestLimiter(d.settings)
    with d.unit_of_work(read_only=True) as conn:  # the same key in every worker and after a restart
        app.state.cursor_key = d.access.core.keyed(conn, "cursor", "sagevault page cursors")
    app.include_router(console_router)
    app.mount(f"{CONSOLE}/static", StaticFiles(directory=CONSOLE_STATIC), name="console-static")
    app.add_middleware(_Headers)

    @app.exception_handler(errors.SageVaultError)
    async def _refused(request: Request, exc: errors.SageVaultError) -> Response:
        status, name = status_of(exc)
        if status == 500:
            raise exc  # unexpected: the headers middleware records it (api:request:fail) and answers
        if _console(request.url.path):
            return console_error(status, str(exc))
        return problem(status, name, str(exc), request.state.request_id)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if _console(request.url.path):  # a path the console has no page for (say, an alarm id that is no number)
            return console_error(404, "There is no such page.")
        # Say where and what, never echo the value (it may be a password or PII).
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10])
        return problem(422, "invalid-request", where, request.state.request_id)

    @app.exception_handler(HTTPException)
    async def _routing(request: Request, exc: HTTPException) -> Response:
        if _console(request.url.path):
            told = {405: "This page does not take that method."}.get(exc.status_code, "There is no such page.")
            return console_error(exc.status_code if exc.status_code in (404, 405) else 400, told)
        # No route for this path or method (404/405), said as a problem like every other refusal.
        kind = {404: "no-such-route", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        detail = {
            404: "no API route has this path; see /api/v1/openapi.json",
            405: "this route does not take this method; see /api/v1/openapi.json",
        }.get(exc.status_code, kind)
        return problem(exc.status_code, kind, detail, request.state.request_id, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        return problem(500, "error", "the request failed; the security log has the details", request.state.request_id)

    return app
