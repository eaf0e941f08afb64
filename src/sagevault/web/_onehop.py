"""`OneHop`: a route class for the hot path (reveal)."""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, get_type_hints

from fastapi import Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.responses import Response

from ._deps import READ, WRITE, Work, deployment


class OneHop(APIRoute):
    """A route class for the hot path (reveal): the same endpoint, the same OpenAPI operation and
    the same order of checks, without FastAPI's dependency solving: `Work` (refusal budget →
    allow-list → credential → rate limits), then validation of the path parameters and the JSON
    body (a 422 like any other route's, after authentication), then the endpoint, one after the
    other; the work ends (commits or rolls back) before the answer. `bench/api.py` measures what
    it saves.

    Where it runs: on SQLite with a master key held in process (`Deployment.local_reads`), in
    the event loop itself. Its reads are local and take no lock (WAL), so they cost less than
    the two thread switches a worker thread would, and the one wait, for the security events to
    be durable, is awaited (`AuditLog.deferred` and `record_async`: the events join a group
    commit written by the audit log's own thread, and no answer, success or refusal, leaves
    before they are committed). On PostgreSQL, whose reads are network round trips, or with a
    KMS, whose unwraps are, in one hop to a worker thread, whose events are awaited the same way
    (the thread is free as soon as its reads are done).

    Takes endpoints whose parameters are path parameters (`Annotated[str, Path(...)]`), at most one
    body model and one `Authenticated`/`AuthenticatedRead`, and that return a `Response`; any other
    shape is refused when the route is declared."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        serve = _one_hop(self.endpoint)

        async def handle(request: Request) -> Response:
            raw = await request.body()  # bounded by the headers middleware (api_max_body_bytes)
            d = deployment(request)
            cancelled = False
            if d.local_reads:
                result, failure, events = in_events(d, serve, request, raw)
            else:
                (result, failure, events), cancelled = await _in_thread(in_events, d, serve, request, raw)
            try:
                await d.audit.record_async(events)  # AuditUnavailable: a 503, and nothing else is answered
            finally:
                if cancelled:  # (the server is stopping) nothing is answered, not even a 503
                    raise asyncio.CancelledError
            if failure is not None:
                raise failure
            if result is None:  # `serve` either answers or raises
                raise RuntimeError("the endpoint gave no answer")
            return result

        return handle


# The hot path's worker threads, as many as the thread pool FastAPI uses for every other route. A
# plain executor: anyio's `to_thread` (capacity limiter, cancel scopes, run variables) cost about
# 40 µs more of the loop's CPU per hop, twice a plain executor's (16 hops at a time, a no-op in the thread).
_THREADS: dict[int, ThreadPoolExecutor] = {}  # by process id: a forked worker makes its own


def _threads() -> ThreadPoolExecutor:
    pid = os.getpid()
    threads = _THREADS.get(pid)
    if threads is None:
        threads = _THREADS.setdefault(pid, ThreadPoolExecutor(max_workers=40, thread_name_prefix="sagevault-onehop"))
    return threads


async def _in_thread(fn: Callable[..., Any], *args: Any) -> tuple[Any, bool]:
    """`fn(*args)` in a worker thread (in this task's context), and whether the task was cancelled
    while it ran. Not abandoned when cancelled: the thread ends its unit of work whatever happens,
    and its result (with the security events it holds) is waited for and handed back. (A task
    cancellation is delivered once; an anyio cancel scope, which cancels again at every await,
    would make this loop spin until the thread is done: no such scope wraps a route.)"""
    running = asyncio.get_running_loop().run_in_executor(_threads(), contextvars.copy_context().run, fn, *args)
    cancelled = False
    while True:
        try:
            return await asyncio.shield(running), cancelled
        except asyncio.CancelledError:
            if running.cancelled():  # (the executor was shut down before the thread began)
                raise
            cancelled = True


def in_events(
    d: Any, serve: Callable[[Request, bytes], Response], request: Request, raw: bytes
) -> tuple[Response | None, Exception | None, list[Any]]:
    """`serve` with its security events held (`AuditLog.deferred`): the answer or the failure, and the
    events, which the caller makes durable (awaited, in the loop) before anything is answered."""
    with d.audit.deferred() as events:
        try:
            return serve(request, raw), None, events
        except Exception as exc:  # answered (by the error handlers) only once its events are durable
            return None, exc, events


def _json_body(content_type: str | None) -> bool:
    if not content_type:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _one_hop(endpoint: Callable[..., Any]) -> Callable[[Request, bytes], Response]:
    """The single-hop form of `endpoint` (see `OneHop`)."""
    hints = get_type_hints(endpoint, include_extras=True)
    if hints.pop("return", None) is not Response:
        raise TypeError(f"{endpoint.__name__}: a OneHop endpoint returns a Response")
    paths: dict[str, TypeAdapter[Any]] = {}
    body: tuple[str, type[BaseModel]] | None = None
    work: tuple[str, bool] | None = None
    for name, hint in hints.items():
        extras = getattr(hint, "__metadata__", ())
        depends = [m for m in extras if isinstance(m, params.Depends)]
        if depends and depends[0].dependency in (WRITE, READ):
            work = (name, depends[0].dependency is READ)
        elif any(isinstance(m, params.Path) for m in extras):
            paths[name] = TypeAdapter(hint)
        elif isinstance(hint, type) and issubclass(hint, BaseModel) and body is None:
            body = (name, hint)
        else:
            raise TypeError(
                f"{endpoint.__name__}: a OneHop endpoint takes path parameters, one body model and "
                f"its unit of work, not {name!r}"
            )
    if work is None:
        raise TypeError(f"{endpoint.__name__}: a OneHop endpoint takes Authenticated or AuthenticatedRead")
    work_name, read_only = work

    def arguments(request: Request, raw: bytes) -> dict[str, Any]:
        values: dict[str, Any] = {}
        problems: list[dict[str, Any]] = []
        for name, adapter in paths.items():
            try:
                values[name] = adapter.validate_python(request.path_params[name])
            except ValidationError as exc:
                problems += [{**e, "loc": ("path", name, *e["loc"])} for e in exc.errors(include_input=False)]
        if body is not None:
            name, model = body
            if not raw:
                problems.append({"type": "missing", "loc": ("body",), "msg": "Field required"})
            elif not _json_body(request.headers.get("content-type")):
                problems.append(
                    {
                        "type": "content_type",
                        "loc": ("body",),
                        "msg": "send a JSON body (Content-Type: application/json)",
                    }
                )
            else:
                try:
                    values[name] = model.model_validate_json(raw)
                except ValidationError as exc:
                    problems += [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
        if problems:
            raise RequestValidationError(problems)
        return values

    def serve(request: Request, raw: bytes) -> Response:
        work = Work(request, read_only, statements=read_only)  # PostgreSQL: no BEGIN/COMMIT round trips
        with work:  # ends the work if validation or the endpoint raises (the endpoint ends it otherwise)
            result: Response = endpoint(**arguments(request, raw), **{work_name: work})
        return result

    return serve
