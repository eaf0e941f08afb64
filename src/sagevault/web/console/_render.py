"""Rendering: the Jinja2 environment (autoescape on), the console's security headers, the pages of a
refusal, and the redirect to the log-in page. No personal data goes into a title, a URL or a log."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sagevault import errors

from .._problems import status_of
from ._session import COOKIE

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PREFIX = "/console"

CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

_ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)


def utc(value: datetime | str | None) -> str:
    """A time as people read it here: UTC, to the minute."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def when(value: datetime | str | None) -> Markup | str:
    """A deadline or an event's time: UTC to the minute in a `<time>` element whose `datetime` the
    console's script (static/console.js, progressive enhancement) also shows in the reader's local time."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    stamp = value.astimezone(UTC)
    return Markup('<time datetime="{}">{}</time>').format(stamp.strftime("%Y-%m-%dT%H:%M:%SZ"), utc(stamp))


def left(seconds: int | None) -> str:
    """Time left on a clock, or how long it is overdue."""
    if seconds is None:
        return "-"
    late, seconds = seconds <= 0, abs(seconds)
    hours, minutes = divmod(seconds // 60, 60)
    told = f"{hours} h {minutes:02d} min"
    return f"overdue by {told}" if late else f"{told} left"


_ENV.filters["utc"] = utc
_ENV.filters["left"] = left
_ENV.filters["when"] = when


def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("nav", [])
    context.setdefault("csrf", "")
    context.setdefault("signed_in", False)
    context.setdefault("refresh", None)
    body = _ENV.get_template(template).render(prefix=PREFIX, **context)
    return HTMLResponse(body, status_code=status)


def error_page(status: int, message: str, **context: Any) -> HTMLResponse:
    titles = {400: "Bad request", 403: "Refused", 404: "Not found", 405: "Not allowed", 409: "Conflict"}
    title = titles.get(status, "Refused" if status < 500 else "Unavailable")
    return render("error.html", status, title=title, message=message, code=status, **context)


def refusal_page(exc: errors.SageVaultError, **context: Any) -> HTMLResponse:
    """A domain refusal as a page: its status as the API answers it, its message (which says what to do
    and never carries what the person sent)."""
    status, _ = status_of(exc)
    if status >= 500 and not isinstance(exc, errors.AuditUnavailable | errors.StorageBusy | errors.NotConfigured):
        raise exc
    return error_page(status, str(exc), **context)


def to_login(expired: bool = True, next_path: str | None = None, *, clear: bool = True) -> Response:
    """Back to the log-in page, which returns the person to `next_path`; `clear`: the session cookie
    is cleared."""
    query = {"expired": "1"} if expired else {}
    if next_path is not None and next_path != PREFIX:
        query["next"] = next_path
    response = RedirectResponse(f"{PREFIX}/login" + (f"?{urlencode(query)}" if query else ""), status_code=303)
    if clear:
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response
