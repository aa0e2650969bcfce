"""Benchmark the training input pipeline: decode + augment + collate, img/s (issue #8).

Run: `.venv/bin/python bench/bench_dataset.py [--identities 100] [--images-per-identity 40]
[--workers 0 2] [--repeats 7]`. Prints a Markdown table per worker count and the ratio of each
fmlkit pipeline to torchvision's ImageFolder (target ≥ 1.0), and writes bench/out/dataset.json.

The images: a synthetic dataset from `generate_synthetic_dataset` (112 px JPEGs, no defects),
scanned into a dataset_info table and converted to a Parquet dataset (`table_to_parquet`), in a
temporary folder. Four pipelines read the same images with the same transform
(`build_transforms(112, train=True)`: the default training flip, normalised) through a
DataLoader (shuffled, ``--batch-size`` 128, ``--workers`` processes, persistent):

- torchvision: `torchvision.datasets.ImageFolder` + the default collate (the baseline);
- fmlkit folders: `ImageFolderDataset` + `ShuffleSampler` + `collate_items`;
- fmlkit Parquet (Arrow cache): `ParquetImageDataset(cache="arrow")`: the image bytes in an
  uncompressed Arrow IPC file, memory-mapped by each worker;
- fmlkit Parquet (in memory): `ParquetImageDataset(cache="memory")`: each worker reads the
  shards' image bytes into its own memory.

Each loader first runs one epoch that is not timed (worker start, page cache, maps); then
each repeat times one full epoch of every loader, in rotation; the table shows the medians.
torch uses one thread in the main process, as it does in DataLoader workers: the work per image
is single-threaded, and on a busy machine the spin-waits of more threads swamp the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

TARGET_RATIO = 1.0


def _make_data(workdir: Path, identities: int, per_identity: int) -> tuple[Path, Path, Path]:
    from fmlkit.data.convert.from_images import table_to_parquet
    from fmlkit.data.prepare.scan import scan_dataset
    from fmlkit.data.synth.synth import generate_synthetic_dataset

    root = workdir / "images"
    workers = os.cpu_count() or 1
    generate_synthetic_dataset(
        root,
        identities=identities,
        images_per_identity=per_identity,
        seed=0,
        defects=False,
        workers=workers,
    )
    info = workdir / "dataset_info.csv"
    scan_dataset(root, info, workers=workers, hashes=())
    parquet = workdir / "parquet"
    table_to_parquet(info, parquet, root=root)
    return root, info, parquet


def _loaders(
    root: Path, info: Path, parquet: Path, cache_dir: Path, batch_size: int, workers: int
) -> dict[str, Iterable[Any]]:
    import torch
    import torchvision
    from torch.utils.data import DataLoader, RandomSampler

    from fmlkit.data.loading.datasets import ImageFolderDataset, ParquetImageDataset, collate_items
    from fmlkit.data.loading.samplers import ShuffleSampler
    from fmlkit.data.loading.transforms import build_transforms

    transform = build_transforms(112, train=True)
    common: dict[str, Any] = {"batch_size": batch_size, "num_workers": workers}
    if workers:
        common["persistent_workers"] = True
    baseline = torchvision.datasets.ImageFolder(str(root), transform=transform)
    sampler = RandomSampler(baseline, generator=torch.Generator().manual_seed(0))
    fmlkit: dict[str, Any] = {
        "fmlkit folders": ImageFolderDataset(info, root, transform=transform),
        "fmlkit Parquet (Arrow cache)": ParquetImageDataset(
            parquet, transform=transform, cache="arrow", cache_dir=cache_dir
        ),
        "fmlkit Parquet (in memory)": ParquetImageDataset(
            parquet, transform=transform, cache="memory"
        ),
    }
    loaders: dict[str, Iterable[Any]] = {
        "torchvision ImageFolder": DataLoader(baseline, sampler=sampler, **common)
    }
    for name, dataset in fmlkit.items():
        assert len(dataset) == len(baseline)
        shuffle = ShuffleSampler(len(dataset), seed=0, drop_last=False)
        loaders[name] = DataLoader(dataset, sampler=shuffle, collate_fn=collate_items, **common)
    return loaders


def _epoch(loader: Iterable[Any]) -> float:
    """Images per second over one epoch of ``loader``."""
    images = 0
    start = time.perf_counter()
    for batch in loader:
        tensor = batch["image"] if isinstance(batch, dict) else batch[0]
        images += tensor.shape[0]
    return images / (time.perf_counter() - start)


def _measure(loaders: dict[str, Iterable[Any]], repeats: int) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {name: [] for name in loaders}
    for loader in loaders.values():
        _epoch(loader)  # not timed: worker start, page cache, memory maps
    for _ in range(repeats):
        for name, loader in loaders.items():
            runs[name].append(_epoch(loader))
    return runs


def _table(workers: int, runs: dict[str, list[float]], show: Callable[[str], None]) -> dict:
    median = {name: statistics.median(rates) for name, rates in runs.items()}
    base = median["torchvision ImageFolder"]
    show(f"\nDataLoader workers: {workers}")
    show("| pipeline | img/s (median) | range | ratio to torchvision |")
    show("|---|---|---|---|")
    for name, rates in runs.items():
        ratio = median[name] / base
        cell = f"**{ratio:.2f}×**" if name != "torchvision ImageFolder" else "1.00×"
        show(f"| {name} | {median[name]:.0f} | {min(rates):.0f}–{max(rates):.0f} | {cell} |")
    return {"runs": runs, "median": median, "ratio": {n: m / base for n, m in median.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=100)
    parser.add_argument("--images-per-identity", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    machine = f"{platform.node()} · {platform.machine()} · {os.cpu_count()} cores"
    images = args.identities * args.images_per_identity
    print(f"machine: {machine}; torch {torch.__version__}; {images} images of 112 px")
    report: dict[str, Any] = {"machine": machine, "images": images, "target": TARGET_RATIO}
    with tempfile.TemporaryDirectory(prefix="fmlkit-bench-dataset-") as tmp:
        root, info, parquet = _make_data(Path(tmp), args.identities, args.images_per_identity)
        for workers in args.workers:
            loaders = _loaders(root, info, parquet, Path(tmp) / "cache", args.batch_size, workers)
            runs = _measure(loaders, args.repeats)
            report[f"workers_{workers}"] = _table(workers, runs, print)
            del loaders
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dataset.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
