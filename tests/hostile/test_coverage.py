"""The matrix covers every command: each `fmlkit` command has a hostile-input module that runs
it (docs/reliability.md), and a new command without one fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from fmlkit.main import main

HERE = Path(__file__).parent

# command → the module of its family's hostile cases (test_disk_full.py covers the writers)
FAMILIES = {
    "synth": "test_synth.py",
    "align": "test_align.py",
    "prepare": "test_prepare.py",
    "filter": "test_filter.py",
    "clean": "test_clean.py",
    "split": "test_split.py",
    "pairs": "test_split.py",
    "convert": "test_convert.py",
    "inspect": "test_convert.py",
    "train": "test_train.py",
    "export": "test_models.py",
    "embed": "test_models.py",
    "evaluate": "test_evaluate.py",
    "run": "test_pipeline.py",
    "status": "test_pipeline.py",
    "artifacts": "test_pipeline.py",
    "runs": "test_pipeline.py",
}
# commands that write an output: each has a case in test_disk_full.py
WRITERS = {"synth", "align", "prepare", "filter", "split", "pairs", "convert", "train", "export",
           "embed", "evaluate", "run", "clean"}  # fmt: skip


def _strings(module: str) -> set[str]:
    tree = ast.parse((HERE / module).read_text(encoding="utf-8"))
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def test_every_command_has_a_hostile_module_that_runs_it() -> None:
    assert set(FAMILIES) == set(main.commands), "a command without hostile cases, or a stale one"
    missing = [f"{c} in {m}" for c, m in FAMILIES.items() if c not in _strings(m)]
    assert not missing, f"modules that never run their command: {missing}"


def test_every_writing_command_meets_a_full_disk() -> None:
    assert set(main.commands) >= WRITERS
    assert not WRITERS - _strings("test_disk_full.py")


def _cited_tests(text: str) -> list[tuple[str, str | None]]:
    """(test file, test name or None) for each test docs/reliability.md cites: ``h/`` stands
    for tests/hostile/, and a bare ``::name`` belongs to the file cited before it."""
    cited: list[tuple[str, str | None]] = []
    current = ""
    for match in re.finditer(r"`((?:h|tests)/[\w/]+\.py)?(::\w+)?", text):
        path, name = match.group(1), match.group(2)
        if path:
            current = path.replace("h/", "tests/hostile/", 1) if path.startswith("h/") else path
        if current and (path or name):
            cited.append((current, name[2:] if name else None))
    return cited


def test_every_test_docs_reliability_cites_exists() -> None:
    root = HERE.parent.parent
    cited = _cited_tests((root / "docs" / "reliability.md").read_text(encoding="utf-8"))
    assert len(cited) > 50
    missing = []
    for path, name in cited:
        module = root / path
        if not module.is_file():
            missing.append(path)
        elif name is not None:
            tree = ast.parse(module.read_text(encoding="utf-8"))
            names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
            if name not in names:
                missing.append(f"{path}::{name}")
    assert not missing, f"docs/reliability.md cites tests that do not exist: {missing}"
