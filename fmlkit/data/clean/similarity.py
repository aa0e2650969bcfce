"""The cosine arithmetic of `fmlkit clean` (no I/O): unit vectors, class sums, each image's
similarity to its class centroid without itself, the nearest other class, and every pair of
rows at least a threshold alike, exactly, in blocks that bound the memory.

Leave-one-out without a second pass: with unit vectors x_i and the class sum S_c,
cos(x_i, S_c − x_i) = (x_i·S_c − 1) / |S_c − x_i| and |S_c − x_i|² = |S_c|² − 2 x_i·S_c + 1,
so one row-wise product x_i·S_c per image gives them all.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BLOCK = 4096  # rows per side of a similarity block: 64 MiB of float32 cosines
ROWS = 65_536  # rows per pass of a row-wise product: 128 MiB of gathered 512-d sums
CELLS = BLOCK * BLOCK  # float32 cosines per block of a query × centroid product


def unit_rows(vectors: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """``vectors`` as float32 unit rows, in place where they are float32 already; rows not
    ``usable`` (NaN, infinite or zero) become zeros."""
    x = np.asarray(vectors, dtype=np.float32)
    x[~usable] = 0.0
    for start in range(0, len(x), ROWS):
        part = x[start : start + ROWS]
        norms = np.sqrt(np.einsum("ij,ij->i", part, part))
        norms[norms == 0] = 1.0
        part /= norms[:, None]
    return x


def class_sums(x: np.ndarray, codes: np.ndarray, classes: int) -> np.ndarray:
    """(classes, E) float32 sums of the rows of ``x`` (float32) per class code (rows with
    code -1 are left out)."""
    import torch

    sums = torch.zeros((classes, x.shape[1]), dtype=torch.float32)
    for start in range(0, len(x), ROWS):
        c = codes[start : start + ROWS]
        ok = c >= 0
        if ok.all():  # a view of the rows, no copy
            rows = torch.from_numpy(x[start : start + ROWS])
        elif ok.any():
            rows = torch.from_numpy(x[np.flatnonzero(ok) + start])
        else:
            continue
        sums.index_add_(0, torch.from_numpy(c[ok].astype(np.int64)), rows)
    return sums.numpy()


def row_dots(x: np.ndarray, codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """x_i · table[codes[i]] for every row (0 where the code is -1)."""
    out = np.zeros(len(x), np.float64)
    for start in range(0, len(x), ROWS):
        c = codes[start : start + ROWS]
        ok = c >= 0
        if ok.all():
            out[start : start + len(c)] = np.einsum("ij,ij->i", x[start : start + ROWS], table[c])
        elif ok.any():
            rows = np.flatnonzero(ok) + start
            out[rows] = np.einsum("ij,ij->i", x[rows], table[c[ok]])
    return out


def own_similarity(x: np.ndarray, codes: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """cos(x_i, S_c − x_i) for every row whose code is ≥ 0; NaN where S_c − x_i is zero (a
    class of one image) or the code is -1. ``sums`` must include each row itself."""
    dots = row_dots(x, codes, sums)
    squares = np.einsum("ij,ij->i", sums, sums, dtype=np.float64)
    ok = codes >= 0
    rest = np.full(len(x), np.nan)
    rest[ok] = squares[codes[ok]] - 2 * dots[ok] + 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.sqrt(np.where(rest > 1e-9, rest, np.nan))
        return np.clip((dots - 1.0) / norm, -1.0, 1.0)


def similarity_to(x: np.ndarray, codes: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """cos(x_i, S_c) for every row (its class sum as it is, e.g. one without the row); NaN
    where the sum is zero or the code is -1."""
    dots = row_dots(x, codes, sums)
    norms = np.sqrt(np.einsum("ij,ij->i", sums, sums, dtype=np.float64))
    ok = codes >= 0
    out = np.full(len(x), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[ok] = dots[ok] / np.where(norms[codes[ok]] > 0, norms[codes[ok]], np.nan)
    return np.clip(out, -1.0, 1.0)


def unit_centroids(sums: np.ndarray) -> np.ndarray:
    """The class sums as float32 unit rows (a zero sum stays zero)."""
    norms = np.sqrt(np.einsum("ij,ij->i", sums, sums, dtype=np.float64))
    norms[norms == 0] = 1.0
    return np.asarray(sums, np.float32) / norms[:, None].astype(np.float32)


def nearest_other(
    queries: np.ndarray, own: np.ndarray, centroids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each query row (unit), the most similar centroid row other than ``own[q]``: its
    index (first on ties) and cosine; (-1, NaN) when there is no other."""
    best = np.full(len(queries), -1, np.int64)
    score = np.full(len(queries), np.nan)
    if len(centroids) < 2:
        return best, score
    step = max(1, CELLS // len(centroids))  # query rows per block: 64 MiB of cosines
    for start in range(0, len(queries), step):
        part = slice(start, start + step)
        sims = queries[part] @ centroids.T
        sims[np.arange(sims.shape[0]), own[part]] = -np.inf
        best[part] = sims.argmax(axis=1)
        score[part] = sims[np.arange(sims.shape[0]), best[part]]
    return best, score


def pairs_above(
    a: np.ndarray, threshold: float, b: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of rows at least ``threshold`` alike (cosines of unit rows), exactly.

    With ``b`` None: the pairs i < j of ``a`` (the upper triangle, block by block); else
    every pair (i of ``a``, j of ``b``). Returns (i, j, cosine), sorted by i then j.
    """
    found = list(_blocks(a, threshold, b))
    if not found:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), np.zeros(0)
    i, j, s = (np.concatenate(p) for p in zip(*found, strict=True))
    order = np.lexsort((j, i))
    return i[order], j[order], s[order].astype(np.float64)


def _blocks(
    a: np.ndarray, threshold: float, b: np.ndarray | None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    other = a if b is None else b
    for r in range(0, len(a), BLOCK):
        first = r if b is None else 0
        for c in range(first, len(other), BLOCK):
            sims = a[r : r + BLOCK] @ other[c : c + BLOCK].T
            if b is None and c == r:
                np.putmask(sims, _lower(len(sims), sims.shape[1]), -np.inf)  # i < j only
            rows = np.flatnonzero(sims.max(axis=1) >= threshold)  # most blocks have none
            if not len(rows):
                continue
            i, j = np.nonzero(sims[rows] >= threshold)
            yield rows[i] + r, j + c, sims[rows[i], j]


_LOWER: list[np.ndarray] = []


def _lower(rows: int, columns: int) -> np.ndarray:
    """The (rows, columns) mask of j ≤ i, from one cached BLOCK × BLOCK mask."""
    if not _LOWER:
        _LOWER.append(np.tri(BLOCK, dtype=bool))
    return _LOWER[0][:rows, :columns]
