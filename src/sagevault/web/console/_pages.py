"""The console's pages: log-in and log-out, the dashboard, kill switches, a tenant's orders and a reveal.

Every page is one `ConsoleWork` (authenticated as the API authenticates) around the same domain calls
the API routes make, with the same principal; the domain decides (scopes, grants, purpose, kill
switches) and records the security events. The console only hides what a person cannot use."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from sagevault import errors
from sagevault.access import ALL_TENANTS, DEPLOYMENT_SCOPES, KillSwitch
from sagevault.catalog import Purpose
from sagevault.identity import TENANT_ID, Scope
from sagevault.vault import ORDER_ID

from .._deps import deployment, source, transaction
from .._problems import status_of
from ._render import PREFIX, error_page, refusal_page, render, to_login
from ._session import (
    COOKIE,
    LOGIN_COOKIE,
    ConsoleWork,
    SessionEnded,
    csrf_ok,
    csrf_token,
    end_access_session,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

AlarmId = Annotated[int, Path(ge=1, le=2**31 - 1)]
FAILED_LOGIN = "Log-in failed. Check your login, password and authenticator code, and try again."
ENDED = "Your session ended; log in again."
NO_TENANT = "There is no such tenant."
SEVERITY = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
REVEAL_FIELDS = (
    "ShippingAddress.Name",
    "ShippingAddress.AddressLine1",
    "ShippingAddress.City",
    "ShippingAddress.PostalCode",
    "ShippingAddress.Phone",
    "BuyerInfo.BuyerEmail",
    "BuyerInfo.BuyerName",
)
KEPT = "Your session ended before your form was sent. Log in, check it and send it again: nothing was changed."
# What a form may carry through a log-in: the console's own field names, never a password, code or CSRF
# token, and nothing from a form that names a buyer (deletion requests).
KEEPABLE = frozenset({"name", "tenant", "action", "field", "purpose", "note", "title", "severity", "description"})
NOT_KEPT_FROM = (f"{PREFIX}/deletions",)
_NEXT = re.compile(r"/console(/[A-Za-z0-9._~-]+)*")
_TENANT = re.compile(TENANT_ID)
_ORDER = re.compile(ORDER_ID)


def safe_next(path: str | None) -> bool:
    """Whether `path` is a console page to return to after the log-in (never another site, never a
    query: nothing a link could carry)."""
    return (
        path is not None
        and len(path) <= 200
        and _NEXT.fullmatch(path) is not None
        and "/." not in path
        and path != f"{PREFIX}/logout"
    )


UNREADABLE = "This form could not be read; reload the page and try again."
T = TypeVar("T")


class BadForm(Exception):
    pass


async def read_form(request: Request) -> dict[str, str]:
    """A URL-encoded form (what a plain HTML form posts), one value per name."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise BadForm
    try:
        parsed = parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise BadForm from None
    return {name: values[0] for name, values in parsed.items()}


# --- what a person holds (for the navigation only: the domain call decides) ---------------------------


def held(work: ConsoleWork) -> tuple[frozenset[Scope], list[str]]:
    """The scopes the person's active grants give (on any tenant), and the tenants named in them."""
    rules = work.d.access.core.policy(work.conn).rules.get(work.who.id, {})
    now = work.d.now().timestamp()  # the deployment's clock, as the domain's checks
    scopes: set[Scope] = set()
    tenants: set[str] = set()
    for tenant, granted in rules.items():
        for rule in granted:
            if (rule.not_before or 0) <= now and (rule.not_after is None or now < rule.not_after):
                given = rule.scopes if tenant == ALL_TENANTS else rule.scopes - DEPLOYMENT_SCOPES
                scopes |= given
                if tenant != ALL_TENANTS and Scope.RECORDS_READ in given:
                    tenants.add(tenant)
    return frozenset(scopes), sorted(tenants)


def covers(work: ConsoleWork, tenant: str) -> bool:
    rules = work.d.access.core.policy(work.conn).rules.get(work.who.id, {})
    return tenant in rules or ALL_TENANTS in rules


# The navigation: each section and the scope that shows it (the route's domain call checks anyway).
SECTIONS: tuple[tuple[str, str, Scope | None], ...] = (
    ("Dashboard", "", None),
    ("Incidents", "/incidents", Scope.INCIDENTS_READ),
    ("Deletion", "/deletions", Scope.DELETION_READ),
    ("Access reviews", "/reviews", Scope.GOVERNANCE_READ),
    ("Security log", "/audit", Scope.AUDIT_READ),
    ("DPP report", "/report", Scope.GOVERNANCE_READ),
    ("Kill switches", "/killswitches", Scope.KILLSWITCH_OPERATE),
)


def page(work: ConsoleWork, **context: Any) -> dict[str, Any]:
    """The context every signed-in page renders with: the navigation the person's scopes show, the
    session's CSRF token, the scopes and the tenants they may read."""
    scopes, tenants = held(work)
    nav = [(label, PREFIX + path) for label, path, scope in SECTIONS if scope is None or scope in scopes]
    nav += [(f"Orders {t}", f"{PREFIX}/tenants/{t}/orders") for t in tenants]
    return {"nav": nav, "csrf": work.csrf, "signed_in": True, "scopes": scopes, "tenants": tenants, **context}


# --- the one way a page runs -------------------------------------------------------------------------


def _run(
    request: Request,
    action: Callable[[ConsoleWork], Response],
    *,
    read_only: bool,
    form: dict[str, str] | None,
    tenant: str | None,
) -> Response:
    try:
        work = ConsoleWork(request, read_only=read_only)
    except SessionEnded as ended:
        return _ended(request, form, timed_out=ended.timed_out)
    except errors.AuthenticationFailed:
        return _ended(request, form, timed_out=False)
    except errors.SageVaultError as exc:
        return refusal_page(exc)
    hidden = False
    try:
        with work:
            hidden = tenant is not None and not covers(work, tenant)
            if form is not None:
                work.check_csrf(form.get("csrf"))
            return action(work)
    except errors.SageVaultError as exc:
        if tenant is not None and (
            isinstance(exc, errors.UnknownTenant)
            or (hidden and isinstance(exc, errors.AccessDenied | errors.PurposeNotAllowed))
        ):
            return error_page(404, NO_TENANT, signed_in=True)
        return refusal_page(exc, signed_in=True)


def _ended(request: Request, form: dict[str, str] | None, *, timed_out: bool) -> Response:
    """No live session: to the log-in page, which returns the person where they were.

    - A session the console's idle timeout or lifetime ended is revoked for the API too.
    - Without a session cookie (none yet, or a navigation from another site, which a SameSite=Strict
      cookie does not come with) nothing is cleared: the log-in page looks again from this site.
    - A form posted in the session that just ended (its CSRF token is that session's: it came from a
      console page, not from another site) is carried through the log-in and shown again to send;
      any other POST is dropped, and the log-in returns to the dashboard."""
    d = deployment(request)
    token = request.cookies.get(COOKIE, "")
    if timed_out:
        end_access_session(d, token)
    path = request.url.path
    if form is None or request.method != "POST":
        response = to_login(expired=bool(token), next_path=path if request.method == "GET" else None, clear=False)
    else:
        with transaction(d, read_only=True) as conn:
            ours = bool(token) and csrf_ok(d, conn, token, form.get("csrf"))
        keep = ours and not path.startswith(NOT_KEPT_FROM)
        kept = {name: value for name, value in form.items() if name in KEEPABLE} if keep else {}
        response = _login_page(
            request, 200, None, next_path=path if kept else None, kept=kept or ({} if token else None)
        )
    if token:
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


async def run(
    request: Request,
    action: Callable[[ConsoleWork], Response],
    *,
    read_only: bool = False,
    posted: bool = False,
    tenant: str | None = None,
) -> Response:
    """A page: `action(work)` in one unit of work (see `_run`); `posted`: a form with nothing but its
    CSRF token (checked first)."""
    if posted:
        return await run_form(request, lambda work, _form: action(work), read_only=read_only, tenant=tenant)
    return await run_in_threadpool(_run, request, action, read_only=read_only, form=None, tenant=tenant)


async def run_form(
    request: Request,
    action: Callable[[ConsoleWork, dict[str, str]], Response],
    *,
    read_only: bool = False,
    tenant: str | None = None,
) -> Response:
    """A page a form is posted to: the form read (a 400 page if it cannot be), its CSRF token checked,
    then `action(work, form)` in one unit of work (see `_run`)."""
    try:
        form = await read_form(request)
    except BadForm:
        return error_page(400, UNREADABLE)
    return await run_in_threadpool(
        _run, request, lambda work: action(work, form), read_only=read_only, form=form, tenant=tenant
    )


def attempt(work: ConsoleWork, call: Callable[[], T]) -> tuple[T | None, errors.SageVaultError | None]:
    """A domain call in a savepoint of the page's unit of work: its refusal (a 4xx: the domain has
    recorded it) is rolled back and returned, to be shown on the page the person is on."""
    try:
        with work.conn.begin_nested():
            return call(), None
    except errors.SageVaultError as exc:
        if status_of(exc)[0] >= 500:
            raise
        return None, exc


# --- log-in and log-out --------------------------------------------------------------------------------


def _login_page(
    request: Request,
    status: int = 200,
    message: str | None = None,
    *,
    next_path: str | None = None,
    kept: dict[str, str] | None = None,
) -> Response:
    nonce = secrets.token_urlsafe(24)
    d = deployment(request)
    with transaction(d, read_only=True) as conn:
        token = csrf_token(d, conn, nonce, "console login")
    expired = kept is not None or request.query_params.get("expired") == "1"
    notice = (KEPT if kept else ENDED) if expired and message is None else None
    if next_path is None:
        next_path = request.query_params.get("next")
    response = render(
        "login.html",
        status,
        title="Log in",
        message=message,
        notice=notice,
        csrf=token,
        next_path=next_path if safe_next(next_path) else None,
        kept=sorted((kept or {}).items()),
    )
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=900, path="/", secure=True, httponly=True, samesite="strict")
    return response


def _signed_in(request: Request) -> bool:
    """Whether the request carries a live console session (an ended one is revoked)."""
    try:
        with ConsoleWork(request, read_only=True):
            return True
    except SessionEnded as ended:
        if ended.timed_out:
            end_access_session(deployment(request), request.cookies.get(COOKIE, ""))
        return False
    except errors.SageVaultError:
        return False


def _login_get(request: Request) -> Response:
    """The log-in page; a person already signed in goes on to `next`. A page asked for without the
    session cookie (it sent here with `next`) may be a navigation from another site, a link in an
    e-mail, which a SameSite=Strict cookie does not come with: the log-in page then first looks again
    from this site (`checked=1`), which it does come with."""
    next_path = request.query_params.get("next")
    if next_path is None:
        return _login_page(request)
    if request.cookies.get(COOKIE):
        if _signed_in(request):
            return RedirectResponse(next_path if next_path is not None and safe_next(next_path) else PREFIX, 303)
    elif request.query_params.get("checked") != "1":
        again = urlencode({**request.query_params, "checked": "1"})
        return render(
            "bounce.html", title="Log in", again=f"{PREFIX}/login?{again}", refresh=f"0;url={PREFIX}/login?{again}"
        )
    return _login_page(request)


@router.get("/login")
async def login_form(request: Request) -> Response:
    return await run_in_threadpool(_login_get, request)


def _login(request: Request, form: dict[str, str]) -> Response:
    d = deployment(request)
    login, password, code = form.get("login", ""), form.get("password", ""), form.get("code", "").strip()
    with transaction(d, read_only=True) as conn:
        fresh = csrf_ok(d, conn, request.cookies.get(LOGIN_COOKIE, ""), form.get("csrf"), "console login")
    next_path = form.get("next") if safe_next(form.get("next")) else None
    kept = {name.removeprefix("kept."): v for name, v in form.items() if name.startswith("kept.")}
    kept = {name: v for name, v in kept.items() if name in KEEPABLE}
    carried = kept if kept and next_path else None

    def again(status: int, message: str) -> Response:
        return _login_page(request, status, message, next_path=next_path, kept=carried)

    if not fresh:
        return again(403, "This log-in form is stale; it was reloaded. Log in again.")
    if not (0 < len(login) <= 64 and 0 < len(password) <= 256 and 6 <= len(code) <= 16):
        return again(400, FAILED_LOGIN)
    where = source(request)
    try:  # the same two calls as POST /api/v1/sessions
        with transaction(d, read_only=True) as conn:
            checked = d.access.authn.check_password(conn, login, password, source=where)
        with transaction(d) as conn:
            attempt = d.access.authn.login(conn, login, password, code, source=where, checked=checked, console=True)
        session = attempt.session()
    except errors.AccessDenied:
        return again(401, FAILED_LOGIN)
    response: Response
    if carried and next_path is not None:  # the form they were posting, to check and send again
        with transaction(d, read_only=True) as conn:
            fresh_csrf = csrf_token(d, conn, session.token)
        response = render(
            "resume.html",
            title="Send your form again",
            action=next_path,
            kept=sorted(carried.items()),
            csrf=fresh_csrf,
            signed_in=True,
        )
    else:
        response = RedirectResponse(next_path or PREFIX, status_code=303)
    response.set_cookie(COOKIE, session.token, path="/", secure=True, httponly=True, samesite="strict")
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    try:
        form = await read_form(request)
    except BadForm:
        return await run_in_threadpool(_login_page, request, 400, FAILED_LOGIN)
    return await run_in_threadpool(_login, request, form)


@router.post("/logout")
async def logout(request: Request) -> Response:
    def action(work: ConsoleWork) -> Response:
        work.d.access.authn.logout(work.conn, work.token, actor=work.who)
        return to_login(expired=False)

    return await run(request, action, posted=True)


# --- kill switches ---------------------------------------------------------------------------------------


@router.get("/killswitches")
async def killswitches(request: Request) -> Response:
    def action(work: ConsoleWork) -> Response:
        rows = work.d.access.switches.list(work.conn, actor=work.who)
        switches = [{"name": r[0], "tenant": r[1], "engaged": r[2], "changed_at": r[3]} for r in rows]
        names = [k.value for k in KillSwitch]
        return render("killswitches.html", **page(work, title="Kill switches", switches=switches, names=names))

    return await run(request, action, read_only=True)


@router.post("/killswitches")
async def flip(request: Request) -> Response:
    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        name, tenant, verb = form.get("name", ""), form.get("tenant", "").strip(), form.get("action", "")
        if name not in {k.value for k in KillSwitch} or verb not in ("engage", "release"):
            return error_page(400, "Choose a kill switch and engage or release it.", signed_in=True)
        if tenant and tenant != ALL_TENANTS and not _TENANT.fullmatch(tenant):
            return error_page(400, "That is not a tenant id (leave it empty for every tenant).", signed_in=True)
        # The same call as PUT/DELETE /api/v1/killswitches/{name}: killswitch:operate, recorded.
        work.d.access.switches.set(work.conn, name, verb == "engage", actor=work.who, tenant_id=tenant or None)
        return RedirectResponse(f"{PREFIX}/killswitches", status_code=303)

    return await run_form(request, action)


# --- orders and reveal ----------------------------------------------------------------------------------


def _orders_page(work: ConsoleWork, tenant: str, **extra: Any) -> Response:
    orders = work.d.vault.list_orders(work.conn, tenant, principal=work.who, limit=50)
    context = page(
        work,
        title="Orders",
        tenant=tenant,
        orders=orders,
        fields=REVEAL_FIELDS,
        purposes=[p.value for p in Purpose],
        **{"reveal_of": None, **extra},
    )
    return render("orders.html", **context)


@router.get("/tenants/{tenant}/orders")
async def orders(request: Request, tenant: str) -> Response:
    if not _TENANT.fullmatch(tenant):
        return error_page(404, NO_TENANT)
    return await run(request, lambda work: _orders_page(work, tenant), read_only=True, tenant=tenant)


@router.post("/tenants/{tenant}/orders/{order}/reveal")
async def reveal(request: Request, tenant: str, order: str) -> Response:
    if not _TENANT.fullmatch(tenant):
        return error_page(404, NO_TENANT)
    if not _ORDER.fullmatch(order):
        return error_page(404, "There is no such order.")

    def action(work: ConsoleWork, form: dict[str, str]) -> Response:
        field, purpose = form.get("field", ""), form.get("purpose", "")
        if not (0 < len(field) <= 200) or purpose not in {p.value for p in Purpose}:
            return error_page(400, "Choose a field and the purpose you need it for.", signed_in=True)
        values = work.d.vault.reveal(work.conn, tenant, order, [field], Purpose(purpose), principal=work.who)
        shown = {"order": order, "field": field, "values": [f.value for f in values]}
        return _orders_page(work, tenant, reveal_of=shown, refresh=f"60;url={PREFIX}/tenants/{tenant}/orders")

    return await run_form(request, action, read_only=True, tenant=tenant)
