"""`FilterRules`: what `fmlkit filter` removes, checked when built (the CLI's defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from fmlkit.choices import Confirm, KeepOrder, Scope
from fmlkit.data.filter.confirm import DEFAULT_EMBEDDING_THRESHOLD, DEFAULT_PIXEL_THRESHOLD
from fmlkit.data.filter.dedup import check_options
from fmlkit.data.filter.hamming import HASH_BITS
from fmlkit.data.filter.plausible import DATASET_SHARE, LABEL_MIN, LABEL_SHARE
from fmlkit.errors import InputError, OptionError

# Shorter sides below this are thumbnails or icons, useless for training (None: no limit).
DEFAULT_MIN_SIZE = 32


@dataclass(frozen=True)
class FilterRules:
    """What `decide` removes; checked on construction (`InputError` for a bad value,
    `OptionError` for a ``min_size`` above ``max_size``: no image could pass both).

    Attributes:
        dedup: remove duplicates (needs ``phash``).
        threshold: same-label near-duplicate radius in pHash bits (0..64).
        scope: ``label`` or ``global`` (also across labels).
        global_threshold: cross-label radius in bits (0..64), with ``scope="global"``.
        keep: which row of a duplicate group stays: ``first`` or ``largest``.
        min_size: shorter side below this is ``too_small``; None for no limit.
        max_size: longer side above this is ``too_large``; None for no limit.
        keep_errors: keep rows with an error (they skip dedup).
        against_threshold: leak radius in bits (0..64) to a reference image (``--against``).
        confirm: ``pixels`` removes a pHash candidate pair (not an md5 copy) only when the
            images' thumbnails correlate ≥ ``pixel_threshold`` (and their embeddings, when
            given, ≥ ``embedding_threshold``); ``none`` trusts the hashes alone.
        pixel_threshold: least thumbnail correlation of a duplicate, in [-1, 1].
        embedding_threshold: least embedding cosine of a duplicate, in [-1, 1].
        label_share, label_min, dataset_share: removals warned about as implausible
            (`fmlkit.data.filter.plausible`).
        strict: implausible removals are an error (`filter_dataset`).
    """

    dedup: bool = False
    threshold: int = 10
    scope: Scope = "label"
    global_threshold: int = 3
    keep: KeepOrder = "first"
    min_size: int | None = DEFAULT_MIN_SIZE
    max_size: int | None = None
    keep_errors: bool = False
    against_threshold: int = 3
    confirm: Confirm = "pixels"
    pixel_threshold: float = DEFAULT_PIXEL_THRESHOLD
    embedding_threshold: float = DEFAULT_EMBEDDING_THRESHOLD
    label_share: float = LABEL_SHARE
    label_min: int = LABEL_MIN
    dataset_share: float = DATASET_SHARE
    strict: bool = False

    def __post_init__(self) -> None:
        check_options(self.threshold, self.scope, self.global_threshold, self.keep)
        if self.confirm not in get_args(Confirm):
            raise InputError(
                f"confirm must be one of {', '.join(get_args(Confirm))}, got {self.confirm!r}"
            )
        for name, value in (
            ("pixel threshold", self.pixel_threshold),
            ("embedding threshold", self.embedding_threshold),
        ):
            if not -1.0 <= value <= 1.0:
                raise InputError(f"{name} must be between -1 and 1 (a correlation), got {value}")
        for name, value in (
            ("label share", self.label_share),
            ("dataset share", self.dataset_share),
        ):
            if not 0.0 < value <= 1.0:
                raise InputError(f"{name} must be in (0, 1], got {value}")
        if not 0 <= self.against_threshold <= HASH_BITS:
            raise InputError(
                f"against threshold must be between 0 and {HASH_BITS} bits, "
                f"got {self.against_threshold}"
            )
        low, high = self.min_size, self.max_size
        if low is not None and high is not None and low > high:
            raise OptionError(
                "{min_size} is larger than {max_size}: no image could pass both limits "
                "(the shorter side would have to be ≥ the one and the longer ≤ the other); "
                "lower the minimum or raise the maximum",
                min_size=low,
                max_size=high,
            )
