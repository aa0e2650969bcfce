"""Shared fixtures: a synthetic dataset written once per session by the project's own generator."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

from fmlkit.data.synth.synth import SynthReport, generate_synthetic_dataset
from tests.bad_tree import BadTree, build_bad_tree

# Property tests draw the same examples on every run (CI and laptops agree); no per-example
# deadline, since a 2-core CI machine is slow to start.
settings.register_profile("fmlkit", derandomize=True, deadline=None, max_examples=100)
settings.load_profile("fmlkit")


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
def synth_scan(synth_tree: SynthTree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`fmlkit prepare`'s dataset_info of ``synth_tree`` (planted defects included). Read-only."""
    from fmlkit.data.prepare.scan import scan_dataset

    out = tmp_path_factory.mktemp("synth_scan") / "dataset_info.csv"
    scan_dataset(synth_tree.root, out, workers=2)
    return out


@pytest.fixture(scope="session")
def synth_filtered(
    synth_tree: SynthTree, synth_scan: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``synth_scan`` after `fmlkit filter --dedup --scope global`: 160 clean rows. Read-only."""
    from fmlkit.data.filter.filter import FilterRules, filter_dataset

    out = tmp_path_factory.mktemp("synth_filtered") / "filtered.csv"
    filter_dataset(synth_scan, out, FilterRules(dedup=True, scope="global"), root=synth_tree.root)
    return out


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
