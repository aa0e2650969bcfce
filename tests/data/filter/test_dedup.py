from __future__ import annotations

import itertools
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmlkit.columns import (
    DISTANCE,
    DUPLICATE_OF,
    FILE_NAME,
    HEIGHT,
    LABEL,
    MD5,
    PHASH,
    PIXEL_SIMILARITY,
    REASON,
    WIDTH,
)
from fmlkit.data.filter.confirm import Confirmation
from fmlkit.data.filter.dedup import CROSS, EXACT, NEAR, find_duplicates
from fmlkit.data.filter.hamming import equal_pairs, radius_pairs
from fmlkit.errors import InputError, SchemaError


def brute_force(
    df: pd.DataFrame,
    threshold: int,
    scope: str,
    global_threshold: int,
    keep: str,
    bad: Collection[tuple[int, ...]] = (),
) -> pd.DataFrame:
    """The rule in its plainest form: every row against every row kept before it; a pair in
    ``bad`` (either order) is unconfirmed: never a near or cross-label duplicate unless the
    two are md5 copies."""
    n = len(df)
    hashes = [int(v, 16) for v in df[PHASH]]
    labels, md5 = list(df[LABEL]), list(df[MD5]) if MD5 in df else None
    order = list(range(n))
    if keep == "largest":
        area = [int(w) * int(h) for w, h in zip(df[WIDTH], df[HEIGHT], strict=True)]
        order.sort(key=lambda r: (-area[r], r))
    kept: list[int] = []
    out: dict[int, tuple[str, str, int | None]] = dict.fromkeys(range(n), ("", "", None))
    for r in order:
        for kind in (EXACT, NEAR, CROSS):
            candidates = []
            for position, k in enumerate(kept):
                d = bin(hashes[r] ^ hashes[k]).count("1")
                same_label = labels[r] == labels[k]
                same_md5 = md5 is not None and md5[r] == md5[k]
                confirmed = same_md5 or ((r, k) not in bad and (k, r) not in bad)
                if (
                    (kind == EXACT and same_label and same_md5)
                    or (kind == NEAR and same_label and d <= threshold and confirmed)
                    or (
                        kind == CROSS
                        and scope == "global"
                        and not same_label
                        and (same_md5 or (d <= global_threshold and confirmed))
                    )
                ):
                    candidates.append((d, position, k))
            if candidates:
                d, _, k = min(candidates)
                out[r] = (kind, df[FILE_NAME].iloc[k], d)
                break
        else:
            kept.append(r)
    return pd.DataFrame(
        {
            REASON: [out[r][0] for r in range(n)],
            DUPLICATE_OF: [out[r][1] for r in range(n)],
            DISTANCE: pd.array([out[r][2] for r in range(n)], dtype="Int64"),
        },
        index=df.index,
    )


def clustered(seed: int, n: int = 150, with_md5: bool = True) -> pd.DataFrame:
    """Hashes around a few centres (a few bits flipped), shared across labels; md5 collisions."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2**63, 6, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    hashes = []
    for _ in range(n):
        h = int(centres[rng.integers(0, len(centres))])
        for bit in rng.choice(64, size=int(rng.integers(0, 14)), replace=False):
            h ^= 1 << int(bit)
        hashes.append(f"{h:016x}")
    df = pd.DataFrame(
        {
            FILE_NAME: [f"f{k:04d}.jpg" for k in range(n)],
            LABEL: [f"id{int(v)}" for v in rng.integers(0, 5, n)],
            PHASH: hashes,
            WIDTH: rng.integers(1, 4, n),
            HEIGHT: rng.integers(1, 4, n),
        }
    )
    if with_md5:  # a few byte-identical groups, whatever their hashes
        df[MD5] = [
            f"m{int(v)}" if v < 12 else f"u{k}" for k, v in enumerate(rng.integers(0, 60, n))
        ]
    return df


@pytest.mark.parametrize("scope", ["label", "global"])
@pytest.mark.parametrize("keep", ["first", "largest"])
@pytest.mark.parametrize("walk", ["by pair", "by row"])
def test_find_duplicates_equals_brute_force(
    scope: str, keep: str, walk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmlkit.data.filter import dedup

    # the walk goes a pair at a time for sparse pairs, a row at a time for dense: force each
    monkeypatch.setattr(dedup, "_DENSE_WALK", 0 if walk == "by row" else 10**9)
    for seed in range(12):
        df = clustered(seed, with_md5=seed % 4 != 3)
        rng = np.random.default_rng(seed)
        threshold, global_threshold = int(rng.integers(0, 16)), int(rng.integers(0, 8))
        if seed == 5:
            threshold, global_threshold = 64, 64  # every pair a candidate
        got = find_duplicates(
            df, threshold=threshold, scope=scope, global_threshold=global_threshold, keep=keep
        )
        want = brute_force(df, threshold, scope, global_threshold, keep)
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
        assert (got[REASON] != "").sum() > 0


def test_find_duplicates_kept_rows_are_never_duplicates_of_each_other() -> None:
    df = clustered(3)
    got = find_duplicates(df, threshold=8, scope="global", global_threshold=2)
    kept = df[got[REASON] == ""]
    # no two kept rows of a label within 8 bits; removed rows point at kept rows
    for _, group in kept.groupby(LABEL):
        hashes = [int(v, 16) for v in group[PHASH]]
        for a, b in itertools.combinations(hashes, 2):
            assert bin(a ^ b).count("1") > 8
    assert set(got.loc[got[REASON] != "", DUPLICATE_OF]) <= set(kept[FILE_NAME])


def test_radius_pairs_equals_all_pairs_for_every_radius() -> None:
    df = clustered(7, n=80)
    hashes = np.array([int(v, 16) for v in df[PHASH]], dtype=np.uint64)
    groups = pd.factorize(df[LABEL])[0]
    for radius in [0, 1, 2, 3, 5, 10, 21, 31, 32, 63, 64, 70]:
        for g in (None, groups):
            i, j, d = radius_pairs(hashes, radius, g)
            want = [
                (a, b, bin(int(hashes[a]) ^ int(hashes[b])).count("1"))
                for a, b in itertools.combinations(range(len(hashes)), 2)
                if bin(int(hashes[a]) ^ int(hashes[b])).count("1") <= radius
                and (g is None or g[a] == g[b])
            ]
            assert list(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == want


def test_equal_pairs_within_groups() -> None:
    i, j = equal_pairs(np.array([5, 5, 7, 5, 7]), np.array([0, 0, 0, 1, 0]))
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1), (2, 4)]


def test_find_duplicates_errors_name_the_problem() -> None:
    df = clustered(1, n=5)
    with pytest.raises(InputError, match="between 0 and 64"):
        find_duplicates(df, threshold=65)
    with pytest.raises(InputError, match="scope must be one of label, global"):
        find_duplicates(df, scope="world")  # type: ignore[arg-type]
    bad = df.copy()
    bad.loc[3, PHASH] = "xyz"
    with pytest.raises(InputError, match="row 3"):
        find_duplicates(bad)
    bad.loc[3, PHASH] = "zz" * 8
    with pytest.raises(InputError, match=r"row 3 \(f0003.jpg\): phash 'zzzz"):
        find_duplicates(bad)
    with pytest.raises(SchemaError, match="phash"):
        find_duplicates(df.drop(columns=[PHASH]))


@pytest.mark.parametrize("scope", ["label", "global"])
def test_find_duplicates_with_no_duplicate_at_all_removes_nothing(scope: str) -> None:
    df = clustered(0).drop_duplicates(PHASH).head(5)
    df[PHASH] = [
        "0000000000000000",
        "00000000ffffffff",
        "ffffffff00000000",
        "ffffffffffffffff",
        "0f0f0f0f0f0f0f0f",
    ]  # each ≥ 32 bits from the others
    df[MD5] = [f"{i:032x}" for i in range(5)]
    got = find_duplicates(df, threshold=8, scope=scope, global_threshold=2)
    assert (got[REASON] == "").all() and len(got) == 5
    want = brute_force(df, 8, scope, 2, "first")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def _clustered_hashes(seed: int, n: int, centres: int, flips: int) -> np.ndarray:
    """Hashes in tight clusters (real pHashes of small photos share most chunks)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**63, centres, dtype=np.uint64)
    hashes = base[rng.integers(0, centres, n)]
    for _ in range(flips):
        hashes = hashes ^ (np.uint64(1) << rng.integers(0, 64, n).astype(np.uint64))
    return hashes


def _all_pairs(hashes: np.ndarray, radius: int, groups: np.ndarray | None) -> list[tuple]:
    d = np.bitwise_count(hashes[:, None] ^ hashes[None, :]).astype(np.int64)
    same = np.ones_like(d, bool) if groups is None else groups[:, None] == groups[None, :]
    i, j = np.nonzero(np.triu((d <= radius) & same, 1))
    return list(zip(i.tolist(), j.tolist(), d[i, j].tolist(), strict=True))


@pytest.mark.parametrize("path", ["picked", "multi-index", "all pairs"])
def test_radius_pairs_is_exact_on_clustered_hashes_by_either_search(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both searches, and the per-group choice between them, give the all-pairs answer on
    clustered hashes, in groups large (row blocks, several per group) and small."""
    from fmlkit.data.filter import hamming

    monkeypatch.setattr(hamming, "_BLOCK_CELLS", 2_000)  # several blocks per large group
    if path != "picked":
        monkeypatch.setattr(hamming, "_BRUTE_COST", 1e30 if path == "all pairs" else 0.0)
    for seed in range(3):
        hashes = _clustered_hashes(seed, 400, centres=5, flips=4)
        # one large group (≥ _DENSE_GROUP rows), many small ones, singletons
        groups = np.where(np.arange(400) < 250, 0, np.arange(400) // 3)
        for radius in (0, 2, 6, 10, 17, 64):
            for g in (None, groups):
                i, j, d = radius_pairs(hashes, radius, g)
                got = list(zip(i.tolist(), j.tolist(), d.tolist(), strict=True))
                assert got == _all_pairs(hashes, radius, g), (seed, radius, g is None)


def test_radius_pairs_picks_all_pairs_for_clustered_and_multi_index_for_spread_hashes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fmlkit.data.filter import hamming

    used: list[str] = []
    real = hamming._all_pairs_within

    def spy(*args: object) -> list[tuple[np.ndarray, np.ndarray]]:
        used.append("all pairs")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(hamming, "_all_pairs_within", spy)
    radius_pairs(_clustered_hashes(0, 2000, centres=3, flips=3), 10)
    assert used == ["all pairs"]
    used.clear()
    spread = np.random.default_rng(1).integers(0, 2**63, 20_000, dtype=np.uint64)
    radius_pairs(spread, 3)
    assert used == []


def test_a_64_bit_phash_has_32_set_bits_so_an_odd_threshold_acts_as_the_even_below(
    synth_scan: Path,
) -> None:
    df = pd.read_csv(synth_scan, dtype=str, keep_default_na=False)
    df = df[df[PHASH] != ""]
    hashes = np.array([int(h, 16) for h in df[PHASH]], dtype=np.uint64)
    assert set(np.bitwise_count(hashes).tolist()) == {32}
    for odd in (3, 9, 11):
        pd.testing.assert_frame_equal(
            find_duplicates(df, threshold=odd, scope="global", global_threshold=odd),
            find_duplicates(df, threshold=odd - 1, scope="global", global_threshold=odd - 1),
        )


def test_confirmation_equals_the_brute_force_walk_over_confirmed_pairs() -> None:
    """A pair that is not an md5 copy counts only when confirmed: the same as the plain walk
    with those pairs' distances beyond every radius."""
    for seed in range(6):
        df = clustered(seed)
        rng = np.random.default_rng(seed)
        bad = {tuple(p) for p in rng.integers(0, len(df), (len(df) * 4, 2)).tolist()}

        def confirm(i: np.ndarray, j: np.ndarray, bad: set[tuple[int, ...]] = bad) -> Confirmation:
            pairs = zip(i.tolist(), j.tolist(), strict=True)
            ok = np.array([(a, b) not in bad and (b, a) not in bad for a, b in pairs])
            pixel = np.where(ok, 0.999, 0.5).astype(np.float32)
            none = np.zeros(len(i), bool)
            return Confirmation(pixel, np.full(len(i), np.nan, np.float32), ok, none, none)

        got = find_duplicates(df, threshold=12, scope="global", global_threshold=5,
                              confirm=confirm)  # fmt: skip
        want = brute_force(df, 12, "global", 5, "first", bad)
        pd.testing.assert_frame_equal(got[[REASON, DUPLICATE_OF, DISTANCE]], want,
                                      check_dtype=False)  # fmt: skip
        removed = got[REASON] != ""
        assert removed.any() and (~removed).any()
        # a removed row's pair is an md5 copy (no similarity) or a confirmed one (0.999)
        pixel = got.loc[removed, PIXEL_SIMILARITY]
        assert set(pixel.dropna().tolist()) <= {0.999}
