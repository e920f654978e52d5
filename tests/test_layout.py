"""The package layout as a contract: no import circles, the runtime never reaches up into the
trainers or the benchmarks, at most a dozen modules a folder and about 600 lines a module.

The import graph is read from the source with :mod:`ast` (nothing is imported), counting every
import, the ones inside functions too: a lazy import still ties two modules together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("moc_envs", "trainers", "benchmarks")
MAX_MODULES = 12
MAX_LINES = 650  # "about 600": a module a few lines over is not worth a split


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of our packages."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imported(path: Path) -> Iterator[str]:
    """Every absolute module name that ``path`` imports (``from a import b`` yields a.b and a)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _owner(name: str) -> str | None:
    """The module of ours that an imported name resolves to (its longest known prefix)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports; a package's own ``__init__`` is not an edge."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = {_owner(n) for n in _imported(path)}
        # Importing a submodule runs its parents' __init__; that is not a dependency to count.
        graph[name] = {t for t in targets if t and t != name and not name.startswith(t + ".")}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    """The checker itself: a two-module and a three-module circle are both found."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(circles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_the_runtime_never_imports_the_trainers_or_the_benchmarks() -> None:
    upward = sorted(
        (name, target)
        for name, targets in import_graph().items()
        if name.split(".")[0] == "moc_envs"
        for target in targets
        if target.split(".")[0] != "moc_envs"
    )
    assert upward == []


def test_the_trainers_never_import_the_benchmarks() -> None:
    upward = sorted(
        (name, target)
        for name, targets in import_graph().items()
        if name.split(".")[0] == "trainers"
        for target in targets
        if target.split(".")[0] == "benchmarks"
    )
    assert upward == []


@pytest.mark.parametrize(
    "folder",
    sorted({p.parent for p in MODULES.values()}),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_at_most_a_dozen_modules_a_folder(folder: Path) -> None:
    modules = [p.name for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(modules) <= MAX_MODULES, f"{folder.relative_to(ROOT)}: {len(modules)} modules"


def test_no_module_above_about_600_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in MODULES.values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
