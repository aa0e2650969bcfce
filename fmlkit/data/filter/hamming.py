"""Exact Hamming-radius search over 64-bit hashes: every pair within ``radius`` bits.

Multi-index hashing: split the 64 bits into ``radius + 1`` chunks. Two hashes at most
``radius`` bits apart differ in at most ``radius`` chunks, so by the pigeonhole principle they
agree exactly on at least one. Pairs that agree on some chunk are the candidates; each is
checked on all 64 bits. Exact for every radius, only slower as the radius grows and the
chunks get shorter, and where real hashes cluster (a 28 px photo's pHashes share many chunks):
there `radius_pairs` compares every pair of a group in row blocks instead, picked per group
from a count of the candidates made before the search. Both are exact; only the cost differs.

A 64-bit pHash (the median-thresholded DCT of `fmlkit.data.formats.hashing`) has 32 set bits
(ties aside), so two such hashes differ in an even number of bits: an odd radius finds what
the even one below it finds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np

from fmlkit.progress import track

HASH_BITS = 64
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_PAIR_BATCH = 20_000_000  # candidate pairs materialised at once (bounds memory)
# A group is searched by comparing all its pairs when that is at most this many times the
# multi-index candidates: a pair compared in row blocks costs ≈ 5 ns, a candidate (gathers,
# checks, index arithmetic) ≈ 100 ns (20,000 random hashes at 10 bits: 1.0 s against 4.3 s);
# small groups' pairs cost more each, hence a margin below that ratio.
_BRUTE_COST = 8.0
_DENSE_GROUP = 64  # groups this large are compared in blocks of their upper triangle
_BLOCK_CELLS = 4_000_000  # hash pairs per block (≈ 40 MB of temporaries)


# rows sorted by (group, key), and the runs of ≥ 2 rows sharing both: start, length, group
Runs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class MalformedHash(ValueError):
    """A hash string that is not 16 hex characters; ``position`` is its 0-based index."""

    def __init__(self, position: int, value: str) -> None:
        super().__init__(f"hash {value!r} is not 16 hexadecimal characters")
        self.position = position
        self.value = value


def hex_to_uint64(values: list[str]) -> np.ndarray:
    """Parse 16-hex-character hashes into uint64 (fast: one ``bytes.fromhex``).

    Raises:
        MalformedHash: for the first malformed value.
    """
    for k, v in enumerate(values):
        if len(v) != 16:
            raise MalformedHash(k, v)
    try:
        raw = bytes.fromhex("".join(values))
    except ValueError:
        raw = b""
    if len(raw) != 8 * len(values):  # not hex, or spaces that fromhex skips
        bad = next(k for k, v in enumerate(values) if not _HEX16.fullmatch(v))
        raise MalformedHash(bad, values[bad]) from None
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64, as int64."""
    return np.bitwise_count(x).astype(np.int64)


def radius_pairs(
    hashes: np.ndarray, radius: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with ``popcount(hashes[i] ^ hashes[j]) <= radius``.

    Per group, the cheaper of two exact searches, picked from a count made before either runs:
    multi-index hashing (pairs agreeing on a chunk, ``Σ bucket²/2`` candidates over the
    chunks) or all pairs of the group compared in row blocks (``m²/2``, but each costs a few
    vectorised operations: cheaper where real hashes cluster and the buckets fill up).

    Args:
        hashes: uint64 array.
        radius: Hamming radius in bits, ≥ 0.
        groups: optional integer group per row; only pairs within a group are returned.

    Returns:
        ``(i, j, distance)`` int64 arrays, sorted by (i, j), each pair once.
    """
    if radius < 0:
        raise ValueError("radius must be >= 0")
    n = len(hashes)
    group = np.zeros(n, np.int64) if groups is None else np.asarray(groups, np.int64)
    gid = np.unique(group, return_inverse=True)[1].reshape(-1).astype(np.int64)
    sizes = np.bincount(gid) if n else np.zeros(0, np.int64)
    all_pairs = sizes.astype(np.float64) * (sizes - 1) / 2
    chunks = 0 if radius >= HASH_BITS else radius + 1
    runs = [_runs(gid, np.asarray(_chunk(hashes, c, chunks), np.int64)) for c in range(chunks)]
    candidates = np.zeros(len(sizes))
    for _, _, lengths, run_group in runs:
        candidates += np.bincount(
            run_group, weights=lengths * (lengths - 1) / 2.0, minlength=len(sizes)
        )
    brute = all_pairs <= _BRUTE_COST * candidates if chunks else np.ones(len(sizes), bool)
    found: list[tuple[np.ndarray, np.ndarray]] = []
    # one pass over the all-pairs groups (chunk -1), one per chunk for the others
    passes: list[tuple[int, Runs | None]] = [(-1, None)] if brute.any() else []
    passes += list(enumerate(runs)) if not brute.all() else []
    desc = f"dedup: pairs within {radius} bits"
    for c, run in track(passes, total=len(passes), desc=desc, unit="pass"):
        if run is None:
            found += _all_pairs_within(hashes, gid, brute, radius)
            continue
        order, starts, lengths, run_group = run
        keep = ~brute[run_group]
        for i, j in _pairs_in_runs(order, starts[keep], lengths[keep]):
            x = hashes[i] ^ hashes[j]
            near = np.bitwise_count(x) <= radius
            for earlier in range(c):  # a pair agreeing on an earlier chunk came then
                near &= _chunk(x, earlier, chunks) != 0
            found.append((i[near], j[near]))
    if not found:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    i = np.concatenate([f[0] for f in found])
    j = np.concatenate([f[1] for f in found])
    code = np.sort(np.minimum(i, j) * n + np.maximum(i, j))  # each pair was found once
    i, j = code // n, code % n
    return i, j, popcount(hashes[i] ^ hashes[j])


def equal_pairs(
    keys: np.ndarray, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with equal ``keys`` (and equal ``groups`` when given)."""
    n = len(keys)
    group = np.zeros(n, np.int64) if groups is None else np.asarray(groups, np.int64)
    parts = list(_pairs_with_equal_keys(group, np.asarray(keys, np.int64)))
    if not parts:
        empty = np.zeros(0, np.int64)
        return empty, empty
    i = np.concatenate([p[0] for p in parts])
    j = np.concatenate([p[1] for p in parts])
    return np.minimum(i, j), np.maximum(i, j)


def _chunk(hashes: np.ndarray, index: int, chunks: int) -> np.ndarray:
    """Bits of chunk ``index`` when 64 bits are split into ``chunks`` near-equal parts."""
    sizes = [HASH_BITS // chunks + (1 if k < HASH_BITS % chunks else 0) for k in range(chunks)]
    shift = sum(sizes[index + 1 :])
    mask = np.uint64((1 << sizes[index]) - 1)
    return (hashes >> np.uint64(shift)) & mask


def _runs(group: np.ndarray, key: np.ndarray) -> Runs:
    """Rows sorted by (group, key), and the runs of ≥ 2 rows sharing both.

    Returns:
        ``(order, starts, lengths, run_group)``: the sort, each run's first position in it
        and length, and its group.
    """
    n = len(key)
    if n < 2:
        empty = np.zeros(0, np.int64)
        return np.arange(n), empty, empty, empty
    span = int(key.max()) - int(key.min()) + 1
    if int(group.max()) - int(group.min()) < (1 << 62) // span:  # one int64 sort key
        combined = (group - group.min()) * span + (key - key.min())
        order = np.argsort(combined, kind="stable")
        c = combined[order]
        boundary = np.flatnonzero(c[1:] != c[:-1]) + 1
    else:
        order = np.lexsort((key, group))
        g, k = group[order], key[order]
        boundary = np.flatnonzero((g[1:] != g[:-1]) | (k[1:] != k[:-1])) + 1
    starts = np.concatenate(([0], boundary))
    lengths = np.diff(np.concatenate((starts, [n])))
    multi = lengths > 1
    starts, lengths = starts[multi], lengths[multi]
    return order, starts, lengths, group[order[starts]]


def _pairs_with_equal_keys(
    group: np.ndarray, key: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Row pairs sharing (group, key), in batches of at most ~_PAIR_BATCH pairs."""
    order, starts, lengths, _ = _runs(group, key)
    yield from _pairs_in_runs(order, starts, lengths)


def _pairs_in_runs(
    order: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Row pairs inside each run of ``order``, in batches of at most ~_PAIR_BATCH pairs."""
    if not len(starts):
        return
    per_run = lengths * (lengths - 1) // 2
    cum = np.cumsum(per_run)
    first = 0
    while first < len(starts):
        # runs [first, last) hold at most _PAIR_BATCH pairs (at least one run)
        base = cum[first - 1] if first else 0
        last = max(first + 1, int(np.searchsorted(cum, base + _PAIR_BATCH, side="right")))
        p, q = _run_pairs(starts[first:last], lengths[first:last])
        yield order[p], order[q]
        first = last


def _all_pairs_within(
    hashes: np.ndarray, gid: np.ndarray, chosen: np.ndarray, radius: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every pair within ``radius`` bits inside the groups ``chosen`` (a mask over group ids),
    found by comparing all pairs: small groups all at once, large ones in row blocks of their
    upper triangle (memory bounded by ``_BLOCK_CELLS``)."""
    found: list[tuple[np.ndarray, np.ndarray]] = []
    rows = np.flatnonzero(chosen[gid])
    order = rows[np.argsort(gid[rows], kind="stable")]
    g = gid[order]
    starts = np.concatenate(([0], np.flatnonzero(g[1:] != g[:-1]) + 1)) if len(g) else g
    lengths = np.diff(np.concatenate((starts, [len(g)])))
    small = (lengths > 1) & (lengths < _DENSE_GROUP)
    for i, j in _pairs_in_runs(order, starts[small], lengths[small]):
        near = np.bitwise_count(hashes[i] ^ hashes[j]) <= radius
        found.append((i[near], j[near]))
    large = lengths >= _DENSE_GROUP
    for start, length in zip(starts[large], lengths[large], strict=True):
        members = order[start : start + length]  # ascending row numbers (a stable sort)
        h = hashes[members]
        step = max(1, _BLOCK_CELLS // len(h))
        for a in range(0, len(h) - 1, step):
            b = min(a + step, len(h))
            near = np.bitwise_count(h[a:b, None] ^ h[None, a:]) <= radius
            near[:, : b - a] &= np.triu(np.ones((b - a, b - a), bool), 1)  # j > i only
            p, q = np.nonzero(near)
            found.append((members[a + p], members[a + q]))
    return found


def _run_pairs(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (p, q), p < q, of every pair inside each run [start, start + length)."""
    elem_run = np.repeat(np.arange(len(starts)), lengths)
    run_first = np.repeat(starts, lengths)
    pos = np.arange(len(elem_run)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    counts = lengths[elem_run] - 1 - pos  # partners after this element in its run
    p = np.repeat(run_first + pos, counts)
    offsets = np.arange(len(p)) - np.repeat(np.cumsum(counts) - counts, counts)
    return p, p + 1 + offsets


def nearest_within(
    base: np.ndarray, query: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each ``base`` hash, the nearest ``query`` hash within ``radius`` bits.

    The same multi-index search as `radius_pairs`, across two sets: only pairs agreeing on a
    chunk are compared, in batches of at most ~``_PAIR_BATCH`` pairs, so a million base
    rows against a benchmark's thousands of images take seconds at small radii.

    Returns:
        ``(index, distance)`` int64 arrays over ``base``: the query position (ties to the
        lowest) and its distance in bits, or -1 for both where none is within ``radius``.
    """
    if radius < 0:
        raise ValueError("radius must be >= 0")
    best = np.full(len(base), HASH_BITS + 1, np.int64)
    index = np.full(len(base), -1, np.int64)
    chunks = 1 if radius >= HASH_BITS else radius + 1  # one chunk: every pair compared
    for c in range(chunks):
        b_key = np.asarray(_chunk(base, c, chunks), np.int64) * (radius < HASH_BITS)
        q_key = np.asarray(_chunk(query, c, chunks), np.int64) * (radius < HASH_BITS)
        order = np.argsort(q_key, kind="stable")
        sorted_q = q_key[order]
        lo = np.searchsorted(sorted_q, b_key, side="left")
        counts = np.searchsorted(sorted_q, b_key, side="right") - lo
        cum = np.cumsum(counts)
        first = 0
        while first < len(base):
            done = cum[first - 1] if first else 0
            last = max(first + 1, int(np.searchsorted(cum, done + _PAIR_BATCH, side="right")))
            n = counts[first:last]
            i = np.repeat(np.arange(first, last), n)
            pos = np.arange(len(i)) - np.repeat(np.cumsum(n) - n, n)
            j = order[np.repeat(lo[first:last], n) + pos]
            d = popcount(base[i] ^ query[j])
            better = (d <= radius) & ((d < best[i]) | ((d == best[i]) & (j < index[i])))
            # several pairs of one base row: take the best of this batch first
            i, j, d = i[better], j[better], d[better]
            pick = np.lexsort((j, d, i))
            i, j, d = i[pick], j[pick], d[pick]
            head = np.concatenate(([True], i[1:] != i[:-1])) if len(i) else np.zeros(0, bool)
            best[i[head]], index[i[head]] = d[head], j[head]
            first = last
    found = index >= 0
    return index, np.where(found, best, -1)
