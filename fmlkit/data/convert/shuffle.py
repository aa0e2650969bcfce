"""A uniformly random order of more records than fit in memory (two-pass bucket shuffle).

Pass 1 deals each record to one of B temporary RecordIO bucket files at random; pass 2 reads
the buckets one at a time and yields each in a random order. Random bucket keys, then random
order within a bucket, is a uniformly random permutation; memory holds one bucket
(≈ ``bucket_bytes``), not the dataset.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from fmlkit.data.formats.recordio import IRHeader, RecordWriter, pack, unpack
from fmlkit.data.formats.recordio_reader import RecordReader

MAX_BUCKETS = 512  # open files at once in pass 1


def shuffled(
    records: Iterable[tuple[int, bytes]],
    *,
    total_bytes: int,
    seed: int,
    bucket_bytes: int = 512 * 2**20,
    tmp_dir: str | os.PathLike[str] | None = None,
) -> Iterator[tuple[int, bytes]]:
    """Yield ``records`` ((label, data) pairs) in a uniformly random order fixed by ``seed``.

    Args:
        records: the records, read once.
        total_bytes: about how many bytes they hold (sets the number of buckets).
        seed: the same records and seed give the same order.
        bucket_bytes: the memory one bucket may take.
        tmp_dir: where the bucket files go (default: the system's temporary folder).
    """
    buckets = min(max(1, math.ceil(total_bytes / bucket_bytes)), MAX_BUCKETS)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="fmlkit-shuffle-") as tmp:
        paths = [Path(tmp) / f"bucket-{b:03d}.rec" for b in range(buckets)]
        writers = [RecordWriter(p, None) for p in paths]
        counts = [0] * buckets
        choice: Iterator[int] = iter(())
        try:
            for label, data in records:
                bucket = next(choice, -1)
                if bucket < 0:  # random buckets are drawn 4,096 at a time
                    choice = iter(rng.integers(0, buckets, 4096).tolist())
                    bucket = next(choice)
                writers[bucket].write(counts[bucket], pack(IRHeader(0, float(label)), data))
                counts[bucket] += 1
        finally:
            for writer in writers:
                writer.close()
        for path in paths:
            with RecordReader(path) as reader:
                payloads = [payload for _, payload in reader]
            for i in rng.permutation(len(payloads)).tolist():
                header, data = unpack(payloads[i])
                yield int(header.labels[0]), data
            payloads.clear()
