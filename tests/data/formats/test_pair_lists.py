"""The pair-list formats (`fmlkit.data.formats.pair_lists`); drawing pairs is tested with
`make_pairs` in tests/data/split/test_pairs.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmlkit.columns import (
    FIRST,
    FIRST_LABEL,
    FIRST_NUMBER,
    FOLD,
    ISSAME,
    LFW_COLUMNS,
    SECOND,
    SECOND_LABEL,
    SECOND_NUMBER,
)
from fmlkit.data.formats.pair_lists import (
    format_csv_pairs,
    format_lfw_pairs,
    lfw_numbers,
    read_csv_pairs,
    read_lfw_pairs,
)
from fmlkit.errors import FormatError, InputError


def test_format_csv_pairs_round_trip(tmp_path: Path) -> None:
    first = np.array(["x/a,b.jpg", 'x/"c".jpg', "x/ lead.jpg"], dtype=object)
    second = np.array(["y/é ü.jpg", 'y/d"",e.jpg', "y/plain.jpg"], dtype=object)
    same = np.array([1, 0, 1])
    out = tmp_path / "pairs.csv"
    out.write_text(format_csv_pairs(same, first, second), encoding="utf-8")
    pairs = read_csv_pairs(out)
    assert pairs[ISSAME].tolist() == [1, 0, 1]
    assert pairs[FIRST].tolist() == first.tolist()
    assert pairs[SECOND].tolist() == second.tolist()


@pytest.mark.parametrize("text", ["2,a.jpg,b.jpg\n", "1,a.jpg\n", "1,a.jpg,b.jpg,c.jpg\n"])
def test_read_csv_pairs_rejects_bad_lines(tmp_path: Path, text: str) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("1,x.jpg,y.jpg\n" + text, encoding="utf-8")
    with pytest.raises(FormatError, match=r"line 2"):
        read_csv_pairs(path)


def test_lfw_numbers_names_and_positions() -> None:
    files = pd.Series(["B/B_0007.jpg", "A/A_0003.png", "A/A_0010.jpg", "B/B_0002.jpg"])
    labels = pd.Series(["B", "A", "A", "B"])
    numbers, how = lfw_numbers(files, labels)
    assert (how, numbers.tolist()) == ("names", [7, 3, 10, 2])
    # one file not named the LFW way: every number is a position in file_name order
    files = pd.Series(["B/B_0007.jpg", "A/A_0003.png", "A/other.jpg", "B/B_0002.jpg", "A/A_0.jpg"])
    labels = pd.Series(["B", "A", "A", "B", "A"])
    numbers, how = lfw_numbers(files, labels)
    assert (how, numbers.tolist()) == ("positions", [2, 2, 3, 1, 1])


@pytest.mark.parametrize(
    "files",
    [
        ["A/A_0001.jpg", "A/A_2.jpg"],  # a reader would look for A_0002.jpg
        ["A/A_0001.jpg", "A/A_0001.png"],  # two files, one number
        ["A/A_00001.jpg", "A/A_0002.jpg"],  # over-padded: not name_%04d
    ],
)
def test_lfw_numbers_falls_back_where_names_would_not_map_back(files: list[str]) -> None:
    numbers, how = lfw_numbers(pd.Series(files), pd.Series(["A"] * len(files)))
    assert (how, numbers.tolist()) == ("positions", [1, 2])


def test_lfw_numbers_label_must_match_the_folder() -> None:
    numbers, how = lfw_numbers(pd.Series(["x/A_0001.jpg", "x/A_0002.jpg"]), pd.Series(["A", "A"]))
    assert (how, numbers.tolist()) == ("positions", [1, 2])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10\n", r"first line"),
        ("x\t1\n", r"first line"),
        ("2\t1\nA\t1\t2\nA\t1\tB\t1\n", r"2 folds of 1 matched .* found 2"),
        ("1\t1\nA\t1\tB\t2\nA\t1\tB\t1\n", r"line 2: expected matched"),
        ("1\t1\nA\t1\t2\nA\t1\t2\n", r"line 3: expected mismatched"),
    ],
)
def test_read_lfw_pairs_rejects_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FormatError, match=message):
        read_lfw_pairs(path)


def _lfw_layout() -> pd.DataFrame:
    """10 folds of one matched then one mismatched pair, as `draw_pairs` lays them out."""
    rows = []
    for fold in range(10):
        rows.append((1, f"P{fold}", fold + 1, f"P{fold}", fold + 2, fold))
        rows.append((0, f"P{fold}", fold + 3, f"Q_{fold}", 1000 + fold, fold))
    return pd.DataFrame(rows, columns=list(LFW_COLUMNS))


def test_format_lfw_pairs_round_trip(tmp_path: Path) -> None:
    table = _lfw_layout()
    text = format_lfw_pairs(
        table[ISSAME].to_numpy(),
        table[FIRST_LABEL].to_numpy(),
        table[FIRST_NUMBER].to_numpy(),
        table[SECOND_LABEL].to_numpy(),
        table[SECOND_NUMBER].to_numpy(),
    )
    lines = text.split("\n")
    assert lines[:3] == ["10\t1", "P0\t1\t2", "P0\t3\tQ_0\t1000"] and lines[-1] == ""
    path = tmp_path / "pairs.txt"
    path.write_text(text, encoding="utf-8")
    pd.testing.assert_frame_equal(read_lfw_pairs(path), table)
    assert read_lfw_pairs(path)[FOLD].tolist() == [f for f in range(10) for _ in range(2)]


@pytest.mark.parametrize("label", ["", "Ann Lee", "Bo\tChan"])
def test_format_lfw_pairs_refuses_labels_a_tab_separated_line_cannot_carry(label: str) -> None:
    table = _lfw_layout()
    table.loc[1, SECOND_LABEL] = label
    with pytest.raises(InputError, match=r"empty or holds whitespace.*--format csv"):
        format_lfw_pairs(
            table[ISSAME].to_numpy(),
            table[FIRST_LABEL].to_numpy(),
            table[FIRST_NUMBER].to_numpy(),
            table[SECOND_LABEL].to_numpy(),
            table[SECOND_NUMBER].to_numpy(),
        )
