from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fmlkit.columns import FIRST, ISSAME, SECOND
from fmlkit.data.formats.pair_lists import PAIR_FOLDS
from fmlkit.data.split.draw import draw_pairs, pair_limits, spread, unrank_pairs
from fmlkit.errors import InputError


@dataclass(frozen=True)
class Request:
    codes: np.ndarray  # label codes 0..L-1, every code used
    positives: int
    negatives: int
    seed: int


def _codes(raw: list[int]) -> np.ndarray:
    """Remap arbitrary labels to codes 0..L-1."""
    return np.unique(np.asarray(raw, dtype=np.int64), return_inverse=True)[1].astype(np.int64)


@st.composite
def label_codes(draw: st.DrawFn, max_rows: int) -> np.ndarray:
    """Codes 0..L-1 of up to ``max_rows`` rows: labels of random sizes in random row order."""
    n_labels = draw(st.integers(1, 25))
    largest = min(40, max(2, max_rows // 4))
    sizes = draw(st.lists(st.integers(1, largest), min_size=n_labels, max_size=n_labels))
    raw = np.repeat(np.arange(n_labels), sizes)[:max_rows]
    order = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(len(raw))
    return _codes(raw[order].tolist())


@st.composite
def requests(draw: st.DrawFn, max_rows: int, max_negatives: int | None = None) -> Request:
    """Random labels and counts within the uncapped (exact) limits."""
    codes = draw(label_codes(max_rows))
    limits = pair_limits(np.bincount(codes))
    negatives = limits.negatives if max_negatives is None else min(limits.negatives, max_negatives)
    return Request(
        codes=codes,
        positives=draw(st.integers(0, limits.positives)),
        negatives=draw(st.integers(0, negatives)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _check_valid(pairs: pd.DataFrame, codes: np.ndarray, positives: int, negatives: int) -> None:
    assert list(pairs.columns) == [ISSAME, FIRST, SECOND]
    assert all(pairs[c].dtype == np.int64 for c in pairs.columns)
    first, second = pairs[FIRST].to_numpy(), pairs[SECOND].to_numpy()
    same = pairs[ISSAME].to_numpy()
    assert ((first >= 0) & (second < len(codes))).all()
    assert (first < second).all()  # ordered, so no self-pairs
    assert set(same.tolist()) <= {0, 1}
    assert (same == (codes[first] == codes[second])).all()
    assert len(set(zip(first.tolist(), second.tolist(), strict=True))) == len(pairs)
    assert (int(same.sum()), int((same == 0).sum())) == (positives, negatives)


def _expected_layout(positives: int, negatives: int, folds: int = PAIR_FOLDS) -> list[int]:
    """is_same, line by line: per block, its floor share of positives then of negatives."""
    out: list[int] = []
    for f in range(folds):
        out += [1] * (positives * (f + 1) // folds - positives * f // folds)
        out += [0] * (negatives * (f + 1) // folds - negatives * f // folds)
    return out


def _water_filled(quotas: np.ndarray, capacity: np.ndarray) -> bool:
    """Whether every quota is min(capacity, t) or t + 1 (≤ capacity) for one level t."""
    quotas, capacity = np.asarray(quotas), np.asarray(capacity)
    below = quotas < capacity
    if not below.any():
        return bool((quotas == capacity).all())
    low = int(quotas[below].min())  # labels below capacity hold t or t + 1
    return any(
        bool(np.all((quotas == np.minimum(capacity, t)) | ((quotas == t + 1) & (capacity > t))))
        for t in (low - 1, low)
        if t >= 0
    )


def _per_label(pairs: pd.DataFrame, codes: np.ndarray, same: int) -> np.ndarray:
    """Positive pairs per label (same=1) or negative-pair appearances per label (same=0)."""
    kind = pairs[pairs[ISSAME] == same]
    first, second = codes[kind[FIRST].to_numpy()], codes[kind[SECOND].to_numpy()]
    labels = int(codes.max()) + 1
    if same:
        return np.bincount(first, minlength=labels)
    return np.bincount(np.concatenate([first, second]), minlength=labels)


def test_water_filled_helper_rejects_uneven_quotas() -> None:
    assert _water_filled(np.array([3, 4, 2]), np.array([9, 9, 2]))
    assert _water_filled(np.array([5, 5]), np.array([5, 5]))
    assert not _water_filled(np.array([3, 5, 2]), np.array([9, 9, 2]))
    assert not _water_filled(np.array([3, 4, 1]), np.array([9, 9, 2]))  # below capacity, < t


# --- pair_limits ---


@given(codes=label_codes(max_rows=40))
def test_pair_limits_uncapped_counts_every_pair(codes: np.ndarray) -> None:
    pairs = list(itertools.combinations(range(len(codes)), 2))
    limits = pair_limits(np.bincount(codes))
    assert limits.positives == sum(codes[i] == codes[j] for i, j in pairs)
    assert limits.negatives == sum(codes[i] != codes[j] for i, j in pairs)


def test_pair_limits_with_a_cap() -> None:
    limits = pair_limits(np.array([5, 5, 1]), max_per_label=3)
    assert limits.positives == 3 + 3 + 0
    # appearances min(n·(total - n), 3) = 3, 3, 3: at most 4 pairs (9 // 2)
    assert limits.negatives == 4
    assert pair_limits(np.array([7])).negatives == 0


# --- draw_pairs, uncapped ---


@given(request=requests(max_rows=300, max_negatives=2_000))
def test_draw_pairs_valid_exact_and_laid_out_in_folds(request: Request) -> None:
    pairs = draw_pairs(
        request.codes, positives=request.positives, negatives=request.negatives, seed=request.seed
    )
    _check_valid(pairs, request.codes, request.positives, request.negatives)
    assert pairs[ISSAME].tolist() == _expected_layout(request.positives, request.negatives)


@settings(max_examples=40)
@given(request=requests(max_rows=40))
def test_draw_pairs_succeeds_up_to_the_exact_limits(request: Request) -> None:
    codes = request.codes
    limits = pair_limits(np.bincount(codes))
    for positives, negatives in (
        (request.positives, request.negatives),
        (limits.positives, limits.negatives),
    ):
        pairs = draw_pairs(codes, positives=positives, negatives=negatives, seed=request.seed)
        _check_valid(pairs, codes, positives, negatives)
    # at both limits, every pair of rows appears exactly once
    everything = set(itertools.combinations(range(len(codes)), 2))
    assert set(zip(pairs[FIRST].tolist(), pairs[SECOND].tolist(), strict=True)) == everything


@settings(max_examples=25)
@given(request=requests(max_rows=200, max_negatives=1_000))
def test_draw_pairs_is_deterministic(request: Request) -> None:
    kwargs = {"positives": request.positives, "negatives": request.negatives}
    one = draw_pairs(request.codes, seed=request.seed, **kwargs)
    two = draw_pairs(request.codes.copy(), seed=request.seed, **kwargs)
    pd.testing.assert_frame_equal(one, two)


def test_draw_pairs_depends_on_the_seed() -> None:
    codes = np.repeat(np.arange(10), 8)
    draws = {
        tuple(draw_pairs(codes, positives=50, negatives=50, seed=s).to_numpy().ravel().tolist())
        for s in range(5)
    }
    assert len(draws) == 5


def test_draw_pairs_shuffles_within_the_layout() -> None:
    """The blocks are not sorted by row: the 10-fold protocol sees random pairs in each fold."""
    codes = np.repeat(np.arange(10), 8)
    pairs = draw_pairs(codes, positives=100, negatives=100, seed=1)
    positives = pairs.loc[pairs[ISSAME] == 1, FIRST].to_numpy()
    assert not (np.diff(positives) >= 0).all()
    # each fold's positives come from several labels, not one label per fold
    fold_of_line = np.repeat(np.arange(PAIR_FOLDS), 20)
    for fold in range(PAIR_FOLDS):
        block = pairs[(fold_of_line == fold) & (pairs[ISSAME] == 1).to_numpy()]
        assert len(np.unique(codes[block[FIRST].to_numpy()])) >= 3


def test_draw_pairs_layout_with_other_fold_counts() -> None:
    codes = np.repeat(np.arange(6), 5)
    pairs = draw_pairs(codes, positives=17, negatives=23, seed=4, folds=3)
    _check_valid(pairs, codes, 17, 23)
    assert pairs[ISSAME].tolist() == _expected_layout(17, 23, folds=3)


def test_draw_pairs_with_nothing_asked_is_empty() -> None:
    pairs = draw_pairs(np.array([0, 0, 1]), positives=0, negatives=0, seed=0)
    assert list(pairs.columns) == [ISSAME, FIRST, SECOND] and pairs.empty


# --- evenness ---


@given(request=requests(max_rows=300, max_negatives=0))
def test_draw_pairs_spreads_positives_by_water_filling(request: Request) -> None:
    codes = request.codes
    counts = np.bincount(codes)
    pairs = draw_pairs(codes, positives=request.positives, negatives=0, seed=request.seed)
    per_label = _per_label(pairs, codes, same=1)
    assert per_label.sum() == request.positives
    assert _water_filled(per_label, counts * (counts - 1) // 2), (per_label, counts)


@st.composite
def large_label_requests(draw: st.DrawFn) -> Request:
    """2-10 labels of 5-30 rows, few enough negatives that the even spread is realisable:
    the level stays below half of every label's cross pairs and below half the average
    label-pair grid."""
    sizes = draw(st.lists(st.integers(5, 30), min_size=2, max_size=10))
    order = draw(st.permutations(range(sum(sizes))))
    codes = np.repeat(np.arange(len(sizes)), sizes)[np.asarray(order)]
    counts = np.asarray(sizes)
    capacity = counts * (len(codes) - counts)
    most = min(
        pair_limits(counts).negatives,
        int(capacity.min()) * len(sizes) // 4,
        math.comb(len(sizes), 2) * min(sizes) ** 2 // 2,
    )
    return Request(codes, 0, draw(st.integers(0, most)), draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=60)
@given(request=large_label_requests())
def test_draw_pairs_spreads_negatives_evenly_over_large_labels(request: Request) -> None:
    codes = request.codes
    pairs = draw_pairs(codes, positives=0, negatives=request.negatives, seed=request.seed)
    appearances = _per_label(pairs, codes, same=0)
    assert appearances.sum() == 2 * request.negatives
    assert appearances.max() - appearances.min() <= 1, appearances


def test_draw_pairs_negatives_even_on_a_balanced_dataset() -> None:
    codes = np.repeat(np.arange(20), 8)
    pairs = draw_pairs(codes, positives=200, negatives=300, seed=0)
    assert sorted(set(_per_label(pairs, codes, same=0).tolist())) == [30]
    assert sorted(set(_per_label(pairs, codes, same=1).tolist())) == [10]


def test_draw_pairs_small_labels_fill_up_to_their_capacity() -> None:
    # label 2 has a single possible pair; the others share the rest evenly
    codes = np.repeat(np.arange(3), [10, 10, 2])
    pairs = draw_pairs(codes, positives=41, negatives=0, seed=3)
    assert _per_label(pairs, codes, same=1).tolist() == [20, 20, 1]


@settings(max_examples=60)
@given(codes=label_codes(max_rows=200), cap=st.integers(1, 40), data=st.data())
def test_draw_pairs_respects_the_cap(codes: np.ndarray, cap: int, data: st.DataObject) -> None:
    counts = np.bincount(codes)
    limits = pair_limits(counts, cap)
    positives = data.draw(st.integers(0, limits.positives))
    negatives = data.draw(st.integers(0, limits.negatives))
    seed = data.draw(st.integers(0, 2**32 - 1))
    try:
        pairs = draw_pairs(
            codes, positives=positives, negatives=negatives, seed=seed, max_per_label=cap
        )
    except InputError as e:  # the capped negative limit is an upper bound, not exact
        assert negatives > 0 and re.search(rf"could draw only [\d,]+ of {negatives:,}", str(e))
        return
    _check_valid(pairs, codes, positives, negatives)
    per_label = _per_label(pairs, codes, same=1)
    assert per_label.max(initial=0) <= cap
    assert _water_filled(per_label, np.minimum(counts * (counts - 1) // 2, cap))
    assert _per_label(pairs, codes, same=0).max(initial=0) <= cap


@settings(max_examples=40)
@given(codes=label_codes(max_rows=200), cap=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_draw_pairs_capped_positives_limit_is_exact(codes: np.ndarray, cap: int, seed: int) -> None:
    limit = pair_limits(np.bincount(codes), cap).positives
    pairs = draw_pairs(codes, positives=limit, negatives=0, seed=seed, max_per_label=cap)
    _check_valid(pairs, codes, limit, 0)
    with pytest.raises(InputError, match=rf"at most {limit:,} same-label pairs with at most {cap}"):
        draw_pairs(codes, positives=limit + 1, negatives=0, seed=seed, max_per_label=cap)


def test_draw_pairs_cap_on_a_balanced_dataset() -> None:
    codes = np.repeat(np.arange(20), 8)
    pairs = draw_pairs(codes, positives=100, negatives=150, seed=2, max_per_label=15)
    _check_valid(pairs, codes, 100, 150)
    assert _per_label(pairs, codes, same=1).max() <= 15
    assert _per_label(pairs, codes, same=0).max() <= 15


def test_draw_pairs_cap_makes_a_dominant_label_share() -> None:
    # one label of 30 rows, three of 4: uncapped, the big label takes most positives
    codes = np.repeat(np.arange(4), [30, 4, 4, 4])
    capped = draw_pairs(codes, positives=20, negatives=0, seed=0, max_per_label=5)
    assert _per_label(capped, codes, same=1).tolist() == [5, 5, 5, 5]
    with pytest.raises(InputError, match=r"at most 20 same-label pairs with at most 5 per label"):
        draw_pairs(codes, positives=21, negatives=0, seed=0, max_per_label=5)


def test_draw_pairs_capped_negatives_over_the_limit() -> None:
    codes = np.repeat(np.arange(5), 6)
    limit = pair_limits(np.bincount(codes), 4).negatives
    assert limit == 10  # 5 labels × 4 appearances / 2
    pairs = draw_pairs(codes, positives=0, negatives=10, seed=0, max_per_label=4)
    assert _per_label(pairs, codes, same=0).tolist() == [4] * 5
    with pytest.raises(InputError, match=r"at most 10 cross-label pairs with at most 4 per label"):
        draw_pairs(codes, positives=0, negatives=11, seed=0, max_per_label=4)


def test_draw_pairs_cap_binds_where_small_labels_limit_the_spread() -> None:
    # caps 41 each, but labels 1 and 2 share only 10 pairs: the true maximum is 51 (label 0
    # with 41, labels 1 and 2 with 10 between them), below pair_limits' bound of 61
    codes = np.repeat(np.arange(3), [17, 5, 2])
    assert pair_limits(np.bincount(codes), 41).negatives == 61
    for seed in range(5):
        pairs = draw_pairs(codes, positives=0, negatives=51, seed=seed, max_per_label=41)
        _check_valid(pairs, codes, 0, 51)
        assert _per_label(pairs, codes, same=0).max() <= 41
    with pytest.raises(InputError, match=r"could draw only 51 of 52 negative pairs"):
        draw_pairs(codes, positives=0, negatives=52, seed=0, max_per_label=41)


def test_draw_pairs_capped_reaches_a_realisable_maximum() -> None:
    # labels of 1, 2, 2, 2 rows, cap 8: appearances 6, 8, 8, 8 -> 15 pairs, realisable as
    # label 0 with each of the others twice and 3 pairs within each other label pair
    codes = np.repeat(np.arange(4), [1, 2, 2, 2])
    assert pair_limits(np.bincount(codes), 8).negatives == 15
    for seed in range(100):  # seed 4 once fell one short (a dead end of the rewiring)
        pairs = draw_pairs(codes, positives=0, negatives=15, seed=seed, max_per_label=8)
        assert _per_label(pairs, codes, same=0).tolist() == [6, 8, 8, 8]


def test_draw_pairs_negatives_water_filled_when_realisable() -> None:
    # label 4 (2 rows) has 64 cross pairs, below the level 84 of the others: water-filling
    # gives it all 64 and the others (400 - 64) / 4 = 84 each, e.g. 16 pairs with each big
    # label and 22 or 23 pairs in each big label pair (grids of 64)
    codes = np.repeat(np.arange(5), [8, 8, 8, 8, 2])
    for seed in range(100):  # seed 5 once missed it (rewiring dead end, then a top-up)
        pairs = draw_pairs(codes, positives=0, negatives=200, seed=seed)
        assert _per_label(pairs, codes, same=0).tolist() == [84, 84, 84, 84, 64], seed


# --- spread ---


@given(
    capacity=st.lists(st.integers(0, 60), min_size=1, max_size=30),
    data=st.data(),
)
def test_spread_fills_evenly_within_capacity(capacity: list[int], data: st.DataObject) -> None:
    total = data.draw(st.integers(0, sum(capacity)))
    seed = data.draw(st.integers(0, 2**32 - 1))
    cap = np.asarray(capacity, dtype=np.int64)
    quotas = spread(cap, total, np.random.default_rng(seed))
    assert quotas.sum() == total
    assert ((quotas >= 0) & (quotas <= cap)).all()
    free = quotas < cap
    if free.any():
        assert quotas[free].max() - quotas[free].min() <= 1
        # a label at capacity holds no more than the others could take
        assert (quotas[~free] <= quotas[free].min() + 1).all()
    assert _water_filled(quotas, cap)
    again = spread(cap, total, np.random.default_rng(seed))
    assert again.tolist() == quotas.tolist()


def test_spread_puts_the_extra_units_on_random_labels() -> None:
    capacity = np.full(10, 10)
    winners = {
        tuple(np.flatnonzero(spread(capacity, 15, np.random.default_rng(s)) == 2).tolist())
        for s in range(10)
    }
    assert all(len(w) == 5 for w in winners)
    assert len(winners) > 1


def test_spread_examples() -> None:
    rng = np.random.default_rng(0)
    assert spread(np.array([1, 10, 10]), 13, rng).tolist() == [1, 6, 6]
    assert spread(np.array([0, 3, 8]), 11, rng).tolist() == [0, 3, 8]
    assert spread(np.array([5, 5]), 0, rng).tolist() == [0, 0]


# --- unrank_pairs ---


def _rank(i: int, j: int) -> int:
    return j * (j - 1) // 2 + i


def _unrank_exact(m: int) -> tuple[int, int]:
    j = (math.isqrt(8 * m + 1) + 1) // 2
    return m - j * (j - 1) // 2, j


def test_unrank_pairs_follows_the_enumeration_order() -> None:
    expected = [(i, j) for j in range(1, 101) for i in range(j)]  # (0,1), (0,2), (1,2), (0,3)…
    assert expected[:4] == [(0, 1), (0, 2), (1, 2), (0, 3)]
    i, j = unrank_pairs(np.arange(len(expected)))
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == expected
    assert i.dtype == np.int64 and j.dtype == np.int64


def test_unrank_pairs_near_large_indices() -> None:
    index = []
    for j in (1_414_213, 1_414_214, 1_414_215, 10**8 + 7, 134_217_729, 2**30):  # ~10**12 .. 5e17
        start = j * (j - 1) // 2  # the first index of column j: rounding is tightest here
        index += [start - 2, start - 1, start, start + 1, start + j - 1]
    index += list(range(10**12 - 50, 10**12 + 50))
    i, j = unrank_pairs(np.asarray(index, dtype=np.int64))
    got = list(zip(i.tolist(), j.tolist(), strict=True))
    assert got == [_unrank_exact(m) for m in index]
    assert all(0 <= a < b and _rank(a, b) == m for (a, b), m in zip(got, index, strict=True))


@given(index=st.lists(st.integers(0, 10**15), min_size=1, max_size=50))
def test_unrank_pairs_inverts_the_rank(index: list[int]) -> None:
    i, j = unrank_pairs(np.asarray(index, dtype=np.int64))
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [_unrank_exact(m) for m in index]


# --- errors ---


def test_draw_pairs_too_many_positives_says_the_maximum() -> None:
    codes = np.array([0, 0, 0, 1, 1])  # 3 + 1 same-label pairs
    with pytest.raises(InputError, match=r"asked for 5 positive pairs.*at most 4 same-label"):
        draw_pairs(codes, positives=5, negatives=0, seed=0)
    draw_pairs(codes, positives=4, negatives=0, seed=0)  # the maximum itself is fine


def test_draw_pairs_large_maximum_is_written_with_separators() -> None:
    codes = np.repeat(np.arange(2), 60)  # 2 × C(60, 2) = 3,540 positives, 3,600 negatives
    with pytest.raises(InputError, match=r"at most 3,540 same-label pairs"):
        draw_pairs(codes, positives=3_541, negatives=0, seed=0)
    with pytest.raises(InputError, match=r"at most 3,600 cross-label pairs"):
        draw_pairs(codes, positives=0, negatives=3_601, seed=0)


def test_draw_pairs_too_many_negatives_says_the_maximum() -> None:
    codes = np.array([0, 0, 1])  # two cross-label pairs
    with pytest.raises(InputError, match=r"asked for 3 negative pairs.*at most 2 cross-label"):
        draw_pairs(codes, positives=0, negatives=3, seed=0)


def test_draw_pairs_negatives_need_two_labels() -> None:
    codes = np.zeros(6, dtype=np.int64)
    with pytest.raises(InputError, match=r"negative pairs need two labels; the rows have 1"):
        draw_pairs(codes, positives=3, negatives=1, seed=0)
    pairs = draw_pairs(codes, positives=15, negatives=0, seed=0)  # positives alone are fine
    _check_valid(pairs, codes, 15, 0)


def test_draw_pairs_singletons_allow_no_positives() -> None:
    codes = np.arange(5)  # five labels of one row each
    with pytest.raises(InputError, match=r"at most 0 same-label pairs"):
        draw_pairs(codes, positives=1, negatives=0, seed=0)
    pairs = draw_pairs(codes, positives=0, negatives=10, seed=0)
    _check_valid(pairs, codes, 0, 10)
