"""Shared fixtures: a synthetic dataset written once per session by the project's own generator."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

from fmlkit.data.synth import SynthReport, generate_synthetic_dataset
from tests.bad_tree import BadTree, build_bad_tree


@dataclass(frozen=True)
class SynthTree:
    root: Path
    truth: list[dict[str, str]]
    report: SynthReport
    identities: int
    per_identity: int


def read_truth(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def synth_tree(tmp_path_factory: pytest.TempPathFactory) -> SynthTree:
    """The issue's reference dataset: 20 identities × 8 images, seed 0, with defects."""
    out = tmp_path_factory.mktemp("synth") / "demo_data"
    report = generate_synthetic_dataset(out, identities=20, images_per_identity=8, seed=0)
    return SynthTree(out, read_truth(report.truth_path), report, 20, 8)


@pytest.fixture(scope="session")
def bad_tree(tmp_path_factory: pytest.TempPathFactory) -> BadTree:
    """Every bad or odd input `fmlkit prepare` must survive (see tests/bad_tree.py). Read-only."""
    return build_bad_tree(tmp_path_factory.mktemp("bad_tree"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip @pytest.mark.gpu tests when CUDA is missing (torch is imported only if one exists)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in gpu_items:
        item.add_marker(skip)
