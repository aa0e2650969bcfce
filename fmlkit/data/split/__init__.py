"""`fmlkit split` and `fmlkit pairs`: folds or a train/test split added to a dataset_info
table (`folds`), and verification pair lists drawn from it (`pairs`, over `draw`)."""

from __future__ import annotations

from fmlkit.data.split.folds import SplitOptions, SplitReport, split_dataset
from fmlkit.data.split.pairs import PairsOptions, PairsReport, make_pairs

__all__ = [
    "PairsOptions",
    "PairsReport",
    "SplitOptions",
    "SplitReport",
    "make_pairs",
    "split_dataset",
]
