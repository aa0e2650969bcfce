from __future__ import annotations

import csv
import itertools
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fmlkit.columns import (
    ERROR,
    FILE_NAME,
    FIRST,
    FOLD,
    ISSAME,
    LABEL,
    LFW_COLUMNS,
    SECOND,
    SPLIT,
)
from fmlkit.data.formats.pair_lists import PAIR_FOLDS, read_csv_pairs, read_lfw_pairs
from fmlkit.data.formats.table import read_table, write_table
from fmlkit.data.split.folds import split_dataset
from fmlkit.data.split.pairs import PairsOptions, make_pairs
from fmlkit.errors import InputError, OptionError, SchemaError


@pytest.fixture(scope="module")
def classes_table(synth_filtered: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """synth_filtered with a split column: 5 of the 20 labels (40 rows) are "test"."""
    out = tmp_path_factory.mktemp("pairs_classes") / "split.csv"
    split_dataset(synth_filtered, out, mode="classes", test_fraction=0.25, seed=0)
    return out


@pytest.fixture(scope="module")
def label_folds_table(synth_filtered: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """synth_filtered with 4 identity-disjoint folds of 5 labels each."""
    out = tmp_path_factory.mktemp("pairs_folds") / "folds.parquet"
    split_dataset(synth_filtered, out, mode="folds", k=4, by="label", seed=0)
    return out


@pytest.fixture(scope="module")
def scan_table(synth_scan: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """synth_scan (rows with an error included) split into classes, with the error rows put
    in "test" too, so only their error keeps them out of the pairs."""
    out = tmp_path_factory.mktemp("pairs_scan") / "split.csv"
    split_dataset(synth_scan, out, mode="classes", test_fraction=0.5, seed=0)
    df = read_table(out)
    broken = df[ERROR] != ""
    assert broken.any()
    df.loc[broken, SPLIT] = "test"
    write_table(df, out)
    return out


def _selected(table: Path, column: str, value: object) -> pd.DataFrame:
    df = read_table(table)
    keep = (df[column] == value).fillna(False).to_numpy(dtype=bool)
    if ERROR in df:
        keep = keep & (df[ERROR] == "").to_numpy(dtype=bool)
    return df[keep]


def _expected_layout(positives: int, negatives: int) -> list[int]:
    out: list[int] = []
    for f in range(PAIR_FOLDS):
        out += [1] * (positives * (f + 1) // PAIR_FOLDS - positives * f // PAIR_FOLDS)
        out += [0] * (negatives * (f + 1) // PAIR_FOLDS - negatives * f // PAIR_FOLDS)
    return out


def _check_csv_pairs(
    pairs: pd.DataFrame, rows: pd.DataFrame, positives: int, negatives: int
) -> None:
    """Valid pairs among ``rows`` (file_name, label), laid out in 10 blocks."""
    label = dict(zip(rows[FILE_NAME], rows[LABEL], strict=True))
    assert set(pairs[FIRST]) | set(pairs[SECOND]) <= set(label)
    assert (pairs[FIRST] != pairs[SECOND]).all()
    same = [label[a] == label[b] for a, b in zip(pairs[FIRST], pairs[SECOND], strict=True)]
    assert pairs[ISSAME].tolist() == [int(s) for s in same]
    unordered = {frozenset(p) for p in zip(pairs[FIRST], pairs[SECOND], strict=True)}
    assert len(unordered) == len(pairs)
    assert pairs[ISSAME].tolist() == _expected_layout(positives, negatives)


def _per_label(pairs: pd.DataFrame, rows: pd.DataFrame, same: int) -> dict[str, int]:
    """Pairs of one kind each label takes part in."""
    label = dict(zip(rows[FILE_NAME], rows[LABEL], strict=True))
    kind = pairs[pairs[ISSAME] == same]
    count: dict[str, int] = {}
    for a, b in zip(kind[FIRST], kind[SECOND], strict=True):
        for lab in {label[a], label[b]}:
            count[lab] = count.get(lab, 0) + 1
    return count


def _lfw_files(table: Path, records: pd.DataFrame) -> pd.DataFrame:
    """Map LFW (label, number) back to file names: the number-th file of the label in the
    table, in file_name order ("positions" numbering)."""
    df = read_table(table)
    by_label = {lab: sorted(g[FILE_NAME]) for lab, g in df.groupby(LABEL)}
    return pd.DataFrame(
        {
            ISSAME: records[ISSAME].to_numpy(),
            FIRST: [
                by_label[a][n - 1]
                for a, n in zip(records["first_label"], records["first_number"], strict=True)
            ],
            SECOND: [
                by_label[b][n - 1]
                for b, n in zip(records["second_label"], records["second_number"], strict=True)
            ],
        }
    )


# --- CSV ---


def test_make_pairs_csv_from_a_class_split(classes_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.csv"
    report = make_pairs(classes_table, out, positives=60, negatives=80, split="test", seed=3)
    rows = _selected(classes_table, SPLIT, "test")
    assert (report.rows, report.labels, report.positives, report.negatives) == (40, 5, 60, 80)
    assert report.selection == "split test" and report.numbering == ""
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 140
    assert all(re.fullmatch(r"[01],[^,]+,[^,]+", line) for line in lines)  # no header
    pairs = read_csv_pairs(out)
    assert list(pairs.columns) == [ISSAME, FIRST, SECOND]
    _check_csv_pairs(pairs, rows, 60, 80)
    # the report's busiest label, of each kind
    assert report.max_label_positives == max(_per_label(pairs, rows, 1).values())
    assert report.max_label_negatives == max(_per_label(pairs, rows, 0).values())
    assert "Drew 60 positive and 80 negative pairs from split test" in report.summary()


def test_make_pairs_csv_from_a_label_fold(label_folds_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.csv"
    report = make_pairs(label_folds_table, out, positives=40, negatives=40, fold=2, seed=0)
    rows = _selected(label_folds_table, FOLD, 2)
    assert (report.rows, report.labels, report.selection) == (40, 5, "fold 2")
    _check_csv_pairs(read_csv_pairs(out), rows, 40, 40)


def test_make_pairs_all_pairs_of_a_fold(label_folds_table: Path, tmp_path: Path) -> None:
    rows = _selected(label_folds_table, FOLD, 1)
    label = dict(zip(rows[FILE_NAME], rows[LABEL], strict=True))
    everything = {frozenset(p) for p in itertools.combinations(label, 2)}
    positives = sum(label[a] == label[b] for a, b in map(tuple, everything))
    out = tmp_path / "pairs.csv"
    make_pairs(
        label_folds_table,
        out,
        positives=positives,
        negatives=len(everything) - positives,
        fold=1,
        seed=5,
    )
    pairs = read_csv_pairs(out)
    assert {frozenset(p) for p in zip(pairs[FIRST], pairs[SECOND], strict=True)} == everything
    with pytest.raises(InputError, match=rf"at most {positives:,} same-label pairs"):
        make_pairs(label_folds_table, out, positives=positives + 1, negatives=0, fold=1)


def test_make_pairs_is_deterministic(classes_table: Path, tmp_path: Path) -> None:
    def draw(name: str, seed: int, fmt: str = "csv") -> bytes:
        out = tmp_path / name
        make_pairs(classes_table, out, positives=50, negatives=50, split="test", seed=seed, fmt=fmt)
        return out.read_bytes()

    assert draw("a.csv", 7) == draw("b.csv", 7)
    assert draw("c.csv", 8) != draw("a.csv", 7)
    assert draw("a.txt", 7, "lfw") == draw("b.txt", 7, "lfw")
    assert draw("c.txt", 8, "lfw") != draw("a.txt", 7, "lfw")


def test_make_pairs_never_uses_rows_with_an_error(scan_table: Path, tmp_path: Path) -> None:
    df = read_table(scan_table)
    broken = set(df.loc[df[ERROR] != "", FILE_NAME])
    rows = _selected(scan_table, SPLIT, "test")
    assert broken and not broken & set(rows[FILE_NAME])
    label = dict(zip(rows[FILE_NAME], rows[LABEL], strict=True))
    everything = {frozenset(p) for p in itertools.combinations(label, 2)}
    positives = sum(label[a] == label[b] for a, b in map(tuple, everything))
    out = tmp_path / "pairs.csv"
    report = make_pairs(
        scan_table, out, positives=positives, negatives=len(everything) - positives, split="test"
    )
    assert report.rows == len(rows)
    pairs = read_csv_pairs(out)
    assert not broken & (set(pairs[FIRST]) | set(pairs[SECOND]))
    # every usable pair was asked for, so nothing else could have been drawn
    assert {frozenset(p) for p in zip(pairs[FIRST], pairs[SECOND], strict=True)} == everything
    with pytest.raises(InputError, match=rf"at most {positives:,} same-label pairs"):
        make_pairs(scan_table, out, positives=positives + 1, negatives=0, split="test")


def test_make_pairs_error_rows_do_not_count(tmp_path: Path) -> None:
    names = ["a/1.jpg", "a/2.jpg", "a/3.jpg", "a/4.jpg", "b/1.jpg", "b/2.jpg", "b/3.jpg"]
    table = pd.DataFrame(
        {
            FILE_NAME: names,
            LABEL: [n[0] for n in names],
            ERROR: ["", "", "corrupt", "empty", "", "", "truncated"],
            SPLIT: "test",
        }
    )
    info = tmp_path / "split.csv"
    write_table(table, info)
    out = tmp_path / "pairs.csv"
    with pytest.raises(InputError, match=r"at most 2 same-label pairs"):
        make_pairs(info, out, positives=3, negatives=0, split="test")
    with pytest.raises(InputError, match=r"at most 4 cross-label pairs"):
        make_pairs(info, out, positives=0, negatives=5, split="test")
    make_pairs(info, out, positives=2, negatives=4, split="test")
    pairs = read_csv_pairs(out)
    assert sorted(map(sorted, zip(pairs[FIRST], pairs[SECOND], strict=True))) == sorted(
        sorted(p) for p in itertools.combinations(["a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg"], 2)
    )


def test_make_pairs_caps_each_label(label_folds_table: Path, tmp_path: Path) -> None:
    # fold 0: 5 labels of 8 rows; with a cap of 8, at most 40 positives and 5 × 8 / 2 negatives
    out = tmp_path / "pairs.csv"
    report = make_pairs(label_folds_table, out, positives=40, negatives=20, fold=0, max_per_label=8)
    rows = _selected(label_folds_table, FOLD, 0)
    pairs = read_csv_pairs(out)
    _check_csv_pairs(pairs, rows, 40, 20)
    assert set(_per_label(pairs, rows, 1).values()) == {8}
    assert set(_per_label(pairs, rows, 0).values()) == {8}
    assert (report.max_label_positives, report.max_label_negatives) == (8, 8)
    with pytest.raises(InputError, match=r"at most 40 same-label pairs with at most 8 per label"):
        make_pairs(label_folds_table, out, positives=41, negatives=0, fold=0, max_per_label=8)
    with pytest.raises(InputError, match=r"at most 20 cross-label pairs with at most 8 per label"):
        make_pairs(label_folds_table, out, positives=0, negatives=21, fold=0, max_per_label=8)


def test_csv_pairs_round_trip_awkward_file_names(tmp_path: Path) -> None:
    names = ['A/one, "two".jpg', "A/plain.jpg", "B/th,ree.jpg", 'B/"q".jpg', "B/it's.jpg"]
    table = pd.DataFrame({FILE_NAME: names, LABEL: [n[0] for n in names], ERROR: "", SPLIT: "test"})
    info = tmp_path / "split.csv"
    write_table(table, info)
    out = tmp_path / "pairs.csv"
    make_pairs(info, out, positives=4, negatives=6, split="test", seed=1)  # all ten pairs
    pairs = read_csv_pairs(out)
    assert set(pairs[FIRST]) | set(pairs[SECOND]) == set(names)
    drawn = {frozenset(p) for p in zip(pairs[FIRST], pairs[SECOND], strict=True)}
    assert drawn == {frozenset(p) for p in itertools.combinations(names, 2)}
    # the file is standard CSV: any reader sees three fields per line
    with out.open(encoding="utf-8", newline="") as f:
        assert all(len(r) == 3 for r in csv.reader(f))


# --- LFW ---


def test_make_pairs_lfw_layout(classes_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.txt"
    report = make_pairs(
        classes_table, out, positives=50, negatives=50, split="test", seed=2, fmt="lfw"
    )
    assert report.numbering == "positions"
    assert "numbers are 1-based positions" in report.summary()
    lines = out.read_text(encoding="utf-8").split("\n")
    assert lines[0] == "10\t5" and lines[-1] == ""
    body = lines[1:-1]
    assert len(body) == 100
    for at, line in enumerate(body):
        if at % 10 < 5:
            assert re.fullmatch(r"[^\t\s]+\t\d+\t\d+", line), line
        else:
            assert re.fullmatch(r"[^\t\s]+\t\d+\t[^\t\s]+\t\d+", line), line
    records = read_lfw_pairs(out)
    assert list(records.columns) == list(LFW_COLUMNS)
    assert records[FOLD].tolist() == [f for f in range(10) for _ in range(10)]
    assert records[ISSAME].tolist() == ([1] * 5 + [0] * 5) * 10
    pos = records[records[ISSAME] == 1]
    assert (pos["first_label"] == pos["second_label"]).all()
    assert (pos["first_number"] != pos["second_number"]).all()
    neg = records[records[ISSAME] == 0]
    assert (neg["first_label"] != neg["second_label"]).all()
    rows = _selected(classes_table, SPLIT, "test")
    files = _lfw_files(classes_table, records)
    _check_csv_pairs(files, rows, 50, 50)


def test_make_pairs_lfw_positions_follow_file_name_order(
    classes_table: Path, tmp_path: Path
) -> None:
    """Positions count a label's rows in file_name order, whatever the table's row order: the
    LFW list names the same files as the CSV list drawn with the same seed."""
    df = read_table(classes_table)
    shuffled = tmp_path / "shuffled.csv"
    write_table(df.sample(frac=1, random_state=0).reset_index(drop=True), shuffled)
    kwargs = {"positives": 30, "negatives": 30, "split": "test", "seed": 4}
    make_pairs(shuffled, tmp_path / "pairs.csv", **kwargs)
    make_pairs(shuffled, tmp_path / "pairs.txt", fmt="lfw", **kwargs)
    via_lfw = _lfw_files(shuffled, read_lfw_pairs(tmp_path / "pairs.txt"))
    via_csv = read_csv_pairs(tmp_path / "pairs.csv")
    pd.testing.assert_frame_equal(via_lfw, via_csv)


def _lfw_named_table(tmp_path: Path, labels: dict[str, list[int]]) -> Path:
    names = [f"{lab}/{lab}_{n:04d}.jpg" for lab, numbers in labels.items() for n in numbers]
    table = pd.DataFrame(
        {
            FILE_NAME: names,
            LABEL: [n.split("/")[0] for n in names],
            ERROR: "",
            SPLIT: "test",
        }
    )
    info = tmp_path / "lfw_split.csv"
    write_table(table, info)
    return info


def test_make_pairs_lfw_names_numbering(tmp_path: Path) -> None:
    labels = {
        "Ann_Lee": [2, 5, 9, 11],
        "Bo_Chan": [1, 3, 40],
        "Cy_Dee": [7, 8, 10],
        "Di-Eve": [12, 14],
    }
    info = _lfw_named_table(tmp_path, labels)
    out = tmp_path / "pairs.txt"
    report = make_pairs(info, out, positives=10, negatives=10, split="test", seed=0, fmt="lfw")
    assert report.numbering == "names"
    assert "positions" not in report.summary()
    records = read_lfw_pairs(out)
    assert len(records) == 20
    for side in ("first", "second"):
        for lab, n in zip(records[f"{side}_label"], records[f"{side}_number"], strict=True):
            assert n in labels[lab], (lab, n)
    # the same draw as the CSV list
    make_pairs(info, tmp_path / "pairs.csv", positives=10, negatives=10, split="test", seed=0)
    via_csv = read_csv_pairs(tmp_path / "pairs.csv")
    assert via_csv[FIRST].tolist() == [
        f"{a}/{a}_{n:04d}.jpg"
        for a, n in zip(records["first_label"], records["first_number"], strict=True)
    ]
    assert via_csv[SECOND].tolist() == [
        f"{b}/{b}_{n:04d}.jpg"
        for b, n in zip(records["second_label"], records["second_number"], strict=True)
    ]


def test_make_pairs_lfw_rejects_labels_with_whitespace(tmp_path: Path) -> None:
    names = [f"{lab}/{n}.jpg" for lab in ("Ann Lee", "Bo\tChan") for n in range(6)]
    table = pd.DataFrame(
        {FILE_NAME: names, LABEL: [n.split("/")[0] for n in names], ERROR: "", SPLIT: "test"}
    )
    info = tmp_path / "split.csv"
    write_table(table, info)
    out = tmp_path / "pairs.txt"
    with pytest.raises(InputError, match=r"('Ann Lee'|'Bo\\tChan').*whitespace.*--format csv"):
        make_pairs(info, out, positives=10, negatives=10, split="test", fmt="lfw")
    assert not out.exists()
    make_pairs(
        info, tmp_path / "pairs.csv", positives=10, negatives=10, split="test"
    )  # csv is fine


@pytest.mark.parametrize(("positives", "negatives"), [(20, 30), (30, 20), (15, 15), (0, 10)])
def test_make_pairs_lfw_needs_equal_counts_in_tens(
    classes_table: Path, tmp_path: Path, positives: int, negatives: int
) -> None:
    out = tmp_path / "pairs.txt"
    with pytest.raises(
        InputError, match=r"fmt='lfw' needs positives equal to negatives and a multiple of 10"
    ):
        make_pairs(
            classes_table,
            out,
            positives=positives,
            negatives=negatives,
            split="test",
            fmt="lfw",
        )
    assert not out.exists()


# --- selecting rows ---


def test_make_pairs_needs_a_fold_or_split_column(synth_filtered: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.csv"
    with pytest.raises(SchemaError, match=r"fold.*fmlkit split --mode folds"):
        make_pairs(synth_filtered, out, positives=10, negatives=10, fold=0)
    with pytest.raises(SchemaError, match=r"split.*fmlkit split --mode classes"):
        make_pairs(synth_filtered, out, positives=10, negatives=10, split="test")
    assert not out.exists()


def test_make_pairs_missing_fold_lists_the_values(label_folds_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.csv"
    with pytest.raises(InputError, match=r"fold 9 has 0 usable rows.*: 0, 1, 2, 3$"):
        make_pairs(label_folds_table, out, positives=10, negatives=10, fold=9)
    assert not out.exists()


def test_make_pairs_one_row_fold_lists_the_values(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            FILE_NAME: ["a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg"],
            LABEL: ["a", "a", "b", "b"],
            ERROR: ["", "", "", ""],
            FOLD: [0, 0, 0, 1],
        }
    )
    info = tmp_path / "folds.csv"
    write_table(table, info)
    with pytest.raises(InputError, match=r"fold 1 has 1 usable rows; pairs need two.*: 0, 1$"):
        make_pairs(info, tmp_path / "pairs.csv", positives=1, negatives=0, fold=1)


def test_make_pairs_split_of_error_rows_only(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            FILE_NAME: ["a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg"],
            LABEL: ["a", "a", "b", "b"],
            ERROR: ["", "", "corrupt", "empty"],
            SPLIT: ["train", "train", "test", "test"],
        }
    )
    info = tmp_path / "split.csv"
    write_table(table, info)
    with pytest.raises(InputError, match=r"split test has 0 usable rows"):
        make_pairs(info, tmp_path / "pairs.csv", positives=1, negatives=0, split="test")
    table[ERROR] = ["", "", "corrupt", ""]
    table[SPLIT] = ["train", "train", "", "test"]  # as split_dataset leaves error rows
    write_table(table, info)
    with pytest.raises(InputError, match=r"has 1 usable rows.*Values of split in .*: test, train$"):
        make_pairs(info, tmp_path / "pairs.csv", positives=1, negatives=0, split="test")


def test_make_pairs_needs_exactly_one_selection(classes_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.csv"
    with pytest.raises(InputError, match=r"exactly one of fold or split"):
        make_pairs(classes_table, out, positives=10, negatives=10)
    with pytest.raises(InputError, match=r"exactly one of fold or split"):
        make_pairs(classes_table, out, positives=10, negatives=10, fold=0, split="test")
    with pytest.raises(InputError, match=r"split must be one of train, test"):
        make_pairs(classes_table, out, positives=10, negatives=10, split="val")
    assert not out.exists()


def test_make_pairs_negatives_need_two_labels(label_folds_table: Path, tmp_path: Path) -> None:
    one_label = tmp_path / "one_label.csv"
    df = read_table(label_folds_table)
    df[FOLD] = (df[LABEL] != df[LABEL].iloc[0]).astype("Int64")  # fold 0: the first label
    write_table(df, one_label)
    out = tmp_path / "pairs.csv"
    with pytest.raises(InputError, match=r"negative pairs need two labels"):
        make_pairs(one_label, out, positives=5, negatives=1, fold=0)
    make_pairs(one_label, out, positives=28, negatives=0, fold=0)  # C(8, 2) positives alone
    pairs = read_csv_pairs(out)
    assert len(pairs) == 28 and set(pairs[ISSAME]) == {1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"positives": 0, "negatives": 0}, r"not both 0"),
        ({"positives": -1, "negatives": 5}, r"≥ 0"),
        ({"positives": 5, "negatives": 5, "seed": -1}, r"seed ≥ 0"),
        ({"positives": 5, "negatives": 5, "max_per_label": 0}, r"max_per_label ≥ 1"),
        ({"positives": 5, "negatives": 5, "fmt": "tsv"}, r"fmt must be csv or lfw"),
    ],
)
def test_make_pairs_rejects_bad_options(
    classes_table: Path, tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        make_pairs(classes_table, tmp_path / "pairs.csv", split="test", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "names", "message"),
    [
        ({}, ("fold", "split"), "select the rows with exactly one of fold or split"),
        ({"fold": 0, "split": "test"}, ("fold", "split"), "exactly one of fold or split"),
        ({"split": "val"}, ("split",), "split must be one of train, test, not 'val'"),
        ({"fold": 0, "positives": -1}, ("positives", "negatives"), "must be ≥ 0, not -1 and 10"),
        (
            {"fold": 0, "positives": 0, "negatives": 0},
            ("positives", "negatives"),
            "ask for some positives or negatives, not both 0",
        ),
        ({"fold": 0, "seed": -2}, ("seed",), "need seed ≥ 0, not -2"),
        ({"fold": 0, "max_per_label": 0}, ("max_per_label",), "need max_per_label ≥ 1, not 0"),
        ({"fold": 0, "fmt": "tsv"}, ("fmt",), "fmt must be csv or lfw, not 'tsv'"),
        (
            {"fold": 0, "fmt": "lfw", "negatives": 20},
            ("fmt", "positives", "negatives"),
            "fmt='lfw' needs positives equal to negatives and a multiple of 10 (got 10 and 20)",
        ),
        (
            {"fold": 0, "fmt": "lfw", "positives": 5, "negatives": 5},
            ("fmt", "positives", "negatives"),
            "a multiple of 10 (got 5 and 5)",
        ),
    ],
)
def test_pairs_options_refuse_each_bad_combination_naming_the_options(
    kwargs: dict[str, Any], names: tuple[str, ...], message: str
) -> None:
    with pytest.raises(OptionError) as err:
        PairsOptions(**{"positives": 10, "negatives": 10, **kwargs})
    assert message in str(err.value)
    assert err.value.options == names


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fold": 0},
        {"fold": -1, "positives": 0},  # fold -1 (always train) is a fold like any other
        {"split": "train", "negatives": 0, "seed": 3, "max_per_label": 1},
        {"split": "test", "fmt": "lfw", "positives": 20, "negatives": 20},
    ],
)
def test_pairs_options_accept_each_good_combination(kwargs: dict[str, Any]) -> None:
    options = PairsOptions(**{"positives": 10, "negatives": 10, **kwargs})
    assert options == PairsOptions(**{"positives": 10, "negatives": 10, **kwargs})
