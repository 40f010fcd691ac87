"""The folders are the architecture: who may import whom, with no cycles, in
functions short enough to read at a glance. Read from the source with `ast`,
so a rule broken in any module (even in a function-level import) fails here."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Folder -> import name, as pyproject.toml's package-dir maps them.
ROOTS = {"daemon": "tether.daemon", "bench": "tether.bench", "loader": "tether"}
MAX_FUNCTION_LINES = 60


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module (or package) imported
    line: int
    top_level: bool  # run when `source` is imported (not inside a function or TYPE_CHECKING)


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO)
    prefix = ROOTS[relative.parts[0]]
    rest = [*relative.parts[1:-1], relative.stem]
    if rest[-1] == "__init__":
        rest.pop()
    return ".".join([prefix, *rest])


def modules() -> dict[str, Path]:
    found = {}
    for folder in ROOTS:
        for path in sorted((REPO / folder).rglob("*.py")):
            if "v1" not in path.relative_to(REPO).parts:  # generated
                found[module_name(path)] = path
    return found


MODULES = modules()


def _imports(name: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    late: set[int] = set()  # nodes inside functions or `if TYPE_CHECKING:`
    for node in ast.walk(tree):
        deferred = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or (
            isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))
        if deferred:
            late.update(id(inner) for inner in ast.walk(node) if inner is not node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            # `from package import submodule` imports the submodule
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in MODULES else origin
                       for a in node.names]
        else:
            continue
        for target in targets:
            if target == "tether" or target.startswith("tether."):
                yield Import(name, target, node.lineno, id(node) not in late)


IMPORTS = [imp for name, path in MODULES.items() for imp in _imports(name, path)]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _broken(allowed) -> list[str]:
    return [f"{MODULES[i.source].relative_to(REPO)}:{i.line} imports {i.target}"
            for i in IMPORTS if not allowed(i.source, i.target)]


def test_the_daemon_imports_from_the_client_package_only_tether_wire():
    def allowed(source: str, target: str) -> bool:
        if not _within(source, "tether.daemon"):
            return True
        return _within(target, "tether.daemon") or _within(target, "tether.wire")

    assert _broken(allowed) == []


def test_the_loader_imports_neither_the_daemon_nor_the_bench():
    def allowed(source: str, target: str) -> bool:
        if _within(source, "tether.daemon") or _within(source, "tether.bench"):
            return True
        return not (_within(target, "tether.daemon") or _within(target, "tether.bench"))

    assert _broken(allowed) == []


def test_the_wire_code_imports_only_itself():
    def allowed(source: str, target: str) -> bool:
        return not _within(source, "tether.wire") or _within(target, "tether.wire")

    assert _broken(allowed) == []


# The daemon's groups, each importing only those after it (and the shared
# helpers at the daemon's top level): serving calls streaming and preparing,
# which read sources; nothing below reaches back up.
DAEMON_LAYERS = ["serve", "stream", "prepare", "sources"]


@pytest.mark.parametrize("layer", DAEMON_LAYERS)
def test_each_daemon_group_imports_only_the_groups_below_it(layer: str):
    below = DAEMON_LAYERS[DAEMON_LAYERS.index(layer):]
    if layer == "stream":
        below = ["stream", "sources"]  # streaming and preparing are siblings

    def allowed(source: str, target: str) -> bool:
        if not _within(source, f"tether.daemon.{layer}") or not _within(target, "tether.daemon"):
            return True
        group = target.split(".")[2] if target.count(".") >= 2 else ""
        return group not in DAEMON_LAYERS or group in below

    assert _broken(allowed) == []


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def test_no_module_level_import_cycle():
    """Importing Y from X also runs Y's packages' __init__ (those not already
    X's own, which run before X): a cycle through them works only by the
    order of imports, so it counts."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in IMPORTS:
        if not imp.top_level or imp.target not in MODULES:
            continue
        mine = set(_ancestors(imp.source))
        for target in [imp.target, *_ancestors(imp.target)]:
            if target in MODULES and target not in mine and target != imp.source:
                graph[imp.source].add(target)
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert cycles == []


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} "
                                f"({lines} lines)")
    assert long == []


def test_the_rules_see_every_module():
    """The checks above read the tree they guard (a moved folder would make them vacuous)."""
    assert {"tether.daemon.serve.servicer", "tether.daemon.stream.encoder",
            "tether.daemon.prepare.catalog", "tether.daemon.sources.parquet",
            "tether.pipeline.batcher", "tether.cache.row_cache", "tether.wire.spec",
            "tether.bench.cli"} <= set(MODULES)
    assert any(i.source == "tether.daemon.serve.servicer" and i.target == "tether.wire.spec"
               for i in IMPORTS)
