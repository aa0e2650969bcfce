"""Benchmark `fmlkit clean` at a million embeddings (issue #24).

Run: `.venv/bin/python bench/bench_clean.py [--images 1000000] [--classes 100000] [--dim 512]
[--full]`. Prints a Markdown table and writes bench/out/clean.json.

The embeddings are synthetic but clustered like a face model's: each class a random centre,
its images the centre plus Gaussian noise (cosine ≈ 0.8 to the centre), 1 % of the images
filed under a wrong class, 1 % of the classes a second folder of another class's identity;
written as `fmlkit embed`'s Parquet (file_name, label, embedding list<float32>). Timed, as
whole child processes (reading the Parquet and writing the CSVs included), with their peak
resident memory (the child's own rusage):

- ``fmlkit clean --checks outliers,merges`` (outliers with relabels, merges over all class
  pairs, per-class quality; targets ≤ 120 s, ≤ 4 GB);
- a straightforward baseline on the same file and reader: a per-class numpy loop for the
  leave-one-out similarities, and scikit-learn's ``NearestNeighbors(radius, metric="cosine",
  algorithm="brute")`` over the class centroids for the merges; the same CSVs written;
- with ``--full``, the default command (every check: mixed classes and near-duplicates too).
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

TARGET_S = 120.0
TARGET_GB = 4.0
MERGE_ABOVE = 0.6

BASELINE = r"""
import sys, time
import numpy as np, pandas as pd
from sklearn.neighbors import NearestNeighbors
from fmlkit.data.formats.embeddings import read_embeddings
table = read_embeddings(sys.argv[1], lenient=True, require_label=True)
x = table.vectors / np.linalg.norm(table.vectors, axis=1, keepdims=True)
names, codes = np.unique(table.labels.astype(str), return_inverse=True)
order = np.argsort(codes, kind="stable")
starts = np.searchsorted(codes[order], np.arange(len(names) + 1))
own = np.full(len(x), np.nan)
centroids = np.zeros((len(names), x.shape[1]), np.float32)
mean = np.full(len(names), np.nan)
for c in range(len(names)):
    rows = order[starts[c]:starts[c + 1]]
    part = x[rows]
    total = part.sum(axis=0)
    centroids[c] = total / np.linalg.norm(total)
    if len(rows) > 1:
        rest = total[None, :] - part
        own[rows] = (part * rest).sum(axis=1) / np.linalg.norm(rest, axis=1)
        mean[c] = own[rows].mean()
nn = NearestNeighbors(radius=1 - float(sys.argv[3]), metric="cosine", algorithm="brute")
nn.fit(centroids)
dist, ind = nn.radius_neighbors(centroids)
pairs = [(a, b, 1 - d) for a in range(len(names)) for b, d in zip(ind[a], dist[a]) if a < b]
out = sys.argv[2]
pd.DataFrame({"file_name": table.file_names, "label": table.labels,
              "own_similarity": own}).to_csv(out + "/images.csv", index=False)
pd.DataFrame({"label": names, "mean_similarity": mean}).to_csv(out + "/classes.csv", index=False)
pd.DataFrame(pairs, columns=["a", "b", "similarity"]).to_csv(out + "/merges.csv", index=False)
"""


def _generate(path: Path, images: int, classes: int, dim: int, seed: int = 0) -> None:
    """The clustered embeddings (module doc), written a chunk at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    twins = rng.choice(classes, size=classes // 100, replace=False)  # a second folder
    identity = np.arange(classes)
    identity[twins] = (twins + 1) % classes
    labels = np.sort(np.arange(images) % classes)
    schema = pa.schema([("file_name", pa.string()), ("label", pa.string()),
                        ("embedding", pa.list_(pa.float32()))])  # fmt: skip
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, images, 100_000):
            c = labels[start : start + 100_000]
            who = identity[c].copy()
            wrong = rng.random(len(c)) < 0.01
            who[wrong] = rng.integers(0, classes, int(wrong.sum()))
            noise = rng.normal(scale=0.75 / np.sqrt(dim), size=(len(c), dim)).astype(np.float32)
            vectors = centres[who] + noise
            flat = pa.array(vectors.reshape(-1))
            offsets = pa.array(np.arange(0, vectors.size + 1, dim, dtype=np.int32))
            writer.write_table(
                pa.table(
                    {
                        "file_name": [f"id{k:06d}/{start + i}.jpg" for i, k in enumerate(c)],
                        "label": [f"id{k:06d}" for k in c],
                        "embedding": pa.ListArray.from_arrays(offsets, flat),
                    },
                    schema=schema,
                )
            )


def _run(args: list[str]) -> tuple[float, float]:
    """Seconds and peak resident memory (GB) of one child process (its own rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{args[:6]} failed")
    return seconds, usage.ru_maxrss / 1024**2  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--full", action="store_true", help="also time every check")
    parser.add_argument("--workdir", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    emb = args.workdir / f"clean_{args.images}_{args.classes}_{args.dim}.parquet"
    if not emb.exists():
        started = time.perf_counter()
        _generate(emb, args.images, args.classes, args.dim)
        print(f"generated {emb} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    fmlkit = [sys.executable, "-m", "fmlkit", "-q", "clean", str(emb), "--overwrite",
              "--merge-above", str(MERGE_ABOVE)]  # fmt: skip
    rows = []
    seconds, memory = _run([*fmlkit, "-o", str(args.workdir / "clean_core"),
                            "--checks", "outliers,merges"])  # fmt: skip
    rows.append(("fmlkit clean --checks outliers,merges", seconds, memory))
    base = args.workdir / "clean_baseline"
    base.mkdir(exist_ok=True)
    seconds, memory = _run([sys.executable, "-c", BASELINE, str(emb), str(base), str(MERGE_ABOVE)])
    rows.append(("baseline: per-class numpy loop + NearestNeighbors(radius, cosine, brute)",
                 seconds, memory))  # fmt: skip
    if args.full:
        seconds, memory = _run([*fmlkit, "-o", str(args.workdir / "clean_full")])
        rows.append(("fmlkit clean (every check: + mixed, duplicates)", seconds, memory))
    baseline = rows[1][1]
    print(f"\n{args.images:,} embeddings × {args.dim} in {args.classes:,} classes; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")  # fmt: skip
    print("| command (whole process) | seconds | peak memory | ratio to baseline | target |")
    print("|---|---|---|---|---|")
    for name, seconds, memory in rows:
        target = f"≤ {TARGET_S:.0f} s, ≤ {TARGET_GB:.0f} GB" if name.endswith("merges") else ""
        print(
            f"| {name} | {seconds:.1f} | {memory:.2f} GB | {baseline / seconds:.2f}× | {target} |"
        )
    result = [{"command": n, "seconds": s, "peak_gb": m} for n, s, m in rows]
    (args.workdir / "clean.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
