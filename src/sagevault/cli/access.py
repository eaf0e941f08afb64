"""`sagevault users|roles|grants|allowlist|killswitch`: identity and access from the shell.

Commands run as the local operator (who holds the master key) unless `--as LOGIN` names a
person, who then logs in with password and TOTP (read from the terminal, or one per line from
standard input when it is not a terminal). `grants approve` always needs `--as`: from the shell
the second party of the two-person rule is a person who logs in (the library also accepts the
local operator as one). Secrets (enrolment secrets, API keys, recovery codes) are printed once.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import Annotated, TextIO

import typer
from rich.table import Table

from sagevault.access import ROLES, KillSwitch, parse_time
from sagevault.deployment import Deployment
from sagevault.errors import AccessError
from sagevault.identity import Channel, Principal, Scope

from ._app import deployment, group, out, principal, set_actor

users_app = group("users", "People and service accounts.")
roles_app = group("roles", "Roles: named bundles of scopes.")
grants_app = group("grants", "Who holds which role, where.")
allow_app = group("allowlist", "IP allow-lists (CIDR).")
switch_app = group("killswitch", "Kill switches.")

LOCAL = "127.0.0.1"  # the shell is on this machine
AsOption = Annotated[str | None, typer.Option("--as", help="Act as this person (asks for password and TOTP code).")]


def _secret(label: str, *, confirm: bool = False, source: TextIO | None = None) -> str:
    """A secret from the terminal (not echoed), or the next line of standard input; or the next
    line of `source` (a file descriptor a script gave, `--secrets-fd`), asked for once."""
    if source is not None:
        line = source.readline()
        if not line:
            raise AccessError(f"{label.lower()} expected on the --secrets-fd descriptor (one secret per line)")
        return line.rstrip("\n")
    if sys.stdin.isatty():
        return str(typer.prompt(label, hide_input=True, confirmation_prompt=confirm))
    line = sys.stdin.readline()
    if not line:
        raise AccessError(f"{label.lower()} expected on standard input (one per line)")
    if confirm:
        again = sys.stdin.readline()
        if again.rstrip("\n") != line.rstrip("\n"):
            raise AccessError(f"the two {label.lower()} entries differ")
    return line.rstrip("\n")


@contextmanager
def _acting(login: str | None) -> Iterator[tuple[Deployment, Principal]]:
    """The deployment and who acts: the local operator, or the person `--as` names, logged in
    for this one command (the session ends with it)."""
    with deployment() as d:
        if login is None:
            yield d, principal()
            return
        password = _secret("Password")
        code = _secret("TOTP code")
        with d.unit_of_work(read_only=True) as conn:  # Argon2 here, holding no write lock
            checked = d.access.authn.check_password(conn, login, password, source=LOCAL, channel=Channel.CLI)
        with d.unit_of_work() as conn:
            attempt = d.access.authn.login(
                conn, login, password, code, source=LOCAL, channel=Channel.CLI, checked=checked
            )
        session = attempt.session()  # raises the refusal, after the failure was committed
        set_actor(session.principal)
        try:
            yield d, session.principal
        finally:
            with d.engine.begin() as conn:
                d.access.authn.logout(conn, session.token, actor=session.principal)


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


# --- users ------------------------------------------------------------------------------------


def _print_enrolment(login: str, secret: str, expires: datetime, by: Principal) -> None:
    out.print(f"enrolment secret for {login} (shown once, valid until {_when(expires)} UTC):")
    out.print(f"  {secret}")
    out.print(f"give it to {login} in person; they run: sagevault users enrol --login {login}")
    if by.kind != "operator":  # the two-person rule counts whoever saw the secret as able to act as the person
        out.print(
            f"you saw this secret: grants of {login} that reach PII, keys or administration must now be asked "
            "for by another admin and approved by a third"
        )


def _print_pending(count: int, login: str | None) -> None:
    """Say when a new credential put grants back under the two-person rule."""
    if count:
        who = f" of {login}" if login else ""
        where = f"--login {login} --pending" if login else "--pending"
        out.print(
            f"[yellow]{count} grant(s){who} reaching PII, keys or administration wait for a second party "
            f"again[/]: sagevault grants list {where}"
        )


@users_app.command("bootstrap-admin")
def users_bootstrap_admin(
    login: Annotated[str, typer.Option(help="The first administrator's own login (not a generic name).")],
    email: Annotated[str, typer.Option(help="Their work e-mail address.")],
) -> None:
    """Create the first person, an administrator. `sagevault init` creates no account."""
    with deployment() as d, d.engine.begin() as conn:
        enrolment = d.access.accounts.bootstrap_admin(conn, login, email, actor=principal())
    _print_enrolment(enrolment.login, enrolment.secret, enrolment.expires_at, principal())


@users_app.command("add")
def users_add(
    login: Annotated[str, typer.Option()],
    email: Annotated[str, typer.Option()],
    manager: Annotated[str | None, typer.Option(help="Login of the person who answers for their access.")] = None,
    as_: AsOption = None,
) -> None:
    """Add a person; they enrol with the secret printed once."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        enrolment = d.access.accounts.add_person(conn, login, email, manager=manager, actor=actor)
    _print_enrolment(enrolment.login, enrolment.secret, enrolment.expires_at, actor)


@users_app.command("add-service")
def users_add_service(
    login: Annotated[str, typer.Option()],
    owner: Annotated[str, typer.Option(help="Login of the person who owns the service.")],
    purpose: Annotated[str, typer.Option(help="What the service does, in a few words.")],
    as_: AsOption = None,
) -> None:
    """Add a service account (it authenticates with API keys)."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        principal_id = d.access.accounts.add_service(conn, login, owner=owner, purpose=purpose, actor=actor)
    out.print(f"[green]added[/] service {login} ({principal_id}); next: sagevault users issue-key --service {login}")


class EnrolStep(StrEnum):
    ALL = "all"
    BEGIN = "begin"
    FINISH = "finish"


def _secrets_from(fd: int | None) -> TextIO | None:
    if fd is None:
        return None
    try:
        return os.fdopen(fd, "r", encoding="utf-8", closefd=False)
    except OSError as exc:
        raise AccessError(f"--secrets-fd {fd} is not an open file descriptor ({exc.strerror})") from None


@users_app.command("enrol")
def users_enrol(
    login: Annotated[str, typer.Option()],
    step: Annotated[
        EnrolStep,
        typer.Option(
            help="all: the whole enrolment, asking as it goes; begin: check the enrolment secret and print "
            "the TOTP secret; finish: set the password with a code of that TOTP secret (for scripts)."
        ),
    ] = EnrolStep.ALL,
    secrets_fd: Annotated[
        int | None,
        typer.Option(
            "--secrets-fd",
            help="Read the secrets from this file descriptor, one per line, each once: the enrolment secret, "
            "then (all, finish) the new password and a TOTP code. Never put secrets on the command line.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document: the TOTP secret and URI, or the recovery codes.")
    ] = False,
) -> None:
    """Set your password and TOTP with the enrolment secret an admin gave you."""
    if as_json and step is EnrolStep.ALL:
        raise AccessError("--json needs --step begin, then --step finish (the TOTP code comes between them)")
    source = _secrets_from(secrets_fd)
    result: dict[str, object] = {}
    with deployment() as d:
        secret = _secret("Enrolment secret", source=source)
        if step is not EnrolStep.FINISH:
            with d.unit_of_work() as conn:
                setup = d.access.enrolment.begin(conn, login, secret)
            result |= {"totp_secret": setup.secret, "totp_uri": setup.uri}
            if not as_json:
                out.print("add this to your authenticator app (TOTP, 6 digits, 30 s):")
                out.print(f"  secret: {setup.secret}")
                out.print(f"  uri:    {setup.uri}", soft_wrap=True)
        if step is not EnrolStep.BEGIN:
            password = _secret("New password", confirm=True, source=source)
            code = _secret("TOTP code", source=source)
            with d.unit_of_work(read_only=True) as conn:
                prepared = d.access.enrolment.prepare_password(conn, login, secret, password)
            with d.unit_of_work() as conn:
                codes = d.access.enrolment.finish(conn, login, secret, password, code, prepared=prepared)
            result["recovery_codes"] = codes
            if not as_json:
                out.print("[green]enrolled.[/] recovery codes (each works once; keep them offline):")
                for c in codes:
                    out.print(f"  {c}")
        elif not as_json:
            out.print(f"next: sagevault users enrol --login {login} --step finish (enrolment secret, password, code)")
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")


@users_app.command("password")
def users_password(login: Annotated[str, typer.Option()]) -> None:
    """Change your password (current password, new password twice, TOTP code)."""
    with deployment() as d:
        current = _secret("Current password")
        new = _secret("New password", confirm=True)
        code = _secret("TOTP code")
        with d.unit_of_work(read_only=True) as conn:
            prepared = d.access.authn.prepare_password_change(
                conn, login, current, new, source=LOCAL, channel=Channel.CLI
            )
        with d.unit_of_work() as conn:
            attempt = d.access.authn.change_password(
                conn, login, current, new, code, source=LOCAL, channel=Channel.CLI, prepared=prepared
            )
        attempt.check()
    out.print(f"[green]password changed[/]; {attempt.sessions_ended} session(s) of {login} ended: log in again")


@users_app.command("list")
def users_list(as_: AsOption = None) -> None:
    """Every account with its status, lock and last activity."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        accounts = d.access.accounts.list(conn, actor=actor)
    table = Table("login", "id", "kind", "status", "locked until", "last active")
    for a in accounts:
        table.add_row(a.login, a.id, a.kind, a.status, _when(a.locked_until), _when(a.last_active_at))
    out.print(table if accounts else "no accounts yet: sagevault users bootstrap-admin --login LOGIN --email EMAIL")


def _user_action(name: str, done: str) -> None:
    def command(login: Annotated[str, typer.Argument()], as_: AsOption = None) -> None:
        with _acting(as_) as (d, actor), d.engine.begin() as conn:
            result = getattr(d.access.accounts, name)(conn, login, actor=actor)
        extra = f" ({result} sessions and API keys ended)" if name == "disable" else ""
        out.print(f"[green]{done}[/] {login}{extra}")
        if name == "reset":
            _print_enrolment(result.login, result.secret, result.expires_at, actor)
            _print_pending(result.pending_grants, login)

    command.__doc__ = {
        "disable": "Disable an account at once: its sessions and API keys stop working.",
        "enable": "Enable a disabled account.",
        "unlock": "Unlock an account locked after failed log-ins.",
        "reset": "Issue a new enrolment secret (new password and TOTP); sessions end.",
    }[name]
    users_app.command(name)(command)


for _name, _done in (("disable", "disabled"), ("enable", "enabled"), ("unlock", "unlocked"), ("reset", "reset")):
    _user_action(_name, _done)


@users_app.command("leave")
def users_leave(
    login: str,
    at: Annotated[str | None, typer.Option("--at", help="When they leave, with its UTC offset (default: now).")] = None,
    as_: AsOption = None,
) -> None:
    """Mark a leaver: at that time (now by default) the account is disabled, its sessions ended and
    its API keys revoked, by the hourly `leavers` job (the policy: within 24 hours)."""
    try:
        when = datetime.fromisoformat(at) if at is not None else None
    except ValueError:
        raise AccessError(
            "--at takes a date and time in ISO 8601 with its offset (2026-12-31T17:00:00+00:00)"
        ) from None
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        ended = d.access.accounts.leave(conn, login, when, actor=actor)
    if when is None or ended:
        out.print(f"[green]disabled[/] {login} ({ended} sessions and API keys ended)")
    else:
        out.print(f"{login} is disabled at {when.isoformat()} (the hourly `leavers` job)", markup=False)


@users_app.command("review")
def users_review(as_: AsOption = None) -> None:
    """Accounts inactive for the policy's period (90 days), and API keys and passwords that
    expire within 30 days."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        review = d.access.reviews.run(conn, actor=actor)
    out.print(f"inactive accounts: {len(review.inactive)}")
    for a in review.inactive:
        out.print(f"  {a.login} ({a.id}) last active {_when(a.last_active_at or a.created_at)}")
    out.print(f"API keys expiring within 30 days: {len(review.expiring_keys)}")
    for key_id, principal_id, expires in review.expiring_keys:
        out.print(f"  {key_id} of {principal_id} expires {_when(expires)}")
    out.print(f"passwords expiring within 30 days: {len(review.expiring_passwords)}")
    for principal_id, due in review.expiring_passwords:
        out.print(f"  {principal_id} by {_when(due)}")


@users_app.command("issue-key")
def users_issue_key(
    service: Annotated[str, typer.Option(help="The service account's login.")],
    scope: Annotated[list[str], typer.Option("--scope", help="A scope the key may use (repeatable).")],
    days: Annotated[int | None, typer.Option(help="Lifetime in days (at most the policy's 365).")] = None,
    as_: AsOption = None,
) -> None:
    """Issue an API key to a service account. It is printed once; only a keyed hash is kept."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        key = d.access.api_keys.issue(conn, service, scopes=scope, days=days, actor=actor)
    out.print(f"API key {key.key_id} for {service}, expires {_when(key.expires_at)} UTC (shown once):")
    out.print(f"  {key.token}")
    _print_pending(key.pending_grants, service)


@users_app.command("rotate-key")
def users_rotate_key(
    key_id: Annotated[str, typer.Argument()],
    days: Annotated[int | None, typer.Option(help="Lifetime of the new key in days.")] = None,
    as_: AsOption = None,
) -> None:
    """Replace an API key: a new one (printed once) with the same scopes; the old one stops now."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        key = d.access.api_keys.rotate(conn, key_id, days=days, actor=actor)
    out.print(f"API key {key.key_id} replaces {key_id}, expires {_when(key.expires_at)} UTC (shown once):")
    out.print(f"  {key.token}")
    _print_pending(key.pending_grants, None)


@users_app.command("revoke-key")
def users_revoke_key(key_id: Annotated[str, typer.Argument()], as_: AsOption = None) -> None:
    """Revoke an API key now."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        d.access.api_keys.revoke(conn, key_id, actor=actor)
    out.print(f"[green]revoked[/] API key {key_id}")


# --- roles, grants ------------------------------------------------------------------------------


@roles_app.command("list")
def roles_list() -> None:
    """The roles, their scopes and the purposes they may reveal PII for."""
    table = Table("role", "scopes", "purposes", "two-person rule", "what for")
    for role in ROLES.values():
        table.add_row(
            role.name,
            ", ".join(sorted(s.value for s in role.scopes)),
            ", ".join(sorted(p.value for p in role.purposes)) or "-",
            "yes" if role.sensitive else "no",
            role.description,
        )
    out.print(table)


@roles_app.command("scopes")
def roles_scopes() -> None:
    """Every scope."""
    for s in Scope:
        out.print(f"{s.value}{'  (two-person rule)' if s.sensitive else ''}")


@grants_app.command("add")
def grants_add(
    login: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")],
    tenant: Annotated[list[str], typer.Option("--tenant", "-t", help="Tenant id (repeatable), or '*' for all.")],
    from_: Annotated[str | None, typer.Option("--from", help="Start (ISO date/time, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="End (ISO date/time, UTC).")] = None,
    as_: AsOption = None,
) -> None:
    """Grant a role for tenants. Roles reaching PII, keys or account administration wait for a
    second party's approval."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        g = d.access.grants.grant(
            conn,
            login,
            role,
            tenant,
            actor=actor,
            not_before=parse_time(from_, "--from"),
            not_after=parse_time(until, "--until"),
        )
    out.print(f"[green]grant {g.id}[/]: {g.login} holds {g.role} on {', '.join(g.tenants)} ({g.status})")
    if g.status == "pending":
        out.print(f"another admin approves it: sagevault grants approve {g.id} --as THEIR_LOGIN")


@grants_app.command("approve")
def grants_approve(
    grant_id: Annotated[str, typer.Argument()],
    as_: Annotated[str, typer.Option("--as", help="The approving administrator (not the requester).")],
) -> None:
    """Approve a pending grant as a second party (not its requester, not its grantee)."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        g = d.access.grants.approve(conn, grant_id, actor=actor)
    out.print(f"[green]approved[/] {g.id}: {g.login} holds {g.role} on {', '.join(g.tenants)}")


@grants_app.command("revoke")
def grants_revoke(grant_id: Annotated[str, typer.Argument()], as_: AsOption = None) -> None:
    """Revoke a grant now."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        d.access.grants.revoke(conn, grant_id, actor=actor)
    out.print(f"[green]revoked[/] {grant_id}")


@grants_app.command("list")
def grants_list(
    login: Annotated[str | None, typer.Option()] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Only grants waiting for approval.")] = False,
    as_: AsOption = None,
) -> None:
    """Live grants (pending and active)."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        rows = d.access.grants.list(conn, actor=actor, login=login, pending=pending)
    table = Table("grant", "login", "role", "tenants", "status", "from", "until", "requested by", "approved by")
    for g in rows:
        table.add_row(
            g.id,
            g.login,
            g.role,
            ", ".join(g.tenants),
            g.status,
            _when(g.not_before),
            _when(g.not_after),
            g.requested_by,
            g.approved_by or "-",
        )
    out.print(table)


# --- allow-lists, kill switches -----------------------------------------------------------------


@allow_app.command("add")
def allowlist_add(
    cidr: Annotated[str, typer.Argument(help="IPv4 or IPv6 network, e.g. 203.0.113.0/24.")],
    role: Annotated[str | None, typer.Option(help="Only for this role's grants.")] = None,
    login: Annotated[str | None, typer.Option(help="Only for this account.")] = None,
    as_: AsOption = None,
) -> None:
    """Allow a network: globally (default), for a role, or for one account. With no global
    entry only this machine (loopback) is allowed."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        entry = d.access.allowlists.add(conn, cidr, actor=actor, role=role, login=login)
    out.print(f"[green]allowed[/] {entry.cidr} ({entry.scope}{' ' + entry.target if entry.target else ''}): {entry.id}")


@allow_app.command("remove")
def allowlist_remove(entry_id: Annotated[str, typer.Argument()], as_: AsOption = None) -> None:
    """Remove an allow-list entry."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        d.access.allowlists.remove(conn, entry_id, actor=actor)
    out.print(f"[green]removed[/] {entry_id}")


@allow_app.command("list")
def allowlist_list(as_: AsOption = None) -> None:
    """Every allow-list entry."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        entries = d.access.allowlists.list(conn, actor=actor)
    table = Table("entry", "list", "for", "network")
    for e in entries:
        table.add_row(e.id, e.scope, e.target or "-", e.cidr)
    out.print(table if entries else "no global allow-list: only loopback (127.0.0.0/8, ::1) may connect")


def _switch(name: str, engaged: bool, tenant: str | None, as_: str | None) -> None:
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        d.access.switches.set(conn, name, engaged, actor=actor, tenant_id=tenant)
    where = f"tenant {tenant}" if tenant else "all tenants"
    out.print(f"[{'red' if engaged else 'green'}]{name} {'engaged' if engaged else 'released'}[/] for {where}")


SwitchArg = Annotated[str, typer.Argument(help=f"One of: {', '.join(k.value for k in KillSwitch)}.")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", "-t", help="One tenant (default: all).")]


@switch_app.command("engage")
def killswitch_engage(name: SwitchArg, tenant: TenantOpt = None, as_: AsOption = None) -> None:
    """Stop PII access, SP-API sync or exports now, for one tenant or all. Survives restarts."""
    _switch(name, True, tenant, as_)


@switch_app.command("release")
def killswitch_release(name: SwitchArg, tenant: TenantOpt = None, as_: AsOption = None) -> None:
    """Release a kill switch."""
    _switch(name, False, tenant, as_)


@switch_app.command("list")
def killswitch_list(as_: AsOption = None) -> None:
    """Every switch that was ever flipped, and its state."""
    with _acting(as_) as (d, actor), d.engine.begin() as conn:
        rows = d.access.switches.list(conn, actor=actor)
    table = Table("switch", "tenant", "state", "changed")
    for name, tenant, engaged, changed in rows:
        table.add_row(name, tenant, "[red]engaged[/]" if engaged else "released", _when(changed))
    out.print(table if rows else "no kill switch has been engaged")
