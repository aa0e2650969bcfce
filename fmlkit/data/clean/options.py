"""The options of `fmlkit clean`: its thresholds (cosines) and which checks run, checked once
on construction so the CLI, the pipeline and a notebook meet the same rules.

The default thresholds are documented in docs/clean.md with how they were chosen; `--auto`
(`fmlkit.data.clean.auto`) replaces them with thresholds read from the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, get_args

from fmlkit.choices import CleanCheck
from fmlkit.errors import OptionError

CHECKS: tuple[CleanCheck, ...] = get_args(CleanCheck)

# the thresholds, as `CleanOptions` fields (cosines in [-1, 1]; a margin in [0, 2])
THRESHOLDS = (
    "drop_below",
    "review_below",
    "relabel_above",
    "relabel_margin",
    "merge_above",
    "split_below",
    "duplicate_above",
)


@dataclass(frozen=True)
class CleanOptions:
    """What `fmlkit clean` decides, and at which cosine similarities.

    Attributes:
        drop_below: an image whose cosine to its class centroid (without itself) is lower is
            dropped.
        review_below: lower (and not dropped): sent to review. At least ``drop_below``.
        relabel_above: an image under ``review_below`` is relabelled when another class's
            centroid is at least this similar …
        relabel_margin: … and more similar than its own by at least this much.
        merge_above: two classes whose centroids are at least this similar are merged.
        split_below: a class whose images form two groups with centroids less similar than
            this (each group of ≥ 2 images, tight) is a split candidate.
        duplicate_above: two images at least this similar are near-duplicates.
        checks: which checks run (outliers include relabels and per-class quality).
        auto: pick the thresholds from the data (`fmlkit.data.clean.auto`); the margin and
            ``duplicate_above`` stay as given.
        robust: compute the centroids a second time without the images under
            ``drop_below`` (classes with several mislabelled images).
    """

    drop_below: float = 0.30
    review_below: float = 0.70
    relabel_above: float = 0.45
    relabel_margin: float = 0.15
    merge_above: float = 0.80
    split_below: float = 0.45
    duplicate_above: float = 0.98
    checks: tuple[CleanCheck, ...] = CHECKS
    auto: bool = False
    robust: bool = True

    def __post_init__(self) -> None:
        for name in THRESHOLDS:
            value = getattr(self, name)
            low = 0.0 if name == "relabel_margin" else -1.0
            high = 2.0 if name == "relabel_margin" else 1.0
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise OptionError(f"{{{name}}}: expected a number, found {value!r}")
            if not low <= value <= high:
                raise OptionError(
                    f"{{{name}}} is a cosine similarity: expected {low:g} to {high:g}, "
                    f"found {value:g}"
                )
        if self.review_below < self.drop_below:
            raise OptionError(
                f"{{review_below}} ({self.review_below:g}) is below {{drop_below}} "
                f"({self.drop_below:g}): the review band lies above the drop threshold"
            )
        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown or not self.checks:
            raise OptionError(
                f"{{checks}}: expected one or more of {', '.join(CHECKS)}, found "
                f"{', '.join(map(str, unknown)) or 'none'}"
            )
        object.__setattr__(self, "checks", tuple(c for c in CHECKS if c in self.checks))

    def thresholds(self) -> dict[str, float]:
        """The thresholds by name."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self) if f.name in THRESHOLDS}

    def with_thresholds(self, **values: float) -> CleanOptions:
        """A copy with these thresholds (checked again)."""
        changes: dict[str, Any] = dict(values)
        return replace(self, **changes)
