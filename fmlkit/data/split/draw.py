"""Verification pairs drawn from labelled rows: positives share a label, negatives do not.

The draw (`draw_pairs`), for a fixed seed:

1. Positives: each label's quota is as even as possible (water-filling): every label gets the
   same number t or t+1, unless it has fewer possible pairs (C(n, 2)) or hits the cap; which
   labels get the +1 is random. Each label's quota of distinct pairs is drawn without
   replacement from its C(n, 2).
2. Negatives: each label's number of appearances is spread the same way (2 per pair), the
   appearances are paired at random, and pairs of one label, or more pairs of two labels than
   they have images for, are rewired by random swaps. Each label pair then gets distinct random
   image pairs. If swaps reach a dead end, the appearances are paired afresh (up to 8 times).
   Where that still falls short, the rest are drawn uniformly from the unused cross-label
   pairs within the cap. This happens when the request nears all the cross-label pairs of
   small labels, where the even spread is often impossible (labels of 2, 5, 5 and 9 images
   cannot each appear in 64 of 115 pairs: the two 5-image labels would need 31 pairs between
   them, and they have 25); the spread is then uneven by a few appearances.
3. Positives and negatives are shuffled and laid out in ``folds`` blocks, each holding its share
   of both (the 10-fold verification protocol takes folds in file order).

No self-pairs, no pair twice in either order, and no label in more than ``max_per_label``
positive pairs nor in more than ``max_per_label`` negative pairs. Asking for more than the
rows allow raises `InputError` saying how many are possible.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fmlkit.columns import FIRST, ISSAME, SECOND
from fmlkit.data.formats.pair_lists import PAIR_FOLDS
from fmlkit.errors import InputError

_REWIRE_TRIES = 500  # random swaps tried per bad negative pair before a full scan
_PAIRING_ATTEMPTS = 8  # fresh random pairings before topping up
_ENUMERATE_PAIRS = 4_000_000  # a top-up lists every row pair up to this many, else samples


@dataclass(frozen=True)
class PairLimits:
    """How many pairs a set of labels allows.

    Attributes:
        positives: the most distinct same-label pairs (exact).
        negatives: the most distinct cross-label pairs; with a cap, an upper bound.
    """

    positives: int
    negatives: int


def pair_limits(counts: np.ndarray, max_per_label: int | None = None) -> PairLimits:
    """The pairs ``counts`` (rows per label) allow, with at most ``max_per_label`` pairs of each
    kind per label."""
    n = np.asarray(counts, dtype=np.int64)
    cap = _cap(max_per_label)
    positives = int(np.minimum(n * (n - 1) // 2, cap).sum())
    total = int(n.sum())
    cross = (total * total - int((n * n).sum())) // 2
    appearances = np.minimum(n * (total - n), cap)
    if len(n) < 2 or appearances.sum() == 0:
        return PairLimits(positives, 0)
    # a label's appearances must be matched by other labels': at most sum/2 and sum - max
    bound = min(int(appearances.sum()) // 2, int(appearances.sum() - appearances.max()))
    return PairLimits(positives, min(cross, bound))


def _cap(max_per_label: int | None) -> int:
    """The per-label cap as an int64 (None, or a cap beyond any count: int64's largest)."""
    top = int(np.iinfo(np.int64).max)
    return top if max_per_label is None else min(int(max_per_label), top)


def spread(capacity: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Integer quotas ≤ ``capacity`` summing to ``total``, as even as possible: each is
    min(capacity, t) or t + 1, the +1s on random labels (water-filling)."""
    capacity = np.asarray(capacity, dtype=np.int64)
    assert 0 <= total <= capacity.sum(), "more than the capacity"
    lo, hi = 0, int(capacity.max(initial=0))
    while lo < hi:  # the largest level t with sum(min(capacity, t)) <= total
        mid = (lo + hi + 1) // 2
        if np.minimum(capacity, mid).sum() <= total:
            lo = mid
        else:
            hi = mid - 1
    quotas = np.minimum(capacity, lo)
    rest = total - int(quotas.sum())
    if rest:
        quotas[rng.choice(np.flatnonzero(capacity > lo), rest, replace=False)] += 1
    return quotas


def unrank_pairs(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``index``-th pairs (i < j) in the order (0,1), (0,2), (1,2), (0,3), …: index =
    j(j-1)/2 + i."""
    m = np.asarray(index, dtype=np.int64)
    j = ((1 + np.sqrt(1 + 8 * m.astype(np.float64))) / 2).astype(np.int64)
    j -= j * (j - 1) // 2 > m  # float rounding, either way
    j += (j + 1) * j // 2 <= m
    return m - j * (j - 1) // 2, j


def draw_pairs(
    codes: np.ndarray,
    *,
    positives: int,
    negatives: int,
    seed: int,
    max_per_label: int | None = None,
    folds: int = PAIR_FOLDS,
) -> pd.DataFrame:
    """Draw verification pairs among rows with label ``codes`` (0..L-1).

    Returns:
        ``is_same`` (1/0), ``first`` and ``second`` (row positions, first < second), in
        ``folds`` blocks of positives then negatives.

    Raises:
        InputError: more pairs asked for than the labels allow.
    """
    codes = np.asarray(codes, dtype=np.int64)
    counts = np.bincount(codes)
    limits = pair_limits(counts, max_per_label)
    capped = "" if max_per_label is None else f" with at most {max_per_label} per label"
    if positives > limits.positives:
        raise InputError(
            f"asked for {positives:,} positive pairs, but {len(counts):,} labels with "
            f"{len(codes):,} rows allow at most {limits.positives:,} same-label pairs{capped}"
        )
    if negatives and len(counts) < 2:
        raise InputError(f"negative pairs need two labels; the rows have {len(counts)}")
    if negatives > limits.negatives:
        raise InputError(
            f"asked for {negatives:,} negative pairs, but {len(counts):,} labels with "
            f"{len(codes):,} rows allow at most {limits.negatives:,} cross-label pairs{capped}"
        )
    rng = np.random.default_rng(seed)
    cap = _cap(max_per_label)
    rows = np.argsort(codes, kind="stable")  # rows of label l: rows[starts[l]:starts[l+1]]
    starts = np.concatenate([[0], np.cumsum(counts)])
    quotas = spread(np.minimum(counts * (counts - 1) // 2, cap), positives, rng)
    pos = _positive_pairs(rows, starts, quotas, rng)
    appearances = spread(np.minimum(counts * (len(codes) - counts), cap), 2 * negatives, rng)
    neg = _negative_pairs(codes, rows, starts, appearances, cap, rng)
    if len(neg[0]) < negatives:
        raise InputError(
            f"could draw only {len(neg[0]):,} of {negatives:,} negative pairs{capped}: labels "
            "with few rows limit the cross-label pairs; ask for fewer or raise the cap"
        )
    return _layout(pos, neg, folds, rng)


def _positive_pairs(
    rows: np.ndarray, starts: np.ndarray, quotas: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.flatnonzero(quotas)
    sizes = starts[labels + 1] - starts[labels]
    one = quotas[labels] == 1  # one pair: any index; more: distinct indices
    index = [(rng.random(int(one.sum())) * (sizes[one] * (sizes[one] - 1) // 2)).astype(np.int64)]
    owner = [labels[one]]
    for label, n in zip(labels[~one].tolist(), sizes[~one].tolist(), strict=True):
        index.append(rng.choice(n * (n - 1) // 2, int(quotas[label]), replace=False))
        owner.append(np.full(int(quotas[label]), label))
    i, j = unrank_pairs(np.concatenate(index))
    base = starts[np.concatenate(owner)]
    return rows[base + i], rows[base + j]


def _negative_pairs(
    codes: np.ndarray,
    rows: np.ndarray,
    starts: np.ndarray,
    appearances: np.ndarray,
    cap: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.diff(starts)
    need = int(appearances.sum()) // 2
    a, b = _pair_labels(appearances, sizes, rng)
    for _ in range(_PAIRING_ATTEMPTS - 1):  # a rare dead end of the rewiring: pair afresh
        if len(a) == need:
            break
        again = _pair_labels(appearances, sizes, rng)
        if len(again[0]) > len(a):
            a, b = again
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((hi, lo))
    lo, hi = lo[order], hi[order]
    # distinct image pairs within each label pair: index into the n_lo × n_hi grid
    cells = sizes[lo] * sizes[hi]
    index = (rng.random(len(lo)) * cells).astype(np.int64)
    same = (lo[1:] == lo[:-1]) & (hi[1:] == hi[:-1])
    starts_of_run = np.flatnonzero(np.concatenate([[True], ~same]))
    ends_of_run = np.append(starts_of_run[1:], len(lo))
    for s, e in zip(starts_of_run.tolist(), ends_of_run.tolist(), strict=True):
        if e - s > 1:
            index[s:e] = rng.choice(int(cells[s]), e - s, replace=False)
    x = rows[starts[lo] + index // sizes[hi]]
    y = rows[starts[hi] + index % sizes[hi]]
    missing = need - len(x)
    if missing:
        x, y = _top_up(codes, np.minimum(x, y), np.maximum(x, y), missing, cap, rng)
    return x, y


def _top_up(
    codes: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    missing: int,
    cap: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Add up to ``missing`` unused cross-label pairs (x < y), uniformly at random within the
    cap, where the even spread could not be realised (labels with very few rows)."""
    n = len(codes)
    if n * (n - 1) // 2 <= _ENUMERATE_PAIRS:
        i, j = np.triu_indices(n, 1)
        keep = codes[i] != codes[j]
        i, j = i[keep], j[keep]
    else:  # a random row, then a random row of another label (positions in label order)
        rows = np.argsort(codes, kind="stable")
        counts = np.bincount(codes)
        starts = np.cumsum(counts) - counts
        i = rng.integers(0, n, 20 * missing + 10_000)
        label = codes[i]
        r = (rng.random(len(i)) * (n - counts[label])).astype(np.int64)
        j = rows[r + (r >= starts[label]) * counts[label]]
        i, j = np.minimum(i, j), np.maximum(i, j)
    perm = rng.permutation(len(i))
    i, j = i[perm], j[perm]
    taken = set(zip(x.tolist(), y.tolist(), strict=True))
    use = np.bincount(codes[np.concatenate([x, y])], minlength=int(codes.max()) + 1)
    new_x: list[int] = []
    new_y: list[int] = []
    for p, q in zip(i.tolist(), j.tolist(), strict=True):
        if len(new_x) == missing:
            break
        if (p, q) in taken or use[codes[p]] >= cap or use[codes[q]] >= cap:
            continue
        taken.add((p, q))
        use[codes[p]] += 1
        use[codes[q]] += 1
        new_x.append(p)
        new_y.append(q)
    return np.concatenate([x, new_x]).astype(np.int64), np.concatenate([y, new_y]).astype(np.int64)


def _pair_labels(
    appearances: np.ndarray, sizes: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pair label appearances at random into label pairs (a ≠ b, at most sizes[a]·sizes[b] of
    each); pairs that cannot be fixed by random swaps are dropped."""
    stubs = rng.permutation(np.repeat(np.arange(len(appearances)), appearances))
    a, b = stubs[0::2].tolist(), stubs[1::2].tolist()
    size = sizes.tolist()
    used: dict[tuple[int, int], int] = {}
    bad = []
    for p, (x, y) in enumerate(zip(a, b, strict=True)):
        key = (min(x, y), max(x, y))
        if x != y and used.get(key, 0) < size[x] * size[y]:
            used[key] = used.get(key, 0) + 1
        else:
            bad.append(p)
    if not bad:
        return np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    is_bad = np.zeros(len(a), dtype=bool)
    is_bad[bad] = True
    progress = True
    while progress and is_bad.any():  # a swap may hand a bad pair to a later one
        progress = False
        for p in np.flatnonzero(is_bad).tolist():
            if is_bad[p] and _rewire(p, a, b, is_bad, used, size, rng):
                is_bad[p] = False
                progress = True
    keep = ~is_bad
    return np.asarray(a, dtype=np.int64)[keep], np.asarray(b, dtype=np.int64)[keep]


def _rewire(
    p: int,
    a: list[int],
    b: list[int],
    is_bad: np.ndarray,
    used: dict[tuple[int, int], int],
    size: list[int],
    rng: np.random.Generator,
) -> bool:
    """Make bad pair ``p`` valid: as it stands (others' swaps may have made room), or by
    swapping an end with pair ``q`` (random tries, then every pair in random order) where ``q``
    ends no worse. Updates ``a``, ``b`` and ``used``; False if nothing works."""

    def fits(x: int, y: int, extra: int = 0) -> bool:
        return x != y and used.get((min(x, y), max(x, y)), 0) + extra < size[x] * size[y]

    def add(x: int, y: int, n: int) -> None:
        key = (min(x, y), max(x, y))
        used[key] = used.get(key, 0) + n

    if fits(a[p], b[p]):
        add(a[p], b[p], 1)
        return True
    tries = rng.integers(0, len(a), _REWIRE_TRIES).tolist()
    for q in itertools.chain(tries, rng.permutation(len(a)).tolist()):
        if q == p:
            continue
        if not is_bad[q]:
            add(a[q], b[q], -1)
        for x, y, u, v in ((a[p], b[p], a[q], b[q]), (a[p], b[p], b[q], a[q])):
            new_p_ok = fits(x, u)
            new_q_ok = new_p_ok and fits(y, v, int({x, u} == {y, v}))
            if new_p_ok and (new_q_ok or is_bad[q]):
                a[p], b[p], a[q], b[q] = x, u, y, v
                add(x, u, 1)
                if new_q_ok:
                    add(y, v, 1)
                is_bad[q] = not new_q_ok
                return True
        if not is_bad[q]:
            add(a[q], b[q], 1)
    return False


def _layout(
    pos: tuple[np.ndarray, np.ndarray],
    neg: tuple[np.ndarray, np.ndarray],
    folds: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Shuffle each kind, order each pair's rows, and lay out ``folds`` blocks of positives
    then negatives."""
    parts = []
    shuffled = []
    for (x, y), same in ((pos, 1), (neg, 0)):
        perm = rng.permutation(len(x))
        first, second = np.minimum(x, y)[perm], np.maximum(x, y)[perm]
        shuffled.append((first, second, same))
    for fold in range(folds):
        for first, second, same in shuffled:
            n = len(first)
            block = slice(fold * n // folds, (fold + 1) * n // folds)
            parts.append(pd.DataFrame({ISSAME: same, FIRST: first[block], SECOND: second[block]}))
    return pd.concat(parts, ignore_index=True).astype(np.int64)
