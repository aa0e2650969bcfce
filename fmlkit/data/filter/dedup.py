"""Exact, order-defined duplicate removal on a table of hashes (no I/O).

The rule: walk the rows in keep order (``first``: input order; ``largest``: largest area first,
ties by input order). A row is removed when it duplicates a row already kept, checked in this
order of precedence:

1. ``exact_duplicate``: a kept row of the same label with the same md5;
2. ``near_duplicate``: a kept row of the same label within ``threshold`` pHash bits;
3. ``cross_label_duplicate`` (``scope="global"`` only): a kept row of another label with the
   same md5 or within ``global_threshold`` bits.

Within the first kind that applies, the row points at the kept row with the smallest pHash
distance, ties to the one kept first. Only pairs close enough to matter are ever looked at
(`fmlkit.data.filter.hamming`), so a million rows take seconds; the result equals a brute-force
walk over all pairs (tested).
"""

from __future__ import annotations

from typing import get_args

import numpy as np
import pandas as pd

from fmlkit.choices import KeepOrder, Scope
from fmlkit.columns import (
    DISTANCE,
    DUPLICATE_OF,
    FILE_NAME,
    HEIGHT,
    LABEL,
    MD5,
    PHASH,
    REASON,
    WIDTH,
    validate_columns,
)
from fmlkit.data.filter.hamming import (
    HASH_BITS,
    MalformedHash,
    equal_pairs,
    hex_to_uint64,
    radius_pairs,
)
from fmlkit.errors import InputError

SCOPES: tuple[Scope, ...] = get_args(Scope)
KEEP_ORDERS: tuple[KeepOrder, ...] = get_args(KeepOrder)

EXACT, NEAR, CROSS = "exact_duplicate", "near_duplicate", "cross_label_duplicate"
DUPLICATE_REASONS = (EXACT, NEAR, CROSS)


def find_duplicates(
    df: pd.DataFrame,
    *,
    threshold: int = 10,
    scope: Scope = "label",
    global_threshold: int = 3,
    keep: KeepOrder = "first",
) -> pd.DataFrame:
    """Decide which rows of ``df`` are duplicates of rows kept before them.

    Args:
        df: rows with ``file_name``, ``label`` and ``phash`` (16 hex characters); ``md5``
            when present marks exact duplicates; ``width`` and ``height`` for ``keep="largest"``.
        threshold: same-label near-duplicate radius in pHash bits (0..64).
        scope: ``label`` compares rows of one label only; ``global`` also across labels.
        global_threshold: cross-label radius in bits (0..64), for ``scope="global"``.
        keep: which of a group survives: ``first`` in input order or ``largest`` area.

    Returns:
        A DataFrame on ``df``'s index with ``reason`` ("" for kept rows, else one of
        `DUPLICATE_REASONS`), ``duplicate_of`` (the kept row's file_name, "" if kept) and
        ``distance`` (pHash bits to it; <NA> if kept).

    Raises:
        InputError: a bad option or a malformed hash (naming the row).
        SchemaError: a required column is missing.
    """
    check_options(threshold, scope, global_threshold, keep)
    required = [FILE_NAME, LABEL, PHASH] + ([WIDTH, HEIGHT] if keep == "largest" else [])
    validate_columns(df, required, what="the table to deduplicate")
    n = len(df)
    try:
        hashes = hex_to_uint64(df[PHASH].astype(str).tolist())
    except MalformedHash as e:
        row = df.index[e.position]
        name = df[FILE_NAME].iloc[e.position]
        raise InputError(
            f"row {row} ({name}): phash {e.value!r} is not 16 hexadecimal characters; "
            "re-create the table with `fmlkit prepare`"
        ) from e
    labels = pd.factorize(df[LABEL].astype(str))[0].astype(np.int64)
    md5 = pd.factorize(df[MD5].astype(str))[0].astype(np.int64) if MD5 in df else None
    rank = _keep_rank(df, keep)
    a, b, kind, dist = _edges(hashes, labels, md5, threshold, scope, global_threshold)
    return _result(df, *_resolve(n, rank, a, b, kind, dist))


def check_options(threshold: int, scope: str, global_threshold: int, keep: str) -> None:
    """Raise `InputError` for a radius outside 0..64 or an unknown scope or keep order."""
    for name, value in (("threshold", threshold), ("global threshold", global_threshold)):
        if not 0 <= value <= HASH_BITS:
            raise InputError(f"{name} must be between 0 and {HASH_BITS} bits, got {value}")
    if scope not in SCOPES:
        raise InputError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if keep not in KEEP_ORDERS:
        raise InputError(f"keep must be one of {', '.join(KEEP_ORDERS)}, got {keep!r}")


def _keep_rank(df: pd.DataFrame, keep: KeepOrder) -> np.ndarray:
    """rank[row] = position of the row in the keep order."""
    n = len(df)
    if keep == "first":
        return np.arange(n)
    area = (df[WIDTH].astype("Int64") * df[HEIGHT].astype("Int64")).fillna(-1)
    order = np.lexsort((np.arange(n), -area.to_numpy(np.int64)))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    return rank


def _edges(
    hashes: np.ndarray,
    labels: np.ndarray,
    md5: np.ndarray | None,
    threshold: int,
    scope: Scope,
    global_threshold: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs (i, j, kind, distance); kind 0 exact, 1 near, 2 cross-label."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    i, j, _ = radius_pairs(hashes, threshold, labels)
    same_md5 = md5[i] == md5[j] if md5 is not None else np.zeros(len(i), bool)
    parts.append((i, j, np.where(same_md5, 0, 1)))
    if md5 is not None:  # exact copies whose hashes differ cannot happen, but md5 rules
        i, j = equal_pairs(md5, labels)
        parts.append((i, j, np.zeros(len(i), np.int64)))
    if scope == "global":
        i, j, _ = radius_pairs(hashes, global_threshold)
        other = labels[i] != labels[j]
        parts.append((i[other], j[other], np.full(int(other.sum()), 2)))
        if md5 is not None:
            i, j = equal_pairs(md5)
            other = labels[i] != labels[j]
            parts.append((i[other], j[other], np.full(int(other.sum()), 2)))
    i = np.concatenate([p[0] for p in parts]).astype(np.int64)
    j = np.concatenate([p[1] for p in parts]).astype(np.int64)
    kind = np.concatenate([p[2] for p in parts]).astype(np.int64)
    dist = np.bitwise_count(hashes[i] ^ hashes[j]).astype(np.int64)
    return i, j, kind, dist


def _resolve(
    n: int,
    rank: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    kind: np.ndarray,
    dist: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The greedy walk in keep order, over candidate pairs only.

    Returns:
        Per row: the kept row it duplicates (-1 if kept), the kind of that pair, its distance.
    """
    swap = rank[i] < rank[j]
    later, earlier = np.where(swap, j, i), np.where(swap, i, j)
    # each later row meets its pairs by precedence: kind, distance, then who was kept first;
    # rows come in keep order, so every earlier row is decided before it is looked at
    order = np.lexsort((rank[earlier], dist, kind, rank[later]))
    dup_of = [-1] * n
    chosen = [-1] * n
    for e, row, other in zip(
        order.tolist(), later[order].tolist(), earlier[order].tolist(), strict=True
    ):
        if dup_of[row] < 0 and dup_of[other] < 0:
            dup_of[row], chosen[row] = other, e
    dup = np.asarray(dup_of, np.int64)
    edge = np.asarray(chosen, np.int64)
    removed = edge >= 0
    if not removed.any():  # no duplicate pairs at all: `kind` and `dist` are empty
        none = np.full(n, -1, np.int64)
        return dup, none, none.copy()
    dup_kind = np.where(removed, kind[np.where(removed, edge, 0)], -1)
    dup_dist = np.where(removed, dist[np.where(removed, edge, 0)], -1)
    return dup, dup_kind, dup_dist


def _result(
    df: pd.DataFrame, dup: np.ndarray, dup_kind: np.ndarray, dup_dist: np.ndarray
) -> pd.DataFrame:
    removed = dup >= 0
    names = df[FILE_NAME].astype(str).to_numpy()
    reasons = np.array(["", *DUPLICATE_REASONS], dtype=object)[dup_kind + 1]
    return pd.DataFrame(
        {
            REASON: reasons,
            DUPLICATE_OF: np.where(removed, names[np.where(removed, dup, 0)], ""),
            DISTANCE: pd.Series(dup_dist, index=df.index, dtype="Int64").where(removed),
        },
        index=df.index,
    )
