from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from fmlkit import columns as C
from fmlkit.errors import SchemaError


def test_validate_columns_accepts_complete_table() -> None:
    df = pd.DataFrame(columns=list(C.DATASET_INFO_COLUMNS))
    C.validate_columns(df, C.DATASET_INFO_COLUMNS)


def test_validate_columns_names_missing_and_found() -> None:
    df = pd.DataFrame({C.FILE_NAME: ["a.jpg"], "lbl": ["x"]})
    with pytest.raises(SchemaError) as err:
        C.validate_columns(df, [C.FILE_NAME, C.LABEL], what="info.csv")
    message = str(err.value)
    assert "info.csv is missing column(s) label" in message
    assert "found: file_name, lbl" in message


def test_column_names_are_unique() -> None:
    assert len(set(C.DATASET_INFO_COLUMNS)) == len(C.DATASET_INFO_COLUMNS)
    assert C.TRUTH_COLUMNS == ("file_name", "label", "kind", "source")


# --- every column name lives in fmlkit/columns.py ---

PACKAGE = Path(C.__file__).parent


def _string_constants(tree: ast.Module) -> Iterator[tuple[str, str]]:
    """(name, text) for each module-level assignment of a string literal to a name: ``A = "a"``,
    ``A: Final = "a"``, ``A, B = "a", "b"``, also under a module-level ``if``/``try``/``with``;
    and each string literal listed in a module-level ``*COLUMNS`` tuple or list. Function and
    class bodies are not module level."""
    statements = list(tree.body)
    while statements:
        node = statements.pop(0)
        if isinstance(node, ast.If | ast.With):
            statements += node.body + getattr(node, "orelse", [])
        elif isinstance(node, ast.Try):
            statements += node.body + node.orelse + node.finalbody
            statements += [s for handler in node.handlers for s in handler.body]
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                yield from _assigned(target, node.value)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            yield from _assigned(node.target, node.value)


def _assigned(target: ast.expr, value: ast.expr) -> Iterator[tuple[str, str]]:
    if isinstance(target, ast.Name):
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            yield target.id, value.value
        elif target.id.endswith("COLUMNS") and isinstance(value, ast.Tuple | ast.List):
            for item in value.elts:
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    yield target.id, item.value
    elif (
        isinstance(target, ast.Tuple | ast.List)
        and isinstance(value, ast.Tuple | ast.List)
        and len(target.elts) == len(value.elts)
    ):
        for name, item in zip(target.elts, value.elts, strict=True):
            yield from _assigned(name, item)


def _column_constants() -> list[tuple[str, str]]:
    """(constant, column name) for each string constant of fmlkit/columns.py (all of them are
    column names)."""
    return list(_string_constants(ast.parse((PACKAGE / "columns.py").read_text("utf-8"))))


def _words(identifier: str) -> set[str]:
    return {word for word in identifier.lower().split("_") if word}


def _duplicate(name: str, text: str, columns: list[tuple[str, str]]) -> str | None:
    """The fmlkit/columns.py constant that a module-level ``name = text`` defines again, or None.

    A duplicate holds a column name and is named as a column: after it (a word of the column
    or of its constant: ``LABEL_ID = "label"``, ``IMAGE = "image"``) or as columns
    (``*COLUMN``, ``*COLUMNS``). A constant that only shares the text, under a name that says
    something else, is an option value rather than a column (``DEFAULT_BY = "image"``, the
    default split mode) and is let through.
    """
    constants = [constant for constant, column in columns if column == text]
    if not constants:
        return None
    named_as = _words(text).union(*(_words(constant) for constant in constants))
    words = _words(name)
    if words & (named_as | {"column", "columns"}):
        return constants[0]
    return None


def test_no_module_but_columns_defines_a_column_name() -> None:
    """A column name is written once, in fmlkit/columns.py, and imported from there: a second
    definition elsewhere could drift from it (a renamed column read under its old name)."""
    columns = _column_constants()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "columns.py":
            continue
        for name, text in _string_constants(ast.parse(path.read_text("utf-8"), str(path))):
            if constant := _duplicate(name, text, columns):
                where = path.relative_to(PACKAGE.parent)
                found.append(f"{where}: {name} = {text!r}; import fmlkit.columns.{constant}")
    assert not found, "column names defined outside fmlkit/columns.py:\n" + "\n".join(found)


def test_the_column_check_sees_each_way_of_defining_a_constant() -> None:
    source = """
LABEL_ID = "label"
IMAGE, (KEY, OTHER) = "image", ("key", "not a column")
REASON: Final = "reason"
if TYPE_CHECKING:
    EMBEDDING = "embedding"
try:
    DISTANCE = "distance"
except ImportError:
    pass
TRUTH_COLUMNS = ("kind", "not a column", FILE_NAME)
_CACHE_COLUMN = "bytes"
DEFAULT_BY = "image"  # an option value that equals a column name, not a column
SCOPES = ("label", "global")  # likewise
def f():
    LOCAL = "label"
class K:
    ATTRIBUTE = "label"
"""
    columns = _column_constants()
    found = [
        (name, text, _duplicate(name, text, columns))
        for name, text in _string_constants(ast.parse(source))
        if _duplicate(name, text, columns)
    ]
    assert found == [
        ("LABEL_ID", "label", "LABEL"),
        ("IMAGE", "image", "IMAGE"),
        ("KEY", "key", "KEY"),
        ("REASON", "reason", "REASON"),
        ("TRUTH_COLUMNS", "kind", "KIND"),
        ("_CACHE_COLUMN", "bytes", "CACHE_COLUMN"),
        ("EMBEDDING", "embedding", "EMBEDDING"),
        ("DISTANCE", "distance", "DISTANCE"),
    ]


def test_one_column_name_two_meanings_only_for_label() -> None:
    """dataset_info's ``label`` (a class name) and a Parquet dataset's ``label`` (a class id)
    share their string, as formats on disk, but never a constant."""
    texts = [text for _, text in _column_constants()]
    assert {t for t in texts if texts.count(t) > 1} == {"label"}
    assert C.LABEL == C.CLASS_ID == "label"


def test_column_names_on_disk_are_unchanged() -> None:
    # renaming a constant is free; changing its text breaks every file written before
    assert (C.IMAGE, C.CLASS_ID, C.LABEL_NAME, C.KEY) == ("image", "label", "label_name", "key")
    assert (C.REASON, C.DUPLICATE_OF, C.DISTANCE) == ("reason", "duplicate_of", "distance")
    assert (C.EMBEDDING, C.CACHE_COLUMN) == ("embedding", "bytes")
    assert C.LFW_COLUMNS == (
        "is_same", "first_label", "first_number", "second_label", "second_number", "fold"
    )  # fmt: skip
