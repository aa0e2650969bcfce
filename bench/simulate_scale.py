"""Simulate the per-image stages of WebFace42M on a cluster (issue #26, docs/scale.md).

A discrete-event model of what a Dask scheduler does with one stage: ``tasks`` shards of
``images / tasks`` images each go to ``workers`` worker slots, a free slot taking the next
shard (Dask's default for equal-priority tasks is close to this greedy order). A shard costs
its images × the per-image cost measured on the dev VM (docs/benchmarks.md), times a
log-normal factor (σ ``--jitter``: files of different sizes, busy nodes) plus the scheduler's
cost per task (``--task-overhead``, measured by bench/bench_cluster.py). The central
scheduler hands out at most ``1 / task_overhead`` tasks a second; a task cannot start before
the scheduler got to it.

It prints, per stage, the simulated wall time, the ideal (total work / slots) and the
efficiency, for the plan's cluster (8 nodes × 32 cores, 8 GPUs) and for shard counts from
hundreds to 100,000 tasks. No Dask is needed: this is arithmetic on measured costs.

Run: ``.venv/bin/python bench/simulate_scale.py`` (writes bench/out/simulate_scale.json).
"""

from __future__ import annotations

import argparse
import heapq
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGES = 42_474_558  # WebFace42M: 42.5M aligned 112 × 112 faces of 2.06M identities


@dataclass(frozen=True)
class Stage:
    """One per-image stage: seconds per image on one slot, and where it runs."""

    name: str
    seconds_per_image: float
    slots: int
    source: str
    bytes_per_image: float
    task_images: tuple[int, ...]  # images per task to simulate; the first is fmlkit's


def simulate(
    stage: Stage, images: int, tasks: int, overhead: float, jitter: float, seed: int = 0
) -> float:
    """Simulated wall seconds of ``stage`` over ``images`` cut into ``tasks`` shards."""
    rng = np.random.default_rng(seed)
    sizes = np.full(tasks, images // tasks)
    sizes[: images % tasks] += 1
    costs = sizes * stage.seconds_per_image * rng.lognormal(0.0, jitter, tasks)
    free = [0.0] * stage.slots  # when each slot is free again
    heapq.heapify(free)
    end = 0.0
    for k, cost in enumerate(costs):
        ready = heapq.heappop(free)
        start = max(ready, (k + 1) * overhead)  # the scheduler's k-th hand-out
        finish = start + overhead + float(cost)
        end = max(end, finish)
        heapq.heappush(free, finish)
    return end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=IMAGES)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--cores", type=int, default=32, help="per node")
    parser.add_argument("--gpus", type=int, default=8, help="in all")
    parser.add_argument(
        "--task-overhead", type=float, default=0.00185, help="scheduler s/task (bench_cluster.py)"
    )
    parser.add_argument("--jitter", type=float, default=0.3)
    parser.add_argument(
        "--gpu-embed-rate", type=float, default=2000.0, help="ASSUMED img/s of one GPU, flip sum"
    )
    parser.add_argument(
        "--fs-gbps", type=float, default=2.0, help="ASSUMED shared filesystem GB/s, all nodes"
    )
    args = parser.parse_args()
    cores = args.nodes * args.cores
    stages = [
        Stage("prepare (decode, md5, pHash; 112 px JPEG)", 1 / 2164, cores,
              "measured: 2,164 img/s on one core (docs/benchmarks.md, prepare)", 5_000,
              (1024, 64, 10_000)),
        Stage("align (RetinaFace on CPU; 640×480 photo)", 2 / 15.8, cores,
              "measured: 15.8 faces/s on 2 cores (docs/benchmarks.md, align)", 80_000,
              (16, 256)),
        Stage("embed (iresnet50, flip sum) on the CPUs", 2 / 8.9, cores,
              "measured: 8.9 faces/s on 2 cores (docs/scale.md)", 5_000, (1024,)),
        Stage("embed (iresnet50, flip sum) on the GPUs", 1 / args.gpu_embed_rate, args.gpus,
              f"ASSUMED: {args.gpu_embed_rate:,.0f} faces/s per GPU (no GPU was lent)", 5_000,
              (1024,)),
        Stage("convert (images → Parquet shards)", 1 / 26_000, cores,
              "measured: ~26,000 rec/s, .rec → Parquet, one process (docs/benchmarks.md)",
              10_000, (100_000,)),  # read + write; a 512 MB shard holds ~100,000 faces
    ]  # fmt: skip
    results = []
    print(f"{args.images:,} images; {args.nodes} nodes × {args.cores} cores = {cores} slots, "
          f"{args.gpus} GPUs; scheduler {args.task_overhead * 1e3:.2f} ms a task; "
          f"jitter σ {args.jitter}; filesystem {args.fs_gbps:g} GB/s (assumed)\n")  # fmt: skip
    print("| stage | images/task | tasks | simulated | ideal | efficiency | I/O floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for stage in stages:
        ideal = args.images * stage.seconds_per_image / stage.slots
        io = args.images * stage.bytes_per_image / (args.fs_gbps * 1e9)
        for size in stage.task_images:
            tasks = -(-args.images // size)
            wall = simulate(stage, args.images, tasks, args.task_overhead, args.jitter)
            results.append({"stage": stage.name, "images_per_task": size, "tasks": tasks,
                            "wall_s": wall, "ideal_s": ideal, "io_s": io,
                            "source": stage.source})  # fmt: skip
            print(f"| {stage.name} | {size:,} | {tasks:,} | {_hours(wall)} | {_hours(ideal)} | "
                  f"{ideal / wall:.0%} | {_hours(io)} |")  # fmt: skip
        print(f"| ↳ cost | | | | | | {stage.source} |")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "simulate_scale.json").write_text(json.dumps(results, indent=2))


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    main()
