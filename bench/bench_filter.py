"""Benchmark `fmlkit filter --dedup` at a million rows (issue #4).

Run: `make bench` or `.venv/bin/python bench/bench_filter.py [--rows 1000000] [--labels 100000]
[--subset 100000]`. Prints Markdown tables and writes bench/out/filter.json.

The table is synthetic but shaped like a real scan: pHashes in clusters (an identity's images
share a few centre hashes, with 0–20 bits flipped), 8 % near copies (1–6 bits from a row of
their label), 2 % byte-identical copies (same md5), 0.5 % cross-label copies (0–2 bits from a
row of another label). Timed, as whole CLI processes (CSV read and write included):

- ``fmlkit filter --dedup --threshold 10`` (targets: ≤ 20 s, peak memory ≤ 3 GB);
- the same with ``--scope global`` (``--global-threshold 3``; target ≤ 30 s);
- the same again with ``--report DIR --root ROOT`` (issue #22: a 1M-row filter still writes its
  curation report in seconds), as a ratio to the global call without a report. ROOT holds no
  images: every figure's tile is a placeholder saying so, so this times the counts, the
  charts, the per-label table and the page; the thumbnails are bounded by the caps on shown
  figures (a few hundred images at most, whatever the rows).

Then, on the first ``--subset`` rows, easy_metric_learning's per-label all-pairs Python loop
(``imagehash.hex_to_hash`` and ``-`` on every pair of a label) against ``fmlkit filter`` on
the same rows, as a ratio.
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

TARGET_LABEL_S = 20.0
TARGET_GLOBAL_S = 30.0
TARGET_MEMORY_GB = 3.0

BASELINE = r"""
import sys, time
import imagehash, pandas as pd
df = pd.read_csv(sys.argv[1], dtype=str, keep_default_na=False)
threshold = int(sys.argv[2])
removed = set()
for label in df["label"].unique():
    part = df[df["label"] == label]
    names = list(part["file_name"])
    hashes = [imagehash.hex_to_hash(h) for h in part["phash"]]
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            if hashes[i] - hashes[j] <= threshold:
                removed.add(names[j])
df[~df["file_name"].isin(removed)].to_csv(sys.argv[3], index=False)
"""


def make_table(path: Path, rows: int, labels: int, seed: int = 0) -> None:
    """Write a dataset_info-like CSV (see the module docstring for its shape)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    label = np.sort(rng.integers(0, labels, rows))
    centres = rng.integers(0, 2**63, (labels, 3), dtype=np.uint64) << np.uint64(1)
    hashes = centres[label, rng.integers(0, 3, rows)]
    flips = rng.integers(0, 21, rows)
    for k in range(20):  # flip up to 20 random bits per row
        bit = rng.integers(0, 64, rows).astype(np.uint64)
        hashes ^= np.where(k < flips, np.uint64(1) << bit, np.uint64(0))
    md5 = np.arange(rows)
    idx = np.arange(rows)
    starts = np.searchsorted(label, label)  # first row of each row's label

    def some(rate: float) -> np.ndarray:
        return np.flatnonzero((rng.random(rows) < rate) & (idx > starts))

    near = some(0.08)
    src = starts[near] + (rng.integers(0, 1 << 30, len(near)) % (near - starts[near]))
    hashes[near] = hashes[src]
    for _ in range(3):
        bit = rng.integers(0, 64, len(near)).astype(np.uint64)
        hashes[near] ^= np.where(rng.random(len(near)) < 0.7, np.uint64(1) << bit, np.uint64(0))
    exact = some(0.02)
    src = starts[exact] + (rng.integers(0, 1 << 30, len(exact)) % (exact - starts[exact]))
    hashes[exact], md5[exact] = hashes[src], md5[src]
    cross = np.flatnonzero(rng.random(rows) < 0.005)
    src = rng.integers(0, rows, len(cross))
    hashes[cross] = hashes[src] ^ (
        np.uint64(1) << rng.integers(0, 64, len(cross)).astype(np.uint64)
    )
    df = pd.DataFrame(
        {
            "file_name": [f"id{lab:06d}/{k:07d}.jpg" for k, lab in enumerate(label)],
            "label": [f"id{lab:06d}" for lab in label],
            "width": 112,
            "height": 112,
            "md5": [f"{m:032x}" for m in md5],
            "phash": [f"{h:016x}" for h in hashes],
            "error": "",
        }
    )
    df.to_csv(path, index=False)


def _run(args: list[str]) -> tuple[float, float]:
    """Seconds and peak resident memory (GB) of one child process (its own rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{args[:5]} failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def _fmlkit(info: Path, out: Path, *extra: str) -> list[str]:
    outputs = ["-o", str(out / "kept.csv"), "--removed", str(out / "removed.csv")]
    command = [sys.executable, "-m", "fmlkit", "-q", "filter", str(info), *outputs]
    # the table's rows have no images: the hashes alone (the search and the walk are timed)
    return [*command, "--dedup", "--threshold", "10", "--confirm", "none", "--overwrite", *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=100_000)
    parser.add_argument("--subset", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.node()} · {platform.machine()} · Python {platform.python_version()}"
    report: dict[str, object] = {"machine": machine, "rows": args.rows, "labels": args.labels}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        info = work / "info.csv"
        make_table(info, args.rows, args.labels)
        print(f"machine: {machine}; {args.rows:,} rows in {args.labels:,} labels\n")
        print("| command (whole CLI call, CSV in and out) | seconds | peak memory | target |")
        print("|---|---|---|---|")
        label_s, label_gb = _run(_fmlkit(info, work))
        print(f"| `--dedup --threshold 10` | {label_s:.1f} | {label_gb:.2f} GB | ≤ 20 s, ≤ 3 GB |")
        global_s, global_gb = _run(_fmlkit(info, work, "--scope", "global"))
        print(
            f"| `... --scope global` (threshold 3) | {global_s:.1f} | {global_gb:.2f} GB | ≤ 30 s |"
        )
        images = work / "images"
        images.mkdir()
        report_s, report_gb = _run(
            _fmlkit(info, work, "--scope", "global", "--report", str(work / "report"),
                    "--root", str(images))
        )  # fmt: skip
        page_kib = (work / "report" / "index.html").stat().st_size / 1024
        print(
            f"| `... --scope global --report DIR` | {report_s:.1f} | {report_gb:.2f} GB | "
            f"report: +{report_s - global_s:.1f} s, {report_s / global_s:.2f}× the global call; "
            f"index.html {page_kib:,.0f} KiB |"
        )
        report["report"] = {"seconds": report_s, "peak_gb": report_gb, "page_kib": page_kib}
        removed = subprocess.run(
            [sys.executable, "-c", "import pandas as pd, sys; "
             "print(pd.read_csv(sys.argv[1])['reason'].value_counts().to_dict())",
             str(work / "removed.csv")], capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        print(f"\nremoved (global run): {removed}\n")
        report["full"] = {
            "label_s": label_s,
            "global_s": global_s,
            "peak_gb": max(label_gb, global_gb),
        }

        sub = work / "subset.csv"
        with info.open() as f, sub.open("w") as g:
            for k, line in enumerate(f):
                if k > args.subset:
                    break
                g.write(line)
        base_s, _ = _run([sys.executable, "-c", BASELINE, str(sub), "10", str(work / "b.csv")])
        ours_s, _ = _run(_fmlkit(sub, work))
        print(f"| {args.subset:,}-row subset, same-label threshold 10 | seconds | ratio |")
        print("|---|---|---|")
        print(f"| easy_metric_learning's per-label all-pairs loop | {base_s:.1f} | 1.0× |")
        print(f"| `fmlkit filter --dedup` | {ours_s:.1f} | **{base_s / ours_s:.0f}×** |")
        report["subset"] = {"rows": args.subset, "baseline_s": base_s, "fmlkit_s": ours_s}
    ok = label_s <= TARGET_LABEL_S and global_s <= TARGET_GLOBAL_S
    ok = ok and max(label_gb, global_gb) <= TARGET_MEMORY_GB
    print(f"\ntargets {'met' if ok else 'NOT met'}")
    (args.workdir / "filter.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
