"""The import structure of fmlkit, read from the source with `ast` (nothing is imported).

- No cycle among module-level imports. An import under ``if TYPE_CHECKING:`` (never run) or
  inside a function (run when it is called, once the modules have loaded) does not count for
  this one. ``import a.b.c``
  and ``from a.b import c`` (``c`` a module) are edges to ``a.b.c``; Python runs the package
  ``a.b``'s ``__init__`` first, but that is not an edge here.
- The layering of ``fmlkit/data/`` and ``fmlkit/models/``, counting every import (module
  level, in functions and under ``TYPE_CHECKING``): ``formats`` is the ground floor; the verb
  packages import each other only in pipeline order; ``loading`` (the torch side) is for
  ``fmlkit.train`` and ``fmlkit.eval`` only; ``data`` and ``models`` depend on no later stage.

The checker is tests/import_graph.py; run it as a script to print what remains when the imports
inside functions count too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.import_graph import (
    AT_RUN_TIME,
    FMLKIT,
    MODULE_LEVEL,
    VERBS,
    Import,
    all_imports,
    describe_cycles,
    import_graph,
    module_names,
    string_references,
    violations,
    within,
)


@pytest.fixture(scope="module")
def fmlkit_imports() -> list[Import]:
    return all_imports()


# ---- the checker itself ----------------------------------------------------------------------


def _fake_package(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def test_checker_reports_a_planted_cycle(tmp_path: Path) -> None:
    package = _fake_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": "from . import c\n",
            "pkg/c.py": "import pkg.a\n",
            "pkg/d.py": "from pkg.a import something\n",
        },
    )
    graph = import_graph(all_imports(package), MODULE_LEVEL)
    assert describe_cycles(graph) == [
        "pkg.a:1 -> pkg.b:1 -> pkg.c:1 -> pkg.a   (3 modules in the loop)"
    ]


def test_checker_skips_type_checking_and_function_imports(tmp_path: Path) -> None:
    package = _fake_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "from pkg.sub.x import X\n",
            "pkg/sub/x.py": "X = 1\n",
            "pkg/sub/y.py": "from .. import c\nfrom ..sub import x\n",
            "pkg/a.py": (
                "from typing import TYPE_CHECKING\n"
                "import pkg.sub.x\n"
                "if TYPE_CHECKING:\n    from pkg import b\nelse:\n    import json\n"
                "def f():\n    from .b import g\n"
                "class C:\n    import pkg.c\n"
            ),
            "pkg/b.py": "from .a import f\ndef g(): pass\n",
            "pkg/c.py": "try:\n    from . import b\nexcept ImportError:\n    pass\n",
        },
    )
    imports = all_imports(package)
    module_level = import_graph(imports, MODULE_LEVEL)
    assert module_level == {
        "pkg.a": {"pkg.sub.x": 2, "pkg.c": 10},  # no edge to pkg.sub, nor to json
        "pkg.b": {"pkg.a": 1},
        "pkg.c": {"pkg.b": 2},
        "pkg.sub": {"pkg.sub.x": 1},
        "pkg.sub.y": {"pkg.c": 1, "pkg.sub.x": 2},
    }
    assert describe_cycles(module_level) == [
        "pkg.a:10 -> pkg.c:2 -> pkg.b:1 -> pkg.a   (3 modules in the loop)"
    ]
    assert import_graph(imports, AT_RUN_TIME)["pkg.a"] == {"pkg.sub.x": 2, "pkg.b": 8, "pkg.c": 10}
    assert [(i.line, i.when) for i in imports if i.importer == "pkg.a"] == [
        (2, "module"),
        (4, "typing"),
        (8, "function"),
        (10, "module"),
    ]


def test_violations_names_importer_line_and_target() -> None:
    imports = [
        Import("pkg.data.formats.table", "pkg.data.prepare.scan", 7, "function"),
        Import("pkg.data.formats.table", "pkg.data.formats.images", 3, "module"),
        Import("pkg.data.formatsx", "pkg.data.prepare", 1, "module"),  # not inside formats
    ]
    assert violations(imports, importers=["pkg.data.formats"], forbidden=["pkg.data.prepare"]) == [
        "pkg.data.formats.table:7 -> pkg.data.prepare.scan"
    ]


# ---- fmlkit ----------------------------------------------------------------------------------


def test_every_fmlkit_module_parses_and_is_seen(fmlkit_imports: list[Import]) -> None:
    names = module_names(FMLKIT)
    assert {"fmlkit", "fmlkit.cli", "fmlkit.data.formats.recordio", "fmlkit.train.loop"} <= set(
        names
    )
    assert any(
        i.importer == "fmlkit.main" and i.target == "fmlkit.cli.data" for i in fmlkit_imports
    )


def test_no_cycle_among_module_level_imports(fmlkit_imports: list[Import]) -> None:
    cycles = describe_cycles(import_graph(fmlkit_imports, MODULE_LEVEL))
    assert not cycles, "module-level import cycles:\n" + "\n".join(cycles)


def test_formats_imports_no_verb_package(fmlkit_imports: list[Import]) -> None:
    found = violations(
        fmlkit_imports,
        importers=["fmlkit.data.formats"],
        forbidden=[f"fmlkit.data.{verb}" for verb in VERBS],
    )
    assert not found, "fmlkit.data.formats must stand on its own:\n" + "\n".join(found)


def test_loading_is_imported_only_by_train_and_eval(fmlkit_imports: list[Import]) -> None:
    found = [
        f"{i.importer}:{i.line} -> {i.target}"
        for i in fmlkit_imports
        if within(i.target, ["fmlkit.data.loading"])
        and not within(i.importer, ["fmlkit.train", "fmlkit.eval", "fmlkit.data.loading"])
    ]
    assert not found, "fmlkit.data.loading is for fmlkit.train and fmlkit.eval:\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("fmlkit.data", ["fmlkit.models", "fmlkit.train", "fmlkit.eval", "fmlkit.cli",
                         "fmlkit.pipeline"]),
        ("fmlkit.models", ["fmlkit.train", "fmlkit.eval", "fmlkit.cli", "fmlkit.pipeline",
                           "fmlkit.data"]),
        # the front-ends: the stage commands, then the pipeline that runs them, then the
        # `fmlkit` group that mounts both
        ("fmlkit.cli", ["fmlkit.pipeline", "fmlkit.main"]),
        ("fmlkit.pipeline", ["fmlkit.main"]),
        ("fmlkit.train", ["fmlkit.cli", "fmlkit.pipeline", "fmlkit.main"]),
        ("fmlkit.eval", ["fmlkit.cli", "fmlkit.pipeline", "fmlkit.main"]),
        # eval's scoring floor, which training's validation uses, stands below train; the
        # stages `embed` and `evaluate`, which load checkpoints through train.export, above it
        ("fmlkit.eval.embedder", ["fmlkit.train"]),
        ("fmlkit.eval.verification", ["fmlkit.train"]),
        ("fmlkit.eval.pair_sources", ["fmlkit.train"]),
        ("fmlkit.eval.retrieval", ["fmlkit.train"]),
        ("fmlkit.eval.report", ["fmlkit.train"]),
        ("fmlkit.train", ["fmlkit.eval.embed", "fmlkit.eval.evaluate"]),
    ],
)  # fmt: skip
def test_package_imports_no_later_layer(
    fmlkit_imports: list[Import], package: str, forbidden: list[str]
) -> None:
    found = violations(fmlkit_imports, importers=[package], forbidden=forbidden)
    assert not found, f"{package} imports a later layer:\n" + "\n".join(found)


def test_verb_packages_import_only_earlier_verbs(fmlkit_imports: list[Import]) -> None:
    found = []
    for at, verb in enumerate(VERBS):
        later = [f"fmlkit.data.{v}" for v in VERBS[at + 1 :]]
        found += violations(fmlkit_imports, importers=[f"fmlkit.data.{verb}"], forbidden=later)
    assert not found, f"verb packages import only earlier ones ({' < '.join(VERBS)}):\n" + (
        "\n".join(found)
    )


def test_no_cycle_among_modules_counting_function_imports_and_strings(
    fmlkit_imports: list[Import],
) -> None:
    """Stronger than the module-level rule: no module reaches itself back even through the
    imports that run inside functions, or through a module named in a string for
    `importlib` (the pipeline's stage commands)."""
    graph = import_graph([*fmlkit_imports, *string_references()], AT_RUN_TIME)
    cycles = describe_cycles(graph)
    assert not cycles, "import cycles at run time:\n" + "\n".join(cycles)


# ---- scikit-learn: a dev extra only (tests and benchmarks compare with it) ------------------


def test_no_fmlkit_module_imports_sklearn() -> None:
    """Not at module level, nor in a function, nor under TYPE_CHECKING (pyproject.toml lists
    scikit-learn in the dev extras only)."""
    import ast

    found = []
    for module, path in module_names(FMLKIT).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{module}:{node.lineno}" for n in names if n.split(".")[0] == "sklearn"]
    assert not found, f"modules importing scikit-learn: {found}"


def test_every_fmlkit_module_imports_without_sklearn() -> None:
    """Every module imports (and `fmlkit --help` runs) with scikit-learn made unimportable."""
    import subprocess
    import sys

    code = (
        "import importlib, sys; sys.modules['sklearn'] = None\n"
        f"for name in {sorted(module_names(FMLKIT))!r}:\n"
        "    if not name.endswith('__main__'): importlib.import_module(name)\n"
        "from click.testing import CliRunner; from fmlkit.main import main\n"
        "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
        "assert 'sklearn' not in {m.split('.')[0] for m in sys.modules if sys.modules[m]}\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
