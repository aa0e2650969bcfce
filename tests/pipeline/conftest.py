"""A tiny pipeline (synth 6 identities at 64 px → prepare → filter → split → pairs → convert,
plus a 5-fold split on a branch of its own), run once per session; each test gets a copy in
its own folder, as the current working directory."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmlkit.pipeline.runner import run_pipeline
from fmlkit.pipeline.spec import load_pipeline

TINY = """\
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
    params: {split: test, positives: 4, negatives: 4}
    outs: {output: tiny/pairs.csv}
  convert:
    run: convert
    deps: {source: "${stages.split.outs.output}", root: "${stages.synth.outs.out_dir}"}
    params: {workers: 1}
    outs: {output: tiny/parquet}
  folds:
    run: split
    deps: {dataset_info: "${stages.filter.outs.output}"}
    params: {k: 3}
    outs: {output: tiny/folds.csv}
"""
ORDER = ["synth", "prepare", "filter", "split", "pairs", "convert", "folds"]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding tiny.yaml, run once to the end (lock, artifacts, links)."""
    root = tmp_path_factory.mktemp("tiny_pipeline")
    (root / "tiny.yaml").write_text(TINY, encoding="utf-8")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        run_pipeline(load_pipeline("tiny.yaml"), quiet=True)
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private copy of the built pipeline folder, as the current working directory."""
    copy = tmp_path / "project"
    shutil.copytree(built, copy, symlinks=True)
    monkeypatch.chdir(copy)
    yield copy


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (which must occur) with ``new`` in a text file."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")
