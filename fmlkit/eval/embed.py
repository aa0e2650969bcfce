"""`fmlkit embed`: the embeddings of a dataset's images, from a checkpoint, an ONNX model or
a bare backbone state dict (arcface_torch's ``backbone.pth``, with the backbone's name).

Writes a Parquet table with ``file_name``, ``label`` and ``embedding`` (list<float32>), one row
per readable image in the input's order; images that cannot be decoded are left out, counted
and named in the report. With ``flip_sum`` (the default, insightface's evaluation) each
embedding is emb(image) + emb(horizontally flipped image). Embeddings are not normalised
(the format: `fmlkit.data.formats.embeddings`, which reads and writes it).

`load_embedder` (`fmlkit.eval.embed_inputs`, re-exported here) gives the model with its
evaluation transform as an `Embedder` (`fmlkit.eval.embedder`, which the training's validation
uses too), with which `fmlkit evaluate` embeds the images of a pair list
(`Embedder.embed_images`); `embed_dataset` embeds a whole dataset in memory, and with
``cluster`` `embed` hands shards of it to a Dask cluster (`fmlkit.eval.embed_cluster`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fmlkit.data.formats.embeddings import write_embeddings
from fmlkit.errors import InputError
from fmlkit.eval.embed_inputs import check_model_options, load_embedder, open_rows
from fmlkit.eval.embedder import Embedder

if TYPE_CHECKING:
    from fmlkit.eval.embed_cluster import ModelSource

__all__ = [
    "EmbedReport",
    "EmbeddedDataset",
    "check_model_options",
    "embed",
    "embed_dataset",
    "load_embedder",
]


@dataclass(frozen=True)
class EmbedReport:
    output: Path
    images: int
    dimension: int
    skipped: tuple[str, ...]  # file names that could not be decoded


@dataclass(frozen=True)
class EmbeddedDataset:
    """The embeddings of a dataset's readable images, in the dataset's order."""

    file_names: list[str]
    labels: list[str]
    embeddings: np.ndarray  # (images, E) float32
    skipped: tuple[str, ...]  # file names that could not be decoded


def embed(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    onnx: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    backbone: str | None = None,
    image_size: int | None = None,
    preprocess: str | None = None,
    root: str | os.PathLike[str] | None = None,
    fold: int | None = None,
    split: str | None = None,
    flip_sum: bool = True,
    batch_size: int = 64,
    num_workers: int = 0,
    cluster: str | None = None,
) -> EmbedReport:
    """Embed the images of ``input`` (a dataset_info table with its ``root``, or a Parquet
    dataset folder) with a training checkpoint, an exported ONNX model, or ``weights`` (a
    bare state dict of the backbone ``backbone``): exactly one (see `load_embedder`).

    Images are resized and normalised as in training: the checkpoint's ``data`` section, or
    for ONNX the model's input size and its metadata or ``preprocess`` (``auto``,
    ``insightface``, ``fmlkit``; see `load_embedder`), or for ``weights`` ``image_size``
    (default 112) and (x/255 − 0.5)/0.5 (arcface_torch's). With ``fold`` or ``split``, only
    the rows of that fold or split of ``input`` are embedded. torch runs with
    `fmlkit.parallel.auto_threads` intra-op threads (the CPUs less ``num_workers``).

    With ``cluster`` (``local:N`` or a Dask scheduler's ``tcp://host:port``; see
    `fmlkit.eval.embed_cluster`), shards of whole batches are embedded by the cluster's
    workers, each with the torch threads this process would use: the same file, byte for
    byte. ``input``, ``root`` and the model file must be on a filesystem every worker sees.
    """
    from fmlkit.parallel import auto_threads, torch_threads

    if cluster is not None:
        from fmlkit.cluster import parse_address

        parse_address(cluster)  # a malformed address: before the model loads
    embedder = load_embedder(
        checkpoint=checkpoint,
        onnx=onnx,
        weights=weights,
        backbone=backbone,
        image_size=image_size,
        preprocess=preprocess,
    )
    if cluster is None:
        with torch_threads(None, loader_workers=num_workers, what="embed"):
            result = embed_dataset(
                embedder,
                input,
                root=root,
                fold=fold,
                split=split,
                flip_sum=flip_sum,
                batch_size=batch_size,
                num_workers=num_workers,
            )
    else:
        from fmlkit.eval.embed_cluster import ModelSource

        model = ModelSource.of(checkpoint=checkpoint, onnx=onnx, weights=weights,
                               backbone=backbone, image_size=image_size,
                               preprocess=preprocess)  # fmt: skip
        result = _embed_on_cluster(
            cluster,
            model,
            embedder,
            input,
            root=root,
            fold=fold,
            split=split,
            flip_sum=flip_sum,
            batch_size=batch_size,
            threads=auto_threads(num_workers),  # as embed_dataset's: the same float bits
        )
    write_embeddings(output, result.file_names, result.labels, result.embeddings)
    return EmbedReport(
        Path(output), len(result.file_names), result.embeddings.shape[1], result.skipped
    )


def _embed_on_cluster(
    cluster: str,
    model: ModelSource,
    embedder: Embedder,
    input: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None,
    fold: int | None,
    split: str | None,
    flip_sum: bool,
    batch_size: int,
    threads: int,
) -> EmbeddedDataset:
    """`embed_dataset`'s result, bit for bit, computed on the Dask cluster at ``cluster``
    (`fmlkit.eval.embed_cluster`) with ``threads`` torch threads a worker; ``embedder`` (the
    workers load ``model`` themselves) reads the rows here first, failing as locally."""
    from fmlkit.eval.embed_cluster import embed_on_cluster

    dataset = open_rows(Path(input), root, embedder.transform, fold=fold, split=split)
    rows, vectors, skipped = embed_on_cluster(cluster, model, len(dataset), input, root=root,
                                              fold=fold, split=split, flip_sum=flip_sum,
                                              batch_size=batch_size, threads=threads)  # fmt: skip
    if not len(rows):
        raise InputError(f"no image of {input} could be decoded")
    kept = rows.tolist()
    names = [dataset.file_names[i] for i in kept]
    labels = [dataset.class_names[dataset.labels[i]] for i in kept]
    return EmbeddedDataset(names, labels, vectors, skipped)


def embed_dataset(
    embedder: Embedder,
    input: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    fold: int | None = None,
    split: str | None = None,
    flip_sum: bool = True,
    batch_size: int = 64,
    num_workers: int = 0,
) -> EmbeddedDataset:
    """The embeddings of every decodable image of ``input`` (a dataset_info table with its
    ``root``, or a Parquet dataset folder), in memory; with ``fold`` or ``split``, of the
    rows of that fold or split (rows with an error are left out then, as in training).

    Raises:
        InputError: a table without ``root``, no image that can be decoded, or no row in
            ``fold``/``split`` (the message names the values present).
        OptionError: both ``fold`` and ``split``.
        SchemaError: no fold/split column to select by.
    """
    from torch.utils.data import DataLoader

    from fmlkit.data.loading.datasets import collate_items
    from fmlkit.progress import progress_counter

    dataset = open_rows(Path(input), root, embedder.transform, fold=fold, split=split)
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_items
    )
    names, labels, vectors, skipped = [], [], [], []
    with progress_counter(total=len(dataset), desc="embed", unit="img") as advance:
        for batch in loader:
            skipped += [s.file_name for s in batch["skipped"]]
            advance(len(batch["skipped"]) + len(batch["image"]))
            if not len(batch["image"]):
                continue
            vectors.append(embedder(batch["image"], flip_sum=flip_sum))
            names += [dataset.file_names[i] for i in batch["index"].tolist()]
            labels += [dataset.class_names[dataset.labels[i]] for i in batch["index"].tolist()]
    if not vectors:
        raise InputError(f"no image of {input} could be decoded")
    matrix = np.concatenate(vectors).astype(np.float32)
    return EmbeddedDataset(names, labels, matrix, tuple(skipped))
