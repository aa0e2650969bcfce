from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from fmlkit.data.convert.shuffle import shuffled


def _records(n: int) -> list[tuple[int, bytes]]:
    return [(i % 7, b"payload-%d" % i) for i in range(n)]


def test_shuffled_is_a_permutation_fixed_by_the_seed(tmp_path: Path) -> None:
    records = _records(500)
    kwargs = {"total_bytes": 6000, "bucket_bytes": 1000, "tmp_dir": tmp_path}
    first = list(shuffled(records, seed=3, **kwargs))  # 6 buckets
    assert sorted(first) == sorted(records) and first != records
    assert list(shuffled(records, seed=3, **kwargs)) == first
    assert list(shuffled(records, seed=4, **kwargs)) != first
    assert list(tmp_path.iterdir()) == []  # bucket files are gone


def test_shuffled_positions_are_uniform(tmp_path: Path) -> None:
    # over many seeds, record 0 lands in each tenth of the output about equally often
    records = _records(50)
    where = Counter()
    for seed in range(600):
        out = list(shuffled(records, seed=seed, total_bytes=4, bucket_bytes=1, tmp_dir=tmp_path))
        where[out.index(records[0]) // 5] += 1
    counts = np.array([where[d] for d in range(10)])
    assert counts.min() > 30 and counts.max() < 95, counts  # expected 60 each
