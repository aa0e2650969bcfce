"""Exact, order-defined duplicate removal on a table of hashes (no I/O).

The rule: walk the rows in keep order (``first``: input order; ``largest``: largest area first,
ties by input order). A row is removed when it duplicates a row already kept, checked in this
order of precedence:

1. ``exact_duplicate``: a kept row of the same label with the same md5;
2. ``near_duplicate``: a kept row of the same label within ``threshold`` pHash bits;
3. ``cross_label_duplicate`` (``scope="global"`` only): a kept row of another label with the
   same md5 or within ``global_threshold`` bits.

Within the first kind that applies, the row points at the kept row with the smallest pHash
distance, ties to the one kept first. With a ``confirm`` step (`fmlkit.data.filter.confirm`),
a pair that is not an md5 copy counts only when confirmation agrees: the hash proposes, the
pixels (and embeddings) decide; unconfirmed pairs are as if the hashes were far apart. Only
pairs close enough to matter are ever looked at (`fmlkit.data.filter.hamming`), so a million
rows take seconds; the result equals a brute-force walk over all pairs (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

import numpy as np
import pandas as pd

from fmlkit.choices import KeepOrder, Scope
from fmlkit.columns import (
    DISTANCE,
    DUPLICATE_OF,
    EMBEDDING_SIMILARITY,
    FILE_NAME,
    HEIGHT,
    LABEL,
    MD5,
    PHASH,
    PIXEL_SIMILARITY,
    REASON,
    WIDTH,
    validate_columns,
)
from fmlkit.data.filter.confirm import Confirmation
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
_DENSE_WALK = 16  # pairs per row from which the walk goes a row, not a pair, at a time
DUPLICATE_REASONS = (EXACT, NEAR, CROSS)


# confirm(i, j): the confirmation of the candidate pairs (row positions i[k], j[k] in the table)
Confirm = Callable[[np.ndarray, np.ndarray], Confirmation]


@dataclass(frozen=True)
class Candidates:
    """The pairs the hashes proposed (md5 copies aside) and what confirmation said of each.

    Arrays over the pairs: ``distance`` in bits; ``pixel`` and ``embedding`` similarities
    (NaN where not computed); ``confirmed`` (all True without a confirmation step).
    """

    distance: np.ndarray
    pixel: np.ndarray
    embedding: np.ndarray
    confirmed: np.ndarray
    unreadable: int = 0  # pairs with an image that could not be read (not confirmed)
    no_embedding: int = 0  # pairs with an image missing from the embeddings (not confirmed)

    @property
    def pairs(self) -> int:
        """How many candidate pairs."""
        return len(self.distance)


def find_duplicates(
    df: pd.DataFrame,
    *,
    threshold: int = 10,
    scope: Scope = "label",
    global_threshold: int = 3,
    keep: KeepOrder = "first",
    confirm: Confirm | None = None,
) -> pd.DataFrame:
    """`deduplicate`'s table alone."""
    return deduplicate(
        df,
        threshold=threshold,
        scope=scope,
        global_threshold=global_threshold,
        keep=keep,
        confirm=confirm,
    )[0]


def deduplicate(
    df: pd.DataFrame,
    *,
    threshold: int = 10,
    scope: Scope = "label",
    global_threshold: int = 3,
    keep: KeepOrder = "first",
    confirm: Confirm | None = None,
) -> tuple[pd.DataFrame, Candidates]:
    """Decide which rows of ``df`` are duplicates of rows kept before them.

    Args:
        df: rows with ``file_name``, ``label`` and ``phash`` (16 hex characters); ``md5``
            when present marks exact duplicates; ``width`` and ``height`` for ``keep="largest"``.
        threshold: same-label near-duplicate radius in pHash bits (0..64).
        scope: ``label`` compares rows of one label only; ``global`` also across labels.
        global_threshold: cross-label radius in bits (0..64), for ``scope="global"``.
        keep: which of a group survives: ``first`` in input order or ``largest`` area.
        confirm: optional confirmation of the candidate pairs that are not md5 copies
            (`fmlkit.data.filter.confirm.Confirmer` bound to the table's file names).

    Returns:
        A DataFrame on ``df``'s index with ``reason`` ("" for kept rows, else one of
        `DUPLICATE_REASONS`), ``duplicate_of`` (the kept row's file_name, "" if kept) and
        ``distance`` (pHash bits to it; <NA> if kept); with ``confirm`` also
        ``pixel_similarity`` and ``embedding_similarity`` of that pair (<NA> where not
        computed). And the `Candidates` (for the report's distributions).

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
    copy = md5[a] == md5[b] if md5 is not None else np.zeros(len(a), bool)
    pixel = np.full(len(a), np.nan, np.float32)
    embedding = pixel.copy()
    confirmed = np.ones(len(a), bool)
    unreadable = no_embedding = 0
    if confirm is not None and (~copy).any():
        said = confirm(a[~copy], b[~copy])
        pixel[~copy], embedding[~copy], confirmed[~copy] = (
            said.pixel,
            said.embedding,
            said.confirmed,
        )
        unreadable, no_embedding = int(said.unreadable.sum()), int(said.no_embedding.sum())
    candidates = Candidates(
        dist[~copy], pixel[~copy], embedding[~copy], confirmed[~copy], unreadable, no_embedding
    )
    a, b, kind, dist = a[confirmed], b[confirmed], kind[confirmed], dist[confirmed]
    dup, dup_kind, dup_dist, edge = _resolve(n, rank, a, b, kind, dist)
    table = _result(df, dup, dup_kind, dup_dist)
    if confirm is not None:
        taken = edge >= 0
        for column, values in ((PIXEL_SIMILARITY, pixel), (EMBEDDING_SIMILARITY, embedding)):
            per_row = np.full(n, np.nan)
            per_row[taken] = values[confirmed][edge[taken]]
            table[column] = pd.array(np.round(per_row, 4), dtype="Float64")  # NaN → <NA>
    return table, candidates


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The greedy walk in keep order, over candidate pairs only.

    Returns:
        Per row: the kept row it duplicates (-1 if kept), the kind of that pair, its distance,
        and the pair's position in the edge arrays (-1 if kept).
    """
    swap = rank[i] < rank[j]
    later, earlier = np.where(swap, j, i), np.where(swap, i, j)
    # each later row meets its pairs by precedence: kind, distance, then who was kept first;
    # rows come in keep order, so every earlier row is decided before it is looked at. One
    # int64 key (kind < 3, distance ≤ 64; no overflow below 2 × 10⁸ rows) sorts faster than
    # a four-key lexsort.
    key = ((rank[later] * 3 + kind) * (HASH_BITS + 1) + dist) * n + rank[earlier]
    order = np.argsort(key, kind="stable")
    dense = len(order) > _DENSE_WALK * max(1, len(np.unique(later)))
    walk = _walk_rows if dense else _walk_pairs
    dup, edge = walk(n, later[order], earlier[order], order)
    removed = edge >= 0
    if not removed.any():  # no duplicate pairs at all: `kind` and `dist` are empty
        none = np.full(n, -1, np.int64)
        return dup, none, none.copy(), edge
    dup_kind = np.where(removed, kind[np.where(removed, edge, 0)], -1)
    dup_dist = np.where(removed, dist[np.where(removed, edge, 0)], -1)
    return dup, dup_kind, dup_dist, edge


def _walk_pairs(
    n: int, later: np.ndarray, earlier: np.ndarray, edge: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`_resolve`'s walk a pair at a time (pairs in walk order): a pair decides its later row
    when neither row is removed yet. Cheapest for a few pairs per row."""
    dup_of, chosen = [-1] * n, [-1] * n
    for e, row, other in zip(edge.tolist(), later.tolist(), earlier.tolist(), strict=True):
        if dup_of[row] < 0 and dup_of[other] < 0:
            dup_of[row], chosen[row] = other, e
    return np.asarray(dup_of, np.int64), np.asarray(chosen, np.int64)


def _walk_rows(
    n: int, later: np.ndarray, earlier: np.ndarray, edge: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`_resolve`'s walk one row at a time (pairs sorted by the row's keep rank, then
    precedence): the row's first pair to a row still kept decides. For many pairs per row
    (clustered hashes), a few array operations per row beat a Python step per pair."""
    dup_of = np.full(n, -1, np.int64)
    chosen = np.full(n, -1, np.int64)
    removed = np.zeros(n, bool)
    starts = np.flatnonzero(np.concatenate(([True], later[1:] != later[:-1])))
    ends = np.concatenate((starts[1:], [len(later)]))
    for row, s, e in zip(later[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
        free = ~removed[earlier[s:e]]
        k = int(free.argmax())
        if free[k]:
            removed[row] = True
            dup_of[row], chosen[row] = earlier[s + k], edge[s + k]
    return dup_of, chosen


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
