"""`fmlkit embed --cluster`: the dataset's rows embedded in shards on a Dask cluster.

`fmlkit.eval.embed.embed` loads the model and the dataset's rows first (so bad options and
inputs fail as they fail without a cluster, before one starts); `embed_on_cluster` cuts the
rows into shards of whole batches and runs `embed_shard` on each
(`fmlkit.cluster.ClusterSession.map`). A worker loads the model and the rows once per process
(`_loaded`, through `fmlkit.eval.embed_inputs`) and returns its shard's float32 embeddings and
the names of its undecodable images; they come back in row order.

The embeddings are the same bits as without ``--cluster`` because each batch is computed
the same way: it holds the same rows (a shard is a whole number of batches from a multiple of
the batch size; a model's outputs may depend, in the last bits, on what else is in its
batch), and torch runs it with the same number T of intra-op threads, the number the driver
would use (`fmlkit.parallel.auto_threads`): a convolution's kernel may split its sums by the
thread count, and fmlkit's mobilefacenet at batch 4 gave other last bits with 1 thread than
with 2 or 3 (first in a convolution over 14×14 maps, in oneDNN on this machine). So a task
uses T cores: on nodes of C cores, start C / T one-thread worker processes (docs/train.md).
Nodes whose CPUs differ from the driver's (another instruction set) may still round
differently.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fmlkit.data.loading.datasets import ImageDataset
    from fmlkit.eval.embedder import Embedder

log = logging.getLogger(__name__)

SHARD_IMAGES = 1024  # rows per task at most (rounded up to whole batches)
TASKS_PER_WORKER = 4  # at least this many tasks per worker when the rows allow it


@dataclass(frozen=True)
class ModelSource:
    """The model options of `fmlkit.eval.embed_inputs.load_embedder`, with absolute paths."""

    checkpoint: str | None = None
    onnx: str | None = None
    weights: str | None = None
    backbone: str | None = None
    image_size: int | None = None
    preprocess: str | None = None

    @classmethod
    def of(
        cls,
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        onnx: str | os.PathLike[str] | None = None,
        weights: str | os.PathLike[str] | None = None,
        backbone: str | None = None,
        image_size: int | None = None,
        preprocess: str | None = None,
    ) -> ModelSource:
        """The options as `load_embedder` takes them, paths made absolute here."""
        return cls(_absolute(checkpoint), _absolute(onnx), _absolute(weights), backbone,
                   image_size, preprocess)  # fmt: skip

    def files(self) -> list[Path]:
        """The model file (one of checkpoint, onnx, weights)."""
        return [Path(p) for p in (self.checkpoint, self.onnx, self.weights) if p is not None]


@dataclass(frozen=True)
class EmbedShard:
    """Rows ``start`` to ``stop`` (a multiple of ``batch_size`` from the start) of a dataset."""

    model: ModelSource
    input: str
    root: str | None
    fold: int | None
    split: str | None
    flip_sum: bool
    batch_size: int
    threads: int
    start: int
    stop: int


@dataclass(frozen=True)
class ShardEmbeddings:
    """What a worker returns: the rows it embedded (dataset positions, in order), their
    embeddings, and the file names it could not decode."""

    rows: np.ndarray  # (n,) int64
    embeddings: np.ndarray  # (n, E) float32
    skipped: tuple[str, ...]


# One model and dataset per worker process, made by its first shard: the last one used.
_cache: dict[tuple[object, ...], tuple[Embedder, ImageDataset]] = {}


def _absolute(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else str(Path(path).absolute())


def _loaded(shard: EmbedShard) -> tuple[Embedder, ImageDataset]:
    """This process's model and dataset for ``shard``, loaded on first use."""
    from fmlkit.eval.embed_inputs import load_embedder, open_rows

    key = (shard.model, shard.input, shard.root, shard.fold, shard.split)
    if key not in _cache:
        _cache.clear()  # a worker keeps one model in memory, not one per run it served
        model = shard.model
        embedder = load_embedder(
            checkpoint=model.checkpoint,
            onnx=model.onnx,
            weights=model.weights,
            backbone=model.backbone,
            image_size=model.image_size,
            preprocess=model.preprocess,
        )
        dataset = open_rows(Path(shard.input), shard.root, embedder.transform,
                           fold=shard.fold, split=shard.split)  # fmt: skip
        _cache[key] = (embedder, dataset)
    return _cache[key]


def embed_shard(shard: EmbedShard) -> ShardEmbeddings:
    """On a worker: embed rows ``shard.start`` to ``shard.stop`` in batches of
    ``shard.batch_size``, as `fmlkit.eval.embed.embed_dataset` batches them."""
    from fmlkit.data.loading.datasets import collate_items
    from fmlkit.parallel import torch_threads

    embedder, dataset = _loaded(shard)
    rows, vectors, skipped = [], [], []
    with torch_threads(shard.threads, what="embed (cluster worker)"):
        for start in range(shard.start, shard.stop, shard.batch_size):
            stop = min(start + shard.batch_size, shard.stop)
            batch = collate_items([dataset[i] for i in range(start, stop)])
            skipped += [s.file_name for s in batch["skipped"]]
            if len(batch["image"]):
                vectors.append(embedder(batch["image"], flip_sum=shard.flip_sum))
                rows += batch["index"].tolist()
    embeddings = np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32)
    return ShardEmbeddings(np.asarray(rows, np.int64), embeddings, tuple(skipped))


def shard_rows(rows: int, batch_size: int, workers: int) -> list[tuple[int, int]]:
    """(start, stop) of each shard of ``rows`` rows: whole batches of ``batch_size`` (the last
    may end short), at most `SHARD_IMAGES` rows (or one batch), `TASKS_PER_WORKER` shards per
    worker when the rows allow it."""
    batches = -(-rows // batch_size)
    most = max(1, SHARD_IMAGES // batch_size)
    per = max(1, min(most, -(-batches // max(1, workers * TASKS_PER_WORKER))))
    step = per * batch_size
    return [(start, min(start + step, rows)) for start in range(0, rows, step)]


def embed_on_cluster(
    cluster: str,
    model: ModelSource,
    rows: int,
    input: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None,
    fold: int | None,
    split: str | None,
    flip_sum: bool,
    batch_size: int,
    threads: int,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Embed the ``rows`` rows of ``input`` (as `fmlkit.eval.embed_inputs.open_rows` reads
    them) on the cluster at ``cluster``, each batch of ``batch_size`` rows with ``threads``
    torch threads, as `fmlkit.eval.embed.embed_dataset` does under as many threads.

    Returns:
        The rows embedded (int64, in order), their (rows, E) float32 embeddings (the same
        bits as `embed_dataset`'s), and the file names that could not be decoded.

    Raises:
        ClusterError: a cluster that cannot be reached, or paths a worker does not see.
    """
    from fmlkit.cluster import cluster_session

    source = _absolute(input)
    assert source is not None
    image_root = _absolute(root)
    read = [Path(source), *model.files(), *([Path(image_root)] if image_root else [])]
    with cluster_session(cluster, what="embed") as session:
        session.check_shared(read=read, write=[])
        shards = [
            EmbedShard(
                model, source, image_root, fold, split, flip_sum, batch_size, threads, start, stop
            )
            for start, stop in shard_rows(rows, batch_size, session.workers)
        ]
        log.info("embed: %d rows in %d shard(s), %d torch thread(s) a task", rows, len(shards),
                 threads)  # fmt: skip
        sizes = [shard.stop - shard.start for shard in shards]
        done = session.map(embed_shard, shards, sizes=sizes, desc="embed", unit="img")
    kept = [part for part in done if len(part.rows)]
    if not kept:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), ()
    return (
        np.concatenate([part.rows for part in kept]),
        np.concatenate([part.embeddings for part in kept]).astype(np.float32),
        tuple(name for part in done for name in part.skipped),
    )
