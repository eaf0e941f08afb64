"""The layers of shared/DESIGN.md, checked on the source: no import cycle, `access` and `vault`
unaware of each other, domain packages free of the edges and their frameworks, no module too long
to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
PACKAGE = SRC / "sagevault"
DOMAINS = (
    "errors",
    "identity",
    "config",
    "db",
    "crypto",
    "catalog",
    "audit",
    "vault",
    "access",
    "monitor",
    "incidents",
    "deletion",
    "connector",
    "governance",
    "compliance",
)
EDGES = ("web", "cli", "jobs", "deployment", "testing", "sandbox")
FRAMEWORKS = ("fastapi", "starlette", "typer", "click", "rich", "uvicorn")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


_ALL = {_module_name(p) for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """The modules `path` imports when it runs (what only a type checker reads is left out)."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names}
            found.update(submodules & _ALL)  # `from pkg import module` imports the module
            if submodules - _ALL:  # and `from module import name`, the module itself
                found.add(target)
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
GRAPH = {name: {i for i in _imports(path) if i in MODULES and i != name} for name, path in MODULES.items()}


def _domain(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_module_imports_itself_back_through_others() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize(("one", "other"), [("access", "vault"), ("vault", "access")])
def test_access_and_the_vault_do_not_import_each_other(one: str, other: str) -> None:
    offending = {m: sorted(i for i in GRAPH[m] if _domain(i) == other) for m in MODULES if _domain(m) == one}
    assert {m: i for m, i in offending.items() if i} == {}


def test_domain_packages_import_no_edge_and_no_web_or_command_line_framework() -> None:
    offending = {}
    for module, path in MODULES.items():
        if _domain(module) not in DOMAINS:
            continue
        bad = sorted(
            i
            for i in _imports(path)
            if i.split(".")[0] in FRAMEWORKS or (i.startswith("sagevault.") and _domain(i) in EDGES)
        )
        if bad:
            offending[module] = bad
    assert offending == {}


def test_domain_services_never_commit() -> None:
    """The edge (a request, a command, a job) owns the unit of work. The audit log's own appends
    and the database helpers are the exceptions by design (they are the unit of work)."""
    offending = [
        m
        for m, p in MODULES.items()
        if _domain(m) in ("vault", "access", "catalog", "crypto", "monitor", "connector", "governance", "compliance")
        and ".commit(" in p.read_text()
    ]
    assert offending == []


def test_no_module_is_longer_than_600_lines() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 600}
    assert long == {}


def test_the_checks_above_see_the_code() -> None:
    """They would pass on an empty tree: make sure they read this one."""
    assert {"sagevault.access._core", "sagevault.vault._service", "sagevault.cli._app"} <= MODULES.keys()
    assert "sagevault.identity" in GRAPH["sagevault.access._core"]
    assert "sagevault.access" in GRAPH["sagevault.deployment"] and "sagevault.vault" in GRAPH["sagevault.deployment"]
