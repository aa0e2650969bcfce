"""`fmlkit split` (folds, classes) and `fmlkit pairs` against hostile input: empty and damaged
tables, one identity, files named twice, absurd counts, look-alike labels and an output that
is the input."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from fmlkit.columns import FILE_NAME, FOLD, LABEL
from fmlkit.data.formats.pair_lists import read_csv_pairs
from fmlkit.data.formats.table import read_table
from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded, unchanged

BIG = str(10**30)


def _table(path: Path, labels: Sequence[str], **columns: Sequence[object]) -> Path:
    """A minimal dataset_info-like table: file_name ``<label>/<k>.jpg``, label, more columns."""
    names = [f"{label}/{k}.jpg" for k, label in enumerate(labels)]
    pd.DataFrame({FILE_NAME: names, LABEL: list(labels), **columns}).to_csv(path, index=False)
    return path


@pytest.fixture
def folds(tmp_path: Path) -> Path:
    """Four labels of four rows, in two folds."""
    labels = [lab for lab in ("a", "b", "c", "d") for _ in range(4)]
    return _table(tmp_path / "folds.csv", labels, fold=[k % 2 for k in range(16)])


# --- empty and damaged tables ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["split", "pairs"])
@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "empty (zero bytes)"),
        (b"file_name,label,fold\n", "no rows"),  # pairs: "0 usable rows"
        (b"file_name,label,fold\na/1.jpg,a\n", "2 field(s) where the header has 3"),
        (b"file_name,label,fold\na/1.jpg,a,0\nb/1.jpg,b,\xff\n", "not UTF-8"),
        (b"file_name,label,fold\na/1.jpg,a,1e308\nb/1.jpg,b,0\n", "fold holds '1e308'"),
        (b"file_name,label,fold\na/1.jpg,a,-7\nb/1.jpg,b,0\n", "from -1 to"),
    ],
)
def test_empty_or_damaged_table_is_refused(
    tmp_path: Path, command: str, content: bytes, says: str
) -> None:
    table = tmp_path / "t.csv"
    table.write_bytes(content)
    out = tmp_path / "out.csv"
    args = ("--fold", "0", "--positives", "1", "--negatives", "1") if command == "pairs" else ()
    if command == "pairs" and says == "no rows":
        says = "0 usable rows"
    refused(fmlkit(command, table, "-o", out, *args), says=says)
    nothing_complete(out)


# --- one identity ------------------------------------------------------------------------------


def test_one_identity_folds_by_image_work_by_label_are_refused(tmp_path: Path) -> None:
    table = _table(tmp_path / "one.csv", ["solo"] * 6)
    out = tmp_path / "s.csv"
    succeeded(fmlkit("split", table, "-o", out, "--k", "3"))
    assert sorted(read_table(out)[FOLD].tolist()) == [0, 0, 1, 1, 2, 2]
    refused(
        fmlkit("split", table, "-o", tmp_path / "l.csv", "--by", "label"), says="the table has 1"
    )
    refused(
        fmlkit(
            "split", table, "-o", tmp_path / "c.csv", "--mode", "classes", "--test-fraction", "0.5"
        ),
        says="at least 2 labels",
    )
    nothing_complete(tmp_path / "l.csv", tmp_path / "c.csv")


def test_one_identity_pairs_give_positives_and_refuse_negatives(tmp_path: Path) -> None:
    table = _table(tmp_path / "one.csv", ["solo"] * 4, fold=[0] * 4)
    succeeded(
        fmlkit(
            "pairs",
            table,
            "-o",
            tmp_path / "p.csv",
            "--fold",
            "0",
            "--positives",
            "6",
            "--negatives",
            "0",
        )
    )
    assert len(read_csv_pairs(tmp_path / "p.csv")) == 6
    refused(
        fmlkit(
            "pairs",
            table,
            "-o",
            tmp_path / "n.csv",
            "--fold",
            "0",
            "--positives",
            "1",
            "--negatives",
            "1",
        ),
        says="two labels",
    )
    nothing_complete(tmp_path / "n.csv")


# --- a file named twice ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["split", "pairs"])
def test_a_file_named_twice_is_refused_naming_it(folds: Path, tmp_path: Path, command: str) -> None:
    """Once, pairs drew the file with itself and repeated pairs; a split put it in two folds."""
    df = read_table(folds)
    df.loc[5, FILE_NAME] = df.loc[4, FILE_NAME]  # b/4.jpg twice
    df.to_csv(folds, index=False)
    out = tmp_path / "out.csv"
    args = ("--fold", "0", "--positives", "2", "--negatives", "2") if command == "pairs" else ()
    refused(fmlkit(command, folds, "-o", out, *args), says=["more than one row", "'b/4.jpg'"])
    nothing_complete(out)


# --- absurd numbers: refused by the data's own limits, never allocated -------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--positives", BIG, "--negatives", "1"), "allow at most 4 same-label pairs"),
        (("--positives", "1", "--negatives", BIG), "allow at most"),
        (("--positives", str(10**12), "--negatives", str(10**12)), "positive pairs"),
        (("--positives", "1", "--negatives", "1", "--fold", BIG), "0 usable rows"),
    ],
)
def test_absurd_pair_counts_are_refused_by_what_the_rows_allow(
    folds: Path, tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    out = tmp_path / "p.csv"
    fold = () if "--fold" in args else ("--fold", "0")
    refused(fmlkit("pairs", folds, "-o", out, *fold, *args), says=says)
    nothing_complete(out)


def test_an_absurd_cap_per_label_is_no_cap(folds: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    args = ("--fold", "0", "--positives", "4", "--negatives", "4", "--max-per-label", BIG)
    succeeded(fmlkit("pairs", folds, "-o", out, *args))  # once an OverflowError
    assert len(read_csv_pairs(out)) == 8


@pytest.mark.parametrize(
    ("args", "outcome"),
    [
        (("--k", BIG), "need at least"),
        (("--mode", "classes", "--min-samples", BIG), "test"),  # every label is test
        (("--mode", "classes", "--max-samples", BIG), "train"),
        (("--seed", BIG, "--k", "2"), "ok"),
    ],
)
def test_absurd_split_numbers_are_refused_or_harmless(
    folds: Path, tmp_path: Path, args: tuple[str, ...], outcome: str
) -> None:
    out = tmp_path / "s.csv"
    result = fmlkit("split", folds, "-o", out, *args)
    if outcome == "need at least":
        refused(result, says="need at least")
        nothing_complete(out)
        return
    succeeded(result)
    if outcome != "ok":
        assert set(read_table(out)["split"]) == {outcome}


# --- labels that look alike --------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_labels_007_and_7_are_two_identities_in_split_and_pairs(
    tmp_path: Path, suffix: str
) -> None:
    labels = ["007"] * 3 + ["7"] * 3 + ["7.0"] * 3 + ["NA"] * 3
    csv_table = _table(tmp_path / "t.csv", labels)
    table = tmp_path / f"t{suffix}"
    read_table(csv_table).to_parquet(table) if suffix == ".parquet" else None
    out = tmp_path / f"s{suffix}"
    succeeded(fmlkit("split", table, "-o", out, "--mode", "classes", "--min-samples", "1"))
    df = read_table(out)
    assert df.groupby(LABEL).size().to_dict() == {"007": 3, "7": 3, "7.0": 3, "NA": 3}
    pairs = tmp_path / "p.csv"
    succeeded(
        fmlkit(
            "pairs", out, "-o", pairs, "--split", "train", "--positives", "12", "--negatives", "54"
        )
    )
    listed = read_csv_pairs(pairs)
    label = dict(zip(df[FILE_NAME], df[LABEL], strict=True))
    same = [label[a] == label[b] for a, b in zip(listed["first"], listed["second"], strict=True)]
    assert same == [bool(s) for s in listed["is_same"]]  # 007 and 7 never make a positive


# --- outputs -----------------------------------------------------------------------------------


def test_pairs_output_that_is_its_input_is_refused(folds: Path) -> None:
    before = folds.read_bytes()
    refused(
        fmlkit(
            *("pairs", folds, "-o", folds, "--fold", "0", "--positives", "1", "--negatives", "1"),
            "--overwrite",
        ),
        says=["is the split table"],
    )
    unchanged(folds, before)


def test_split_in_place_is_allowed_and_keeps_every_row(folds: Path) -> None:
    """Documented (docs/split.md): -o may be the input, with --overwrite (as any existing
    output); the table is replaced atomically."""
    before = read_table(folds)
    succeeded(fmlkit("split", folds, "-o", folds, "--k", "2", "--by", "label", "--overwrite"))
    after = read_table(folds)
    pd.testing.assert_frame_equal(after[[FILE_NAME, LABEL]], before[[FILE_NAME, LABEL]])


def test_split_output_that_is_a_folder_is_refused(folds: Path, tmp_path: Path) -> None:
    from fmlkit.data.split.folds import split_dataset
    from fmlkit.errors import InputError

    folder = tmp_path / "keep.csv"
    folder.mkdir()
    (folder / "mine.txt").write_text("mine")
    with pytest.raises(InputError, match="is a folder"):
        split_dataset(folds, folder, k=2)
    assert (folder / "mine.txt").read_text() == "mine"
