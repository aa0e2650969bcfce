"""Benchmark `fmlkit filter --dedup` on real data (Fashion-MNIST) and on the synthetic truth
(issue #24: dedup that is safe on real data).

Run: `.venv/bin/python bench/bench_filter_real.py [--out bench/out/filter_real]
[--identities 500]`. Needs Debian's ``dataset-fashion-mnist`` (``apt-get install
dataset-fashion-mnist``; nothing is downloaded). Prints Markdown tables and writes
OUT/filter_real.json.

1. Fashion-MNIST (70,000 PNGs of 28 px, `bench/fashion_mnist.py`) → `fmlkit prepare` →
   timed, as whole CLI processes (CSV read and write included), with peak memory:
   ``fmlkit filter --dedup`` (the default: pixel confirmation), the same with
   ``--confirm none`` (the hashes alone: the radius search and the walk), and a plain
   re-implementation of the hash-only rule on the same column (per label, every pair's XOR
   and popcount in numpy row blocks, then the keep-first walk), as ratios.
2. Quality on Fashion-MNIST against an exact pixel-space nearest-neighbour search (28 × 28,
   every pair of a class; the issue: 79 near-duplicate pairs, none across classes): a removal
   is of a *distinct* image when the two images' RMS difference is over `DISTINCT_RMS` grey
   levels. Counted for the default and for the hashes alone, and per pixel threshold.
3. Synthetic truth (`fmlkit synth --defects`): recall of the planted near, exact and
   cross-label duplicates and removals of clean images, ``--scope global``, per threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist import CLASSES, load, write_tree

DISTINCT_RMS = 10.0  # grey levels: over this, two 28 px garments are different pictures
THRESHOLDS = (0.98, 0.99, 0.995, 0.998)

BASELINE = r"""
import sys
import numpy as np, pandas as pd
df = pd.read_csv(sys.argv[1], dtype=str, keep_default_na=False)
threshold = int(sys.argv[2])
h = np.frombuffer(bytes.fromhex("".join(df["phash"])), dtype=">u8").astype(np.uint64)
removed = np.zeros(len(df), bool)
for label, rows in df.groupby("label", sort=False).indices.items():
    hh = h[rows]
    for a in range(len(rows)):  # keep first: a row goes if a kept earlier row is near
        if removed[rows[a]]:
            continue
        near = np.bitwise_count(hh[a + 1 :] ^ hh[a]) <= threshold
        removed[rows[a + 1 :][near]] = True
df[~removed].to_csv(sys.argv[3], index=False)
"""


def _run(args: list[str]) -> tuple[float, float, str]:
    """Seconds, peak resident memory (GB) and stdout of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{args[:6]} failed:\n{stdout}")
    return seconds, usage.ru_maxrss / 1024**2, stdout


def _filter(info: Path, out: Path, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "fmlkit", "filter", str(info), "-o", str(out / "kept.csv")]
    return [*command, "--removed", str(out / "removed.csv"), "--dedup", "--min-size", "0",
            "--overwrite", *extra]  # fmt: skip


def _rms(images: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    diff = images[a].astype(np.float32) - images[b].astype(np.float32)
    return np.sqrt((diff.reshape(len(a), -1) ** 2).mean(axis=1))


def _pixel_truth(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's nearest other image of its class (exact, 28 × 28) and the RMS to it."""
    import torch

    flat = images.reshape(len(images), -1).astype(np.float32)
    best = np.full(len(flat), np.inf)
    arg = np.full(len(flat), -1)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        a = torch.from_numpy(flat[idx])
        sq = (a * a).sum(1)
        d2 = sq[:, None] + sq[None, :] - 2 * a @ a.T
        d2.fill_diagonal_(float("inf"))
        m, k = d2.min(1)
        best[idx] = np.sqrt(np.maximum(m.numpy(), 0) / flat.shape[1])
        arg[idx] = idx[k.numpy()]
    return arg, best


def _removals(removed_csv: Path, position: dict[str, int], images: np.ndarray) -> dict:
    removed = pd.read_csv(removed_csv, dtype=str, keep_default_na=False)
    dup = removed[removed["duplicate_of"] != ""]
    a = np.array([position[n] for n in dup["file_name"]], np.int64)
    b = np.array([position[n] for n in dup["duplicate_of"]], np.int64)
    rms = _rms(images, a, b) if len(a) else np.zeros(0)
    distinct = int((rms > DISTINCT_RMS).sum())
    return {"removed": len(removed), "distinct": distinct, "distinct_share": distinct / 70_000}


def fashion(out: Path, results: dict) -> None:
    tree, info = out / "fashion_mnist", out / "fmnist_info.csv"
    write_tree(tree)
    if not info.is_file():
        subprocess.run([sys.executable, "-m", "fmlkit", "-q", "prepare", str(tree), "-o",
                        str(info), "-j", "2"], check=True)  # fmt: skip
    images, labels, names = load()
    file_names = [f"{CLASSES[c]}/{n}.png" for c, n in zip(labels, names, strict=True)]
    position = {n: k for k, n in enumerate(file_names)}
    runs = out / "runs"
    runs.mkdir(exist_ok=True)
    timed = {}
    for name, extra in (
        ("default (pixel confirmation)", ["--root", str(tree)]),
        ("--confirm none (hashes alone)", ["--confirm", "none"]),
    ):
        seconds, gb, stdout = _run(_filter(info, runs, *extra))
        found = _removals(runs / "removed.csv", position, images)
        timed[name] = {"seconds": seconds, "peak_gb": gb, **found}
        print(stdout.strip().splitlines()[0])
    seconds, gb, _ = _run(
        [sys.executable, "-c", BASELINE, str(info), "10", str(runs / "baseline.csv")]
    )
    kept = len(pd.read_csv(runs / "baseline.csv", dtype=str))
    timed["plain re-implementation (hashes alone)"] = {
        "seconds": seconds, "peak_gb": gb, "removed": 70_000 - kept,
    }  # fmt: skip
    results["fashion_mnist"] = timed
    # quality against the pixel-space truth, per pixel threshold (library, one image read)
    arg, best = _pixel_truth(images, labels)
    pairs = {tuple(sorted((k, int(arg[k])))) for k in np.flatnonzero(best <= DISTINCT_RMS)}
    results["pixel_truth"] = {
        "images_with_a_neighbour_within_rms": {t: int((best <= t).sum()) for t in (2, 5, 8, 10)},
        "pairs_within_distinct_rms": len(pairs),
    }
    results["fashion_thresholds"] = _sweep_fashion(info, tree, position, images, pairs)


def _sweep_fashion(
    info: Path, tree: Path, position: dict[str, int], images: np.ndarray, truth: set
) -> list[dict]:
    from fmlkit.data.filter.confirm import Confirmer
    from fmlkit.data.filter.filter import FilterRules, decide
    from fmlkit.data.formats.table import read_dataset_info

    df = read_dataset_info(info)
    at = df["file_name"].map(position).to_numpy()
    confirmer = Confirmer(tree)
    rows = []
    for threshold in THRESHOLDS:
        confirmer.pixel_threshold = threshold
        rules = FilterRules(dedup=True, min_size=None, pixel_threshold=threshold)
        decision = decide(df, rules, confirmer=confirmer)
        gone = decision["duplicate_of"] != ""
        a = at[gone.to_numpy()]
        b = decision.loc[gone, "duplicate_of"].map(position).to_numpy()
        rms = _rms(images, a, b) if len(a) else np.zeros(0)
        found = {tuple(sorted((int(x), int(y)))) for x, y in zip(a, b, strict=True)}
        rows.append(
            {
                "pixel_threshold": threshold,
                "removed": int(gone.sum()),
                "distinct_removed": int((rms > DISTINCT_RMS).sum()),
                "truth_pairs_removed": len(found & truth),
            }
        )
    return rows


def synth(out: Path, identities: int, results: dict) -> None:
    from fmlkit.data.filter.confirm import Confirmer
    from fmlkit.data.filter.filter import FilterRules, decide
    from fmlkit.data.formats.table import read_dataset_info

    root, info = out / "synth", out / "synth_info.csv"
    if not info.is_file():
        command = [sys.executable, "-m", "fmlkit", "-q", "synth", str(root), "-n", str(identities)]
        subprocess.run([*command, "-m", "10", "--defects", "--overwrite"], check=True)
        subprocess.run([sys.executable, "-m", "fmlkit", "-q", "prepare", str(root), "-o",
                        str(info), "-j", "2"], check=True)  # fmt: skip
    truth = pd.read_csv(f"{root}.truth.csv", dtype=str, keep_default_na=False)
    df = read_dataset_info(info)
    confirmer = Confirmer(root)
    rows = []
    for threshold in (None, *THRESHOLDS):
        confirmer.pixel_threshold = threshold or 0.0
        rules = FilterRules(
            dedup=True, scope="global", confirm="none" if threshold is None else "pixels",
            pixel_threshold=threshold or 0.0,
        )  # fmt: skip
        decision = decide(df, rules, confirmer=None if threshold is None else confirmer)
        reason = dict(zip(df["file_name"], decision["reason"], strict=True))
        row: dict[str, object] = {"pixel_threshold": threshold or "none"}
        for kind in ("near_duplicate", "exact_duplicate", "cross_label_duplicate"):
            planted = truth[truth["kind"] == kind]
            hit = sum(reason.get(f, "") == kind for f in planted["file_name"])
            row[kind] = f"{hit}/{len(planted)}"
        clean = truth.loc[truth["kind"] == "clean", "file_name"]
        row["clean_removed"] = int(sum(reason.get(f, "") != "" for f in clean))
        row["clean"] = len(clean)
        rows.append(row)
    results["synth"] = rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/out/filter_real"))
    parser.add_argument("--identities", type=int, default=500)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
    fashion(args.out, results)
    synth(args.out, args.identities, results)
    print(json.dumps(results, indent=1, default=str))
    (args.out / "filter_real.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
