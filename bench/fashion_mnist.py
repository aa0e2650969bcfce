"""Fashion-MNIST as a dataset folder: ``OUT/<class>/<split>_<index>.png`` (70,000 PNGs).

Reads the idx files of Debian's ``dataset-fashion-mnist`` package (``apt-get install
dataset-fashion-mnist``; nothing is downloaded). Used by `bench/bench_filter_real.py`.

Run: `.venv/bin/python bench/fashion_mnist.py OUT [--limit N]`.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip


def load(source: Path = SOURCE) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All 70,000 images (uint8, N×28×28), their class indices and names (train, then test)."""
    images, labels, names = [], [], []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        with gzip.open(source / f"{prefix}-images-idx3-ubyte.gz") as f:
            raw = f.read()
        n = int.from_bytes(raw[4:8], "big")
        images.append(np.frombuffer(raw, np.uint8, offset=16).reshape(n, 28, 28))
        with gzip.open(source / f"{prefix}-labels-idx1-ubyte.gz") as f:
            labels.append(np.frombuffer(f.read(), np.uint8, offset=8))
        names += [f"{split}_{k:05d}" for k in range(n)]
    return np.concatenate(images), np.concatenate(labels).astype(np.int64), names


def write_tree(out: Path, limit: int | None = None) -> int:
    """Write the PNG tree under ``out`` (skipped when already complete); returns the count."""
    images, labels, names = load()
    if limit is not None:
        images, labels, names = images[:limit], labels[:limit], names[:limit]
    marker = out / f".complete-{len(names)}"
    if marker.exists():
        return len(names)
    for c in CLASSES:
        (out / c).mkdir(parents=True, exist_ok=True)
    for img, label, name in zip(images, labels, names, strict=True):
        Image.fromarray(img).save(out / CLASSES[label] / f"{name}.png")
    marker.touch()
    return len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    print(f"wrote {write_tree(args.out, args.limit):,} images under {args.out}")


if __name__ == "__main__":
    main()
