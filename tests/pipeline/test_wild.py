"""pipelines/wild.yaml (raw photos → align → … → evaluate): valid as shipped, and its front
(synth --scenes → align with the detector and from the true landmarks → prepare) runs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from fmlkit.pipeline.spec import load_pipeline
from tests.hostile.check import fmlkit, succeeded

REPO = Path(__file__).resolve().parents[2]

FRONT = """\
stages:
  synth:
    run: synth
    params: {identities: 3, images_per_identity: 4, scenes: true, scene_size: 160x120, seed: 1}
    outs: {out_dir: w/photos, truth: w/photos.truth.csv, landmarks: w/photos.landmarks.csv}
  align:
    run: align
    deps: {input: "${stages.synth.outs.out_dir}"}
    params: {detector: retinaface, min_score: 0.1, size: 64}
    outs: {out: w/aligned, table: w/aligned.csv}
  align_truth:
    run: align
    deps: {input: "${stages.synth.outs.out_dir}", landmarks: "${stages.synth.outs.landmarks}"}
    params: {size: 64}
    outs: {out: w/aligned_truth, table: w/aligned_truth.csv}
  prepare:
    run: prepare
    deps: {dataset_dir: "${stages.align_truth.outs.out}"}
    params: {workers: 1}
    outs: {output: w/info.csv}
"""


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_wild_pipeline_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    pipeline = load_pipeline("wild")
    required = ["synth", "align", "prepare", "filter", "split", "convert", "train", "evaluate"]
    assert [s for s in pipeline.stages if s in required] == required
    assert pipeline.stages["align"].params["detector"] == "retinaface"
    assert "landmarks" not in pipeline.stages["align"].deps  # the detector: the real path
    outs = [p for stage in pipeline.stages.values() for p in stage.outs.values()]
    assert all(p.startswith("wild/") for p in outs)


def test_wild_pipeline_front_runs(tmp_path: Path) -> None:
    (tmp_path / "front.yaml").write_text(FRONT)
    succeeded(fmlkit("run", "front.yaml", cwd=tmp_path))
    truth = {r["file_name"]: r for r in _rows(tmp_path / "w/photos.truth.csv")}
    for table in ("aligned.csv", "aligned_truth.csv"):
        rows = _rows(tmp_path / "w" / table)
        assert {r["file_name"] for r in rows} == set(truth)  # every photo accounted for
        assert all(bool(r["aligned"]) != bool(r["error"]) for r in rows)
    by_truth = {r["file_name"]: r for r in _rows(tmp_path / "w/aligned_truth.csv")}
    for name, row in truth.items():
        assert bool(by_truth[name]["aligned"]) == (row["faces"] not in ("", "0")), name
    info = _rows(tmp_path / "w/info.csv")
    assert len(info) == sum(1 for r in by_truth.values() if r["aligned"])
    assert all(not r["error"] for r in info)
    again = fmlkit("run", "front.yaml", cwd=tmp_path)  # nothing changed: every stage skipped
    succeeded(again)
    assert "4 skipped" in again.stdout and "running" not in again.stdout
