"""`fmlkit clean --truth` end to end on `fmlkit synth --label-noise`'s truth: embeddings drawn
from each image's true identity (the truth's ``source`` for the planted kinds), so the
decisions must find every planted defect, and the scores must say so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fmlkit.columns import MISLABEL, MIXED, SPLIT_IDENTITY
from fmlkit.data.formats.embeddings import write_embeddings
from tests.hostile.check import fmlkit, succeeded


def test_clean_finds_synths_planted_label_noise(tmp_path: Path) -> None:
    succeeded(fmlkit("synth", tmp_path / "data", "-n", "40", "-m", "6", "--label-noise",
                     "--no-defects", "--seed", "1"))  # fmt: skip
    truth = pd.read_csv(tmp_path / "data.truth.csv", dtype=str, keep_default_na=False)
    planted = truth["kind"].isin([MISLABEL, MIXED, SPLIT_IDENTITY])
    identity = truth["label"].where(~planted, truth["source"])
    rng = np.random.default_rng(0)
    centre = {who: rng.normal(size=64) for who in sorted(set(identity))}
    vectors = np.stack([centre[who] + 0.35 * rng.normal(size=64) for who in identity])
    write_embeddings(tmp_path / "emb.parquet", truth["file_name"], truth["label"], vectors)
    result = fmlkit("clean", tmp_path / "emb.parquet", "-o", tmp_path / "out",
                    "--truth", tmp_path / "data.truth.csv")  # fmt: skip
    succeeded(result)
    scores = json.loads((tmp_path / "out/summary.json").read_text())["truth"]
    assert scores["mislabels_planted"] == int((truth["kind"] == MISLABEL).sum()) > 0
    assert scores["mislabel_recall"] == 1.0 and scores["mislabel_precision"] >= 0.9
    assert scores["split_identities_planted"] > 0 and scores["split_identities_found"] == 1.0
    assert scores["merge_groups_false"] == 0 and scores["splits_false"] == 0
    assert scores["mixed_classes_planted"] > 0 and scores["mixed_classes_found"] == 1.0
    assert scores["relabel_right"] == 1.0
    assert "planted mislabels: drop + relabel precision 1.0" in result.stdout
