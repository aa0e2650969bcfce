"""The similarity transform that maps 5 landmarks onto a template, and the checks that refuse
landmarks no transform should be fitted to."""

from __future__ import annotations

import numpy as np

# A landmark may lie outside the image by at most this fraction of the image's longer side
# (detectors and VGGFace2's loose landmarks put points of cut-off faces a little outside).
OUTSIDE_SLACK = 0.1
# Points whose spread is flatter than this (smallest / largest singular value of the centred
# points; the ArcFace template's is 0.80) or smaller than MIN_SPREAD_PX are degenerate.
MIN_FLATNESS = 0.1
MIN_SPREAD_PX = 1.0
# A fit whose RMS residual exceeds this fraction of the crop's height does not look like a face
# (points in the wrong order, mirrored, or made up).
MAX_RESIDUAL = 0.1


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float]:
    """The least-squares similarity (rotation, uniform scale, translation; no reflection) that
    maps ``src`` onto ``dst`` (Umeyama 1991), and its RMS residual in ``dst`` units.

    Args:
        src: (N, 2) points, e.g. landmarks in image pixels.
        dst: (N, 2) target points, e.g. the template in output pixels.

    Returns:
        The 2×3 matrix M with dst ≈ M @ [x, y, 1], and sqrt(mean |M src − dst|²).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0**2).sum() / len(src)
    cov = d0.T @ s0 / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # the best fit would mirror: forbid it
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum() / var_s) if var_s > 0 else 0.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - scale * rotation @ mu_s
    mapped = src @ matrix[:, :2].T + matrix[:, 2]
    residual = float(np.sqrt(((mapped - dst) ** 2).sum(axis=1).mean()))
    return matrix, residual


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2×3 affine matrix, as a 2×3 matrix."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def landmark_problem(points: np.ndarray, width: int, height: int) -> str | None:
    """Why ``points`` (5×2, image pixels) cannot be aligned, or None: not finite, outside the
    ``width`` × ``height`` image by more than `OUTSIDE_SLACK` of its longer side, or degenerate
    (all in one spot or on one line; `MIN_FLATNESS`)."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        return "not finite"
    slack = OUTSIDE_SLACK * max(width, height)
    low, high = points.min(axis=0), points.max(axis=0)
    if (low < -slack).any() or high[0] > width + slack or high[1] > height + slack:
        return "outside the image"
    sv = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    if sv[0] < MIN_SPREAD_PX or sv[1] < MIN_FLATNESS * sv[0]:
        return "collinear or coincident"
    return None
