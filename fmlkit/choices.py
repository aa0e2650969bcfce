"""The closed sets of option values a user can name, one `Literal` type each.

The stage functions and their options classes are typed with these; the command line reads its
choices from them (``click.Choice(get_args(SplitMode))``), so both list the same values. Like
`fmlkit.columns`, this module imports nothing: the CLI loads it to show ``--help`` without
loading a stage.
"""

from __future__ import annotations

from typing import Literal

SplitMode = Literal["folds", "classes"]  # fmlkit split --mode
FoldBy = Literal["image", "label"]  # fmlkit split --by (folds mode)
PairFormat = Literal["csv", "lfw"]  # fmlkit pairs --format: a 1,a,b CSV or LFW's pairs.txt
Scope = Literal["label", "global"]  # fmlkit filter --scope: duplicates within a label, or across
KeepOrder = Literal["first", "largest"]  # fmlkit filter --keep: which row of a duplicate group
Confirm = Literal["pixels", "none"]  # fmlkit filter --confirm: check pHash candidates, or not
Target = Literal["parquet", "rec", "folder"]  # fmlkit convert --to
AlignTemplate = Literal["arcface", "arcface96"]  # fmlkit align --template: 112×112, 112×96
FaceSelect = Literal["largest", "center", "best", "single"]  # fmlkit align --select
AlignWarp = Literal["cartesian", "tanh-polar"]  # fmlkit align --warp
CropFormat = Literal["png", "jpg"]  # fmlkit align --format
CleanCheck = Literal["outliers", "merges", "mixed", "duplicates"]  # fmlkit clean --checks
