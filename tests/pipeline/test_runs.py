"""`fmlkit runs` and `fmlkit status` naming changed config keys, on a real tiny pipeline that
trains (3 steps) and evaluates twice: once with optim.lr 0.2, then with 0.1."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmlkit.pipeline.runner import run_pipeline
from fmlkit.pipeline.spec import load_pipeline
from tests.hostile.check import fmlkit, refused, succeeded
from tests.pipeline.conftest import edit

PIPELINE = """\
stages:
  synth:
    run: synth
    params: {identities: 6, images_per_identity: 4, size: 64, seed: 0}
    outs: {out_dir: tiny/data}
  prepare:
    run: prepare
    deps: {dataset_dir: "${stages.synth.outs.out_dir}"}
    params: {workers: 1}
    outs: {output: tiny/info.csv}
  filter:
    run: filter
    deps: {dataset_info: "${stages.prepare.outs.output}", root: "${stages.synth.outs.out_dir}"}
    params: {dedup: true}
    outs: {output: tiny/filtered.csv, removed: tiny/removed.csv}
  split:
    run: split
    deps: {dataset_info: "${stages.filter.outs.output}"}
    params: {mode: classes, test_fraction: 0.34, seed: 0}
    outs: {output: tiny/split.csv}
  pairs:
    run: pairs
    deps: {split_info: "${stages.split.outs.output}"}
    params: {split: test, positives: 6, negatives: 6}
    outs: {output: tiny/pairs.csv}
  convert:
    run: convert
    deps: {source: "${stages.split.outs.output}", root: "${stages.synth.outs.out_dir}"}
    params: {workers: 1}
    outs: {output: tiny/parquet}
  train:
    run: train
    deps: {config: cfg.yaml, data.parquet: "${stages.convert.outs.output}"}
    params: {device: cpu}
    outs: {output_dir: tiny/run}
  evaluate:
    run: evaluate
    deps:
      checkpoint: "${stages.train.outs.output_dir}/checkpoints/last.pt"
      pairs: ["${stages.pairs.outs.output}"]
      root: "${stages.synth.outs.out_dir}"
    outs: {output: tiny/eval}
"""
CONFIG = """\
# a 3-step run: enough for two runs to differ
data: {split: train, image_size: 32}
model: {backbone: mobilefacenet, embedding_size: 32}
head: {name: cosface, args: {margin: 0.2, scale: 16.0}}
optim: {name: sgd, lr: 0.2}
train: {batch_size: 8, max_steps: 3, num_workers: 0, log_every: 1}
checkpoint: {every_steps: 3}
val: {every_steps: 100}
seed: 0
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding t.yaml run twice: with optim.lr 0.2, then with 0.1 (read-only)."""
    root = tmp_path_factory.mktemp("runs")
    (root / "t.yaml").write_text(PIPELINE, encoding="utf-8")
    (root / "cfg.yaml").write_text(CONFIG, encoding="utf-8")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        run_pipeline(load_pipeline("t.yaml"), quiet=True)
        edit(root / "cfg.yaml", "lr: 0.2", "lr: 0.1")
        run_pipeline(load_pipeline("t.yaml"), quiet=True)
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def project(trained: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of ``trained``."""
    copy = tmp_path / "project"
    shutil.copytree(trained, copy, symlinks=True)
    yield copy


def _evaluate_versions(root: Path) -> list[Path]:
    """The evaluate version folders, oldest first (by their provenance's start time)."""
    folders = [p for p in (root / "artifacts/t/evaluate").iterdir() if not p.name.startswith(".")]
    return sorted(folders, key=lambda p: (p / "provenance.yaml").read_text().split("started:")[1])


def _metrics(version: Path) -> dict[str, float]:
    return json.loads((version / "output/eval/metrics.json").read_text())["pairs"]


def _runs(root: Path, *args: str) -> str:
    result = fmlkit("runs", "t.yaml", *args, cwd=root)
    succeeded(result)
    return result.stdout


def test_runs_shows_a_row_per_evaluate_version_with_the_setting_that_differs(
    trained: Path,
) -> None:
    first, second = _evaluate_versions(trained)
    lines = _runs(trained).splitlines()
    header = lines[0].split()
    assert header[:4] == ["version", "started", "train", "optim.lr"]
    assert header[4:6] == ["accuracy", "auc"]
    rows = [line.split() for line in lines[1:3]]
    assert rows[0][0] == first.name and rows[0][4] == "0.2"
    assert rows[1][:2] == ["*", second.name] and rows[1][5] == "0.1"  # linked now
    trains = {p.name for p in (trained / "artifacts/t/train").iterdir()}
    assert {rows[0][3], rows[1][4]} == trains  # each row its own train version
    assert float(rows[0][-1]) == pytest.approx(_metrics(first)["auc"], abs=5e-5)
    assert float(rows[1][-1]) == pytest.approx(_metrics(second)["auc"], abs=5e-5)
    assert "settings the same in every row not shown" in lines[3]
    every = _runs(trained, "--all").splitlines()[0].split()
    assert {"optim.lr", "optim.name", "model.backbone", "device"} <= set(every)


def test_runs_json_and_csv_hold_the_same_rows(trained: Path) -> None:
    first, second = _evaluate_versions(trained)
    rows = json.loads(_runs(trained, "--json"))
    table = list(csv.DictReader(io.StringIO(_runs(trained, "--csv"))))
    assert [r["version"] for r in rows] == [r["version"] for r in table]
    assert [r["version"] for r in rows] == [first.name, second.name]
    assert [r["settings"] for r in rows] == [{"optim.lr": 0.2}, {"optim.lr": 0.1}]
    assert [r["optim.lr"] for r in table] == ["0.2", "0.1"]
    assert [r["current"] for r in rows] == [False, True]
    assert [r["current"] for r in table] == ["false", "true"]
    for row, line, folder in zip(rows, table, (first, second), strict=True):
        expected = _metrics(folder)
        assert row["metrics"] == {"accuracy": expected["accuracy"], "auc": expected["auc"]}
        assert {k: float(line[k]) for k in row["metrics"]} == row["metrics"]  # exact
        assert row["train"] == line["train"] and row["notes"] == [] and line["notes"] == ""
    assert rows[0]["train"] != rows[1]["train"]


def test_runs_sort_orders_metrics_best_first_and_settings_ascending(trained: Path) -> None:
    rows = json.loads(_runs(trained, "--json"))
    by_auc = json.loads(_runs(trained, "--json", "--sort", "auc"))
    assert [r["metrics"]["auc"] for r in by_auc] == sorted(
        (r["metrics"]["auc"] for r in rows), reverse=True
    )
    by_lr = list(csv.DictReader(io.StringIO(_runs(trained, "--csv", "--sort", "optim.lr"))))
    assert [r["optim.lr"] for r in by_lr] == ["0.1", "0.2"]


def test_runs_sort_by_an_unknown_column_names_the_valid_ones(trained: Path) -> None:
    result = fmlkit("runs", "t.yaml", "--sort", "nope", cwd=trained)
    refused(result, code=2, says=["--sort nope", "names no column", "accuracy", "optim.lr"])


def test_runs_notes_what_it_cannot_find_and_still_shows_the_row(project: Path) -> None:
    first, second = _evaluate_versions(project)
    train = project / "artifacts/t/train" / json.loads(_runs(project, "--json"))[0]["train"]
    shutil.rmtree(train)
    metrics = second / "output/eval/metrics.json"
    metrics.unlink()  # read-only file, writable folder
    metrics.write_text("{not json", encoding="utf-8")
    rows = json.loads(_runs(project, "--json"))
    assert [r["version"] for r in rows] == [first.name, second.name]
    assert rows[0]["train"] is None and rows[0]["settings"] == {}
    kept = _metrics(first)
    assert rows[0]["metrics"] == {"accuracy": kept["accuracy"], "auc": kept["auc"]}
    assert "train version it evaluated was not found" in rows[0]["notes"][0]
    assert rows[1]["metrics"] == {} and "metrics.json" in rows[1]["notes"][0]
    assert "unreadable" in rows[1]["notes"][0]
    text = _runs(project)
    assert "notes" in text.splitlines()[0] and "not found" in text


def test_status_names_the_changed_config_keys(project: Path) -> None:
    edit(project / "cfg.yaml", "lr: 0.1", "lr: 0.2")
    reason = "deps.config (cfg.yaml) changed: optim.lr 0.1 → 0.2"
    status = fmlkit("status", "t.yaml", "--json", cwd=project)
    succeeded(status)
    assert json.loads(status.stdout)["train"]["reason"] == reason
    dry = fmlkit("run", "t.yaml", "--dry-run", cwd=project)
    succeeded(dry)
    assert f"train: would run — {reason}\n" in dry.stdout
    edit(project / "cfg.yaml", "seed: 0", "seed: 1\nschedule: {name: cosine}")
    status = fmlkit("status", "t.yaml", "--json", cwd=project)
    assert json.loads(status.stdout)["train"]["reason"] == (
        "deps.config (cfg.yaml) changed: optim.lr 0.1 → 0.2, seed 0 → 1, "
        "schedule.name (unset) → cosine"
    )


def test_status_says_only_comments_changed_and_falls_back_without_a_copy(project: Path) -> None:
    edit(project / "cfg.yaml", "# a 3-step run", "# three steps")
    status = fmlkit("status", "t.yaml", "--json", cwd=project)
    assert json.loads(status.stdout)["train"]["reason"] == (
        "deps.config (cfg.yaml) changed: no setting changed (comments or layout only)"
    )
    shutil.rmtree(project / "artifacts/t/.deps")  # as a lock written by an older fmlkit
    status = fmlkit("status", "t.yaml", "--json", cwd=project)
    assert json.loads(status.stdout)["train"]["reason"] == "deps.config (cfg.yaml) changed"


def test_runs_of_a_pipeline_never_run(trained: Path, tmp_path: Path) -> None:
    shutil.copy(trained / "t.yaml", tmp_path / "t.yaml")
    text = _runs(tmp_path)
    assert text.startswith("t: no runs yet (no version in artifacts/t/evaluate)")
    assert json.loads(_runs(tmp_path, "--json")) == []
    assert _runs(tmp_path, "--csv") == "stage,version,started,current,train,notes\n"
    assert json.loads(_runs(tmp_path, "--json", "--sort", "auc")) == []
