"""Space-separated columns: the fast C readers and the line-by-line scan agree, and a bad
line is named by file and line (the IJB files' cases are in test_ijb.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmlkit.data.formats import spaced_text
from fmlkit.data.formats.spaced_text import line_of_row, read_columns
from fmlkit.errors import InputError


@pytest.mark.parametrize("kinds", [("int", "int", "label"), ("name", "int", "label")])
def test_read_columns_fast_and_scanned_paths_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kinds: tuple[str, ...]
) -> None:
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 1000, size=(300, 2))
    labels = rng.integers(0, 2, 300)
    text = "".join(f"{a} {b} {c}\n" for (a, b), c in zip(rows, labels, strict=True))
    (tmp_path / "file.txt").write_text(text)
    fast = read_columns(tmp_path / "file.txt", kinds, "a b label")
    monkeypatch.setattr(spaced_text, "_fast_columns", lambda path, kinds: None)
    scanned = read_columns(tmp_path / "file.txt", kinds, "a b label")
    for one, other in zip(fast, scanned, strict=True):
        assert one.dtype == other.dtype and np.array_equal(one, other)
    assert np.array_equal(fast[1], rows[:, 1]) and np.array_equal(fast[2], labels)
    assert fast[0].tolist() == (rows[:, 0].astype(str) if "name" in kinds else rows[:, 0]).tolist()


def test_read_columns_refuses_non_utf8(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"a 1 1\n\xff\xfe 2 2\n")
    with pytest.raises(InputError, match=r"bad.txt:2: not UTF-8 text"):
        read_columns(tmp_path / "bad.txt", ("name", "int", "int"), "image_name t m")


def test_read_columns_empty_file_gives_empty_columns(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n")
    columns = read_columns(tmp_path / "empty.txt", ("name", "int", "float"), "n i f")
    assert [c.size for c in columns] == [0, 0, 0]
    assert [c.dtype for c in columns] == [np.dtype(object), np.int64, np.float64]


def test_line_of_row_skips_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "rows.txt").write_text("a 1\n\n  \nb 2\r\nc 3\n")
    assert line_of_row(tmp_path / "rows.txt", 0) == (1, "a 1")
    assert line_of_row(tmp_path / "rows.txt", 1) == (4, "b 2")
    assert line_of_row(tmp_path / "rows.txt", 2) == (5, "c 3")
