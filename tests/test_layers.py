"""Dependencies run one way (README, Architecture): the core imports neither half, the worker
never the API, the API only the check registry and its report parts, the engine nothing else
of the project; and no module reaches itself through its imports."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("app", "core", "worker")
# The API may read the registry's declarations and the families' pure report parts.
API_MAY_IMPORT = ("worker.checks.registry", "worker.checks.report_kit")
COMPOSITION_ROOTS = ("app.cli", "app.cli_admin", "app.cli_demo", "app.cli_split")


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


RELATIVE: list[str] = []  # relative imports would escape the reading below: there are none


def _imports() -> dict[str, set[str]]:
    """Each project module and the project modules its import statements name anywhere (lazy
    ones in functions too; a family's "module:function" references are resolved at run time
    and checked by the registry's tests instead)."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            names = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level > 0:
                    RELATIVE.append(f"{path.relative_to(REPO)}:{node.lineno}")
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module)
                    names.update(f"{node.module}.{alias.name}" for alias in node.names)
                elif isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
            found[_module(path)] = {n for n in names if n.split(".")[0] in PACKAGES}
    return {module: {n for n in names if n in found} for module, names in found.items()}


IMPORTS = _imports()


def _violations(source: str, allowed) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(
        f"{module} -> {name}"
        for module, names in IMPORTS.items()
        if module == source or module.startswith(f"{source}.")
        for name in names
        if not allowed(module, name)
    )


def test_the_core_imports_neither_half() -> None:
    assert _violations("core", lambda _m, name: name.split(".")[0] == "core") == []


def test_the_worker_never_imports_the_api() -> None:
    assert _violations("worker", lambda _m, name: name.split(".")[0] != "app") == []


def test_the_api_reads_only_the_registry_and_report_parts_of_the_worker() -> None:
    def allowed(module: str, name: str) -> bool:
        return (
            module in COMPOSITION_ROOTS
            or not name.startswith("worker")
            or name.startswith(API_MAY_IMPORT)
        )

    assert _violations("app", allowed) == []


def test_the_engine_imports_nothing_else_of_the_project() -> None:
    assert _violations("worker.engine", lambda _m, name: name.startswith("worker.engine")) == []


def test_no_module_imports_itself_round_about() -> None:
    graph = {module: {n for n in names if n != module} for module, names in IMPORTS.items()}
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for name in sorted(graph[module]):
            if state.get(name) == "open":
                cycles.append([*path[path.index(name) :], name])
            elif name not in state:
                visit(name, [*path, name])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_graph_is_read() -> None:
    """The rules above hold of a graph that has the arrows it must have, read whole."""
    assert RELATIVE == []
    assert {"core.db", "worker.checks.registry"} <= IMPORTS["worker.runner"]
    assert "worker.checks.registry" in IMPORTS["app.api.checks"]
    assert "worker.engine.schemes" in IMPORTS["worker.checks.lm.kinds"]
