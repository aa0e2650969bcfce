"""Verification metrics of a pair list, pure array code (docs/formats.md#the-verification-protocol).

Accuracy by insightface's 10-fold protocol (`verify`): embeddings (flip-summed by the caller) are
L2-normalised; a pair's distance is the squared L2 distance between them, in [0, 4]; a pair is
called "same" when its distance is below the threshold. The pairs are cut into 10 folds in file
order (scikit-learn's ``KFold`` without shuffling, as insightface); for each fold the threshold
in 0, 0.01, …, 3.99 with the best accuracy on the other 9 folds (the first one on ties) is
applied to it. Reported: the mean of the 10 fold accuracies, their population standard deviation
(insightface's ±, not FaceX-Zoo's standard error), and the mean of the 10 thresholds.

`score_pairs` adds, for one pair list: insightface's VAL@FAR=1e-3 (`val_at_far`), and from the
ROC of the cosine similarities over all pairs (scikit-learn's ``roc_curve``, every threshold
kept): AUC, EER and TAR at FAR 1e-1 … 1e-6.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from fmlkit.errors import InputError

log = logging.getLogger(__name__)

THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)  # insightface's grid for VAL@FAR
TAR_AT_FAR_TARGETS: tuple[str, ...] = ("1e-1", "1e-2", "1e-3", "1e-4", "1e-5", "1e-6")


@dataclass(frozen=True)
class Verification:
    accuracy: float  # mean of the fold accuracies
    accuracy_std: float  # population std of the fold accuracies
    threshold: float  # mean of the fold thresholds, squared-L2 units
    pairs: int


@dataclass(frozen=True)
class PairScores:
    """Everything a report needs for one pair list.

    Attributes:
        similarities: float64 cosine similarity of the L2-normalised embeddings, per pair, in
            file order.
        same: bool per pair, True for a genuine (same identity) pair.
        result: the JSON-ready metrics (Python floats and ints), keys in this order:
            ``accuracy``, ``accuracy_std``, ``threshold`` (as `verify`), ``val_at_far_1e-3``
            (`val_at_far`), ``auc``, ``eer``, ``tar_at_far`` ({"1e-1": TAR, …}, only the targets
            with at least 1/target imposter pairs), ``pairs``.
    """

    similarities: np.ndarray
    same: np.ndarray
    result: dict[str, object]

    def roc(self) -> tuple[np.ndarray, np.ndarray]:
        """(FAR, TAR) at every similarity threshold (`roc_points`)."""
        return roc_points(self.same, self.similarities)


def roc_points(same: np.ndarray, similarities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) at every similarity threshold (a pair is accepted when its similarity is ≥
    the threshold), from (0, 0) to (1, 1), FAR non-decreasing: the points of scikit-learn's
    ``roc_curve(same, similarities, drop_intermediate=False)`` (tested equal), in numpy so that
    an evaluation does not pay scikit-learn's second-long import."""
    same = np.asarray(same, bool)
    order = np.argsort(-np.asarray(similarities, np.float64), kind="stable")
    ranked = np.asarray(similarities, np.float64)[order]
    # the last position of each run of equal similarities: one ROC point per distinct value
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    accepted_genuine = np.cumsum(same[order])[ends]
    accepted_imposter = ends + 1 - accepted_genuine
    tar = np.r_[0, accepted_genuine] / max(1, accepted_genuine[-1])
    far = np.r_[0, accepted_imposter] / max(1, accepted_imposter[-1])
    return far, tar


def _kfold(n: int, folds: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index arrays of ``folds`` consecutive folds in file order, the first
    ``n % folds`` one longer: scikit-learn's ``KFold(folds, shuffle=False)`` (tested equal)."""
    sizes = np.full(folds, n // folds)
    sizes[: n % folds] += 1
    bounds = np.r_[0, np.cumsum(sizes)]
    everything = np.arange(n)
    for start, stop in itertools.pairwise(bounds):
        yield np.r_[everything[:start], everything[stop:]], everything[start:stop]


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def pair_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Squared L2 distances between the L2-normalised rows of ``first`` and ``second``."""
    return np.square(_unit(first) - _unit(second)).sum(axis=1)


def verify(distances: np.ndarray, same: np.ndarray, *, folds: int = 10) -> Verification:
    """The 10-fold verification accuracy of pairs at ``distances`` whose truth is ``same``.

    Raises:
        InputError: fewer pairs than folds, or NaN distances.
    """
    distances, same = np.asarray(distances, np.float64), np.asarray(same, bool)
    if len(distances) < folds:
        raise InputError(f"{len(distances)} pairs cannot make {folds} folds")
    if np.isnan(distances).any():
        raise InputError("some pair distances are NaN: the embeddings hold NaN")
    # correct[t, i]: pair i is classified right at threshold t
    correct = (distances[None, :] < THRESHOLDS[:, None]) == same[None, :]
    accuracies, thresholds = [], []
    for train, test in _kfold(len(distances), folds):
        best = int(np.argmax(correct[:, train].mean(axis=1)))  # first best on ties
        thresholds.append(THRESHOLDS[best])
        accuracies.append(correct[best, test].mean())
    return Verification(
        float(np.mean(accuracies)),
        float(np.std(accuracies)),
        float(np.mean(thresholds)),
        len(distances),
    )


def _slinear_at(far: np.ndarray, thresholds: np.ndarray, target: float) -> float:
    """``interp1d(far, thresholds, kind='slinear')(target)`` as scipy ≤ 1.8 computed it.

    insightface calls that on a FAR curve with repeated values, which scipy ≥ 1.9 refuses
    ("Expect x to not have duplicates"); the published numbers come from the older behaviour:
    a degree-1 B-spline with knots ``[far[0], *far, far[-1]]`` (``far`` non-decreasing), read in
    the last knot interval that starts at or before ``target`` — so between the last point with
    FAR ≤ target and the next one — and 0 where that interval is empty (de Boor's recursion
    drops a zero-width interval). Requires far[0] ≤ target ≤ far[-1].
    """
    i = int(np.searchsorted(far, target, side="right")) - 1  # last far[i] <= target
    i = min(i, len(far) - 2)
    lo, hi = far[i], far[i + 1]
    if lo == hi:
        return 0.0
    w = 1.0 / (hi - lo)
    return float(thresholds[i] * (w * (hi - target)) + thresholds[i + 1] * (w * (target - lo)))


def val_at_far(
    distances: np.ndarray, same: np.ndarray, *, far: float = 1e-3, folds: int = 10
) -> float:
    """insightface's VAL@FAR: the mean over folds of the true accept rate at a FAR target.

    Per fold (in file order, as `verify`): on the other folds, the FAR (imposter pairs with
    distance < t, over all imposter pairs) at every t in 0, 0.001, …, 3.999; where the largest
    FAR reaches ``far``, the threshold interpolated at ``far`` along that curve (`_slinear_at`),
    else 0; then VAL = the fraction of the fold's genuine pairs with distance < threshold.
    insightface divides by zero on a fold with no genuine pair, or whose other folds hold no
    imposter pair; such folds are left out of the mean here (with a warning).

    Raises:
        InputError: fewer pairs than folds, or no fold that has a VAL.
    """
    distances, same = np.asarray(distances, np.float64), np.asarray(same, bool)
    if len(distances) < folds:
        raise InputError(f"{len(distances)} pairs cannot make {folds} folds")
    vals = []
    for train, test in _kfold(len(distances), folds):
        imposters = np.sort(distances[train][~same[train]])
        genuine = distances[test][same[test]]
        if len(imposters) == 0 or len(genuine) == 0:
            continue
        far_train = np.searchsorted(imposters, VAL_THRESHOLDS, side="left") / len(imposters)
        threshold = _slinear_at(far_train, VAL_THRESHOLDS, far) if far_train.max() >= far else 0.0
        vals.append(np.count_nonzero(genuine < threshold) / len(genuine))
    if not vals:
        raise InputError("no fold has both genuine pairs and imposter pairs on its other folds")
    if len(vals) < folds:
        log.warning(
            "VAL@FAR: %d of %d folds have no genuine pair, or no imposter pair on the other "
            "folds, and are left out of the mean; interleave the pair list's classes",
            folds - len(vals),
            folds,
        )
    return float(np.mean(vals))


def equal_error_rate(far: np.ndarray, tar: np.ndarray) -> float:
    """The EER of a ROC: where FNR (1 − TAR) equals FAR, linearly interpolated.

    ``far``/``tar`` are a ROC as `PairScores.roc` gives it. FNR − FAR falls along the curve from
    1 at (0, 0) to −1 at (1, 1); at the first point where it is ≤ 0 the crossing is found on
    the straight segment from the previous point (the piecewise-linear ROC whose area is the
    AUC), where FAR = FNR; the EER is that common value.
    """
    gap = (1.0 - tar) - far
    i = int(np.argmax(gap <= 0))
    if gap[i] == 0 or i == 0:
        return float(far[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(far[i - 1] + t * (far[i] - far[i - 1]))


def tar_at_far(far: np.ndarray, tar: np.ndarray, *, imposters: int) -> dict[str, float]:
    """TAR at each FAR in `TAR_AT_FAR_TARGETS`: the highest TAR among the ROC points with
    FAR ≤ target (the point with the largest such FAR). A target is left out when there are
    fewer than 1/target imposter pairs (no FAR between 0 and the target can be measured)."""
    result = {}
    for key in TAR_AT_FAR_TARGETS:
        target = float(key)
        if imposters < round(1 / target):
            continue
        i = int(np.searchsorted(far, target, side="right")) - 1
        result[key] = float(tar[i])
    return result


def _check_pairs(first: np.ndarray, second: np.ndarray, same: np.ndarray, folds: int) -> None:
    if first.ndim != 2 or first.shape != second.shape:
        raise InputError(
            f"expected two (pairs, dimension) embedding arrays of one shape, found "
            f"{first.shape} and {second.shape}"
        )
    if same.shape != (len(first),):
        raise InputError(f"expected {len(first)} same/different flags, found shape {same.shape}")
    if folds < 2 or len(first) < folds:
        raise InputError(
            f"{len(first)} pairs cannot make {folds} folds: need at least 2 folds and one pair "
            "per fold"
        )
    for name, emb in (("first", first), ("second", second)):
        bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
        if len(bad):
            raise InputError(
                f"{len(bad)} {name} embeddings hold NaN or infinite values (pairs "
                f"{', '.join(map(str, bad[:5]))}); re-embed those images"
            )
        zero = np.flatnonzero(~(np.linalg.norm(emb, axis=1) > 0))
        if len(zero):
            raise InputError(
                f"{len(zero)} {name} embeddings are all zeros and have no direction (pairs "
                f"{', '.join(map(str, zero[:5]))}); re-embed those images"
            )
    genuine = int(same.sum())
    if genuine in (0, len(same)):
        raise InputError(
            f"expected both genuine and imposter pairs for AUC and EER, found {genuine} genuine "
            f"and {len(same) - genuine} imposter pairs; use a pair list with both"
        )


def _as_flags(same: np.ndarray) -> np.ndarray:
    flags = np.asarray(same)
    if flags.dtype != bool:
        if flags.size and not np.isin(flags, (0, 1)).all():
            raise InputError("same/different flags must be booleans or 0/1")
        flags = flags.astype(bool)
    return flags


def score_pairs(
    first: np.ndarray, second: np.ndarray, same: np.ndarray, *, folds: int = 10
) -> PairScores:
    """All verification metrics of one pair list.

    Args:
        first: (pairs, dimension) embeddings of each pair's first image, flip-summed by the
            caller where wanted, not normalised; row i with row i of ``second`` is pair i.
        second: the second images' embeddings, same shape.
        same: per pair, True (or 1) for a genuine pair, False (0) for an imposter pair.
        folds: folds of the accuracy and VAL protocols (10 in every published number).

    Returns:
        The similarities, flags and metrics (see `PairScores`).

    Raises:
        InputError: mismatched shapes, fewer pairs than folds, NaN/infinite or all-zero
            embeddings, or pairs of one class only.
    """
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    same = _as_flags(same)
    _check_pairs(first, second, same, folds)
    a, b = _unit(first), _unit(second)  # normalised once for both measures
    distances = np.square(a - b).sum(axis=1)  # = pair_distances(first, second)
    similarities = np.einsum("ij,ij->i", a, b)
    accuracy = verify(distances, same, folds=folds)
    far, tar = roc_points(same, similarities)
    result: dict[str, object] = {
        "accuracy": accuracy.accuracy,
        "accuracy_std": accuracy.accuracy_std,
        "threshold": accuracy.threshold,
        "val_at_far_1e-3": val_at_far(distances, same, far=1e-3, folds=folds),
        "auc": float(np.trapezoid(tar, far)),  # = scikit-learn's roc_auc_score (tested)
        "eer": equal_error_rate(far, tar),
        "tar_at_far": tar_at_far(far, tar, imposters=int((~same).sum())),
        "pairs": len(same),
    }
    return PairScores(similarities, same, result)
