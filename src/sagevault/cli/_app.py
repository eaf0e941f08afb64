"""The `sagevault` app and what every command group shares: settings, the deployment a command
opens (and the cli:command:run or cli:command:fail event it records), who acts, the consoles.

Each command owns its unit of work, parses, calls one domain operation, and renders. An error
SageVault raises on purpose is one line on standard error and exit code 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
import typer.main
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sagevault.audit import AuditEvent, AuditLog, EventName, Outcome, Reason, outcome_of
from sagevault.config import Settings, load_settings
from sagevault.deployment import Deployment, init_deployment, open_audit, open_deployment
from sagevault.errors import AuditError, NotInitialized, SageVaultError
from sagevault.identity import Channel, Principal
from sagevault.logs import configure_logging, get_logger, release_logging

from .sandbox import sandbox_app

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


_argv: list[str] = []  # the command line of the invocation under way
UNWRAPPED = 100_000  # the width of output that is not a terminal: nothing wraps


class _Group(typer.core.TyperGroup):
    """The root command: an error SageVault raises on purpose (it says what to do) is printed as
    one line and exits 2; anything else is a bug and keeps its traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        given = kwargs.get("args", args[0] if args else None)
        _argv[:] = list(sys.argv[1:] if given is None else given)
        try:
            return super().main(*args, **kwargs)
        except SageVaultError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)  # the message is text, not markup
            raise SystemExit(2) from None
        finally:
            release_logging()


# rich_markup_mode=None: usage errors and help as plain text (Click's), no boxes in a script's output.
app = typer.Typer(
    cls=_Group,
    rich_markup_mode=None,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="SageVault: Amazon Information, protected.",
)
# pretty_exceptions_enable=False: rich tracebacks print local variables, which may hold PII.
app.add_typer(sandbox_app, name="sandbox")  # stands alone (imports nothing from here)


def group(name: str, help_text: str) -> typer.Typer:
    """A command group (`sagevault NAME ...`) on the app."""
    sub = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help=help_text)
    app.add_typer(sub, name=name)
    return sub


_state: dict[str, Any] = {}


@app.callback()
def _root(
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data directory (default: $SAGEVAULT_DATA_DIR or ./var).")
    ] = None,
) -> None:
    # Every invocation starts afresh (the app may run several in one process, as the tests do).
    _state.clear()
    _state["overrides"] = {"data_dir": data_dir} if data_dir else {}
    # A terminal's width where there is one (or COLUMNS); none when the output goes to a file or a
    # pipe, so a script never finds a line (a path, a command to run) broken in two.
    columns = os.environ.get("COLUMNS", "")
    for console, stream in ((out, sys.stdout), (err, sys.stderr)):
        if columns.isdigit():
            console.width = int(columns)
        elif not stream.isatty():
            console.width = UNWRAPPED


def settings() -> Settings:
    loaded = load_settings(**_state.get("overrides", {}))
    if not _state.get("logging"):
        configure_logging(loaded.resolved_data_dir / "logs" / "sagevault.log")
        _state["logging"] = True
    return loaded


def command_name() -> str:
    """The command being run (`keys rotate`), from the command line matched against the command
    tree; arguments and option values are never included."""
    node: Any = typer.main.get_command(app)
    names: list[str] = []
    tokens = iter(_argv)
    for token in tokens:
        commands = getattr(node, "commands", None)
        if commands is None:
            break
        if token.startswith("-"):
            takes_value = any(token in p.opts and not getattr(p, "is_flag", False) for p in node.params)
            if takes_value and "=" not in token:
                next(tokens, None)
            continue
        if token not in commands:
            break
        names.append(token)
        node = commands[token]
    return " ".join(names) or "sagevault"


def record_command(audit: AuditLog, error: BaseException | None) -> None:
    """cli:command:run or cli:command:fail, naming the command (never its arguments)."""
    name = command_name()
    get_logger("sagevault.cli").info(
        "command",
        command=name,
        outcome="success" if error is None else "failure",
        error=type(error).__name__ if error else None,
        actor=principal().id,
    )
    outcome, reason = (Outcome.SUCCESS, Reason.NONE) if error is None else outcome_of(error)
    audit.record(
        AuditEvent(
            name=EventName.CLI_COMMAND_RUN if error is None else EventName.CLI_COMMAND_FAIL,
            channel=Channel.CLI,
            outcome=outcome,
            reason=reason,
            actor=principal().id,
            operation=name,
        )
    )


@contextmanager
def deployment(*, record: bool = True) -> Iterator[Deployment]:
    """The deployment for one command: its outcome is recorded (unless `record` is False), and
    it is closed afterwards."""
    d = open_deployment(settings(), actor=principal())
    try:
        yield d
    except SageVaultError as exc:
        if record and not isinstance(exc, AuditError):
            record_command(d.audit, exc)
        raise
    else:
        if record:
            record_command(d.audit, None)
    finally:
        d.close()


def open_or_init(loaded: Settings, init_if_new: bool) -> Deployment:
    """Open the deployment; with `init_if_new`, initialise it first when the data dir is new."""
    try:
        return open_deployment(loaded, actor=principal())
    except NotInitialized:
        if not init_if_new:
            raise
    d = init_deployment(loaded, actor=principal())
    out.print(f"[green]initialised[/] a new deployment in {loaded.resolved_data_dir}")
    return d


@contextmanager
def audit_only() -> Iterator[AuditLog]:
    """Only the audit log (no master key loaded): an auditor can verify without decrypting anything."""
    log = open_audit(settings())
    try:
        yield log
    finally:
        log.close()


def principal() -> Principal:
    """Who the command's events name: the local operator, unless `--as` logged a person in."""
    actor = _state.get("actor")
    return actor if isinstance(actor, Principal) else Principal.local_operator(Channel.CLI)


def set_actor(who: Principal) -> None:
    _state["actor"] = who


def heading(text: str) -> None:
    """A heading between parts of the output (a rule on a terminal, one plain line otherwise)."""
    if out.width < UNWRAPPED:
        out.rule(text)
    else:
        out.print(f"-- {text} --", soft_wrap=True)


def progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=False,
    )


def main() -> None:
    """The `sagevault` entry point. Whatever it creates (databases, logs, digests, lock files)
    is private to this account, whatever umask the shell had."""
    os.umask(0o077)
    app()
