"""Training throughput: `fmlkit train` end to end against a bare training step, as a ratio.

Issue #8 asks for the training img/s of iresnet50 at 112 px on a CPU (and on a GPU where one is
at hand). Two figures on the same model, head, batch and device, in one run:

- **bare step**: forward, ArcFace loss, backward and an SGD step on one batch of random images
  held in memory — the ceiling, no data loading, no logging;
- **fmlkit train**: the whole loop (`fmlkit.train.loop.train`) on a synthetic Parquet dataset
  (decode, augment, collate, step, metrics.csv, TensorBoard), img/s from its metrics rows after
  the first logged window (warm-up excluded).

The ratio loop / bare shows what the input pipeline and the loop cost. Run:

    .venv/bin/python bench/bench_train.py                       # iresnet50, batch 32, CPU
    .venv/bin/python bench/bench_train.py --backbone mobilefacenet --batch-size 64
    python3 bench/bench_train.py --device cuda --precision bf16 --batch-size 256 --channels-last
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dataset import _make_data

from fmlkit.models.backbones import create_backbone
from fmlkit.models.heads import create_head
from fmlkit.train.config import load_config
from fmlkit.train.loop import DTYPES, train


def bare_step(args: argparse.Namespace, classes: int) -> float:
    """img/s of forward + loss + backward + SGD step on one in-memory batch."""
    device = torch.device(args.device)
    model = create_backbone(args.backbone, embedding_size=512).to(device)
    head = create_head("arcface", 512, classes).to(device)
    optim = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.01, momentum=0.9)
    images = torch.randn(args.batch_size, 3, 112, 112, device=device)
    labels = torch.randint(0, classes, (args.batch_size,), device=device)
    if args.channels_last:
        model, images = (
            model.to(memory_format=torch.channels_last),
            images.contiguous(memory_format=torch.channels_last),
        )
    dtype = DTYPES[args.precision]
    times = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        optim.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = head(model(images), labels)
        loss.backward()
        optim.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return args.batch_size / statistics.median(times)


def whole_loop(args: argparse.Namespace, parquet: Path, workdir: Path) -> float:
    """img/s that `fmlkit train` logs, after its first logged window."""
    out = workdir / "run"
    overrides = [
        f"data.parquet={parquet}",
        f"model.backbone={args.backbone}",
        "head.name=arcface",
        f"train.batch_size={args.batch_size}",
        f"train.max_steps={args.warmup + args.steps}",
        f"train.log_every={args.warmup}",
        f"train.num_workers={args.workers}",
        f"train.precision={args.precision}",
        f"train.channels_last={str(args.channels_last).lower()}",
        f"checkpoint.every_steps={args.warmup + args.steps}",
        f"output_dir={out}",
    ]
    train(load_config(None, overrides), device=args.device)
    with (out / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["img_per_s"])  # the window after the warm-up one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="iresnet50")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=list(DTYPES), default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--identities", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        _, _, parquet = _make_data(workdir, args.identities, 20)
        loop = whole_loop(args, parquet, workdir)
        bare = bare_step(args, args.identities)
    print(
        "| backbone | device | precision | batch | bare step img/s | fmlkit train img/s | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.backbone} | {args.device} | {args.precision} | {args.batch_size} | "
        f"{bare:.1f} | {loop:.1f} | {loop / bare:.2f} |"
    )


if __name__ == "__main__":
    main()
