"""Mixed classes (two people under one name) for `fmlkit clean` (no I/O): spherical 2-means
on the classes a cheap pre-filter picks, all classes at once.

Pre-filter: classes of at least `MIN_IMAGES` images whose mean own similarity is below
`MEAN_FACTOR` × the median class's, or whose spread is above `SPREAD_FACTOR` × the median
spread (a mixed class's centroid lies between its two people, so its images sit farther
from it). 2-means starts deterministically: group 1 at the image least like its class
centroid (the first in input order on ties), group 0 at the image least like that one; then
`ROUNDS` rounds of assigning each image to the nearer group centroid and recomputing them.

A class is a split candidate when both groups have ≥ 2 images and ≥ `MIN_SHARE` of the
class, the two group centroids' cosine is below ``split_below``, and each group is tight:
its images' mean cosine to their group's centroid without themselves (leave-one-out, as the
own similarity; two stray images of different people are no group) is at least
``tight_above`` (`fmlkit clean` passes ``relabel_above``: as alike as an image must be to a
class's centroid to be moved into that class).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmlkit.data.clean.similarity import class_sums, own_similarity, row_dots, unit_centroids

MIN_IMAGES = 4
MEAN_FACTOR = 0.9
SPREAD_FACTOR = 2.0
MIN_SHARE = 0.2
ROUNDS = 10


@dataclass(frozen=True)
class Splits:
    """The result of `find_splits`: per class and per row."""

    split: np.ndarray  # (classes,) bool: a split candidate
    between: np.ndarray  # (classes,) cosine of the two group centroids (NaN: not tried)
    sizes: np.ndarray  # (classes, 2) images per group (0: not tried)
    cohesion: np.ndarray  # (classes, 2) mean cosine of a group's images to its centroid
    group: np.ndarray  # (rows,) 0/1 for the images of a split class, else -1


def candidates(sizes: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """The pre-filter: (classes,) bool."""
    big = sizes >= MIN_IMAGES
    if not big.any():
        return big
    typical_mean = np.nanmedian(mean[big])
    typical_spread = np.nanmedian(spread[big])
    with np.errstate(invalid="ignore"):
        odd = (mean < MEAN_FACTOR * typical_mean) | (spread > SPREAD_FACTOR * typical_spread)
    return big & odd


def find_splits(
    x: np.ndarray,
    codes: np.ndarray,
    own: np.ndarray,
    tried: np.ndarray,
    *,
    split_below: float,
    tight_above: float,
) -> Splits:
    """2-means on the classes ``tried`` ((classes,) bool) and the split rule (module doc).
    The work is sized by the classes tried, not all classes."""
    classes = len(tried)
    group = np.full(len(x), -1, np.int64)
    rows = np.flatnonzero((codes >= 0) & tried[np.maximum(codes, 0)])
    between = np.full(classes, np.nan)
    counts = np.zeros((classes, 2), np.int64)
    cohesion = np.full((classes, 2), np.nan)
    split = np.zeros(classes, bool)
    if not len(rows):
        return Splits(split, between, counts, cohesion, group)
    ids = np.flatnonzero(tried)  # compact class codes 0..k-1 for the classes tried
    compact = np.full(classes, -1, np.int64)
    compact[ids] = np.arange(len(ids))
    k = len(ids)
    sub, c = x[rows], compact[codes[rows]]
    # seeds: the least typical image, then the image least like it (input order on ties)
    order = np.lexsort((rows, own[rows], c))
    first = np.full(k, -1, np.int64)
    seen = np.unique(c[order], return_index=True)
    first[seen[0]] = order[seen[1]]
    to_seed1 = np.einsum("ij,ij->i", sub, sub[first[c]])
    order = np.lexsort((rows, to_seed1, c))
    seen = np.unique(c[order], return_index=True)
    second = np.full(k, -1, np.int64)
    second[seen[0]] = order[seen[1]]
    centres = np.zeros((2, k, x.shape[1]), np.float32)
    centres[0, seen[0]] = sub[second[seen[0]]]
    centres[1, seen[0]] = sub[first[seen[0]]]
    assign = np.zeros(len(rows), np.int64)
    for _ in range(ROUNDS):
        d0 = row_dots(sub, c, centres[0])
        d1 = row_dots(sub, c, centres[1])
        assign = (d1 > d0).astype(np.int64)
        for g in (0, 1):
            centres[g] = unit_centroids(class_sums(sub, np.where(assign == g, c, -1), k))
    for g in (0, 1):  # cohesion: leave-one-out, so that two strays are not a "group"
        member = assign == g
        in_group = np.where(member, c, -1)
        loo = own_similarity(sub, in_group, class_sums(sub, in_group, k))
        counts[ids, g] = np.bincount(c[member], minlength=k)
        with np.errstate(invalid="ignore", divide="ignore"):
            cohesion[ids, g] = np.bincount(c[member], loo[member], k) / counts[ids, g]
    between[ids] = np.einsum("ij,ij->i", centres[0], centres[1])
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore"):
        split = (
            tried
            & (counts.min(axis=1) >= 2)
            & (counts.min(axis=1) >= MIN_SHARE * total)
            & (between < split_below)
            & (cohesion.min(axis=1) >= tight_above)
        )
    chosen = split[codes[rows]]
    group[rows[chosen]] = assign[chosen]
    return Splits(split, between, counts, cohesion, group)
