"""The package's import graph has no cycles, counting lazy imports inside functions.

Every module under codemix/ is parsed with `ast` (nothing is imported), and every
import of a codemix module at any depth -- top level, inside functions, under
`if TYPE_CHECKING:` -- becomes an edge. Relative imports are resolved against the
importing module, and `from codemix.x import y` counts as an edge to
`codemix.x.y` when `y` is a submodule (else to `codemix.x`). Packages a module
merely sits in are not edges: Python has finished (or is running) their
`__init__` before the module's own code runs, so they cannot close a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "codemix"


def module_names(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file under `root`."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _known(name: str, known: dict[str, Path]) -> str | None:
    """`name`, or the nearest package above it that is a module (an attribute import)."""
    parts = name.split(".")
    for i in range(len(parts), 1, -1):
        if ".".join(parts[:i]) in known:
            return ".".join(parts[:i])
    return None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The codemix modules that `module` imports anywhere in its source."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "codemix":
                    found.add(_known(alias.name, known))
        elif isinstance(node, ast.ImportFrom):
            source = (_resolve_relative(module, is_package, node.level, node.module) if node.level
                      else node.module or "")
            if source.split(".")[0] != "codemix":
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in known else _known(source, known))
    found.discard(module)
    found.discard(None)
    return found


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    known = module_names(root)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(c)) for c in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, as a path back to it."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"no cycle through {start}")  # unreachable for a strongly connected component


def all_cycles(graph: dict[str, set[str]], limit: int = 1000) -> list[list[str]]:
    """Every elementary cycle (up to `limit`), each starting at its smallest module."""
    cycles: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                cycles.append(path + [start])
            elif nxt > start and nxt not in path and len(cycles) < limit:
                walk(start, nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return cycles


def test_graph_sees_lazy_relative_and_submodule_imports(tmp_path):
    pkg = tmp_path / "codemix"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("def f():\n    from . import y\n")
    (pkg / "a" / "y.py").write_text("from codemix.a import z\n")
    (pkg / "a" / "z.py").write_text("import json\n\ndef g():\n    import codemix.a.x\n")
    graph = import_graph(pkg)
    assert graph["codemix.a.x"] == {"codemix.a.y"}
    assert graph["codemix.a.y"] == {"codemix.a.z"}
    assert find_cycles(graph) == [["codemix.a.x", "codemix.a.y", "codemix.a.z", "codemix.a.x"]]


def test_codemix_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50, "the walk found too few modules: is PACKAGE_DIR right?"
    cycles = all_cycles(graph)
    if cycles:
        pytest.fail(f"{len(cycles)} import cycle(s) in codemix/:\n"
                    + "\n".join("  " + " -> ".join(c) for c in cycles))
