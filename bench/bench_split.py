"""Benchmark `fmlkit split` and `fmlkit pairs` at face-dataset scale (issue #5).

Run: `make bench` or `.venv/bin/python bench/bench_split.py [--rows 1000000] [--labels 50000]
[--subset 100000]`. Prints a Markdown table and writes bench/out/split.json.

Issue #5 names no speed figure; this shows the stage is not the bottleneck at MS1M-like scale
and why fmlkit does not call scikit-learn's StratifiedKFold: its fold allocation loops over
classes with a full-length mask each (O(rows × labels)). On the first ``--subset`` rows both
compute the same allocation (checked: equal per-label fold counts) and the ratio is printed.
Label sizes are long-tailed (log-normal, median ~12, a few labels of hundreds), like a face
dataset. Timed as whole CLI processes (CSV read and write included) at full size:
``split --by image``, ``split --by label``, and ``pairs`` drawing 30,000 + 30,000 pairs
from one fold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_table(path: Path, rows: int, labels: int, seed: int = 0) -> None:
    """A dataset_info-like CSV: long-tailed label sizes, sorted by file_name."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    weights = rng.lognormal(mean=0.0, sigma=1.0, size=labels)
    label = np.sort(rng.choice(labels, size=rows, p=weights / weights.sum()))
    names = [f"id{lab:06d}/{i:07d}.jpg" for i, lab in enumerate(label.tolist())]
    pd.DataFrame({"file_name": names, "label": [n[:8] for n in names], "error": ""}).to_csv(
        path, index=False
    )


def sklearn_vs_fmlkit(labels: np.ndarray, k: int = 5, seed: int = 28) -> dict[str, float]:
    """Seconds for sklearn's StratifiedKFold and `stratified_folds` on the same codes."""
    from sklearn.model_selection import StratifiedKFold

    from fmlkit.data.split.folds import stratified_folds

    start = time.perf_counter()
    theirs = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        theirs[test] = fold
    sklearn_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = stratified_folds(labels, k, seed)
    ours_s = time.perf_counter() - start
    # the same allocation: each label's sorted fold sizes agree
    for codes in (theirs, ours):
        assert (codes >= 0).all()
    a = np.sort(
        np.stack([np.bincount(labels[theirs == f], minlength=labels.max() + 1) for f in range(k)]),
        axis=0,
    )
    b = np.sort(
        np.stack([np.bincount(labels[ours == f], minlength=labels.max() + 1) for f in range(k)]),
        axis=0,
    )
    assert (a == b).all(), "per-label fold sizes differ from scikit-learn's"
    return {"sklearn_s": sklearn_s, "fmlkit_s": ours_s, "ratio": sklearn_s / ours_s}


def run_cli(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fmlkit", "-q", *args], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=50_000)
    parser.add_argument("--subset", type=int, default=0, help="rows for the sklearn run; 0: all")
    args = parser.parse_args()
    results: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "rows": args.rows,
        "labels": args.labels,
    }
    with tempfile.TemporaryDirectory() as tmp:
        info = Path(tmp) / "info.csv"
        make_table(info, args.rows, args.labels)
        import pandas as pd

        codes = pd.factorize(pd.read_csv(info, usecols=["label"])["label"], sort=True)[0]
        sub = pd.factorize(codes[: args.subset or None], sort=True)[0]
        sub = sub[np.bincount(sub)[sub] >= 5]  # sklearn warns on labels smaller than k
        sub = pd.factorize(sub, sort=True)[0]
        results["subset"] = {"rows": len(sub), "labels": int(sub.max()) + 1}
        results["stratified"] = sklearn_vs_fmlkit(sub)
        folds = Path(tmp) / "folds.csv"
        results["cli_split_image_s"] = run_cli("split", str(info), "-o", str(folds), "--k", "5")
        results["cli_split_label_s"] = run_cli(
            "split", str(info), "-o", str(Path(tmp) / "l.parquet"), "--by", "label"
        )
        pair_args = ["--fold", "0", "--positives", "30000", "--negatives", "30000"]
        results["cli_pairs_s"] = run_cli(
            "pairs", str(folds), "-o", str(Path(tmp) / "p.csv"), *pair_args
        )
    strat = results["stratified"]
    assert isinstance(strat, dict)
    sub_rows, sub_labels = results["subset"]["rows"], results["subset"]["labels"]  # type: ignore[index]
    full = f"{args.rows:,} rows, {args.labels:,} labels"
    table = [
        (
            f"scikit-learn StratifiedKFold, {sub_rows:,} rows, {sub_labels:,} labels",
            f"{strat['sklearn_s']:.2f}",
        ),
        (
            "fmlkit `stratified_folds`, same rows",
            f"{strat['fmlkit_s']:.3f} (×{strat['ratio']:.0f})",
        ),
        (f"`fmlkit split --by image`, {full}, CSV", f"{results['cli_split_image_s']:.1f}"),
        ("`fmlkit split --by label`, same, to Parquet", f"{results['cli_split_label_s']:.1f}"),
        ("`fmlkit pairs`, 30,000 + 30,000 from fold 0", f"{results['cli_pairs_s']:.1f}"),
    ]
    print(f"machine: {results['machine']}, Python {results['python']}")
    print("| what | seconds |\n|---|---|")
    for what, seconds in table:
        print(f"| {what} | {seconds} |")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "split.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
