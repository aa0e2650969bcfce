"""`fmlkit split` and `fmlkit pairs`: folds or a train/test split added to a dataset_info
table (`folds`), and verification pair lists drawn from it (`pairs`, over `draw`)."""

from __future__ import annotations

from fmlkit.data.split.folds import SplitReport, split_dataset
from fmlkit.data.split.pairs import PairsReport, make_pairs

__all__ = ["PairsReport", "SplitReport", "make_pairs", "split_dataset"]
