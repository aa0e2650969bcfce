"""Retrieval metrics against a brute-force reference: the full similarity matrix, a stable
argsort per row, and pytorch-metric-learning's definitions written out loop by loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmlkit.errors import InputError
from fmlkit.eval.retrieval import TOPK_BYTES, _chunk_sizes, retrieval_metrics

METRICS = ("precision_at_1", "r_precision", "map_at_r")


def _brute(emb: np.ndarray, labels: np.ndarray, ks: tuple[int, ...]) -> dict[str, object]:
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    ranked = np.argsort(-sim, axis=1, kind="stable")[:, :-1]  # ties: lower index first
    sums = dict.fromkeys(METRICS, 0.0)
    found = dict.fromkeys(ks, 0)
    queries = 0
    for i in range(len(emb)):
        r = int((labels == labels[i]).sum()) - 1
        if r == 0:
            continue
        queries += 1
        hit = labels[ranked[i]] == labels[i]
        sums["precision_at_1"] += hit[0]
        sums["r_precision"] += hit[:r].sum() / r
        sums["map_at_r"] += sum(hit[:j].sum() / j for j in range(1, r + 1) if hit[j - 1]) / r
        for k in ks:
            found[k] += hit[:k].any()
    return {
        **{m: sums[m] / queries for m in METRICS},
        "recall_at_k": {str(k): found[k] / queries for k in ks},
        "queries": queries,
        "excluded": len(emb) - queries,
    }


def _data(seed: int, n: int = 160, dim: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Clustered embeddings with unequal class sizes (1 to ~20 items) and 6 singletons."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 20, size=n)
    labels = np.repeat(np.arange(n), sizes)[: n - 6]
    labels = np.concatenate([labels, 1000 + np.arange(6)])
    labels = labels[rng.permutation(n)]
    centres = rng.normal(size=(labels.max() + 1, dim))
    emb = centres[labels] + rng.normal(0, 1.3, size=(n, dim))
    return emb * rng.uniform(0.3, 4, size=(n, 1)), labels


def _assert_same(got: dict[str, object], expected: dict[str, object]) -> None:
    for key, value in expected.items():
        if key == "recall_at_k":
            assert got[key] == pytest.approx(value, abs=1e-12)
        else:
            assert got[key] == pytest.approx(value, abs=1e-12), key
    assert list(got) == [*METRICS, "recall_at_k", "queries", "excluded"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrieval_metrics_equal_a_brute_force_reference(seed: int) -> None:
    emb, labels = _data(seed)
    got = retrieval_metrics(emb, labels, ks=(1, 2, 5, 10))
    _assert_same(got, _brute(emb, labels, (1, 2, 5, 10)))
    assert got["excluded"] >= 6 and 0.2 < got["map_at_r"] < 0.9  # type: ignore[operator]


@pytest.mark.parametrize(
    ("query_chunk", "gallery_chunk"), [(1, 37), (29, 1), (7, 13), (160, 9), (33, 160), (64, None)]
)
def test_retrieval_metrics_chunked_equals_unchunked(
    query_chunk: int, gallery_chunk: int | None
) -> None:
    emb, labels = _data(3)
    whole = retrieval_metrics(emb, labels, query_chunk=10_000, gallery_chunk=10_000)
    chunked = retrieval_metrics(emb, labels, query_chunk=query_chunk, gallery_chunk=gallery_chunk)
    _assert_same(chunked, whole)
    _assert_same(whole, _brute(emb, labels, (1, 5, 10)))


def test_retrieval_metrics_from_a_small_memory_budget_equal_brute_force() -> None:
    emb, labels = _data(4)
    q, g = _chunk_sizes((160, 12), 150, 20, None, None, 0.02, 20)
    assert q < 150 and g < 160  # the budget forces both chunkings
    _assert_same(retrieval_metrics(emb, labels, memory_mb=0.02), _brute(emb, labels, (1, 5, 10)))


@pytest.mark.parametrize(
    ("query_chunk", "gallery_chunk"), [(None, None), (1, 90), (90, 1), (5, 7), (9, 2)]
)
def test_retrieval_metrics_rank_ties_by_lower_index(
    query_chunk: int | None, gallery_chunk: int | None
) -> None:
    rng = np.random.default_rng(5)
    # axis directions: every similarity is exactly 1, 0 or -1, so ties are everywhere
    emb = np.concatenate([np.eye(4), -np.eye(4)])[rng.integers(0, 8, size=90)]
    labels = rng.integers(0, 12, size=90)
    got = retrieval_metrics(
        emb.astype(np.float32),
        labels,
        ks=(1, 3, 50),
        query_chunk=query_chunk,
        gallery_chunk=gallery_chunk,
    )
    _assert_same(got, _brute(emb, labels, (1, 3, 50)))


def test_retrieval_metrics_tie_goes_to_the_earlier_item() -> None:
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    got = retrieval_metrics(emb, ["a", "b", "a", "c"], ks=(1, 2))
    # query 0: items 1 (b) and 2 (a) tie at similarity 0 → item 1 first: a miss, item 2 next
    # query 2: item 1 (b) at 1, then items 0 (a) and 3 (c) tie at 0 → item 0 second: a hit
    assert (got["queries"], got["excluded"]) == (2, 2)
    assert (got["precision_at_1"], got["map_at_r"]) == (0.0, 0.0)
    assert got["recall_at_k"] == {"1": 0.0, "2": 1.0}


def test_retrieval_metrics_exclude_lone_queries_and_count_them() -> None:
    emb, labels = _data(6)
    labels = labels.astype(object)
    labels[:3] = ["x", "y", "z"]  # three more singletons
    got = retrieval_metrics(emb, labels)
    expected = _brute(emb, labels, (1, 5, 10))
    _assert_same(got, expected)
    assert got["queries"] + got["excluded"] == 160  # type: ignore[operator]


def test_retrieval_metrics_are_zero_when_every_label_is_alone() -> None:
    got = retrieval_metrics(np.eye(3), [1, 2, 3], ks=(1, 5))
    assert got == {
        "precision_at_1": 0.0,
        "r_precision": 0.0,
        "map_at_r": 0.0,
        "recall_at_k": {"1": 0.0, "5": 0.0},
        "queries": 0,
        "excluded": 3,
    }


def test_retrieval_metrics_take_tensors_and_any_labels() -> None:
    emb, labels = _data(7)
    names = np.array([f"id{v:05d}" for v in labels])
    from_numpy = retrieval_metrics(emb.astype(np.float32), names.tolist())
    from_tensor = retrieval_metrics(torch.from_numpy(emb).float(), torch.from_numpy(labels))
    assert from_numpy == from_tensor
    assert all(type(from_numpy[m]) is float for m in METRICS)
    assert type(from_numpy["queries"]) is int


def _bad(kind: str) -> tuple[np.ndarray, object]:
    emb, labels = _data(8, n=20)
    if kind == "nan":
        emb[4, 2] = np.nan
    elif kind == "inf":
        emb[5, 0] = -np.inf
    elif kind == "zero":
        emb[6] = 0
    elif kind == "lengths":
        labels = labels[:-1]
    elif kind == "one item":
        emb, labels = emb[:1], labels[:1]
    elif kind == "1-D":
        emb = emb[:, 0]
    elif kind == "missing label":
        labels = [None, *labels[1:].tolist()]
    return emb, labels


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("nan", r"NaN or infinite values \(rows 4\)"),
        ("inf", r"NaN or infinite values \(rows 5\)"),
        ("zero", r"all zeros .*\(rows 6\)"),
        ("lengths", "expected 20 labels, one per embedding"),
        ("one item", r"at least 2 items, found shape \(1, 12\)"),
        ("1-D", r"found shape \(20,\)"),
        ("missing label", "1 labels are missing"),
    ],
)
def test_retrieval_metrics_refuse_bad_input(kind: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        retrieval_metrics(*_bad(kind))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ks": ()}, "ks must be positive integers"),
        ({"ks": (1, 0)}, "ks must be positive integers"),
        ({"ks": (1, 2.5)}, "ks must be positive integers"),
        ({"ks": ("5",)}, "ks must be positive integers"),
        ({"query_chunk": 0}, "query_chunk must be a positive number"),
        ({"gallery_chunk": -3}, "gallery_chunk must be a positive number"),
    ],
)
def test_retrieval_metrics_refuse_bad_options(options: dict[str, object], message: str) -> None:
    emb, labels = _data(9, n=20)
    with pytest.raises(InputError, match=message):
        retrieval_metrics(emb, labels, **options)  # type: ignore[arg-type]


def test_retrieval_metrics_refuse_a_label_too_large_for_the_budget() -> None:
    labels = np.zeros(200, int)  # one label: every query keeps its 199 nearest
    emb = np.random.default_rng(10).normal(size=(200, 4))
    budget = TOPK_BYTES * 150 / 2**20
    with pytest.raises(InputError, match=r"largest label has 200 items.*raise memory_mb"):
        retrieval_metrics(emb, labels, memory_mb=budget)
    # the caller's own chunk sizes are taken as they are
    got = retrieval_metrics(emb, labels, memory_mb=budget, query_chunk=50, gallery_chunk=70)
    assert got["queries"] == 200


def test_chunk_sizes_fit_the_budget_for_a_million_items() -> None:
    n, dim, k = 1_000_000, 512, 100
    q, g = _chunk_sizes((n, dim), n, k, None, None, 1024, 101)
    assert 1 <= q <= n and 1 <= g < n  # the gallery is chunked
    used = q * g * 8 + g * dim * 4 + q * k * TOPK_BYTES
    assert 0.5 * 2**30 < used <= 2**30
    q, g = _chunk_sizes((100_000, dim), 100_000, 10, None, None, 1024, 11)
    assert g == 100_000 and q >= 256  # whole gallery rows: no merging


@pytest.mark.gpu
def test_retrieval_metrics_on_cuda_equal_cpu() -> None:
    emb, labels = _data(11)
    _assert_same(
        retrieval_metrics(emb, labels, device="cuda", query_chunk=17, gallery_chunk=50),
        retrieval_metrics(emb, labels),
    )
