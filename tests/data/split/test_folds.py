from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.model_selection import StratifiedKFold

from fmlkit.columns import ERROR, FILE_NAME, FOLD, LABEL, SPLIT
from fmlkit.data.formats.table import read_table, write_table
from fmlkit.data.split.folds import (
    SplitOptions,
    class_range_split,
    holdout_split,
    label_folds,
    split_dataset,
    stratified_folds,
)
from fmlkit.errors import FmlkitError, InputError, OptionError, SchemaError

# --- strategies and helpers -------------------------------------------------------------------

raw_labels = st.lists(st.integers(0, 15), min_size=1, max_size=300)
folds_k = st.integers(2, 8)
seeds = st.integers(0, 2**32)


def _codes(raw: Sequence[int]) -> np.ndarray:
    """Remap arbitrary small ints to dense codes 0..L-1, keeping the row order."""
    return np.unique(np.asarray(raw, dtype=np.int64), return_inverse=True)[1].astype(np.int64)


@st.composite
def label_sizes(draw: st.DrawFn, min_labels: int = 1) -> np.ndarray:
    """Codes 0..L-1 (each used) in a shuffled row order, from drawn per-label sizes."""
    sizes = draw(st.lists(st.integers(1, 30), min_size=min_labels, max_size=30))
    codes = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    return np.random.default_rng(draw(seeds)).permutation(codes)


def _count_matrix(codes: np.ndarray, folds: np.ndarray, k: int) -> np.ndarray:
    """rows per (label, fold) over rows with fold >= 0: shape (L, k)."""
    keep = folds >= 0
    matrix = np.zeros((int(codes.max()) + 1, k), dtype=np.int64)
    np.add.at(matrix, (codes[keep], folds[keep]), 1)
    return matrix


def _small_table(path: Path, labels: Sequence[str], errors: Sequence[str] | None = None) -> Path:
    """A minimal table with file_name and label (and error when given), sorted by file_name."""
    data: dict[str, list[str]] = {
        FILE_NAME: [f"{label}/{i:04d}.jpg" for i, label in enumerate(labels)],
        LABEL: list(labels),
    }
    if errors is not None:
        data[ERROR] = list(errors)
    write_table(pd.DataFrame(data), path)
    return path


def _groups_of(table: pd.DataFrame, column: str) -> dict[str, tuple[int, int]]:
    """(rows, labels) per value of ``column`` over assigned rows, computed independently."""
    assigned = table[table[column].notna() & (table[column].astype(str) != "")]
    out: dict[str, tuple[int, int]] = {}
    for value in sorted(set(assigned[column].tolist())):
        part = assigned[assigned[column] == value]
        out[str(value)] = (len(part), part[LABEL].nunique())
    return out


# --- stratified_folds ---------------------------------------------------------------------------


@given(raw_labels, folds_k, seeds)
def test_stratified_folds_balances_each_label_and_the_totals(
    raw: list[int], k: int, seed: int
) -> None:
    codes = _codes(raw)
    folds = stratified_folds(codes, k, seed)
    assert folds.shape == codes.shape
    assert set(folds.tolist()) <= {-1, *range(k)}
    counts = np.bincount(codes)
    matrix = _count_matrix(codes, folds, k)
    for label, n in enumerate(counts.tolist()):
        if n >= k:
            row = matrix[label]
            assert row.sum() == n
            assert row.max() - row.min() <= 1, (label, row)
    totals = np.bincount(folds[folds >= 0], minlength=k)
    if totals.sum():
        assert totals.max() - totals.min() <= 1, totals


@given(raw_labels, folds_k, seeds)
def test_stratified_folds_gives_minus_one_exactly_to_labels_below_k(
    raw: list[int], k: int, seed: int
) -> None:
    codes = _codes(raw)
    folds = stratified_folds(codes, k, seed)
    small = np.bincount(codes)[codes] < k
    np.testing.assert_array_equal(folds == -1, small)


@given(raw_labels, folds_k, seeds)
def test_stratified_folds_allocates_like_sklearn(raw: list[int], k: int, seed: int) -> None:
    codes = _codes(raw)
    counts = np.bincount(codes)
    eligible = counts[codes] >= k
    if not eligible.any():
        return
    folds = stratified_folds(codes, k, seed)
    # eligible labels re-encoded 0..E-1 in sorted order
    sub = np.unique(codes[eligible], return_inverse=True)[1]
    ours = _count_matrix(sub, folds[eligible], k)
    # sklearn numbers classes by first appearance: feed it the codes sorted so that its order
    # is ours, and its fold allocation must then be exactly our per-label count matrix
    y = np.sort(sub)
    theirs = np.zeros_like(ours)
    for fold, (_, test) in enumerate(StratifiedKFold(n_splits=k).split(np.zeros(len(y)), y)):
        np.add.at(theirs, (y[test], fold), 1)
    np.testing.assert_array_equal(ours, theirs)
    # and in the weaker form: per-label sorted count vectors and sorted totals
    np.testing.assert_array_equal(np.sort(ours, axis=1), np.sort(theirs, axis=1))
    np.testing.assert_array_equal(np.sort(ours.sum(axis=0)), np.sort(theirs.sum(axis=0)))


@given(raw_labels, folds_k, seeds)
def test_stratified_folds_is_deterministic_and_seed_changes_only_which_rows(
    raw: list[int], k: int, seed: int
) -> None:
    codes = _codes(raw)
    first = stratified_folds(codes, k, seed)
    np.testing.assert_array_equal(first, stratified_folds(codes.copy(), k, seed))
    other = stratified_folds(codes, k, seed + 1)
    np.testing.assert_array_equal(_count_matrix(codes, first, k), _count_matrix(codes, other, k))


def test_stratified_folds_differ_between_seeds() -> None:
    codes = np.repeat(np.arange(4, dtype=np.int64), 25)
    runs = [stratified_folds(codes, 5, seed).tolist() for seed in range(4)]
    assert len({tuple(r) for r in runs}) == 4


# --- label_folds --------------------------------------------------------------------------------


@given(label_sizes(min_labels=8), folds_k, seeds)
def test_label_folds_are_identity_disjoint_non_empty_and_balanced(
    codes: np.ndarray, k: int, seed: int
) -> None:
    folds = label_folds(codes, k, seed)
    assert folds.shape == codes.shape
    assert set(folds.tolist()) == set(range(k))  # every fold 0..k-1 used, nothing else
    for label in np.unique(codes):
        assert len(set(folds[codes == label].tolist())) == 1, label
    totals = np.bincount(folds, minlength=k)
    assert totals.max() - totals.min() <= np.bincount(codes).max(), totals


@given(label_sizes(min_labels=2), seeds)
def test_label_folds_is_deterministic(codes: np.ndarray, seed: int) -> None:
    k = min(len(np.unique(codes)), 4)
    np.testing.assert_array_equal(label_folds(codes, k, seed), label_folds(codes.copy(), k, seed))


def test_label_folds_accepts_exactly_k_labels_and_singletons() -> None:
    codes = np.array([0, 1, 1, 1, 2, 2, 0, 1], dtype=np.int64)  # 3 labels of 2, 4, 2 rows
    folds = label_folds(codes, 3, 0)
    assert sorted(set(folds.tolist())) == [0, 1, 2]
    singles = np.arange(6, dtype=np.int64)  # six labels of one row each
    assert sorted(label_folds(singles, 3, 5).tolist()) == [0, 0, 1, 1, 2, 2]


def test_label_folds_differ_between_seeds() -> None:
    codes = np.repeat(np.arange(20, dtype=np.int64), 8)  # equal sizes: ties ordered by seed
    runs = [tuple(label_folds(codes, 5, seed).tolist()) for seed in range(4)]
    assert len(set(runs)) == 4


# --- class_range_split --------------------------------------------------------------------------


@given(
    raw_labels,
    st.integers(1, 20),
    st.one_of(st.none(), st.integers(0, 30)),
)
def test_class_range_split_trains_labels_in_the_inclusive_range(
    raw: list[int], min_samples: int, extra: int | None
) -> None:
    codes = _codes(raw)
    max_samples = None if extra is None else min_samples + extra
    split = class_range_split(codes, min_samples, max_samples)
    counts = np.bincount(codes)
    for row, code in enumerate(codes.tolist()):
        n = int(counts[code])
        inside = n >= min_samples and (max_samples is None or n <= max_samples)
        assert split[row] == ("train" if inside else "test"), (n, min_samples, max_samples)


def test_class_range_split_bounds_are_inclusive() -> None:
    codes = np.repeat(np.arange(5, dtype=np.int64), [1, 2, 3, 4, 5])
    split = class_range_split(codes, 2, 4)
    by_label = {int(c): s for c, s in zip(codes, split, strict=True)}
    assert by_label == {0: "test", 1: "train", 2: "train", 3: "train", 4: "test"}
    assert set(class_range_split(codes, 3, None)[codes >= 2].tolist()) == {"train"}


# --- holdout_split ------------------------------------------------------------------------------


@given(
    label_sizes(min_labels=2),
    st.floats(0, 1, exclude_min=True, exclude_max=True),
    seeds,
)
def test_holdout_split_holds_out_the_rounded_number_of_whole_labels(
    codes: np.ndarray, test_fraction: float, seed: int
) -> None:
    split = holdout_split(codes, test_fraction, seed)
    assert set(split.tolist()) == {"train", "test"}
    n_labels = int(codes.max()) + 1
    per_label = {}
    for label in range(n_labels):
        values = set(split[codes == label].tolist())
        assert len(values) == 1, label  # identity-disjoint
        per_label[label] = values.pop()
    n_test = sum(v == "test" for v in per_label.values())
    assert n_test == min(max(round(test_fraction * n_labels), 1), n_labels - 1)
    np.testing.assert_array_equal(split, holdout_split(codes.copy(), test_fraction, seed))


def test_holdout_split_differs_between_seeds() -> None:
    codes = np.repeat(np.arange(20, dtype=np.int64), 3)
    runs = {tuple(holdout_split(codes, 0.25, seed).tolist()) for seed in range(4)}
    assert len(runs) == 4


# --- split_dataset on the synthetic tables ------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize(
    "options",
    [
        {"k": 5},
        {"k": 4, "by": "label"},
        {"mode": "classes", "test_fraction": 0.25},
        {"mode": "classes", "min_samples": 9},
    ],
)
def test_split_dataset_same_seed_writes_identical_bytes(
    synth_scan: Path, tmp_path: Path, suffix: str, options: dict[str, Any]
) -> None:
    first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    split_dataset(synth_scan, first, seed=7, **options)
    split_dataset(synth_scan, second, seed=7, **options)
    assert first.read_bytes() == second.read_bytes()
    # CSV and Parquet hold the same table
    other = tmp_path / ("c.parquet" if suffix == ".csv" else "c.csv")
    split_dataset(synth_scan, other, seed=7, **options)
    pd.testing.assert_frame_equal(read_table(first), read_table(other))


@pytest.mark.parametrize(
    ("options", "column"),
    [
        ({"k": 5}, FOLD),
        ({"k": 5, "by": "label"}, FOLD),
        ({"mode": "classes", "test_fraction": 0.3}, SPLIT),
    ],
)
def test_split_dataset_different_seeds_give_different_assignments(
    synth_filtered: Path, tmp_path: Path, options: dict[str, Any], column: str
) -> None:
    runs = []
    for seed in (0, 1, 2):
        out = tmp_path / f"s{seed}.csv"
        split_dataset(synth_filtered, out, seed=seed, **options)
        runs.append(tuple(read_table(out)[column].tolist()))
    assert len(set(runs)) == 3


@pytest.mark.parametrize("source", ["synth_scan", "synth_filtered"])
@pytest.mark.parametrize(
    ("options", "column"),
    [({"k": 3}, FOLD), ({"mode": "classes", "min_samples": 9, "max_samples": 10}, SPLIT)],
)
def test_split_dataset_keeps_rows_and_columns_and_appends_one(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    source: str,
    options: dict[str, Any],
    column: str,
) -> None:
    info: Path = request.getfixturevalue(source)
    out = tmp_path / "out.csv"
    report = split_dataset(info, out, **options)
    before, after = read_table(info), read_table(out)
    assert list(after.columns) == [*before.columns, column]
    pd.testing.assert_frame_equal(after.drop(columns=[column]), before)
    assert report.column == column and report.output == out and report.rows == len(before)


def test_split_dataset_by_image_stratifies_the_filtered_table(
    synth_filtered: Path, tmp_path: Path
) -> None:
    out = tmp_path / "folds.csv"
    report = split_dataset(synth_filtered, out, k=5, seed=3)
    table = read_table(out)
    assert len(table) == 160 and table[FOLD].notna().all()
    per_label = table.groupby(LABEL)[FOLD].value_counts().unstack(fill_value=0)
    assert per_label.shape == (20, 5)
    assert sorted(set(per_label.to_numpy().ravel().tolist())) == [1, 2]  # 8 rows over 5 folds
    assert table[FOLD].value_counts().to_dict() == dict.fromkeys(range(5), 32)
    assert report.groups == {str(f): (32, 20) for f in range(5)}
    assert report.unassigned == 0


def test_split_dataset_by_label_is_identity_disjoint_on_the_filtered_table(
    synth_filtered: Path, tmp_path: Path
) -> None:
    out = tmp_path / "folds.parquet"
    report = split_dataset(synth_filtered, out, k=4, by="label", seed=11)
    table = read_table(out)
    assert (table.groupby(LABEL)[FOLD].nunique() == 1).all()
    assert table[FOLD].value_counts().to_dict() == dict.fromkeys(range(4), 40)  # 5 labels × 8
    assert report.groups == {str(f): (40, 5) for f in range(4)}


def test_split_dataset_leaves_error_rows_unassigned(synth_scan: Path, tmp_path: Path) -> None:
    source = read_table(synth_scan)
    errors = source[ERROR] != ""
    assert errors.sum() > 0 and (~errors).sum() > 0
    folds, split = tmp_path / "folds.csv", tmp_path / "split.csv"
    fold_report = split_dataset(synth_scan, folds, k=5)
    split_report = split_dataset(synth_scan, split, mode="classes", test_fraction=0.5)
    fold_col = read_table(folds)[FOLD]
    assert fold_col.isna().tolist() == errors.tolist()
    assert set(fold_col.dropna().tolist()) == set(range(5))
    split_col = read_table(split)[SPLIT]
    assert (split_col == "").tolist() == errors.tolist()
    assert set(split_col[~errors]) == {"train", "test"}
    for report in (fold_report, split_report):
        assert report.unassigned == int(errors.sum())
        assert report.rows == len(source)
        assert sum(rows for rows, _ in report.groups.values()) == int((~errors).sum())
    # in the CSV itself an unassigned fold is an empty cell
    with folds.open(encoding="utf-8", newline="") as f:
        cells = [row[FOLD] for row in csv.DictReader(f)]
    assert [c == "" for c in cells] == errors.tolist()


def test_split_dataset_counts_only_usable_rows_for_fold_minus_one(
    synth_scan: Path, tmp_path: Path
) -> None:
    source = read_table(synth_scan)
    usable = source[source[ERROR] == ""][LABEL].value_counts()
    total = source[LABEL].value_counts()
    k = 9
    # labels with k rows in all but fewer usable ones: an error row must not count
    assert any(total[lbl] >= k > usable[lbl] for lbl in usable.index)
    assert (usable < k).any() and (usable >= k).any()
    out = tmp_path / "folds.csv"
    report = split_dataset(synth_scan, out, k=k, seed=2)
    table = read_table(out)
    ok = table[ERROR] == ""
    expected_small = table.loc[ok, LABEL].map(usable) < k
    assert (table.loc[ok, FOLD] == -1).tolist() == expected_small.tolist()
    small_labels = usable[usable < k]
    assert report.groups["-1"] == (int(small_labels.sum()), len(small_labels))
    assigned = table.loc[ok & (table[FOLD] >= 0), FOLD]
    totals = assigned.value_counts()
    assert sorted(totals.index.tolist()) == list(range(k))
    assert totals.max() - totals.min() <= 1


def test_split_dataset_class_range_counts_usable_rows(synth_scan: Path, tmp_path: Path) -> None:
    source = read_table(synth_scan)
    usable = source[source[ERROR] == ""][LABEL].value_counts()
    out = tmp_path / "split.csv"
    report = split_dataset(synth_scan, out, mode="classes", min_samples=9, max_samples=10)
    table = read_table(out)
    ok = table[ERROR] == ""
    n = table.loc[ok, LABEL].map(usable)
    expected = np.where((n >= 9) & (n <= 10), "train", "test")
    assert table.loc[ok, SPLIT].tolist() == expected.tolist()
    assert set(expected.tolist()) == {"train", "test"}
    assert report.groups == _groups_of(table, SPLIT)


@pytest.mark.parametrize(
    "options",
    [
        {"k": 5},
        {"k": 9},
        {"k": 3, "by": "label"},
        {"mode": "classes", "test_fraction": 0.2},
        {"mode": "classes", "min_samples": 9},
    ],
)
def test_split_dataset_report_groups_match_the_written_table(
    synth_scan: Path, tmp_path: Path, options: dict[str, Any]
) -> None:
    out = tmp_path / "out.parquet"
    report = split_dataset(synth_scan, out, seed=5, **options)
    table = read_table(out)
    assert report.groups == _groups_of(table, report.column)
    if report.column == FOLD:
        assert list(report.groups) == sorted(report.groups, key=int)
    else:
        assert list(report.groups) == sorted(report.groups)
    summary = report.summary()
    assert str(out) in summary and f"{report.rows:,} rows" in summary


def test_split_dataset_holdout_is_identity_disjoint(synth_filtered: Path, tmp_path: Path) -> None:
    out = tmp_path / "split.csv"
    report = split_dataset(synth_filtered, out, mode="classes", test_fraction=0.25, seed=4)
    table = read_table(out)
    assert (table.groupby(LABEL)[SPLIT].nunique() == 1).all()
    assert report.groups == {"test": (40, 5), "train": (120, 15)}


@pytest.mark.parametrize(
    ("options", "column", "position"),
    [({"k": 5}, FOLD, 1), ({"mode": "classes", "min_samples": 9}, SPLIT, 3)],
)
def test_split_dataset_replaces_an_existing_column_in_place(
    synth_scan: Path, tmp_path: Path, options: dict[str, Any], column: str, position: int
) -> None:
    table = read_table(synth_scan)
    stale: Any = 99 if column == FOLD else "stale"
    table.insert(position, column, stale)
    with_column = tmp_path / "with_column.csv"
    write_table(table, with_column)
    plain = tmp_path / "plain.csv"
    split_dataset(synth_scan, plain, seed=9, **options)
    out = tmp_path / "out.csv"
    split_dataset(with_column, out, seed=9, **options)
    result = read_table(out)
    assert list(result.columns) == list(table.columns)  # same place, no second column
    assert list(result.columns).index(column) == position
    assert stale not in set(result[column].tolist())
    expected = read_table(plain)[column]
    pd.testing.assert_series_equal(result[column], expected)


def test_split_dataset_can_overwrite_its_input(synth_filtered: Path, tmp_path: Path) -> None:
    target = tmp_path / "info.csv"
    shutil.copyfile(synth_filtered, target)
    elsewhere = tmp_path / "elsewhere.csv"
    split_dataset(synth_filtered, elsewhere, k=4, seed=6)
    report = split_dataset(target, target, k=4, seed=6)
    assert report.output == target
    assert target.read_bytes() == elsewhere.read_bytes()
    # running again over its own output replaces the fold column: same bytes
    split_dataset(target, target, k=4, seed=6)
    assert target.read_bytes() == elsewhere.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.csv", "info.csv"]  # no temps


def test_split_dataset_by_label_allows_a_label_with_one_image(tmp_path: Path) -> None:
    labels = ["a"] + ["b"] * 5 + ["c"] * 3 + ["d"] * 2
    info = _small_table(tmp_path / "info.csv", labels)
    out = tmp_path / "out.csv"
    report = split_dataset(info, out, k=3, by="label", seed=1)
    table = read_table(out)
    assert table[FOLD].notna().all()
    assert set(table[FOLD].tolist()) == {0, 1, 2}
    assert (table.groupby(LABEL)[FOLD].nunique() == 1).all()
    assert report.groups == _groups_of(table, FOLD)
    assert sum(labels for _, labels in report.groups.values()) == 4


def test_split_dataset_by_image_sends_small_labels_to_fold_minus_one(tmp_path: Path) -> None:
    labels = ["a"] * 7 + ["b"] * 2 + ["c"] + ["d"] * 4
    info = _small_table(tmp_path / "info.csv", labels)
    out = tmp_path / "out.csv"
    report = split_dataset(info, out, k=4, seed=0)
    table = read_table(out)
    folds = dict(zip(table[FILE_NAME], table[FOLD], strict=True))
    for name, label in zip(table[FILE_NAME], table[LABEL], strict=True):
        assert (folds[name] == -1) == (label in ("b", "c")), name
    assert report.groups["-1"] == (3, 2)
    assert {g: v for g, v in report.groups.items() if g != "-1"} == {
        "0": (3, 2),
        "1": (3, 2),
        "2": (3, 2),
        "3": (2, 2),
    }
    assert "always train" in report.summary()


# --- bad input --------------------------------------------------------------------------------


@pytest.fixture
def tiny_info(tmp_path: Path) -> Path:
    """3 labels × 4 usable rows, plus 5 error rows of a fourth label."""
    labels = ["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["z"] * 5
    errors = [""] * 12 + ["corrupt"] * 5
    return _small_table(tmp_path / "tiny.csv", labels, errors)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"k": 1}, "k must be an integer ≥ 2"),
        ({"k": 0}, "k must be an integer ≥ 2"),
        ({"k": 2.0}, "k must be an integer ≥ 2"),
        ({"k": True}, "k must be an integer ≥ 2"),
        ({"k": 13}, "13 folds need at least 13 usable rows; the table has 12"),
        ({"k": 14, "by": "label"}, "14 folds need at least 14 usable rows"),
        ({"k": 5}, "no label has 5 usable rows.*largest label has 4"),
        ({"k": 4, "by": "label"}, "4 identity-disjoint folds need at least 4 labels.*has 3"),
        ({"by": "row"}, "by must be 'image' or 'label'"),
        ({"mode": "pairs"}, "mode must be 'folds' or 'classes'"),
        ({"test_fraction": 0.2}, "test_fraction does not apply to mode='folds'"),
        ({"min_samples": 2}, "min_samples does not apply to mode='folds'"),
        ({"max_samples": 2}, "max_samples does not apply to mode='folds'"),
        ({"min_samples": 2, "test_fraction": 0.2}, "min_samples and test_fraction do not apply"),
        ({"mode": "classes", "k": 3, "test_fraction": 0.5}, "k does not apply to mode='classes'"),
        ({"mode": "classes", "k": 5, "min_samples": 2}, "k does not apply to mode='classes'"),
        ({"mode": "classes", "by": "image", "min_samples": 2}, "by does not apply to mode="),
        ({"mode": "classes"}, "needs min_samples/max_samples or test_fraction"),
        ({"mode": "classes", "test_fraction": 0.2, "min_samples": 2}, "not both"),
        ({"mode": "classes", "test_fraction": 0.2, "max_samples": 2}, "not both"),
        ({"mode": "classes", "test_fraction": 0.0}, "strictly between 0 and 1"),
        ({"mode": "classes", "test_fraction": 1.0}, "strictly between 0 and 1"),
        ({"mode": "classes", "test_fraction": -0.5}, "strictly between 0 and 1"),
        ({"mode": "classes", "test_fraction": 1.5}, "strictly between 0 and 1"),
        ({"mode": "classes", "test_fraction": float("nan")}, "strictly between 0 and 1"),
        ({"mode": "classes", "min_samples": 5, "max_samples": 2}, "min_samples ≤ max_samples"),
        ({"mode": "classes", "min_samples": -1}, "1 ≤ min_samples"),
        ({"seed": -1}, "seed must be an integer ≥ 0, not -1"),
        ({"seed": True}, "seed must be an integer ≥ 0, not True"),
        ({"seed": 1.0}, "seed must be an integer ≥ 0, not 1.0"),
        ({"seed": 1.5, "mode": "classes", "test_fraction": 0.5}, "seed must be an integer"),
        ({"seed": "3"}, "seed must be an integer"),
    ],
)
def test_split_dataset_rejects_bad_options(
    tiny_info: Path, tmp_path: Path, options: dict[str, Any], match: str
) -> None:
    out = tmp_path / "out.csv"
    with pytest.raises(InputError, match=match):
        split_dataset(tiny_info, out, **options)
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "names", "message"),
    [
        ({"mode": "rows"}, ("mode",), "mode must be 'folds' or 'classes', not 'rows'"),
        ({"seed": -1}, ("seed",), "seed must be an integer ≥ 0, not -1"),
        ({"k": 1}, ("k",), "k must be an integer ≥ 2 (folds), not 1"),
        ({"by": "row"}, ("by",), "by must be 'image' or 'label', not 'row'"),
        ({"min_samples": 2.5}, ("min_samples",), "min_samples must be an integer, not 2.5"),
        ({"test_fraction": "a"}, ("test_fraction",), "test_fraction must be a number, not 'a'"),
        (
            {"max_samples": 3, "test_fraction": 0.5},
            ("max_samples", "test_fraction", "mode"),
            "max_samples and test_fraction do not apply to mode='folds'",
        ),
        (
            {"mode": "classes", "k": 5, "by": "label", "test_fraction": 0.5},
            ("k", "by", "mode"),
            "k and by do not apply to mode='classes'",
        ),
        (
            {"mode": "classes", "min_samples": 2, "test_fraction": 0.5},
            ("test_fraction", "min_samples", "max_samples"),
            "give test_fraction or min_samples/max_samples, not both",
        ),
        (
            {"mode": "classes"},
            ("mode", "min_samples", "max_samples", "test_fraction"),
            "mode='classes' needs min_samples/max_samples or test_fraction",
        ),
        (
            {"mode": "classes", "test_fraction": 1.0},
            ("test_fraction",),
            "test_fraction must lie strictly between 0 and 1, not 1.0",
        ),
        (
            {"mode": "classes", "min_samples": 4, "max_samples": 3},
            ("min_samples", "max_samples"),
            "need 1 ≤ min_samples ≤ max_samples, got 4 and 3",
        ),
    ],
)
def test_split_options_refuse_each_bad_combination_naming_the_options(
    options: dict[str, Any], names: tuple[str, ...], message: str
) -> None:
    with pytest.raises(OptionError) as err:
        SplitOptions(**options)
    assert str(err.value) == message
    assert err.value.options == names
    assert isinstance(err.value, InputError)  # callers catching InputError still do


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"k": 2, "by": "label", "seed": 7},
        {"mode": "classes", "test_fraction": 0.25},
        {"mode": "classes", "min_samples": 3},
        {"mode": "classes", "max_samples": 3},
        {"mode": "classes", "min_samples": 3, "max_samples": 3, "seed": 1},
    ],
)
def test_split_options_accept_each_good_combination(options: dict[str, Any]) -> None:
    assert SplitOptions(**options) == SplitOptions(**options)  # frozen, compares by value


def test_split_dataset_classes_mode_refuses_k_rather_than_ignoring_it(
    tiny_info: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.csv"
    with pytest.raises(OptionError, match="k does not apply to mode='classes'"):
        split_dataset(tiny_info, out, mode="classes", k=3, test_fraction=0.5)
    assert not out.exists()
    split_dataset(tiny_info, out, mode="classes", test_fraction=0.5)  # k not given: fine
    assert read_table(out)[SPLIT].isin(["train", "test", ""]).all()


def test_split_dataset_needs_a_label_column(tmp_path: Path) -> None:
    info = tmp_path / "info.csv"
    write_table(pd.DataFrame({FILE_NAME: ["a/1.jpg", "b/2.jpg"], "identity": ["a", "b"]}), info)
    with pytest.raises(SchemaError, match=r"missing column\(s\) label"):
        split_dataset(info, tmp_path / "out.csv")
    assert issubclass(SchemaError, FmlkitError)


def test_split_dataset_holdout_needs_two_usable_labels(tmp_path: Path) -> None:
    # two labels in the table, but every row of the second one has an error
    info = _small_table(tmp_path / "info.csv", ["a"] * 3 + ["b"] * 2, [""] * 3 + ["empty"] * 2)
    with pytest.raises(InputError, match="at least 2 labels; the table has 1"):
        split_dataset(info, tmp_path / "out.csv", mode="classes", test_fraction=0.5)


def test_split_dataset_missing_input_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        split_dataset(tmp_path / "nope.csv", tmp_path / "out.csv")


def test_split_dataset_refuses_a_foreign_non_integer_fold_column(tmp_path: Path) -> None:
    info = tmp_path / "info.csv"
    labels = ["a"] * 4 + ["b"] * 4
    table = pd.DataFrame(
        {
            FILE_NAME: [f"{x}/{i}.jpg" for i, x in enumerate(labels)],
            LABEL: labels,
            FOLD: ["train", "val"] * 4,
        }
    )
    table.to_csv(info, index=False)
    out = tmp_path / "out.csv"
    with pytest.raises(SchemaError, match=r"row 1 .*column fold holds 'train'"):
        split_dataset(info, out, k=2)
    assert not out.exists()
