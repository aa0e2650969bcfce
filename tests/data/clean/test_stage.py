"""`fmlkit.data.clean.stage.clean`, the stage: the decisions folder, --apply, --truth."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmlkit.columns import CLEAN_CLASS_COLUMNS, CLEAN_IMAGE_COLUMNS, CLEAN_MERGE_COLUMNS
from fmlkit.data.clean import CleanOptions, clean
from fmlkit.data.formats.embeddings import write_embeddings
from tests.data.clean.clustered import Planted, clustered


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Planted, Path]:
    p = clustered(0)
    return p, write_embeddings(tmp_path / "emb.parquet", p.file_names, p.labels, p.vectors)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_the_decisions_folder_holds_the_contracts_tables(
    planted: tuple[Planted, Path], tmp_path: Path
) -> None:
    p, emb = planted
    report = clean(emb, tmp_path / "out")
    images, classes = _read(tmp_path / "out/images.csv"), _read(tmp_path / "out/classes.csv")
    merges = _read(tmp_path / "out/merges.csv")
    assert tuple(images.columns) == CLEAN_IMAGE_COLUMNS
    assert tuple(classes.columns) == CLEAN_CLASS_COLUMNS
    assert tuple(merges.columns) == CLEAN_MERGE_COLUMNS
    assert images["file_name"].tolist() == p.file_names  # input order
    assert classes["label"].tolist() == sorted(set(p.labels))
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["images"] == report.decisions and sum(report.decisions.values()) == len(p.labels)
    assert summary["thresholds"] == CleanOptions().thresholds()
    relabel = images[images["decision"] == "relabel"].iloc[0]
    assert relabel["nearest_label"] in relabel["reason"] and relabel["label"] in relabel["reason"]
    assert f"{float(relabel['own_similarity']):.3f}" in relabel["reason"]
    assert "merge" in report.summary() and str(tmp_path / "out") in report.summary()
    assert not list(tmp_path.glob(".*tmp*"))


def test_apply_writes_the_table_with_the_decisions_applied(
    planted: tuple[Planted, Path], tmp_path: Path
) -> None:
    p, emb = planted
    info = pd.DataFrame(
        {"file_name": [*p.file_names, "extra/0.jpg"], "label": [*p.labels, "extra"], "width": 112}
    )
    info.to_csv(tmp_path / "info.csv", index=False)
    report = clean(emb, tmp_path / "out", apply=tmp_path / "info.csv")
    images = _read(tmp_path / "out/images.csv").set_index("file_name")
    applied = _read(tmp_path / "out/dataset_info.csv").set_index("file_name")
    assert list(applied.columns) == ["label", "width"]  # every column of the table kept
    gone = images.index[images["decision"].isin(["drop", "duplicate"])]
    assert len(gone) and not set(gone) & set(applied.index)
    assert applied.loc["extra/0.jpg", "label"] == "extra" and report.untouched_rows == 1
    stay = images.drop(gone)
    assert (applied.loc[stay.index, "label"] == stay["new_label"]).all()
    into = _read(tmp_path / "out/classes.csv").set_index("label")["merge_into"]
    assert {into["c11"], into["c12"]} == {into["c11"]} and into["c11"] in ("c11", "c12")
    merged = stay[stay["label"].isin(["c11", "c12"]) & (stay["decision"] == "keep")]
    assert len(merged) > 5 and (applied.loc[merged.index, "label"] == into["c11"]).all()
    moved = stay[stay["decision"] == "relabel"]
    assert (applied.loc[moved.index, "label"] == moved["nearest_label"]).all()
    assert report.applied_rows == len(applied) == len(info) - len(gone)


def test_truth_scores_the_planted_defects(planted: tuple[Planted, Path], tmp_path: Path) -> None:
    p, emb = planted
    rows = [(p.file_names[r], p.labels[r], "mislabel", "?") for r in p.mislabelled]
    pairs = list(zip(p.file_names, p.labels, strict=True))
    rows += [(n, "c12", "split_identity", "c11") for n, c in pairs if c == "c12"]
    half = [n for n, c in zip(p.file_names, p.labels, strict=True) if c == "c14"][:3]
    rows += [(n, "c14", "mixed", "new") for n in half]
    pd.DataFrame(rows, columns=["file_name", "label", "kind", "source"]).to_csv(
        tmp_path / "truth.csv", index=False
    )
    report = clean(emb, tmp_path / "out", truth=tmp_path / "truth.csv")
    t = report.truth
    assert t["mislabel_recall"] == 1.0 and t["split_identities_found"] == 1.0
    assert t["mixed_classes_found"] == 1.0 and t["merge_groups_false"] == 0
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    curve = summary["truth"]["drop_curve"]
    assert [c["threshold"] for c in curve] == sorted(c["threshold"] for c in curve)
    recalls = [c["recall"] for c in curve]
    assert recalls == sorted(recalls) and recalls[0] == 0.0 and recalls[-1] == 1.0
    merge_curve = summary["truth"]["merge_curve"]
    assert merge_curve[0]["merge_groups_false"] >= merge_curve[-1]["merge_groups_false"]
    assert "recall 1.0" in report.summary()


def test_a_failed_run_leaves_the_previous_decisions(
    planted: tuple[Planted, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = importlib.import_module("fmlkit.data.clean.stage")

    _, emb = planted
    clean(emb, tmp_path / "out")
    before = (tmp_path / "out/images.csv").read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(stage.json, "dumps", fail)
    with pytest.raises(OSError):
        clean(emb, tmp_path / "out", options=CleanOptions(drop_below=0.9, review_below=0.9),
              overwrite=True)  # fmt: skip
    assert (tmp_path / "out/images.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.parquet", "out"]


def test_float64_embeddings_give_the_same_decisions(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = clustered(2)
    write_embeddings(tmp_path / "32.parquet", p.file_names, p.labels, p.vectors)
    column = pa.array(p.vectors.astype(np.float64).tolist(), pa.list_(pa.float64()))
    pq.write_table(pa.table({"file_name": p.file_names, "label": list(p.labels),
                             "embedding": column}), tmp_path / "64.parquet")  # fmt: skip
    a = clean(tmp_path / "32.parquet", tmp_path / "a")
    b = clean(tmp_path / "64.parquet", tmp_path / "b")
    assert a.decisions == b.decisions


def test_the_report_is_written_with_the_decisions(
    planted: tuple[Planted, Path], tmp_path: Path
) -> None:
    _, emb = planted
    (tmp_path / "images").mkdir()
    clean(emb, tmp_path / "out", report=tmp_path / "report", root=tmp_path / "images")
    page = (tmp_path / "report/index.html").read_text(encoding="utf-8")
    assert "c11" in page and "c12" in page  # the merge candidates are shown
    assert (tmp_path / "out/images.csv").is_file()
