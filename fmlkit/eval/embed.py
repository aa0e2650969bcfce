"""`fmlkit embed`: the embeddings of a dataset's images, from a checkpoint, an ONNX model or
a bare backbone state dict (arcface_torch's ``backbone.pth``, with the backbone's name).

Writes a Parquet table with ``file_name``, ``label`` and ``embedding`` (list<float32>), one row
per readable image in the input's order; images that cannot be decoded are left out, counted
and named in the report. With ``flip_sum`` (the default, insightface's evaluation) each
embedding is emb(image) + emb(horizontally flipped image). Embeddings are not normalised.

`load_embedder` gives the model with its evaluation transform as an `Embedder`
(`fmlkit.eval.embedder`, which the training's validation uses too), with which `fmlkit evaluate`
embeds the images of a pair list (`Embedder.embed_images`); `embed_dataset` embeds a whole
dataset in memory. This module loads checkpoints through `fmlkit.train.export`, so it sits
above `fmlkit.train`; nothing in `fmlkit.train` imports it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from fmlkit.columns import EMBEDDING
from fmlkit.errors import InputError, OptionError
from fmlkit.eval.embedder import Embedder
from fmlkit.io import atomic_path

if TYPE_CHECKING:  # torch is imported where it is used: `fmlkit evaluate --embeddings` needs none
    import torch

    from fmlkit.data.loading.datasets import ImageDataset
    from fmlkit.data.loading.transforms import ImageTransform
    from fmlkit.train.onnx_meta import Preprocess

READ_ROWS = 16_384  # rows per batch when reading an embeddings Parquet (32 MiB at 512-d)


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
    """
    from fmlkit.parallel import torch_threads

    embedder = load_embedder(
        checkpoint=checkpoint,
        onnx=onnx,
        weights=weights,
        backbone=backbone,
        image_size=image_size,
        preprocess=preprocess,
    )
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
    _write(Path(output), result.file_names, result.labels, result.embeddings)
    return EmbedReport(
        Path(output), len(result.file_names), result.embeddings.shape[1], result.skipped
    )


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

    dataset = _dataset(Path(input), root, embedder.transform, fold=fold, split=split)
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


def check_model_options(
    checkpoint: object,
    onnx: object,
    weights: object,
    backbone: str | None,
    image_size: object,
    preprocess: str | None = None,
) -> None:
    """The rules of the model options: ``backbone`` with ``weights`` and only with it (a bare
    state dict does not say its architecture); ``image_size`` only with ``weights``, from 16
    to `MAX_IMAGE_SIZE`; ``preprocess`` only with ``onnx``, one of `PREPROCESS_MODES`. Which
    one source is given is the caller's rule.

    Raises:
        OptionError: naming the options.
    """
    from fmlkit.train.data_config import MAX_IMAGE_SIZE
    from fmlkit.train.onnx_meta import PREPROCESS_MODES

    if weights is not None and backbone is None:
        raise OptionError(
            "{weights} is a bare state dict: name its architecture with {backbone} (e.g. "
            "iresnet50 for arcface_torch's r50, mobilefacenet for its mbf)"
        )
    for name, value in (("backbone", backbone), ("image_size", image_size)):
        if value is not None and weights is None:
            raise OptionError(
                f"{{{name}}} is for {{weights}}: a checkpoint or an ONNX model knows its own"
            )
    if image_size is not None and not (
        isinstance(image_size, int) and 16 <= image_size <= MAX_IMAGE_SIZE
    ):
        raise OptionError(f"{{image_size}}: expected 16 to {MAX_IMAGE_SIZE}, found {image_size}")
    if preprocess is not None and onnx is None:
        raise OptionError(
            "{preprocess} is for {onnx}: a checkpoint or weights know their preprocessing"
        )
    if preprocess is not None and preprocess not in PREPROCESS_MODES:
        raise OptionError(
            f"{{preprocess}}: expected one of {', '.join(PREPROCESS_MODES)}, found {preprocess!r}"
        )
    del checkpoint  # the sources: the caller checks that exactly one is given


def load_embedder(
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    onnx: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    backbone: str | None = None,
    image_size: int | None = None,
    preprocess: str | None = None,
) -> Embedder:
    """The backbone of a training checkpoint, an exported ONNX model, or ``weights`` (a bare
    state dict of the backbone ``backbone``, as arcface_torch saves it): exactly one, with
    its evaluation transform: the checkpoint's image size and normalisation; the ONNX
    input's size and its ``fmlkit.*`` metadata, else the default (x/255 − 0.5)/0.5, or as
    ``preprocess`` says (`fmlkit.train.onnx_meta.read_preprocessing`); ``image_size``
    (default 112) and (x/255 − 0.5)/0.5 for ``weights`` (arcface_torch's RGB inference
    normalisation).

    Raises:
        OptionError: not exactly one model, or ``backbone``/``image_size`` without
            ``weights`` (`check_model_options`).
        InputError: not a checkpoint / ONNX model / state dict of that backbone, or an ONNX
            model without a fixed image size.
        ConfigError: an unknown backbone.
    """
    from fmlkit.data.loading.transforms import build_transforms

    given = [f"{{{n}}}" for n, v in (("checkpoint", checkpoint), ("onnx", onnx),
                                     ("weights", weights)) if v is not None]  # fmt: skip
    if len(given) != 1:
        raise OptionError(
            "give exactly one of {checkpoint}, {onnx} and {weights} (the model); found "
            + (", ".join(given) or "none")
        )
    check_model_options(checkpoint, onnx, weights, backbone, image_size, preprocess)
    if weights is not None:
        assert backbone is not None  # check_model_options
        run, size, mean, std = _weights_model(weights, backbone, image_size)
    else:
        run, size, mean, std = _model(checkpoint, onnx, preprocess)
    # evaluation only resizes, with fmlkit's own steps whatever the backend: "pil" spares
    # importing torchvision (seconds)
    transform = build_transforms(size, train=False, mean=mean, std=std, backend="pil")
    return Embedder(run, transform)


_Model = tuple[Callable[["torch.Tensor"], np.ndarray], int, tuple[float, ...], tuple[float, ...]]


def _weights_model(
    weights: str | os.PathLike[str], backbone: str, image_size: int | None
) -> _Model:
    import torch

    from fmlkit.train.weights import ARCFACE_TORCH_SIZE, load_backbone_weights

    size = image_size or ARCFACE_TORCH_SIZE
    model = load_backbone_weights(weights, backbone, image_size=size)

    def run_torch(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return model(images).float().numpy()

    return run_torch, size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _model(
    checkpoint: str | os.PathLike[str] | None,
    onnx: str | os.PathLike[str] | None,
    preprocess: str | None = None,
) -> _Model:
    import torch

    if checkpoint is not None:
        from fmlkit.train.export import load_backbone

        model, data = load_backbone(checkpoint)  # one read of the checkpoint
        size, norm = data.image_size, data.normalisation

        def run_torch(images: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return model(images).float().numpy()

        return run_torch, size, norm.mean, norm.std
    from fmlkit.train.export import OnnxModel
    from fmlkit.train.onnx_meta import read_preprocessing

    assert onnx is not None
    session = OnnxModel(onnx)
    mode = cast("Preprocess", preprocess or "auto")
    how = read_preprocessing(onnx, session.metadata, session.image_size, mode)
    bgr = how.channel_order == "BGR"

    def run_onnx(images: torch.Tensor) -> np.ndarray:
        if bgr:  # the transform gives RGB
            images = images.flip(1)
        return session(np.ascontiguousarray(images.numpy(), dtype=np.float32))

    mean, std = how.rgb_mean_std()
    return run_onnx, how.size, mean, std


def _dataset(
    input: Path,
    root: str | os.PathLike[str] | None,
    transform: ImageTransform,
    *,
    fold: int | None = None,
    split: str | None = None,
) -> ImageDataset:
    from fmlkit.data.loading.datasets import ImageFolderDataset, ParquetImageDataset
    from fmlkit.data.split.select import selection_column

    selection_column(fold, split)  # both: an OptionError
    folds = None if fold is None else [fold]
    if input.is_dir():
        return ParquetImageDataset(
            input, transform=transform, cache="memory", folds=folds, split=split
        )
    if root is None:
        raise InputError(f"{input} is a dataset_info table: pass --root, the images' folder")
    return ImageFolderDataset(input, root, transform=transform, folds=folds, split=split)


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


@dataclass(frozen=True, eq=False)
class EmbeddingTable:
    """An embeddings Parquet read back: rows by file name, the (N, E) matrix, the labels."""

    path: Path
    index: dict[str, int]  # file name → row
    vectors: np.ndarray  # (N, E), float32 (float64 if stored so)
    labels: np.ndarray | None  # str per row (None where null); None without a label column


def read_embeddings(path: str | os.PathLike[str]) -> EmbeddingTable:
    """Read and check an embeddings Parquet as `embed` writes it: ``file_name``,
    ``embedding`` (a list of floats per row, one dimension for all) and optional ``label``.

    Raises:
        InputError: a missing file, no rows, null or duplicated file names, null or empty
            embeddings, mixed dimensions, NaN or infinite values (the first few rows named).
        FormatError: not a Parquet file.
        SchemaError: no ``file_name`` or ``embedding`` column, or embeddings that are not
            lists of floats.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fmlkit.columns import FILE_NAME, LABEL, validate_columns
    from fmlkit.errors import FormatError, SchemaError

    source = Path(path)
    if not source.is_file():
        raise InputError(f"embeddings {source}: no such file; expected `fmlkit embed`'s Parquet")
    try:
        schema = pq.read_schema(source)
    except (pa.ArrowException, OSError) as exc:
        raise FormatError(f"{source} is not a readable Parquet file ({exc}); expected the "
                          "embeddings `fmlkit embed` writes") from exc  # fmt: skip
    fix = "Write it with `fmlkit embed`."
    validate_columns(_Columns(schema.names), [FILE_NAME, EMBEDDING], what=str(source), fix=fix)
    kind = schema.field(EMBEDDING).type
    listed = pa.types.is_list(kind) or pa.types.is_large_list(kind)
    if not (
        (listed or pa.types.is_fixed_size_list(kind)) and pa.types.is_floating(kind.value_type)
    ):
        raise SchemaError(
            f"{source}: column {EMBEDDING} is {kind}; expected a list of floats. {fix}"
        )
    parquet = pq.ParquetFile(source)
    table = parquet.read(columns=[FILE_NAME] + ([LABEL] if LABEL in schema.names else []))
    names = _check_names(source, table.column(FILE_NAME).to_pylist())
    labels = None
    if LABEL in schema.names:
        labels = np.asarray(table.column(LABEL).cast(pa.string()).to_pylist(), object)
    dtype = np.float64 if pa.types.is_float64(kind.value_type) else np.float32
    # a batch of rows at a time: the matrix is the only full copy (1M × 512 is 2 GB)
    batches = (b.column(0) for b in parquet.iter_batches(READ_ROWS, columns=[EMBEDDING]))
    vectors = _matrix(source, names, batches, dtype)
    return EmbeddingTable(source, {n: i for i, n in enumerate(names)}, vectors, labels)


class _Columns:
    def __init__(self, names: list[str]) -> None:
        self.columns = names


def _check_names(source: Path, names: list[object]) -> list[str]:
    """The file names, after checking there are some, none null and none twice."""
    if not names:
        raise InputError(f"{source} holds no embeddings; expected one row per image")
    nulls = [i for i, n in enumerate(names) if n is None]
    if nulls:
        raise InputError(f"{source}: {len(nulls):,} rows have no file_name (rows "
                         f"{_first(nulls)}); every embedding needs its image's name")  # fmt: skip
    twice = sorted(str(n) for n, count in Counter(names).items() if count > 1)
    if twice:
        raise InputError(
            f"{source}: {len(twice):,} file names appear more than once ({_first(twice)}); "
            "pairs could not tell which embedding is meant. Embed each image once"
        )
    return [str(n) for n in names]


def _matrix(
    source: Path, names: list[str], columns: Iterable[Any], dtype: type[np.floating[Any]]
) -> np.ndarray:
    """The (N, E) matrix of list-column batches, after checking nulls, dimensions, values."""
    import pyarrow.compute as pc

    nulls, lengths = np.zeros(len(names), bool), np.zeros(len(names), np.int64)
    vectors: np.ndarray | None = None
    at = 0
    for column in columns:
        rows = slice(at, at + len(column))
        at += len(column)
        nulls[rows] = column.is_null().to_numpy(zero_copy_only=False)
        lengths[rows] = pc.fill_null(pc.list_value_length(column), -1).to_numpy()
        if vectors is None and not nulls[rows].all():
            vectors = np.empty((len(names), lengths[rows][~nulls[rows]][0]), dtype)
        if vectors is not None and vectors.shape[1] and (lengths[rows] == vectors.shape[1]).all():
            vectors[rows] = (
                pc.list_flatten(column).to_numpy(zero_copy_only=False).reshape(-1, vectors.shape[1])
            )
    _bad_rows(source, names, nulls, "no embedding")
    assert vectors is not None
    dims, first_at = np.unique(lengths, return_index=True)
    if len(dims) > 1:
        found = ", ".join(
            f"{d} (e.g. {names[i]})" for d, i in zip(dims[:4], first_at[:4], strict=True)
        )
        raise InputError(
            f"{source} holds embeddings of mixed dimension: {found}. All rows must come from "
            "one model; embed the images again with one model"
        )
    if dims[0] == 0:
        raise InputError(f"{source}: the embeddings are empty lists; expected vectors")
    _bad_rows(source, names, ~np.isfinite(vectors).all(axis=1), "NaN or infinite values")
    return vectors


def _bad_rows(source: Path, names: list[str], bad: np.ndarray, what: str) -> None:
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError(
            f"{source}: {len(rows):,} embeddings have {what} ({_first([names[i] for i in rows])})"
            "; the model or the embedding step failed on them: embed those images again"
        )


def _first(items: Sequence[object], shown: int = 3) -> str:
    more = f", … {len(items) - shown:,} more" if len(items) > shown else ""
    return ", ".join(str(i) for i in items[:shown]) + more
