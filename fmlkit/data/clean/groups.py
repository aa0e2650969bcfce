"""Merge groups and near-duplicates of `fmlkit clean` (no I/O): class pairs joined
transitively (union-find), and the keep walk that decides which copy of a near-duplicate
pair stays.

The keep walk is `fmlkit filter`'s ``first`` rule over cosine instead of pHash bits: walk
the rows in input order; a row is a duplicate when it is at least ``duplicate_above`` alike
to a row already kept, and points at the most similar such row, ties to the one kept first.
Only the candidate pairs are looked at; the result equals the walk over all pairs (tested).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fmlkit.data.clean.similarity import pairs_above

CLASS_CHUNK = 512  # rows of small classes compared together (the block diagonal's width)


def merge_groups(
    classes: int, a: np.ndarray, b: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The connected components of the class pairs (a, b) among ``classes`` class codes.

    Returns:
        Per class: its group (1, 2, … in the order of each group's first class code; 0 when
        in no pair) and the group's target class code (its largest class, ties to the lowest
        code; -1 when in no group).
    """
    parent = np.arange(classes)

    def find(k: int) -> int:
        root = k
        while parent[root] != root:
            root = parent[root]
        while parent[k] != root:
            parent[k], k = root, parent[k]
        return root

    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([find(k) for k in range(classes)], np.int64)
    linked = np.zeros(classes, bool)
    linked[a], linked[b] = True, True
    group = np.zeros(classes, np.int64)
    target = np.full(classes, -1, np.int64)
    for number, root in enumerate(np.unique(roots[linked]).tolist(), 1):
        members = np.flatnonzero(roots == root)
        group[members] = number
        # the largest class, ties to the lowest code (the first label in sort order)
        target[members] = members[np.lexsort((members, -sizes[members]))[0]]
    return group, target


def class_rows(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The row numbers sorted by class code (codes ≥ 0 only, input order within a class) and
    each class's start in them (classes + 1 entries)."""
    rows = np.flatnonzero(codes >= 0)
    rows = rows[np.argsort(codes[rows], kind="stable")]
    classes = int(codes.max()) + 1 if len(rows) else 0
    starts = np.searchsorted(codes[rows], np.arange(classes + 1))
    return rows, starts


def within_class_pairs(
    x: np.ndarray, codes: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of rows of one class at least ``threshold`` alike (row i < row j)."""
    parts = list(_within(x, codes, threshold))
    if not parts:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), np.zeros(0)
    i, j, s = (np.concatenate(p) for p in zip(*parts, strict=True))
    return np.minimum(i, j), np.maximum(i, j), s


def _within(
    x: np.ndarray, codes: np.ndarray, threshold: float
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rows, starts = class_rows(codes)
    at = 0
    classes = len(starts) - 1
    while at < classes:
        end = at + 1  # whole classes, up to CLASS_CHUNK rows (a larger class alone)
        while end < classes and starts[end + 1] - starts[at] <= CLASS_CHUNK:
            end += 1
        chunk = rows[starts[at] : starts[end]]
        i, j, s = pairs_above(x[chunk], threshold)
        same = codes[chunk[i]] == codes[chunk[j]]
        yield chunk[i[same]], chunk[j[same]], s[same]
        at = end


def between_classes_pairs(
    x: np.ndarray, codes: np.ndarray, class_pairs: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of rows of the class pairs (K, 2) at least ``threshold`` alike."""
    rows, starts = class_rows(codes)
    found_i, found_j, found_s = [], [], []
    for ca, cb in class_pairs.tolist():
        ra, rb = rows[starts[ca] : starts[ca + 1]], rows[starts[cb] : starts[cb + 1]]
        i, j, s = pairs_above(x[ra], threshold, x[rb])
        found_i.append(ra[i])
        found_j.append(rb[j])
        found_s.append(s)
    if not found_i:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), np.zeros(0)
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    return np.minimum(i, j), np.maximum(i, j), np.concatenate(found_s)


def keep_first(
    n: int, i: np.ndarray, j: np.ndarray, similarity: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The keep walk in input order over candidate pairs (i < j).

    Returns:
        Per row: the kept row it duplicates (-1 when kept) and the cosine to it (NaN).
    """
    order = np.lexsort((i, -similarity, j))
    dup = [-1] * n
    score = np.full(n, np.nan)
    for e, later, earlier in zip(order.tolist(), j[order].tolist(), i[order].tolist(), strict=True):
        if dup[later] < 0 and dup[earlier] < 0:
            dup[later] = earlier
            score[later] = similarity[e]
    return np.asarray(dup, np.int64), score
