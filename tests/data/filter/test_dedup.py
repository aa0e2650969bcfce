from __future__ import annotations

import itertools

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
    REASON,
    WIDTH,
)
from fmlkit.data.filter.dedup import CROSS, EXACT, NEAR, find_duplicates
from fmlkit.data.filter.hamming import equal_pairs, radius_pairs
from fmlkit.errors import InputError, SchemaError


def brute_force(
    df: pd.DataFrame, threshold: int, scope: str, global_threshold: int, keep: str
) -> pd.DataFrame:
    """The rule in its plainest form: every row against every row kept before it."""
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
                if (
                    (kind == EXACT and same_label and same_md5)
                    or (kind == NEAR and same_label and d <= threshold)
                    or (
                        kind == CROSS
                        and scope == "global"
                        and not same_label
                        and (same_md5 or d <= global_threshold)
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
def test_find_duplicates_equals_brute_force(scope: str, keep: str) -> None:
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
