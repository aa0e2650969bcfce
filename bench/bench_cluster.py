"""Benchmark `--cluster` (issue #26): the same `fmlkit prepare` on 6,000 images with
``--workers 2`` and with ``--cluster local:2``, side by side, and Dask's cost per shard.

Rows, each the whole command in a fresh process (interpreter start and imports included),
in rotation after one untimed warm-up of each, the files in the page cache:

- ``fmlkit prepare DIR -o T --workers 2`` (the baseline: fmlkit's own process pool);
- ``fmlkit prepare DIR -o T --cluster local:2`` (a LocalCluster of 2 worker processes
  started and closed by the command: what a user without a cluster types);
- ``fmlkit prepare DIR -o T --cluster tcp://…`` against a running 2-worker LocalCluster
  started once by this script (what a user with a scheduler gets: no start-up).

The outputs are checked byte-identical. The ratio is the local speed over each (goal
≥ 0.85×). The scheduling cost per shard: ``ClusterSession.map`` of ``--noop-shards`` no-op
tasks on the running cluster, seconds per task (it feeds bench/simulate_scale.py's
``--task-overhead``).

Run: ``.venv/bin/python bench/bench_cluster.py`` (about 2 minutes on 2 cores; ``--images``,
``--repeats``). Prints Markdown; writes bench/out/cluster.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _noop(shard: int) -> int:
    return shard


def _prepare(data: Path, out: Path, *how: str) -> float:
    start = time.perf_counter()
    command = [sys.executable, "-m", "fmlkit", "-q", "prepare", str(data), "-o", str(out)]
    subprocess.run([*command, "--overwrite", *how], check=True)
    return time.perf_counter() - start


def scheduling_cost(address: str, shards: int) -> dict[str, float]:
    """Seconds per task of ``shards`` no-op tasks mapped through fmlkit's session."""
    from fmlkit.cluster import cluster_session

    with cluster_session(address, what="bench") as session:
        session.map(_noop, list(range(50)))  # warm: the function shipped once
        start = time.perf_counter()
        assert session.map(_noop, list(range(shards))) == list(range(shards))
        seconds = time.perf_counter() - start
    return {"shards": shards, "seconds": seconds, "per_shard_ms": seconds / shards * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--noop-shards", type=int, default=2000)
    args = parser.parse_args()
    from distributed import LocalCluster

    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as running,
    ):
        data = Path(tmp, "faces")
        identities = args.images // 20
        subprocess.run(
            [sys.executable, "-m", "fmlkit", "-q", "synth", str(data), "-n", str(identities),
             "-m", "20", "--no-defects", "--seed", "0"],
            check=True,
        )  # fmt: skip
        ways = {
            "--workers 2": ("--workers", "2"),
            "--cluster local:2": ("--cluster", "local:2"),
            "--cluster tcp:// (running, 2 workers)": ("--cluster", running.scheduler_address),
        }
        outputs = {name: Path(tmp, f"out{k}.csv") for k, name in enumerate(ways)}
        for name, how in ways.items():  # warm-up, and the outputs compared
            _prepare(data, outputs[name], *how)
        reference = outputs["--workers 2"].read_bytes()
        identical = {name: out.read_bytes() == reference for name, out in outputs.items()}
        walls: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, how in ways.items():
                walls[name].append(_prepare(data, outputs[name], *how))
        cost = scheduling_cost(running.scheduler_address, args.noop_shards)
    local = statistics.median(walls["--workers 2"])
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg()[0],
        "images": args.images,
        "walls_s": walls,
        "identical": identical,
        "scheduling": cost,
    }
    print(f"machine: {results['machine']}, load {results['load_average']:.1f}; "
          f"{args.images:,} images at 112 px, {args.repeats} runs each\n")  # fmt: skip
    print("| `fmlkit prepare` | seconds (median) | runs | local speed ÷ this | output identical |")
    print("|---|---:|---|---:|---|")
    for name, seconds in walls.items():
        median = statistics.median(seconds)
        runs = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"| {name} | {median:.2f} | {runs} | {local / median:.2f}× | {identical[name]} |")
    print(f"\nscheduling: {cost['shards']:,} no-op shards through ClusterSession.map in "
          f"{cost['seconds']:.2f} s = {cost['per_shard_ms']:.2f} ms a shard")  # fmt: skip
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "cluster.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
