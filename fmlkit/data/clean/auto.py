"""`fmlkit clean --auto`: thresholds read from the data's own similarity distributions.

- genuine: each image's cosine to its class centroid without itself (own similarity);
- imposter: the cosine of a sample of images (`SAMPLE`, seeded) to the centroid of a random
  other class;
- halves: the cosine between the centroids of a class's two halves (alternate images, classes
  of ≥ 4), what one identity's two folders would look like;
- strangers: the centroid cosines of a sample of random class pairs.

Picked: ``drop_below`` = imposter q99 (an image below it looks like a stranger);
``review_below`` = the larger of that and genuine q02; ``relabel_above`` = genuine q05;
``merge_above`` = halfway between strangers' q99.99 and halves' q01 (halves' q01 when the
two overlap); ``split_below`` = ``merge_above``. The figures go into summary.json. Too
little data (fewer than `MIN_GENUINE` own similarities, or `MIN_HALVES` classes of ≥ 4
images) picks nothing for that part: its thresholds stay as given, and the summary says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmlkit.data.clean.similarity import class_sums, unit_centroids

SAMPLE = 20_000
SEED = 0
MIN_GENUINE = 50  # own similarities needed to pick the image thresholds
MIN_HALVES = 10  # classes of ≥ 4 images needed to pick the class thresholds


def pick_thresholds(
    x: np.ndarray, codes: np.ndarray, own: np.ndarray, centroids: np.ndarray
) -> tuple[dict[str, float], dict[str, Any]]:
    """The thresholds (by `CleanOptions` field) and the figures they were picked from."""
    rng = np.random.default_rng(SEED)
    classes = len(centroids)
    genuine = own[np.isfinite(own)]
    rows = np.flatnonzero(codes >= 0)
    figures: dict[str, Any] = {}
    picked: dict[str, float] = {}
    if classes >= 2 and len(genuine) >= MIN_GENUINE:
        sample = rng.choice(rows, size=min(SAMPLE, len(rows)), replace=False)
        other = (codes[sample] + rng.integers(1, classes, len(sample))) % classes
        imposter = np.einsum("ij,ij->i", x[sample], centroids[other])
        figures["genuine"] = _quantiles(genuine)
        figures["imposter"] = _quantiles(imposter)
        drop = float(np.quantile(imposter, 0.99))
        picked["drop_below"] = drop
        picked["review_below"] = max(drop, float(np.quantile(genuine, 0.02)))
        picked["relabel_above"] = float(np.quantile(genuine, 0.05))
    halves = _halves(x, codes, classes)
    if classes >= 2 and len(halves) >= MIN_HALVES:
        a = rng.integers(0, classes, SAMPLE)
        b = (a + rng.integers(1, classes, SAMPLE)) % classes
        strangers = np.einsum("ij,ij->i", centroids[a], centroids[b])
        figures["halves"] = _quantiles(halves)
        figures["strangers"] = _quantiles(strangers)
        high, low = float(np.quantile(strangers, 0.9999)), float(np.quantile(halves, 0.01))
        merge = (high + low) / 2 if high < low else low
        picked["merge_above"] = picked["split_below"] = merge
    return {k: float(np.clip(v, -1.0, 1.0)) for k, v in picked.items()}, figures


def _halves(x: np.ndarray, codes: np.ndarray, classes: int) -> np.ndarray:
    """Centroid cosines of each class's two halves (alternate rows; classes of ≥ 4)."""
    rows = np.flatnonzero(codes >= 0)
    rows = rows[np.argsort(codes[rows], kind="stable")]
    starts = np.searchsorted(codes[rows], codes[rows])
    half = (np.arange(len(rows)) - starts) % 2
    sizes = np.bincount(codes[rows], minlength=classes)
    big = sizes >= 4
    sums = [class_sums(x[rows], np.where(half == h, codes[rows], -1), classes) for h in (0, 1)]
    first, second = (unit_centroids(s)[big] for s in sums)
    return np.einsum("ij,ij->i", first, second).astype(np.float64)


def _quantiles(values: np.ndarray) -> dict[str, float]:
    qs = (0.01, 0.02, 0.05, 0.5, 0.95, 0.99, 0.9999)
    found = np.quantile(values, qs) if len(values) else [float("nan")] * len(qs)
    out = {f"q{q * 100:g}": round(float(v), 4) for q, v in zip(qs, found, strict=True)}
    out["count"] = len(values)
    return out
