"""`fmlkit clean` given bad input: embeddings it cannot use are refused (exit 1, one
``Error:`` line, no decisions folder); rows it can judge no further are decided with a
reason (NaN, infinite and zero vectors: ``unusable``; classes of one image: ``singleton``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fmlkit.data.formats.embeddings import write_embeddings
from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded, unchanged


def _emb(path: Path, rows: int = 12, dim: int = 8, classes: int = 3) -> Path:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, dim))
    labels = [f"id{k % classes}" for k in range(rows)]
    vectors = centres[[k % classes for k in range(rows)]] + 0.2 * rng.normal(size=(rows, dim))
    return write_embeddings(
        path, [f"{label}/{k}.jpg" for k, label in enumerate(labels)], labels, vectors
    )


def _images(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "images.csv", dtype=str, keep_default_na=False)


def test_nan_infinite_and_zero_vectors_are_unusable_rows_with_a_reason(tmp_path: Path) -> None:
    emb = _emb(tmp_path / "emb.parquet")
    table = pq.read_table(emb).to_pylist()
    table[0]["embedding"][3] = float("nan")
    table[1]["embedding"][0] = float("inf")
    table[2]["embedding"] = [0.0] * 8
    pq.write_table(pa.Table.from_pylist(table), emb)
    succeeded(fmlkit("clean", emb, "-o", tmp_path / "out"))
    images = _images(tmp_path / "out")
    assert images["decision"][:3].tolist() == ["unusable"] * 3
    assert all("NaN or infinite values, or is all zeros" in r for r in images["reason"][:3])
    assert images["own_similarity"][:3].tolist() == ["", "", ""]
    assert (images["decision"][3:] != "unusable").all()


def test_embeddings_that_are_all_unusable_are_refused(tmp_path: Path) -> None:
    emb = write_embeddings(tmp_path / "e.parquet", ["a", "b"], ["x", "y"], np.zeros((2, 4)))
    refused(
        fmlkit("clean", emb, "-o", tmp_path / "out"), says=["e.parquet", "no embedding can be used"]
    )
    nothing_complete(tmp_path / "out")


def test_mixed_dimensions_are_refused(tmp_path: Path) -> None:
    column = pa.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0, 0.0]], pa.list_(pa.float32()))
    table = pa.table({"file_name": ["a", "b", "c"], "label": ["x", "x", "y"], "embedding": column})
    pq.write_table(table, tmp_path / "e.parquet")
    refused(fmlkit("clean", tmp_path / "e.parquet", "-o", tmp_path / "out"),
            says=["mixed dimension", "2 (e.g. a), 3 (e.g. c)"])  # fmt: skip
    nothing_complete(tmp_path / "out")


def test_duplicate_file_names_are_refused(tmp_path: Path) -> None:
    emb = write_embeddings(tmp_path / "e.parquet", ["a", "b", "a"], ["x", "x", "y"], np.eye(3))
    refused(fmlkit("clean", emb, "-o", tmp_path / "out"), says=["appear more than once", "(a)"])
    nothing_complete(tmp_path / "out")


def test_a_missing_label_column_is_refused(tmp_path: Path) -> None:
    emb = write_embeddings(tmp_path / "e.parquet", ["a", "b"], None, np.eye(2))
    refused(
        fmlkit("clean", emb, "-o", tmp_path / "out"), says=["missing column(s) label", "e.parquet"]
    )
    nothing_complete(tmp_path / "out")


def test_empty_labels_are_refused(tmp_path: Path) -> None:
    emb = write_embeddings(tmp_path / "e.parquet", ["a", "b", "c"], ["x", "", "x"], np.eye(3))
    refused(fmlkit("clean", emb, "-o", tmp_path / "out"), says=["1 rows have no label", "(b)"])
    nothing_complete(tmp_path / "out")


def test_an_empty_table_is_refused(tmp_path: Path) -> None:
    emb = write_embeddings(tmp_path / "e.parquet", [], [], np.zeros((0, 4)))
    refused(fmlkit("clean", emb, "-o", tmp_path / "out"), says=["holds no embeddings"])
    nothing_complete(tmp_path / "out")


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"file_name,label\na,b\n", "not a readable Parquet file"), (None, "no such file")],
)
def test_a_missing_or_non_parquet_file_is_refused(
    tmp_path: Path, content: bytes | None, says: str
) -> None:
    path = tmp_path / "e.parquet"
    if content is not None:
        path.write_bytes(content)
    refused(fmlkit("clean", path, "-o", tmp_path / "out"), says=[says, "e.parquet"])
    nothing_complete(tmp_path / "out")


def test_classes_of_one_image_are_singletons_never_outliers(tmp_path: Path) -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.1]])
    emb = write_embeddings(tmp_path / "e.parquet", ["a", "b", "c"], ["x", "y", "z"], vectors)
    succeeded(
        fmlkit(
            "clean", emb, "-o", tmp_path / "out", "--drop-below", "0.99", "--review-below", "0.99"
        )
    )
    images = _images(tmp_path / "out")
    assert images[["decision", "reason"]].values.tolist() == [["keep", "singleton"]] * 3
    classes = pd.read_csv(tmp_path / "out/classes.csv", dtype=str, keep_default_na=False)
    assert classes["decision"].tolist() == ["singleton"] * 3


def test_an_existing_output_is_kept_without_overwrite(tmp_path: Path) -> None:
    emb = _emb(tmp_path / "emb.parquet")
    succeeded(fmlkit("clean", emb, "-o", tmp_path / "out"))
    before = (tmp_path / "out/images.csv").read_bytes()
    again = ("--drop-below", "0.9", "--review-below", "0.9")
    refused(
        fmlkit("clean", emb, "-o", tmp_path / "out", *again), says=["already exists", "--overwrite"]
    )
    unchanged(tmp_path / "out/images.csv", before)


def test_outputs_that_would_replace_an_input_are_refused(tmp_path: Path) -> None:
    emb = _emb(tmp_path / "emb.parquet")
    before = emb.read_bytes()
    refused(
        fmlkit("clean", emb, "-o", emb, "--overwrite"), says=["decisions folder", "emb.parquet"]
    )
    unchanged(emb, before)
    (tmp_path / "out").mkdir()
    inside = _emb(tmp_path / "out/emb.parquet")
    refused(
        fmlkit("clean", inside, "-o", tmp_path / "out", "--overwrite"),
        says=["emb.parquet", "holds files clean does not write"],
    )
    assert inside.is_file()


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--drop-below", "2"], "--drop-below"),
        (
            ["--drop-below", "0.5", "--review-below", "0.4"],
            "--review-below (0.4) is below --drop-below",
        ),
        (["--checks", "outliers,faces"], "--checks"),
        (["--auto", "--merge-above", "0.5"], "--auto picks --merge-above"),
    ],
)
def test_options_that_do_not_fit_are_usage_errors(
    tmp_path: Path, options: list[str], says: str
) -> None:
    emb = _emb(tmp_path / "emb.parquet")
    refused(fmlkit("clean", emb, "-o", tmp_path / "out", *options), says=says, code=2)
    nothing_complete(tmp_path / "out")


def test_a_bad_table_to_apply_or_truth_is_refused_before_any_output(tmp_path: Path) -> None:
    emb = _emb(tmp_path / "emb.parquet")
    (tmp_path / "info.csv").write_text("file_name,width\na,1\n")
    refused(fmlkit("clean", emb, "-o", tmp_path / "out", "--apply", tmp_path / "info.csv"),
            says=["missing column(s) label", "info.csv"])  # fmt: skip
    (tmp_path / "info.csv").write_text("file_name,label\na,x\na,y\n")
    refused(fmlkit("clean", emb, "-o", tmp_path / "out", "--apply", tmp_path / "info.csv"),
            says=["more than one row", "'a'"])  # fmt: skip
    (tmp_path / "truth.csv").write_text("file_name,label\na,x\n")
    refused(fmlkit("clean", emb, "-o", tmp_path / "out", "--truth", tmp_path / "truth.csv"),
            says=["missing column(s) kind, source", "truth.csv"])  # fmt: skip
    nothing_complete(tmp_path / "out")


def test_overwrite_replaces_only_an_earlier_decisions_folder(tmp_path: Path) -> None:
    emb = _emb(tmp_path / "emb.parquet")
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    refused(
        fmlkit("clean", emb, "-o", mine, "--overwrite"),
        says=["holiday.jpg", "earlier decisions folder"],
    )
    assert (mine / "holiday.jpg").read_bytes() == b"precious"
    (tmp_path / "notes.txt").write_text("mine")
    refused(
        fmlkit("clean", emb, "-o", tmp_path / "notes.txt", "--overwrite"),
        says=["notes.txt", "a file"],
    )
    assert (tmp_path / "notes.txt").read_text() == "mine"
    succeeded(fmlkit("clean", emb, "-o", tmp_path / "out"))
    stricter = ("--drop-below", "0.9999", "--review-below", "0.9999", "--checks", "outliers")
    succeeded(fmlkit("clean", emb, "-o", tmp_path / "out", "--overwrite", *stricter))
    assert "drop" in _images(tmp_path / "out")["decision"].tolist()


def test_auto_on_too_little_data_keeps_the_thresholds_and_says_so(tmp_path: Path) -> None:
    emb = _emb(tmp_path / "emb.parquet")  # 12 images: too few to read quantiles from
    result = fmlkit("clean", emb, "-o", tmp_path / "out", "--auto")
    succeeded(result)
    assert (
        "warning: --auto: too little data to pick image thresholds and class thresholds"
        in result.stdout
    )
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["auto"] is True and summary["auto_picked"] == []
    assert summary["thresholds"]["drop_below"] == 0.3 and len(summary["warnings"]) == 1
