"""Retrieval metrics of labelled embeddings, leave-one-out, in bounded memory.

Every item is a query against all the other items (its own label's items are the relevant
ones); similarity is the cosine of the L2-normalised embeddings. Definitions follow
pytorch-metric-learning's ``AccuracyCalculator`` (Musgrave et al., "A Metric Learning Reality
Check", 2020), with R = the number of other items with the query's label:

- ``precision_at_1``: the fraction of queries whose nearest other item has their label;
- ``r_precision``: the mean over queries of (relevant items among the R nearest) / R;
- ``map_at_r``: the mean over queries of (1/R) Σ_{i ≤ R} P(i)·rel(i), P(i) the precision among
  the i nearest and rel(i) whether the i-th nearest is relevant;
- ``recall_at_k``: for each k, the fraction of queries with at least one relevant item among
  the k nearest (Recall@K of metric-learning papers; k beyond the n − 1 other items means all).

Queries whose label has no other item (R = 0) are left out of every metric and counted in
``excluded``, as pytorch-metric-learning does ("lone" query labels); they still serve as
distractors for the other queries. With no query left every metric is 0 (and a warning is
logged), again as there. R is never capped (pytorch-metric-learning's default k=None reads
every neighbour too; its old faiss path stopped at 1023).

Ties: items of equal similarity rank by position, the lower index first (as a stable sort).

Memory: the similarities are computed a block at a time — a chunk of queries against a chunk
of the gallery (float32, plus a normalised copy of that gallery chunk) — keeping each query's
running top k (k = the largest R or the largest requested k, at most n − 1) as values and
indices; blocks are sized to ``memory_mb`` (default 512 MiB) unless the chunk sizes are given:
whole gallery rows when a few hundred queries fit so (the normalised copy of the whole
gallery is then made once, not per block: 67.6 → 60.5 s at 100,000 × 512), else 256
queries against gallery chunks. The embeddings are used in place when they are a float32
array or tensor (else one float32 copy is made): for 1M × 512 that is 2 GB, plus the
budget and torch's own ~0.5 GB, so 1M × 1M stays under 4 GB of RAM. A label so large that
one query's top k (96 bytes per entry) alone exceeds the budget is refused with the figures
and the fix (a larger ``memory_mb``); chunk sizes given explicitly are used as they are.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fmlkit.errors import InputError
from fmlkit.progress import progress_counter

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SIM_BYTES = 8  # per similarity in a block: the float32 matrix and top-k scratch
TOPK_BYTES = 96  # per running top-k entry: values, indices, merge and sort buffers, metrics
MAX_QUERY_CHUNK = 1024


def retrieval_metrics(
    embeddings: np.ndarray | torch.Tensor,
    labels: Sequence[object] | np.ndarray,
    *,
    ks: Sequence[int] = (1, 5, 10),
    query_chunk: int | None = None,
    gallery_chunk: int | None = None,
    device: str | torch.device | None = None,
    memory_mb: float = 512,
) -> dict[str, object]:
    """Leave-one-out retrieval metrics of ``embeddings`` labelled ``labels`` (module docstring).

    Args:
        embeddings: (n, dimension) embeddings, not necessarily normalised.
        labels: n labels, any hashable values (identity names, integers).
        ks: the k of ``recall_at_k``.
        query_chunk: queries per block; derived from ``memory_mb`` when None.
        gallery_chunk: gallery items per block; derived from ``memory_mb`` when None.
        device: where to compute ("cpu", "cuda", …); the CPU when None.
        memory_mb: budget in MiB for the blocks and top-k buffers when chunk sizes are derived.

    Returns:
        ``precision_at_1``, ``r_precision``, ``map_at_r``, ``recall_at_k`` ({"1": …, "5": …}),
        ``queries`` (queries counted) and ``excluded`` (queries whose label has no other item),
        as Python floats and ints.

    Raises:
        InputError: fewer than 2 items, lengths that differ, NaN/infinite or all-zero
            embeddings, missing labels, bad ks or chunk sizes, or a label too large for the
            memory budget.
    """
    import torch

    ks = _check_ks(ks)
    dev = _device(device)
    emb = _as_float32(embeddings)
    codes = _label_codes(labels, len(emb))
    inv_norm = _inverse_norms(emb, dev)
    emb = emb.to(dev)  # an accelerator holds them once (no copy on the CPU)
    counts = torch.bincount(codes)
    relevant = counts[codes] - 1  # R per item
    queries = torch.nonzero(relevant > 0).flatten()
    n, k = len(emb), int(min(max(int(relevant.max()), max(ks)), len(emb) - 1))
    q_chunk, g_chunk = _chunk_sizes(
        (n, emb.shape[1]), len(queries), k, query_chunk, gallery_chunk, memory_mb, int(counts.max())
    )
    sums = torch.zeros(3 + len(ks), dtype=torch.float64, device=dev)
    codes_dev, relevant_dev = codes.to(dev), relevant.to(dev)
    if g_chunk >= n:  # whole gallery rows: the budget holds one normalised copy; make it once
        emb, inv_norm = emb * inv_norm[:, None], torch.ones_like(inv_norm)
    with progress_counter(total=len(queries), desc="retrieval", unit="query") as advance:
        for start in range(0, len(queries), q_chunk):
            rows = queries[start : start + q_chunk]
            top = _top_k(emb, inv_norm, rows, k, g_chunk, dev)
            sums += _query_sums(top, codes_dev, relevant_dev, rows.to(dev), ks)
            advance(len(rows))
    counted = len(queries)
    if counted == 0:
        log.warning("no label has two items: every retrieval metric is 0")
    means = (sums / max(counted, 1)).tolist()
    return {
        "precision_at_1": means[0],
        "r_precision": means[1],
        "map_at_r": means[2],
        "recall_at_k": {str(kk): means[3 + j] for j, kk in enumerate(ks)},
        "queries": counted,
        "excluded": n - counted,
    }


def _check_ks(ks: Sequence[int]) -> list[int]:
    values = list(ks)
    if not values or not all(
        isinstance(kk, (int, np.integer)) and not isinstance(kk, bool) and kk >= 1 for kk in values
    ):
        raise InputError(f"ks must be positive integers, e.g. (1, 5, 10), not {tuple(ks)}")
    return [int(kk) for kk in values]


def _device(device: str | torch.device | None) -> torch.device:
    import torch

    dev = torch.device("cpu" if device is None else device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {dev} was asked for but CUDA is not available; use cpu")
    return dev


def _as_float32(embeddings: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The embeddings as a float32 tensor, sharing memory when they already are float32."""
    import torch

    if isinstance(embeddings, torch.Tensor):
        emb = embeddings.detach().to(torch.float32)
    else:
        array = np.asarray(embeddings)
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise InputError(f"expected numeric embeddings, found dtype {array.dtype}")
        array = np.ascontiguousarray(array, dtype=np.float32)
        with warnings.catch_warnings():  # read-only arrays: never written to
            warnings.simplefilter("ignore", UserWarning)
            emb = torch.from_numpy(array)
    if emb.ndim != 2 or emb.shape[0] < 2 or emb.shape[1] < 1:
        raise InputError(
            f"expected (items, dimension) embeddings of at least 2 items, found shape "
            f"{tuple(emb.shape)}"
        )
    return emb


def _label_codes(labels: Sequence[object] | np.ndarray | torch.Tensor, n: int) -> torch.Tensor:
    import pandas as pd
    import torch

    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    values = labels if isinstance(labels, np.ndarray) else np.asarray(labels, dtype=object)
    if values.ndim != 1 or len(values) != n:
        raise InputError(f"expected {n} labels, one per embedding, found {values.shape}")
    codes, _ = pd.factorize(values, sort=False)
    if (codes < 0).any():
        raise InputError(
            f"{int((codes < 0).sum())} labels are missing (None/NaN); label every embedding "
            "or leave those rows out"
        )
    return torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64))


def _inverse_norms(emb: torch.Tensor, dev: torch.device, rows: int = 65536) -> torch.Tensor:
    """1 / ‖row‖ per embedding (float32, on ``dev``), checked a chunk of rows at a time."""
    import torch

    parts = []
    for start in range(0, len(emb), rows):
        norms = torch.linalg.vector_norm(emb[start : start + rows].to(dev), dim=1)
        bad = torch.nonzero(~torch.isfinite(norms)).flatten()
        if len(bad):
            raise InputError(
                f"embeddings hold NaN or infinite values (rows "
                f"{', '.join(str(start + int(i)) for i in bad[:5])}); re-embed those items"
            )
        zero = torch.nonzero(norms == 0).flatten()
        if len(zero):
            raise InputError(
                f"embeddings are all zeros and have no direction (rows "
                f"{', '.join(str(start + int(i)) for i in zero[:5])}); re-embed those items"
            )
        parts.append(1.0 / norms)
    return torch.cat(parts)


def _chunk_sizes(
    shape: tuple[int, int],
    queries: int,
    k: int,
    query_chunk: int | None,
    gallery_chunk: int | None,
    memory_mb: float,
    largest: int,
) -> tuple[int, int]:
    """(query chunk, gallery chunk): the given ones, else the largest that fit the budget —
    whole gallery rows when a few hundred queries fit so (no merging), else 256 queries
    against as many gallery items as fit."""
    for name, value in (("query_chunk", query_chunk), ("gallery_chunk", gallery_chunk)):
        if value is not None and (isinstance(value, bool) or value < 1):
            raise InputError(f"{name} must be a positive number of items, not {value}")
    n, dim = shape
    budget, state, row = int(memory_mb * 2**20), TOPK_BYTES * k, 4 * dim
    if state > budget and query_chunk is None:
        raise InputError(
            f"the largest label has {largest:,} items: each query keeps its {k:,} nearest, "
            f"{state / 2**20:,.0f} MiB, more than memory_mb={memory_mb:g}; raise memory_mb "
            f"above {state / 2**20:,.0f} or leave that label out"
        )
    q, g = query_chunk, gallery_chunk
    if q is None and g is None:
        whole = (budget - row * n) // (SIM_BYTES * n + state)
        if whole >= min(queries, 256):
            q, g = min(whole, MAX_QUERY_CHUNK), n
        else:
            q = max(1, min(256, budget // (2 * state)))
    if g is None:
        assert q is not None
        g = (budget - q * state) // (SIM_BYTES * q + row)
    if q is None:
        q = min(MAX_QUERY_CHUNK, (budget - row * g) // (SIM_BYTES * g + state))
    return max(1, min(q, queries)), max(1, min(g, n))


def _top_k(
    emb: torch.Tensor,
    inv_norm: torch.Tensor,
    rows: torch.Tensor,
    k: int,
    g_chunk: int,
    dev: torch.device,
) -> torch.Tensor:
    """Gallery indices of the k most similar other items of each query in ``rows``, most
    similar first, ties by lower index: a running top k over chunks of the gallery."""
    import torch

    rows_dev = rows.to(dev)
    query = emb[rows.to(emb.device)].to(dev) * inv_norm[rows_dev][:, None]
    best_v = torch.empty(len(rows), 0, device=dev)
    best_i = torch.empty(len(rows), 0, dtype=torch.long, device=dev)
    for start in range(0, len(emb), g_chunk):
        stop = min(start + g_chunk, len(emb))
        gallery = emb[start:stop].to(dev)
        if stop - start < len(emb):  # a gallery chunk: normalise it here (bounded memory)
            gallery = gallery * inv_norm[start:stop][:, None]
        sim = query @ gallery.T
        del gallery
        own = torch.nonzero((rows_dev >= start) & (rows_dev < stop)).flatten()
        sim[own, rows_dev[own] - start] = -torch.inf  # never its own neighbour
        vals, idx = _block_top_k(sim, min(k, stop - start))
        del sim
        best_v, best_i = _merge(
            torch.cat([best_v, vals], dim=1), torch.cat([best_i, idx + start], dim=1), k
        )
    return best_i


def _block_top_k(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest of each row of ``sim`` and their columns; where the k-th value ties with
    an unselected one, the row is redone with a stable sort so that lower columns win."""
    import torch

    width = sim.shape[1]
    vals, idx = torch.topk(sim, min(k + 1, width), dim=1)
    if width > k:
        tied = torch.nonzero(vals[:, k] == vals[:, k - 1]).flatten()
        vals, idx = vals[:, :k].clone(), idx[:, :k].clone()
        if len(tied):
            s_vals, s_idx = torch.sort(sim[tied], dim=1, descending=True, stable=True)
            vals[tied], idx[tied] = s_vals[:, :k], s_idx[:, :k]
    return vals, idx


def _merge(vals: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first k of each row in (value descending, index ascending) order."""
    import torch

    by_index = torch.argsort(idx, dim=1)
    vals, idx = vals.gather(1, by_index), idx.gather(1, by_index)
    by_value = torch.sort(vals, dim=1, descending=True, stable=True).indices[:, :k]
    return vals.gather(1, by_value), idx.gather(1, by_value)


def _query_sums(
    top: torch.Tensor,
    codes: torch.Tensor,
    relevant: torch.Tensor,
    rows: torch.Tensor,
    ks: list[int],
) -> torch.Tensor:
    """Per-metric sums over the queries ``rows`` whose neighbours are ``top`` (float64):
    precision@1, R-precision, MAP@R, then recall@k for each k."""
    import torch

    hit = codes[top] == codes[rows][:, None]  # (queries, k)
    r = relevant[rows].to(torch.float64)
    rank = torch.arange(1, top.shape[1] + 1, device=top.device, dtype=torch.float64)
    within = rank[None, :] <= r[:, None]
    hit_r = hit & within
    precision = torch.cumsum(hit.to(torch.float64), dim=1) / rank[None, :]
    sums = [
        hit[:, 0].to(torch.float64).sum(),
        (hit_r.sum(dim=1) / r).sum(),
        ((precision * hit_r).sum(dim=1) / r).sum(),
        *(hit[:, :kk].any(dim=1).to(torch.float64).sum() for kk in ks),
    ]
    return torch.stack(sums)
