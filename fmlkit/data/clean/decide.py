"""The decisions of `fmlkit clean` on embeddings in memory (no I/O): `decide` returns the
images, classes and merges tables and the summary, as `fmlkit.data.clean.stage` writes them.

Per image, the first that applies: ``unusable`` (NaN, infinite or zero vector), ``duplicate``
(the keep walk of `fmlkit.data.clean.groups`), ``relabel``, ``drop``, ``review``, ``keep``
(reason ``singleton`` for the one image of a class). Per class: ``merge``, ``split``,
``singleton``, ``keep``. The rules and their numbers are in docs/clean.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fmlkit.columns import (
    CLEAN_CLASS_COLUMNS,
    CLEAN_IMAGE_COLUMNS,
    CLEAN_MERGE_COLUMNS,
    DECISION,
    DUPLICATE_OF,
    FILE_NAME,
    IMAGES,
    LABEL,
    LABEL_A,
    LABEL_B,
    MEAN_SIMILARITY,
    MERGE_GROUP,
    MERGE_INTO,
    MIN_SIMILARITY,
    NEAREST_LABEL,
    NEAREST_SIMILARITY,
    NEW_LABEL,
    OWN_SIMILARITY,
    REASON,
    SIMILARITY,
    SPLIT_GROUP,
    SPREAD,
)
from fmlkit.data.clean.auto import pick_thresholds
from fmlkit.data.clean.groups import (
    between_classes_pairs,
    keep_first,
    merge_groups,
    within_class_pairs,
)
from fmlkit.data.clean.mixed import candidates, find_splits
from fmlkit.data.clean.options import CleanOptions
from fmlkit.data.clean.similarity import (
    class_sums,
    nearest_other,
    own_similarity,
    pairs_above,
    similarity_to,
    unit_centroids,
    unit_rows,
)

# across classes, near-duplicates are looked for over all pairs of images up to this many
# usable images; beyond, between the class pairs a merge or a relabel links
DUPLICATES_ALL_PAIRS = 50_000
IMAGE_DECISIONS = ("keep", "review", "drop", "relabel", "duplicate", "unusable")
CLASS_DECISIONS = ("keep", "merge", "split", "singleton")


@dataclass(frozen=True, eq=False)
class Decisions:
    """What `decide` found: the three tables (columns of `fmlkit.columns`) and the summary."""

    images: pd.DataFrame
    classes: pd.DataFrame
    merges: pd.DataFrame
    summary: dict[str, Any]
    options: CleanOptions  # with the thresholds used (``--auto``'s when picked)
    centroids: np.ndarray  # (classes, E) unit centroids, by the classes table's rows


@dataclass
class _State:
    """The working arrays of one run."""

    x: np.ndarray  # unit rows (zeros where unusable)
    codes: np.ndarray  # class code per row, -1 where unusable
    label_codes: np.ndarray  # class code per row, unusable rows too
    names: np.ndarray  # class names (sorted), by code
    sizes: np.ndarray  # usable images per class
    own: np.ndarray  # own similarity per row (NaN: singleton or unusable)
    centroids: np.ndarray  # unit class centroids


def decide(
    file_names: list[str],
    labels: np.ndarray,
    vectors: np.ndarray,
    unusable: np.ndarray,
    options: CleanOptions,
) -> Decisions:
    """Decide every image and class (module doc). ``vectors`` (N, E) may be normalised in
    place; ``labels`` are strings; ``unusable`` marks rows with NaN, infinite or zero
    vectors."""
    n = len(file_names)
    factor, names = pd.factorize(labels.astype(str), sort=True)
    names = np.asarray(names, dtype=object)
    codes = np.where(unusable, -1, factor).astype(np.int64)
    x = unit_rows(vectors, ~unusable)
    sizes = np.bincount(codes[codes >= 0], minlength=len(names))
    sums = class_sums(x, codes, len(names))
    own = own_similarity(x, codes, sums)
    summary: dict[str, Any] = {"checks": list(options.checks), "auto": options.auto}
    if options.auto:
        picked, figures = pick_thresholds(x, codes, own, unit_centroids(sums))
        options = options.with_thresholds(**_consistent(options, picked))
        summary["auto_figures"] = figures
        summary["auto_picked"] = sorted(picked)
        kept = [k for k in ("drop_below", "merge_above") if k not in picked]
        if kept:
            summary["warnings"] = [
                "--auto: too little data to pick "
                + " and ".join("image thresholds" if k == "drop_below" else "class thresholds"
                               for k in kept)
                + "; those stay as given (docs/clean.md)"
            ]  # fmt: skip
    if options.robust:
        own, sums = _robust(x, codes, sizes, own, sums, options.drop_below)
    own[(codes < 0) | (sizes[np.maximum(codes, 0)] < 2)] = np.nan  # no centroid without it
    s = _State(x, codes, factor, names, sizes, own, unit_centroids(sums))
    summary["thresholds"] = options.thresholds()
    decision = np.full(n, "keep", dtype=object)
    reason = np.full(n, "", dtype=object)
    near_label = np.full(n, "", dtype=object)
    near_sim = np.full(n, np.nan)
    singleton = (codes >= 0) & (sizes[np.maximum(codes, 0)] == 1)
    reason[singleton] = "singleton"
    relabel_to = np.full(n, -1, np.int64)
    if "outliers" in options.checks:
        _outliers(s, options, decision, reason, near_label, near_sim, relabel_to)
    group, target, pairs = _merges(s, options)
    splits = None
    if "mixed" in options.checks:
        tried = candidates(sizes, *_quality(s)[:2])
        splits = find_splits(x, codes, own, tried, split_below=options.split_below,
                             tight_above=options.relabel_above)  # fmt: skip
    dup, dup_sim, scope = _duplicates(s, options, pairs, relabel_to)
    is_dup = dup >= 0
    decision[is_dup] = "duplicate"
    reason[is_dup] = [f"cosine {v:.3f} to {file_names[d]} ≥ {options.duplicate_above:g} "
                      "(duplicate; the first in input order stays)"
                      for v, d in zip(dup_sim[is_dup], dup[is_dup], strict=True)]  # fmt: skip
    decision[unusable] = "unusable"
    reason[unusable] = "the embedding holds NaN or infinite values, or is all zeros"
    summary["duplicates_across_classes"] = scope
    images = _images_table(file_names, labels, s, decision, reason, near_label, near_sim,
                           dup, dup_sim, splits, group, target, relabel_to)  # fmt: skip
    classes = _classes_table(s, group, target, splits, options)
    merges = pd.DataFrame(
        {
            LABEL_A: names[pairs[0]],
            LABEL_B: names[pairs[1]],
            SIMILARITY: pairs[2],
            MERGE_GROUP: group[pairs[0]],
        },
        columns=list(CLEAN_MERGE_COLUMNS),
    )
    summary["images"] = {k: int((images[DECISION] == k).sum()) for k in IMAGE_DECISIONS}
    summary["classes"] = {k: int((classes[DECISION] == k).sum()) for k in CLASS_DECISIONS}
    summary["merge_pairs"] = len(merges)
    summary["merge_groups"] = int(group.max()) if len(group) else 0
    return Decisions(images, classes, merges, summary, options, s.centroids)


def _consistent(options: CleanOptions, picked: dict[str, float]) -> dict[str, float]:
    """The picked thresholds, review never below drop."""
    if "review_below" in picked and "drop_below" in picked:
        picked["review_below"] = max(picked["review_below"], picked["drop_below"])
    elif "drop_below" in picked:
        picked["review_below"] = max(options.review_below, picked["drop_below"])
    return picked


def _robust(
    x: np.ndarray,
    codes: np.ndarray,
    sizes: np.ndarray,
    own: np.ndarray,
    sums: np.ndarray,
    drop_below: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Centroids without the images under ``drop_below`` (where ≥ 2 others remain), and the
    similarity of every image of those classes to them: without itself for the images in
    the sum, as it is for the images taken out. Other classes stay as they were; ``sums``
    is updated in place."""
    with np.errstate(invalid="ignore"):
        low = (codes >= 0) & (own < drop_below)
    left = sizes - np.bincount(codes[low], minlength=len(sizes))
    low &= left[np.maximum(codes, 0)] >= 2
    if not low.any():
        return own, sums
    sums -= class_sums(x, np.where(low, codes, -1), len(sizes))  # in place: 200 MB at 100k
    touched = np.zeros(len(sizes), bool)
    touched[codes[low]] = True
    rows = np.flatnonzero((codes >= 0) & touched[np.maximum(codes, 0)])
    part, out = x[rows], low[rows]
    inside = own_similarity(part, np.where(out, -1, codes[rows]), sums)
    outside = similarity_to(part, np.where(out, codes[rows], -1), sums)
    own = own.copy()
    own[rows] = np.where(out, outside, inside)
    return own, sums


def _outliers(
    s: _State,
    options: CleanOptions,
    decision: np.ndarray,
    reason: np.ndarray,
    near_label: np.ndarray,
    near_sim: np.ndarray,
    relabel_to: np.ndarray,
) -> None:
    """drop / review, and relabel for the images under ``review_below`` (in place)."""
    with np.errstate(invalid="ignore"):
        flagged = np.flatnonzero(s.own < options.review_below)
    best, score = nearest_other(s.x[flagged], s.codes[flagged], s.centroids)
    has = best >= 0
    near_label[flagged[has]] = s.names[best[has]]
    near_sim[flagged] = score
    own = s.own[flagged]
    with np.errstate(invalid="ignore"):
        move = has & (score >= options.relabel_above) & (score - own >= options.relabel_margin)
        drop = ~move & (own < options.drop_below)
    for k, row in enumerate(flagged.tolist()):
        mine = s.names[s.codes[row]]
        if move[k]:
            decision[row] = "relabel"
            relabel_to[row] = best[k]
            reason[row] = (
                f"cosine {score[k]:.3f} to {near_label[row]}'s centroid ≥ "
                f"{options.relabel_above:g}, {score[k] - own[k]:.3f} above {own[k]:.3f} to "
                f"its own class {mine} (relabel)"
            )
        elif drop[k]:
            decision[row] = "drop"
            reason[row] = (
                f"cosine {own[k]:.3f} to its class centroid < {options.drop_below:g} (drop)"
            )
        else:
            decision[row] = "review"
            reason[row] = (
                f"cosine {own[k]:.3f} to its class centroid < {options.review_below:g} (review)"
            )


def _merges(
    s: _State, options: CleanOptions
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The merge groups and targets per class, and the pairs over ``merge_above``."""
    classes = len(s.names)
    if "merges" not in options.checks:
        empty = np.zeros(0, np.int64)
        return np.zeros(classes, np.int64), np.full(classes, -1), (empty, empty, np.zeros(0))
    present = np.flatnonzero(s.sizes > 0)
    every = len(present) == classes  # then no copy of the centroids
    i, j, sim = pairs_above(s.centroids if every else s.centroids[present], options.merge_above)
    a, b = present[i], present[j]
    group, target = merge_groups(classes, a, b, s.sizes)
    return group, target, (a, b, sim)


def _duplicates(
    s: _State,
    options: CleanOptions,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    relabel_to: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The keep walk over near-duplicate pairs within classes and across (see the scope)."""
    n = len(s.codes)
    if "duplicates" not in options.checks:
        return np.full(n, -1, np.int64), np.full(n, np.nan), "not checked"
    threshold = options.duplicate_above
    i, j, sim = within_class_pairs(s.x, s.codes, threshold)
    usable = np.flatnonzero(s.codes >= 0)
    if len(usable) <= DUPLICATES_ALL_PAIRS:
        scope = "all pairs of images"
        a, b, t = pairs_above(s.x[usable], threshold)
        other = s.codes[usable[a]] != s.codes[usable[b]]
        a, b, t = usable[a[other]], usable[b[other]], t[other]
    else:
        scope = "images of the class pairs linked by a merge pair or a relabel"
        moved = np.flatnonzero(relabel_to >= 0)
        linked = np.concatenate(
            [np.stack(pairs[:2], axis=1), np.stack([s.codes[moved], relabel_to[moved]], axis=1)]
        )
        linked = np.unique(np.sort(linked, axis=1), axis=0)
        a, b, t = between_classes_pairs(s.x, s.codes, linked, threshold)
    dup, dup_sim = keep_first(
        n, np.concatenate([i, a]), np.concatenate([j, b]), np.concatenate([sim, t])
    )
    return dup, dup_sim, scope


def _quality(s: _State) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: mean, spread (std) and minimum own similarity (NaN for singletons)."""
    ok = (s.codes >= 0) & np.isfinite(s.own)
    c, v = s.codes[ok], s.own[ok]
    classes = len(s.names)
    count = np.bincount(c, minlength=classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(c, v, classes) / count
        spread = np.sqrt(np.maximum(np.bincount(c, v * v, classes) / count - mean**2, 0.0))
    low = np.full(classes, np.inf)
    np.minimum.at(low, c, v)
    low[count == 0] = np.nan
    return mean, spread, low


def _images_table(
    file_names: list[str],
    labels: np.ndarray,
    s: _State,
    decision: np.ndarray,
    reason: np.ndarray,
    near_label: np.ndarray,
    near_sim: np.ndarray,
    dup: np.ndarray,
    dup_sim: np.ndarray,
    splits: Any,
    group: np.ndarray,
    target: np.ndarray,
    relabel_to: np.ndarray,
) -> pd.DataFrame:
    """images.csv's rows, in input order."""
    n = len(file_names)
    after = np.where(group > 0, s.names[np.maximum(target, 0)], s.names)  # by class code
    text = labels.astype(str)
    new_label = after[s.label_codes]
    moved = relabel_to >= 0
    new_label[moved] = after[relabel_to[moved]]
    new_label[np.isin(decision, ("drop", "duplicate"))] = ""
    names = np.asarray(file_names, dtype=object)
    split_group = pd.array(np.full(n, pd.NA), dtype="Int64")
    if splits is not None:
        chosen = splits.group >= 0
        split_group[chosen] = splits.group[chosen]
    columns = {
        FILE_NAME: names,
        LABEL: text,
        DECISION: decision,
        REASON: reason,
        OWN_SIMILARITY: s.own,
        NEAREST_LABEL: near_label,
        NEAREST_SIMILARITY: near_sim,
        DUPLICATE_OF: np.where(dup >= 0, names[np.maximum(dup, 0)], ""),
        SIMILARITY: dup_sim,
        SPLIT_GROUP: split_group,
        NEW_LABEL: new_label,
    }
    return pd.DataFrame(columns, columns=list(CLEAN_IMAGE_COLUMNS))


def _classes_table(
    s: _State, group: np.ndarray, target: np.ndarray, splits: Any, options: CleanOptions
) -> pd.DataFrame:
    """classes.csv's rows, one per label in sort order."""
    mean, spread, low = _quality(s)
    classes = len(s.names)
    decision = np.full(classes, "keep", dtype=object)
    reason = np.full(classes, "", dtype=object)
    reason[s.sizes == 0] = "no usable embedding"
    single = s.sizes == 1
    decision[single] = "singleton"
    reason[single] = "one image: no centroid without it to compare with"
    if splits is not None:
        for k in np.flatnonzero(splits.split).tolist():
            decision[k] = "split"
            a, b = splits.sizes[k]
            reason[k] = (
                f"two groups of {a} and {b} images whose centroids have cosine "
                f"{splits.between[k]:.3f} < {options.split_below:g}, each tight (mean cosine "
                f"{splits.cohesion[k].min():.3f} ≥ {options.relabel_above:g}) (split)"
            )
    for k in np.flatnonzero(group > 0).tolist():
        decision[k] = "merge"
        into = s.names[target[k]]
        reason[k] = (
            f"merge group {group[k]} of {int((group == group[k]).sum())} classes with "
            f"centroid cosines ≥ {options.merge_above:g} (merges.csv); the largest, {into}, "
            "keeps its name"
        )
    return pd.DataFrame(
        {
            LABEL: s.names,
            IMAGES: s.sizes,
            MEAN_SIMILARITY: mean,
            SPREAD: spread,
            MIN_SIMILARITY: low,
            DECISION: decision,
            MERGE_GROUP: pd.Series(group, dtype="Int64").where(group > 0, pd.NA),
            MERGE_INTO: np.where(group > 0, s.names[np.maximum(target, 0)], ""),
            REASON: reason,
        },
        columns=list(CLEAN_CLASS_COLUMNS),
    )
