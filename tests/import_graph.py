"""An import graph of a package, read from the source with `ast` (nothing is imported): the
checker behind tests/test_imports.py.

Run it as a script (``python tests/import_graph.py``) to print every loop that remains when the
imports inside functions count too, between modules and between packages (there with the
modules named in strings for `importlib`).
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Literal

FMLKIT = Path(__file__).resolve().parent.parent / "fmlkit"

# The verb packages of fmlkit/data/ in pipeline order: one may import an earlier one only.
# `loading` reads what `convert` writes, so it comes last.
VERBS = ("synth", "prepare", "filter", "clean", "split", "convert", "loading")

When = Literal["module", "function", "typing"]
MODULE_LEVEL: tuple[When, ...] = ("module",)
AT_RUN_TIME: tuple[When, ...] = ("module", "function")


@dataclass(frozen=True)
class Import:
    """One import of a module of the package: who, what, where, and when it runs: ``module``
    (on import), ``function`` (when a function runs) or ``typing`` (never: under
    ``if TYPE_CHECKING:``)."""

    importer: str
    target: str
    line: int
    when: When


Graph = Mapping[str, Mapping[str, object]]  # importer -> {target: where (its first line)}


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under ``package_dir`` (packages by ``__init__``)."""
    base = package_dir.parent
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(body: Iterable[ast.stmt], when: When) -> Iterator[tuple[ast.stmt, When]]:
    """Every statement, with when it runs: a module's statements when it is imported (class
    bodies, ``try`` and ``with`` included), a function body's when it is called, those under
    ``if TYPE_CHECKING:`` never."""
    for stmt in body:
        yield stmt, when
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _statements(stmt.body, "function" if when == "module" else when)
            continue
        if isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
            yield from _statements(stmt.body, "typing")
            yield from _statements(stmt.orelse, when)
            continue
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(stmt, field, ()):
                if isinstance(child, ast.stmt):
                    yield from _statements([child], when)
                elif hasattr(child, "body"):  # except handlers, match cases
                    yield from _statements(child.body, when)


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from … import`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    package = parts if is_package else parts[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, known: Iterable[str]) -> list[Import]:
    """The imports in ``path`` (the module ``module``) of modules in ``known``."""
    known = set(known)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found = []
    for stmt, when in _statements(tree.body, "module"):
        targets: list[str] = []
        if isinstance(stmt, ast.Import):
            targets = [alias.name for alias in stmt.names]
        elif isinstance(stmt, ast.ImportFrom):
            base = _base(module, is_package, stmt)
            for alias in stmt.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in known else base)
        found += [Import(module, t, stmt.lineno, when) for t in targets if t in known]
    return found


def all_imports(package_dir: Path = FMLKIT) -> list[Import]:
    """Every import between the modules of the package at ``package_dir``."""
    names = module_names(package_dir)
    return [i for module, path in names.items() for i in imports_of(module, path, names)]


def import_graph(imports: Iterable[Import], when: Iterable[When]) -> dict[str, dict[str, int]]:
    """importer -> {imported module: line of its first import}, for the imports that run
    ``when``."""
    kinds = set(when)
    graph: dict[str, dict[str, int]] = {}
    for i in imports:
        if i.target != i.importer and i.when in kinds:
            graph.setdefault(i.importer, {}).setdefault(i.target, i.line)
    return graph


def _reachable(graph: Graph, start: str) -> set[str]:
    seen: set[str] = set()
    queue = deque([start])
    while queue:
        for child in graph.get(queue.popleft(), {}):
            if child not in seen:
                seen.add(child)
                queue.append(child)
    return seen


def strongly_connected(graph: Graph) -> list[list[str]]:
    """The groups of two or more modules that import each other, directly or not (each
    module's reachable set: a few hundred modules need nothing cleverer)."""
    reach = {node: _reachable(graph, node) for node in graph}
    groups = {
        tuple(sorted(m for m in reach if m in found and node in reach[m]))
        for node, found in reach.items()
        if node in found
    }
    return sorted(list(group) for group in groups)


def shortest_cycle(graph: Graph, group: Iterable[str], start: str | None = None) -> list[str]:
    """A shortest cycle through ``start`` (default: the first module of ``group``, a group of
    modules that import each other), as ``[start, b, …, start]``."""
    members = set(group)
    start = min(members) if start is None else start
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph.get(node, {})):
            if child == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(came_from[chain[-1]])
                return [*reversed(chain), start]
            if child in members and child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")


def _hops(graph: Graph, cycle: list[str]) -> str:
    """``a:12 -> b:3 -> a``: each module with where it imports the next."""
    return " -> ".join([*(f"{a}:{graph[a][b]}" for a, b in pairwise(cycle)), cycle[-1]])


def describe_cycles(graph: Graph) -> list[str]:
    """One line per group of modules that import each other: a shortest cycle, each edge
    with its line (``a:12 -> b:3 -> a``), and the group's size."""
    return [
        f"{_hops(graph, shortest_cycle(graph, group))}   ({len(group)} modules in the loop)"
        for group in strongly_connected(graph)
    ]


def within(module: str, prefixes: Iterable[str]) -> bool:
    """Whether ``module`` is one of ``prefixes`` or inside one of them."""
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(
    imports: Iterable[Import], *, importers: Iterable[str], forbidden: Iterable[str]
) -> list[str]:
    """``importer:line -> target`` for each import by a module in ``importers`` of a module
    in ``forbidden`` (both prefixes: a package and everything in it)."""
    importers, forbidden = tuple(importers), tuple(forbidden)
    return sorted(
        f"{i.importer}:{i.line} -> {i.target}"
        for i in imports
        if within(i.importer, importers) and within(i.target, forbidden)
    )


def package_of(module: str) -> str:
    """The package a module belongs to for the coarse view: ``fmlkit.X``, or
    ``fmlkit.data.X`` under fmlkit/data/ (a top-level module is its own package)."""
    parts = module.split(".")
    return ".".join(parts[: 3 if parts[1:2] == ["data"] else 2])


def string_references(package_dir: Path = FMLKIT) -> list[Import]:
    """Modules named in string constants (``"fmlkit.cli.data:synth"`` for
    `importlib.import_module`): imports the statements above do not show. The lazy table of
    ``fmlkit/__init__.py`` (the public API, which names every stage by design) is left out."""
    names = module_names(package_dir)
    found = []
    for module, path in names.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                target = node.value.partition(":")[0]
                if target in names and module != "fmlkit" and target not in (module, "fmlkit"):
                    found.append(Import(module, target, node.lineno, "function"))
    return found


def main() -> None:
    """Print the cycles among module-level imports; then, counting the imports inside
    functions too, each loop and a shortest cycle through each of its modules; then the same
    between packages, with the modules named in strings."""
    imports = all_imports()
    cycles = describe_cycles(import_graph(imports, MODULE_LEVEL))
    print(f"module level: {len(cycles)} cycle(s)", *(f"  {line}" for line in cycles), sep="\n")
    graph = import_graph(imports, AT_RUN_TIME)
    named = string_references()
    packages: dict[str, dict[str, object]] = {}
    for i in [*imports, *named]:
        a, b = package_of(i.importer), package_of(i.target)
        if a != b and i.when in AT_RUN_TIME:
            packages.setdefault(a, {}).setdefault(b, f"({i.importer}:{i.line})")
    for title, g in (("modules", graph), ("packages, with modules named in strings", packages)):
        groups = strongly_connected(g)
        print(f"all imports (in functions too), {title}: {len(groups)} loop(s)")
        for group in groups:
            print(f"  loop of {len(group)}: {', '.join(group)}")
            for module in group:
                print(f"    {_hops(g, shortest_cycle(g, group, module))}")
    print("modules named in strings:")
    for i in named:
        print(f"  {i.importer}:{i.line} -> {i.target}")


if __name__ == "__main__":
    main()
