"""Benchmark the metric core of `fmlkit evaluate` (issue #9), each figure against a baseline.

(a) Verification: ``score_pairs`` on 6,000 pairs of 512-d embeddings laid out as LFW (10
    folds of 300 genuine then 300 imposter pairs) — the issue asks for under 2 s. Timed in a
    fresh process: the first call and the median of 5 more.
    Baseline, same process and pairs: insightface's ``evaluate`` as written (a Python loop per
    threshold: ``calculate_roc`` over 0…4 step 0.01, ``calculate_val`` over 0…4 step 0.001
    with scipy ≤ 1.8's interpolation) plus scikit-learn's ``roc_curve``/``roc_auc_score`` for
    the ROC metrics. Accuracy and VAL@FAR are checked to agree.
(b) Retrieval: ``retrieval_metrics`` over ``--items`` embeddings (``--per-class`` per label,
    d = ``--dim``), each implementation in its own process for its peak RSS (resource
    ``ru_maxrss``; the embeddings alone are ``rss_data_mb``). Baseline: scikit-learn
    ``NearestNeighbors(algorithm="brute", metric="euclidean")`` on the L2-normalised float32
    embeddings (the same ranking as cosine; its fastest exact path), ``kneighbors()`` for the
    same k, then the same metrics in numpy. The metrics are checked to agree.
    The whole command too: ``fmlkit evaluate --embeddings E.parquet --retrieval -o D`` on the
    same embeddings written as `fmlkit embed`'s Parquet (process start, reading, retrieval,
    report), its metrics checked equal to the in-process ones. And the machine's limit: the
    matmul alone (torch, the block shape retrieval uses) timed, giving the seconds the
    2·n²·d multiply-adds need at that speed.
(c) ``--gallery-items N`` (off by default): the memory of a 1M-item gallery without 1M × 1M
    compute — N items of which ``--gallery-queries`` sit in labels of ``--per-class`` and the
    rest are singletons (excluded as queries, still searched).

Run: ``.venv/bin/python bench/bench_evaluate.py`` (20,000 items: about a minute on 2 cores), or
``--items 100000``, ``--gallery-items 1000000``. Prints Markdown; writes bench/out/evaluate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PAIRS, KS = 6000, (1, 5, 10)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- (a) verification ---------------------------------------------------------------------


def _pair_data(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = (np.arange(n) % 600) < 300
    first = rng.standard_normal((n, dim))
    noise = rng.standard_normal((n, dim)) * 5.0
    second = np.where(same[:, None], first, rng.standard_normal((n, dim))) + noise
    return first, second, same


def _accuracy(threshold: float, dist: np.ndarray, same: np.ndarray) -> tuple[float, float, float]:
    """insightface's calculate_accuracy: (TPR, FPR, accuracy) at one threshold."""
    predict = np.less(dist, threshold)
    tp = np.sum(predict & same)
    fp = np.sum(predict & ~same)
    tn = np.sum(~predict & ~same)
    fn = np.sum(~predict & same)
    tpr = 0.0 if tp + fn == 0 else tp / (tp + fn)
    fpr = 0.0 if fp + tn == 0 else fp / (fp + tn)
    return tpr, fpr, (tp + tn) / dist.size


def _val_far(threshold: float, dist: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    predict = np.less(dist, threshold)
    return np.sum(predict & same) / np.sum(same), np.sum(predict & ~same) / np.sum(~same)


def insightface_baseline(first: np.ndarray, second: np.ndarray, same: np.ndarray) -> dict:
    """insightface's evaluate loop by loop, plus the ROC metrics from scikit-learn."""
    from scipy.interpolate import BSpline
    from sklearn.metrics import roc_auc_score, roc_curve
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import normalize

    a, b = normalize(first), normalize(second)
    dist = np.sum(np.square(a - b), 1)
    folds = list(KFold(n_splits=10, shuffle=False).split(dist))
    thresholds = np.arange(0, 4, 0.01)
    accuracy = []
    for train, test in folds:
        acc_train = [_accuracy(t, dist[train], same[train])[2] for t in thresholds]
        for t in thresholds:  # insightface also computes every threshold's TPR/FPR on the fold
            _accuracy(t, dist[test], same[test])
        accuracy.append(_accuracy(thresholds[int(np.argmax(acc_train))], dist[test], same[test])[2])
    thresholds = np.arange(0, 4, 0.001)
    val = []
    for train, test in folds:
        far_train = np.array([_val_far(t, dist[train], same[train])[1] for t in thresholds])
        threshold = 0.0
        if far_train.max() >= 1e-3:
            order = np.argsort(far_train, kind="mergesort")
            x, y = far_train[order], thresholds[order]
            threshold = float(BSpline(np.r_[x[0], x, x[-1]], y, 1)(1e-3))
        val.append(_val_far(threshold, dist[test], same[test])[0])
    sim = np.einsum("ij,ij->i", a, b)
    far, tar, _ = roc_curve(same, sim, drop_intermediate=False)
    return {
        "accuracy": float(np.mean(accuracy)),
        "val_at_far_1e-3": float(np.mean(val)),
        "auc": float(roc_auc_score(same, sim)),
        "eer": float(far[np.argmin(np.abs(1 - tar - far))]),
        "tar_at_far_1e-3": float(tar[np.searchsorted(far, 1e-3, side="right") - 1]),
    }


def child_verification(dim: int) -> dict:
    from fmlkit.eval.verification import score_pairs

    first, second, same = _pair_data(PAIRS, dim)
    start = time.perf_counter()
    ours = score_pairs(first, second, same).result
    cold = time.perf_counter() - start
    warm = []
    for _ in range(5):
        start = time.perf_counter()
        score_pairs(first, second, same)
        warm.append(time.perf_counter() - start)
    start = time.perf_counter()
    theirs = insightface_baseline(first, second, same)
    baseline = time.perf_counter() - start
    assert theirs["accuracy"] == ours["accuracy"], (theirs, ours)
    assert theirs["val_at_far_1e-3"] == ours["val_at_far_1e-3"], (theirs, ours)
    assert abs(theirs["auc"] - ours["auc"]) < 1e-12, (theirs, ours)  # type: ignore[operator]
    return {
        "pairs": PAIRS,
        "dim": dim,
        "first_call_s": cold,
        "warm_median_s": statistics.median(warm),
        "baseline_s": baseline,
        "ratio": baseline / statistics.median(warm),
        "metrics": ours,
    }


def cli_verification(dim: int, runs: int = 3) -> dict:
    """Wall seconds of the whole command `fmlkit evaluate --embeddings E --pairs P -o D` on the
    same 6,000 pairs (process start, imports, reading, scoring, metrics.json/md and both PNGs)."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    first, second, same = _pair_data(PAIRS, dim)
    names = [f"a/{i:05d}.jpg" for i in range(PAIRS)] + [f"b/{i:05d}.jpg" for i in range(PAIRS)]
    vectors = np.concatenate([first, second]).astype(np.float32)
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        emb, pairs = Path(tmp, "emb.parquet"), Path(tmp, "pairs.csv")
        column = pa.FixedSizeListArray.from_arrays(vectors.ravel(), dim)
        pq.write_table(pa.table({"file_name": names, "embedding": column}), emb)
        lines = (f"{int(s)},a/{i:05d}.jpg,b/{i:05d}.jpg" for i, s in enumerate(same))
        pairs.write_text("\n".join(lines) + "\n")
        command = [sys.executable, "-m", "fmlkit", "-q", "evaluate", "--embeddings", str(emb)]
        for k in range(runs):
            start = time.perf_counter()
            subprocess.run(
                [*command, "--pairs", str(pairs), "-o", str(Path(tmp, f"out{k}"))], check=True
            )
            walls.append(time.perf_counter() - start)
    return {"pairs": PAIRS, "dim": dim, "walls_s": walls, "best_s": min(walls)}


# --- (b), (c) retrieval ------------------------------------------------------------------


def _retrieval_data(
    items: int, per_class: int, dim: int, queries: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Float32 embeddings: noise around one random centre per label; with ``queries``, only
    that many items sit in labels of ``per_class``, the rest are singletons (noise only)."""
    rng = np.random.default_rng(1)
    grouped = items if queries is None else min(queries, items)
    labels = np.r_[np.arange(grouped) // per_class, grouped + np.arange(items - grouped)]
    centres = rng.standard_normal((grouped // per_class + 1, dim), dtype=np.float32)
    emb = rng.standard_normal((items, dim), dtype=np.float32)
    emb *= 2.0
    for start in range(0, grouped, 65536):  # in chunks: no second (items, dim) array
        stop = min(start + 65536, grouped)
        emb[start:stop] += centres[labels[start:stop]]
    return emb, labels


def _sklearn_retrieval(emb: np.ndarray, labels: np.ndarray) -> dict:
    from sklearn.neighbors import NearestNeighbors

    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    counts = np.bincount(labels)
    relevant = counts[labels] - 1
    k = int(min(max(relevant.max(), max(KS)), len(emb) - 1))
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="euclidean").fit(unit)
    _, idx = nn.kneighbors()  # the query itself is left out
    keep = relevant > 0
    hit = labels[idx[keep]] == labels[keep][:, None]
    r = relevant[keep][:, None]
    rank = np.arange(1, k + 1)[None, :]
    within = hit & (rank <= r)
    precision = np.cumsum(hit, axis=1) / rank
    return {
        "precision_at_1": float(hit[:, 0].mean()),
        "r_precision": float((within.sum(1) / r[:, 0]).mean()),
        "map_at_r": float(((precision * within).sum(1) / r[:, 0]).mean()),
        "recall_at_k": {str(kk): float(hit[:, :kk].any(1).mean()) for kk in KS},
        "queries": int(keep.sum()),
        "excluded": int((~keep).sum()),
    }


def child_retrieval(args: argparse.Namespace) -> dict:
    queries = args.gallery_queries if args.gallery_items else None
    emb, labels = _retrieval_data(args.items, args.per_class, args.dim, queries)
    data_mb = _rss_mb()
    start = time.perf_counter()
    if args.impl == "fmlkit":
        from fmlkit.eval.retrieval import retrieval_metrics

        metrics = retrieval_metrics(emb, labels, ks=KS)
    else:
        metrics = _sklearn_retrieval(emb, labels)
    return {
        "impl": args.impl,
        "items": args.items,
        "seconds": time.perf_counter() - start,
        "rss_data_mb": data_mb,
        "rss_peak_mb": _rss_mb(),
        "metrics": metrics,
    }


def cli_retrieval(items: int, per_class: int, dim: int) -> dict:
    """Wall seconds and peak RSS of the whole `fmlkit evaluate --embeddings E --retrieval`
    command on ``items`` embeddings (the Parquet written first, not timed), and its metrics."""
    import tempfile

    from fmlkit.data.formats.embeddings import write_embeddings

    emb, labels = _retrieval_data(items, per_class, dim, None)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp, "emb.parquet")
        names = [f"{label}/{i}.jpg" for i, label in enumerate(labels)]
        write_embeddings(table, names, [str(v) for v in labels], emb)
        del emb
        out = Path(tmp, "out")
        command = [sys.executable, "-m", "fmlkit", "-q", "evaluate", "--embeddings", str(table)]
        start = time.perf_counter()
        subprocess.run([*command, "--retrieval", "-o", str(out)], check=True)
        wall = time.perf_counter() - start
        metrics = json.loads((out / "metrics.json").read_text())["retrieval"]
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"items": items, "wall_s": wall, "rss_peak_mb": peak, "metrics": metrics}


def matmul_limit(items: int, dim: int, block: int = 414) -> dict:
    """The machine's float32 matmul speed (torch, ``block`` queries × ``dim`` against all
    ``items``, the shape retrieval's blocks have at 100,000 × 512) and the seconds the
    leave-one-out similarity matrix (2·n²·d FLOPs) needs at that speed."""
    import torch

    gallery = torch.randn(items, dim)
    query = torch.randn(block, dim)
    for _ in range(2):
        query @ gallery.T
    runs = 10
    start = time.perf_counter()
    for _ in range(runs):
        query @ gallery.T
    each = (time.perf_counter() - start) / runs
    gflops = 2 * block * dim * items / each / 1e9
    return {"gflops": gflops, "threads": torch.get_num_threads(),
            "floor_s": 2 * items * items * dim / (gflops * 1e9)}  # fmt: skip


def _run_child(*argv: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *argv], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _retrieval_row(res: dict, what: str) -> str:
    m = res["metrics"]
    return (
        f"| {what} | {res['items']:,} | {res['seconds']:.1f} | {res['rss_data_mb']:.0f} | "
        f"{res['rss_peak_mb']:.0f} | {m['precision_at_1']:.4f} | {m['map_at_r']:.4f} |"
    )


def _print_tables(results: dict, args: argparse.Namespace) -> None:
    ver, retrieval = results["verification"], results["retrieval"]
    load = results["load_average"]
    print(f"machine: {results['machine']}, Python {results['python']}, load {load:.1f}")
    print(f"\n(a) score_pairs, {PAIRS:,} pairs × {args.dim}-d\n")
    print("| what | seconds |\n|---|---|")
    walls = ", ".join(f"{w:.2f}" for w in results["cli"]["walls_s"])
    print(f"| `fmlkit evaluate --embeddings … --pairs …`, whole command, 3 runs | {walls} |")
    print(f"| fmlkit `score_pairs`, first call | {ver['first_call_s']:.3f} |")
    print(f"| fmlkit `score_pairs`, median of 5 | {ver['warm_median_s']:.3f} |")
    print(
        f"| insightface `evaluate` loops + sklearn ROC (baseline) | {ver['baseline_s']:.2f} "
        f"(×{ver['ratio']:.0f} ours) |"
    )
    print(f"\n(b) retrieval, {args.per_class} per label, {args.dim}-d, float32\n")
    print("| what | items | seconds | RSS data MB | RSS peak MB | P@1 | MAP@R |")
    print("|---|---|---|---|---|---|---|")
    names = {"fmlkit": "fmlkit `retrieval_metrics`", "sklearn": "sklearn NearestNeighbors brute"}
    for res in retrieval:
        what = names[res["impl"]]
        if res["metrics"]["excluded"]:
            what += f" ({res['metrics']['queries']:,} queries, rest singletons)"
        print(_retrieval_row(res, what))
    if "retrieval_max_metric_diff" in results:
        ratio = retrieval[1]["seconds"] / retrieval[0]["seconds"]
        diff = results["retrieval_max_metric_diff"]
        print(f"\nsklearn / fmlkit time: ×{ratio:.2f}; largest metric difference {diff:.1e}")
    cli, limit = results["retrieval_cli"], results["matmul"]
    print(
        f"\nwhole command `fmlkit evaluate --embeddings … --retrieval`, {cli['items']:,} items: "
        f"{cli['wall_s']:.1f} s, peak RSS {cli['rss_peak_mb']:.0f} MB; metrics equal to the "
        f"in-process run: {cli['equal']}"
    )
    print(
        f"machine limit: torch matmul {limit['gflops']:.0f} GFLOP/s on {limit['threads']} "
        f"threads, so the 2·n²·d FLOPs alone take {limit['floor_s']:.1f} s; "
        f"`retrieval_metrics` runs at {limit['floor_s'] / retrieval[0]['seconds']:.0%} of "
        f"that speed, the whole command at {limit['floor_s'] / cli['wall_s']:.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--no-baseline", action="store_true", help="skip the sklearn retrieval")
    parser.add_argument("--gallery-items", type=int, default=0)
    parser.add_argument("--gallery-queries", type=int, default=2000)
    parser.add_argument("--child", choices=["verification", "retrieval", "cli-retrieval"])
    parser.add_argument("--impl", choices=["fmlkit", "sklearn"], default="fmlkit")
    args = parser.parse_args()
    if args.child == "cli-retrieval":  # a process of its own: its children's RSS is the command's
        print(json.dumps(cli_retrieval(args.items, args.per_class, args.dim)))
        return
    if args.child:
        verification = args.child == "verification"
        print(json.dumps(child_verification(args.dim) if verification else child_retrieval(args)))
        return
    shape = ["--per-class", str(args.per_class), "--dim", str(args.dim)]
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "load_average": os.getloadavg()[0],
        "verification": _run_child("verification", "--dim", str(args.dim)),
        "cli": cli_verification(args.dim),
    }
    retrieval = [_run_child("retrieval", "--items", str(args.items), *shape)]
    if not args.no_baseline:
        retrieval.append(
            _run_child("retrieval", "--items", str(args.items), *shape, "--impl", "sklearn")
        )
        ours, theirs = retrieval[0]["metrics"], retrieval[1]["metrics"]
        results["retrieval_max_metric_diff"] = max(
            abs(ours[m] - theirs[m]) for m in ("precision_at_1", "r_precision", "map_at_r")
        )
    cli = _run_child("cli-retrieval", "--items", str(args.items), *shape)
    ours = retrieval[0]["metrics"]
    cli["equal"] = (
        all(
            abs(cli["metrics"][m] - ours[m]) < 1e-12
            for m in ("precision_at_1", "r_precision", "map_at_r")
        )
        and cli["metrics"]["recall_at_k"] == ours["recall_at_k"]
    )
    results["retrieval_cli"] = cli
    results["matmul"] = matmul_limit(args.items, args.dim)
    if args.gallery_items:
        n, q = str(args.gallery_items), str(args.gallery_queries)
        gallery = ["--items", n, "--gallery-items", n, "--gallery-queries", q]
        retrieval.append(_run_child("retrieval", *gallery, *shape))
    results["retrieval"] = retrieval
    _print_tables(results, args)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "evaluate.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
