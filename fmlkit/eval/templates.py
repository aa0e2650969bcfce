"""IJB-B / IJB-C template verification, pure array code (the files: docs/formats.md).

The arithmetic of insightface's arcface_torch ``eval_ijbc.py``:

- `image_features`: an image's feature is the embedding of its aligned crop plus that of the
  flipped crop (flip test), kept as is (norm score, insightface's default: the norm acts as a
  quality weight) or L2-normalised, then multiplied by the crop's detector score.
- `template_features`: within a template the images of one media are averaged, the media
  features summed and the sum L2-normalised.
- `pair_scores`: a pair's score is the dot product of its two template features.
- `tar_at_far_ijb`: TAR at FAR 1e-6 … 1e-1 from the ROC of the pair scores, both as insightface
  reads it (the ROC point whose FPR is closest to the target) and interpolated.
"""

from __future__ import annotations

import itertools
from typing import TypedDict

import numpy as np

from fmlkit.errors import InputError

IJB_FARS: tuple[str, ...] = ("1e-6", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1")
PAIR_BLOCK_VALUES = 1 << 24  # feature values gathered per block by `pair_scores`
GRAM_BLOCK_VALUES = 1 << 23  # similarities per matrix product block of `pair_scores`
GRAM_DENSITY = 64  # matrix products when pairs × this ≥ first templates × templates
ROWS_BLOCK = 1 << 20  # pairs looked up per block by `pair_scores`
POOL_BLOCK = 1 << 12  # images pooled per block by `template_features`


class IjbTarAtFar(TypedDict):
    """What `tar_at_far_ijb` returns: Python floats and ints, and the full ROC as arrays."""

    closest: dict[str, float | None]  # insightface's reading, by FAR target
    interpolated: dict[str, float | None]  # on the full ROC, by FAR target
    auc: float
    genuine: int  # genuine pairs
    imposter: int  # imposter pairs
    fpr: np.ndarray  # the full ROC (`roc_curve_points`), computed on the way: for a plot
    tpr: np.ndarray


def _finite_rows(array: np.ndarray, what: str) -> None:
    """Raise InputError naming the first rows of ``array`` that hold NaN or inf."""
    finite = np.isfinite(array)
    if finite.ndim > 1:
        finite = finite.all(axis=tuple(range(1, finite.ndim)))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        shown = ", ".join(str(i) for i in bad[:5])
        raise InputError(
            f"{what}: {bad.size} row(s) hold NaN or inf (rows {shown}"
            f"{', …' if bad.size > 5 else ''}); recompute them or drop those images"
        )


def image_features(
    plain: np.ndarray,
    flipped: np.ndarray | None = None,
    detector_scores: np.ndarray | None = None,
    *,
    flip: bool = True,
    norm_score: bool = True,
    detector_score: bool = True,
) -> np.ndarray:
    """Per-image features, float32 (n, d), as insightface's ``eval_ijbc.py`` builds them.

    Args:
        plain: (n, d) embeddings of the aligned crops.
        flipped: (n, d) embeddings of the horizontally flipped crops; needed when ``flip``.
        detector_scores: (n,) detector score of each crop; needed when ``detector_score``.
        flip: add the flipped crop's embedding to the plain one (flip test).
        norm_score: keep each feature's norm (insightface's default ``use_norm_score=True``:
            the norm weighs the image in its template); False L2-normalises each feature.
        detector_score: multiply each feature by its crop's detector score.

    Raises:
        InputError: a needed array is missing, shapes disagree, or a row holds NaN or inf.
    """
    plain = np.asarray(plain)
    if plain.ndim != 2:
        raise InputError(f"embeddings must be a 2-D (images, dim) array, found shape {plain.shape}")
    features = plain.astype(np.float32, copy=True)
    _finite_rows(features, "embeddings")
    if flip:
        if flipped is None:
            raise InputError(
                "the flip test needs the flipped crops' embeddings; pass them or turn flip off"
            )
        flipped = np.asarray(flipped)
        if flipped.shape != plain.shape:
            raise InputError(
                f"flipped embeddings have shape {flipped.shape}, the plain ones {plain.shape}; "
                "they must match"
            )
        _finite_rows(flipped, "flipped embeddings")
        features += flipped.astype(np.float32, copy=False)
    if not norm_score:
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        np.divide(features, norms, out=features, where=norms > 0)
    if detector_score:
        if detector_scores is None:
            raise InputError(
                "detector-score weighting needs each crop's detector score; "
                "pass them or turn it off"
            )
        weights = np.asarray(detector_scores, dtype=np.float32).reshape(-1)
        if weights.shape[0] != features.shape[0]:
            raise InputError(
                f"{weights.shape[0]} detector score(s) for {features.shape[0]} embeddings; "
                "give one per image"
            )
        _finite_rows(weights, "detector scores")
        features *= weights[:, None]
    return features


def template_features(
    features: np.ndarray, templates: np.ndarray, medias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pool image features into L2-normalised template features (``eval_ijbc.py``'s recipe).

    Within a template, the images of each media are averaged (a media with one image gives
    that image), the media features are summed, and the sum is L2-normalised. A template whose
    sum is all zeros keeps a zero feature (its pairs then score 0) instead of NaN.

    Vectorised: one sort by (template, media), then two ``np.add.reduceat`` per block of about
    4,096 images (whole templates), so the float64 working copies stay bounded.

    Args:
        features: (n, d) image features (see `image_features`).
        templates: (n,) template id of each image.
        medias: (n,) media id of each image.

    Returns:
        (template ids, sorted ascending, int64 (t,); their features, float32 (t, d)).

    Raises:
        InputError: the three arrays disagree in length, or there are no images.
    """
    features = np.asarray(features, dtype=np.float32)
    templates = np.asarray(templates).astype(np.int64, copy=False).reshape(-1)
    medias = np.asarray(medias).astype(np.int64, copy=False).reshape(-1)
    if features.ndim != 2 or not features.shape[0] == templates.size == medias.size:
        raise InputError(
            f"features {features.shape}, templates ({templates.size},) and medias "
            f"({medias.size},) must describe the same images"
        )
    if templates.size == 0:
        raise InputError("no images to pool into templates")
    order = np.lexsort((medias, templates))
    sorted_t, sorted_m = templates[order], medias[order]
    new_media = np.ones(order.size, dtype=bool)
    new_media[1:] = (sorted_t[1:] != sorted_t[:-1]) | (sorted_m[1:] != sorted_m[:-1])
    new_template = np.ones(order.size, dtype=bool)
    new_template[1:] = sorted_t[1:] != sorted_t[:-1]
    template_starts = np.flatnonzero(new_template)
    pooled = np.zeros((template_starts.size, features.shape[1]), dtype=np.float32)
    # Blocks of whole templates, about POOL_BLOCK images each, bound the float64 copies.
    cuts = np.searchsorted(template_starts, np.arange(0, order.size, POOL_BLOCK))
    cuts = np.unique(np.append(cuts, template_starts.size))
    for first, last in itertools.pairwise(cuts.tolist()):
        begin = template_starts[first]
        end = template_starts[last] if last < template_starts.size else order.size
        pooled[first:last] = _pool_block(
            features[order[begin:end]], new_media[begin:end], new_template[begin:end]
        )
    return sorted_t[template_starts], pooled


def _pool_block(
    features: np.ndarray, new_media: np.ndarray, new_template: np.ndarray
) -> np.ndarray:
    """Template features of a block of whole templates, images sorted by (template, media)."""
    media_starts = np.flatnonzero(new_media)
    counts = np.diff(np.append(media_starts, new_media.size))
    # (d, images): each media's images are contiguous in memory, reduceat's fast direction
    columns = np.ascontiguousarray(features.T, dtype=np.float64)
    media_means = np.add.reduceat(columns, media_starts, axis=1)
    media_means /= counts
    sums = np.add.reduceat(media_means, np.flatnonzero(new_template[media_starts]), axis=1).T
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0).astype(np.float32)


def pair_scores(
    template_ids: np.ndarray, template_features: np.ndarray, pairs: np.ndarray
) -> np.ndarray:
    """Score of each template pair: the dot product of its two template features, float64
    (computed in float32, as insightface computes it).

    Two ways, same numbers (to float32 rounding): when the pairs are dense among the
    templates (IJB-C: 15.7M of 23,124² / 2), a block of first templates at a time is
    multiplied by every template feature (one matrix product, ``GRAM_BLOCK_VALUES`` floats)
    and each pair's entry picked; otherwise both features of a block of pairs are gathered
    (``PAIR_BLOCK_VALUES`` floats). Memory stays bounded whatever the number of pairs.

    Args:
        template_ids: (t,) template ids, sorted ascending (as `template_features` returns them).
        template_features: (t, d) their features.
        pairs: (p, 2) template ids of each pair.

    Raises:
        InputError: a pair names a template that has no feature; ids unsorted, repeated or
            not one per feature row.
    """
    template_ids = np.asarray(template_ids, dtype=np.int64).reshape(-1)
    features = np.ascontiguousarray(template_features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != template_ids.size:
        raise InputError(
            f"{template_ids.size} template id(s) for template features of shape "
            f"{features.shape}; give one (t, d) row per id"
        )
    if np.any(np.diff(template_ids) <= 0):
        raise InputError("template ids must be sorted ascending and unique")
    rows = _template_rows(template_ids, np.asarray(pairs).reshape(-1, 2))
    scores = np.empty(rows.shape[0], dtype=np.float64)
    used_first = np.count_nonzero(np.bincount(rows[:, 0], minlength=template_ids.size))
    if rows.shape[0] * GRAM_DENSITY >= used_first * template_ids.size:
        _scores_by_products(features, rows, scores)
    else:
        block = max(1, PAIR_BLOCK_VALUES // max(1, features.shape[1]))
        for begin in range(0, rows.shape[0], block):
            first = features[rows[begin : begin + block, 0]]
            second = features[rows[begin : begin + block, 1]]
            scores[begin : begin + block] = np.einsum("ij,ij->i", first, second)
    return scores


def _scores_by_products(features: np.ndarray, rows: np.ndarray, scores: np.ndarray) -> None:
    """Fill ``scores`` from products of blocks of first templates with every template."""
    first = rows[:, 0].astype(np.uint16) if features.shape[0] <= 1 << 16 else rows[:, 0]
    order = np.argsort(first, kind="stable")  # a radix sort for 16-bit keys
    sorted_first = rows[order, 0]
    step = max(1, GRAM_BLOCK_VALUES // max(1, features.shape[0]))
    bounds = np.searchsorted(sorted_first, np.arange(0, features.shape[0] + step, step))
    for block, (begin, end) in enumerate(itertools.pairwise(bounds.tolist())):
        if begin == end:
            continue
        chosen = order[begin:end]
        products = features[block * step : (block + 1) * step] @ features.T
        scores[chosen] = products[rows[chosen, 0] - block * step, rows[chosen, 1]]


def _template_rows(template_ids: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Row (int32) of each pair's templates in ``template_ids`` (sorted), a block of pairs at
    a time (a lookup table when the ids span a small range); InputError for an unknown id."""
    rows = np.zeros(pairs.shape, dtype=np.int32)
    lowest = int(template_ids[0]) if template_ids.size else 0
    span = int(template_ids[-1]) - lowest + 1 if template_ids.size else 0
    table = None
    if 0 < span <= max(4 * template_ids.size, 1 << 22):
        table = np.full(span, -1, dtype=np.int32)
        table[template_ids - lowest] = np.arange(template_ids.size, dtype=np.int32)
    for begin in range(0, pairs.shape[0], ROWS_BLOCK):
        block = pairs[begin : begin + ROWS_BLOCK].astype(np.int64, copy=False)
        if table is not None:
            offsets = block - lowest
            inside = (offsets >= 0) & (offsets < span)
            found = table[np.where(inside, offsets, 0)]
            known = inside & (found >= 0)
        elif template_ids.size:
            found = np.searchsorted(template_ids, block).clip(0, template_ids.size - 1)
            known = template_ids[found] == block
        else:
            found, known = np.zeros(block.shape, np.int32), np.zeros(block.shape, bool)
        if not known.all():
            bad = np.flatnonzero(~known.all(axis=1))
            pair = int(bad[0])
            template = block[pair, 0] if not known[pair, 0] else block[pair, 1]
            raise InputError(
                f"pairs name templates with no feature; the first, pair {begin + pair} "
                f"({block[pair, 0]}, {block[pair, 1]}), names template {template}"
            )
        rows[begin : begin + ROWS_BLOCK] = found
    return rows


def _check_labels(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels as bool and scores as float64, checked: one each, 0/1 labels, finite scores."""
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.size != scores.size:
        raise InputError(f"{labels.size} label(s) for {scores.size} score(s); give one per pair")
    if not np.isin(labels, (0, 1)).all():
        raise InputError("pair labels must be 0 (imposter) or 1 (genuine)")
    _finite_rows(scores, "pair scores")
    return labels.astype(bool), scores


def _roc_counts(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(accepted imposters, accepted genuine pairs) at each distinct score, highest first: a
    pair is accepted when its score is ≥ the threshold. No (0, 0) point."""
    order = np.argsort(scores)[::-1]  # any order within ties: only their run ends count
    ranked = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]
    genuine = np.cumsum(labels[order], dtype=np.int64)[ends]
    return ends + 1 - genuine, genuine


def roc_curve_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The full ROC, (FPR, TPR) float64, one point per distinct score plus (0, 0): every point
    of scikit-learn's ``roc_curve(labels, scores, drop_intermediate=False)``.

    Raises:
        InputError: labels not 0/1, lengths differ, a score is NaN or inf, or one class only.
    """
    labels, scores = _check_labels(labels, scores)
    imposters, genuine = _roc_counts(labels, scores)
    if imposters[-1] == 0 or genuine[-1] == 0:
        raise InputError(
            f"a ROC needs genuine and imposter pairs; found {int(genuine[-1])} genuine and "
            f"{int(imposters[-1])} imposter"
        )
    return np.r_[0, imposters] / imposters[-1], np.r_[0, genuine] / genuine[-1]


def _drop_intermediate(fps: np.ndarray, tps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``drop_intermediate=True``: drop the points whose two neighbours are at
    equal steps in both counts (a straight run of equal steps keeps only its ends)."""
    if fps.size <= 2:
        return fps, tps
    corner = np.logical_or(np.diff(fps, 2), np.diff(tps, 2))
    keep = np.r_[True, corner, True]
    return fps[keep], tps[keep]


def tar_at_far_ijb(
    labels: np.ndarray, scores: np.ndarray, fars: tuple[str, ...] = IJB_FARS
) -> IjbTarAtFar:
    """TAR at each FAR in ``fars``, two ways, with the AUC and the class counts.

    - ``closest`` (insightface's number): scikit-learn's ``roc_curve(labels, scores)`` with its
      default ``drop_intermediate=True``, read at the point whose FPR is closest to the
      target; on a tie, the one at the lowest threshold (insightface flips the curve and takes
      the first minimum).
    - ``interpolated``: on the full ROC (`roc_curve_points`), TPR linearly interpolated between
      the two points around FPR = target; where points sit exactly at the target, the highest
      TPR among them.

    A target with fewer than 1/target imposter pairs is ``None`` in both (no FPR at or below it
    but 0 can be measured).

    Args:
        labels: (p,) 1 for a genuine pair, 0 for an imposter pair.
        scores: (p,) pair scores (higher: more alike).
        fars: the targets, as strings (they key the result).

    Returns:
        ``{"closest": {far: tpr | None}, "interpolated": {far: tpr | None}, "auc": float,
        "genuine": int, "imposter": int, "fpr": …, "tpr": …}``, the last two the full ROC
        as `roc_curve_points` gives it (one sort of the scores serves both).

    Raises:
        InputError: as `roc_curve_points` (one class only, bad labels or scores).
    """
    labels, scores = _check_labels(labels, scores)
    fps, tps = _roc_counts(labels, scores)
    imposters, genuine = int(fps[-1]), int(tps[-1])
    if imposters == 0 or genuine == 0:
        raise InputError(
            f"TAR@FAR needs genuine and imposter pairs; found {genuine} genuine and "
            f"{imposters} imposter"
        )
    fpr, tpr = np.r_[0, fps] / imposters, np.r_[0, tps] / genuine
    kept_fps, kept_tps = _drop_intermediate(fps, tps)
    kept_fpr, kept_tpr = np.r_[0, kept_fps] / imposters, np.r_[0, kept_tps] / genuine
    closest: dict[str, float | None] = {}
    interpolated: dict[str, float | None] = {}
    for key in fars:
        target = float(key)
        if imposters < round(1 / target):
            closest[key] = interpolated[key] = None
            continue
        distance = np.abs(kept_fpr - target)
        closest[key] = float(kept_tpr[np.flatnonzero(distance == distance.min())[-1]])
        interpolated[key] = _interpolate(fpr, tpr, target)
    return {
        "closest": closest,
        "interpolated": interpolated,
        "auc": float(np.trapezoid(tpr, fpr)),
        "genuine": genuine,
        "imposter": imposters,
        "fpr": fpr,
        "tpr": tpr,
    }


def _interpolate(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """TPR at FPR = ``target`` on the ROC (FPR non-decreasing), linearly between points."""
    i = int(np.searchsorted(fpr, target, side="right")) - 1
    if fpr[i] == target or i + 1 == fpr.size:
        return float(tpr[i])
    step = (target - fpr[i]) / (fpr[i + 1] - fpr[i])
    return float(tpr[i] + step * (tpr[i + 1] - tpr[i]))
