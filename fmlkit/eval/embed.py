"""`fmlkit embed`: the embeddings of a dataset's images, from a checkpoint or an ONNX model.

Writes a Parquet table with ``file_name``, ``label`` and ``embedding`` (list<float32>), one row
per readable image in the input's order; images that cannot be decoded are left out, counted
and named in the report. With ``flip_sum`` (the default, insightface's evaluation) each
embedding is emb(image) + emb(horizontally flipped image). Embeddings are not normalised.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fmlkit.errors import InputError
from fmlkit.io import atomic_path

if TYPE_CHECKING:
    from fmlkit.data.datasets import ImageDataset

EMBEDDING = "embedding"


@dataclass(frozen=True)
class EmbedReport:
    output: Path
    images: int
    dimension: int
    skipped: tuple[str, ...]  # file names that could not be decoded


def embed(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    onnx: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    flip_sum: bool = True,
    batch_size: int = 64,
    num_workers: int = 0,
) -> EmbedReport:
    """Embed the images of ``input`` (a dataset_info table with its ``root``, or a Parquet
    dataset folder) with a training checkpoint or an exported ONNX model (exactly one).

    Images are resized and normalised as in training: the checkpoint's ``data`` section, or
    for ONNX the model's input size and the default (x/255 − 0.5)/0.5.
    """
    if (checkpoint is None) == (onnx is None):
        raise InputError("give exactly one of a checkpoint and an ONNX model")
    run, size, mean, std = _model(checkpoint, onnx)
    dataset = _dataset(Path(input), root, size, mean, std)
    from torch.utils.data import DataLoader

    from fmlkit.data.datasets import collate_items

    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_items
    )
    names, labels, vectors, skipped = [], [], [], []
    for batch in loader:
        skipped += [s.file_name for s in batch["skipped"]]
        if not len(batch["image"]):
            continue
        images = batch["image"]
        emb = run(images) + run(images.flip(3)) if flip_sum else run(images)
        vectors.append(emb)
        names += [dataset.file_names[i] for i in batch["index"].tolist()]
        labels += [dataset.class_names[dataset.labels[i]] for i in batch["index"].tolist()]
    if not vectors:
        raise InputError(f"no image of {input} could be decoded")
    matrix = np.concatenate(vectors).astype(np.float32)
    _write(Path(output), names, labels, matrix)
    return EmbedReport(Path(output), len(names), matrix.shape[1], tuple(skipped))


def _model(
    checkpoint: str | os.PathLike[str] | None, onnx: str | os.PathLike[str] | None
) -> tuple[Callable[[torch.Tensor], np.ndarray], int, tuple[float, ...], tuple[float, ...]]:
    if checkpoint is not None:
        from fmlkit.models.export import load_backbone

        model, data = load_backbone(checkpoint)  # one read of the checkpoint
        size, norm = data.image_size, data.normalisation

        def run_torch(images: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return model(images).float().numpy()

        return run_torch, size, norm.mean, norm.std
    from fmlkit.models.export import OnnxModel

    assert onnx is not None
    session = OnnxModel(onnx)
    if session.image_size is None:
        raise InputError(f"{onnx} has no fixed image size in its input; export it with fmlkit")

    def run_onnx(images: torch.Tensor) -> np.ndarray:
        return session(np.ascontiguousarray(images.numpy(), dtype=np.float32))

    return run_onnx, session.image_size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _dataset(
    input: Path,
    root: str | os.PathLike[str] | None,
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> ImageDataset:
    from fmlkit.data.datasets import ImageFolderDataset, ParquetImageDataset
    from fmlkit.data.transforms import build_transforms

    transform = build_transforms(size, train=False, mean=mean, std=std)
    if input.is_dir():
        return ParquetImageDataset(input, transform=transform, cache="memory")
    if root is None:
        raise InputError(f"{input} is a dataset_info table: pass --root, the images' folder")
    return ImageFolderDataset(input, root, transform=transform)


def _write(path: Path, names: list[str], labels: list[str], matrix: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fmlkit.columns import FILE_NAME, LABEL

    flat = pa.array(matrix.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, matrix.size + 1, matrix.shape[1], dtype=np.int32))
    table = pa.table(
        {
            FILE_NAME: pa.array(names, pa.string()),
            LABEL: pa.array(labels, pa.string()),
            EMBEDDING: pa.ListArray.from_arrays(offsets, flat),
        }
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
