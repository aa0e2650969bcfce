"""The embeddings Parquet `fmlkit embed` writes: ``file_name``, ``label``, ``embedding``
(a list of floats per row, one dimension for all, not normalised).

`read_embeddings` reads and checks it for `fmlkit evaluate --embeddings` (strict: every row
must be a usable vector) and for `fmlkit clean` (``lenient``: rows with NaN, infinite or
all-zero vectors come back flagged in `EmbeddingTable.unusable` instead of refusing the
file). `write_embeddings` writes one atomically.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmlkit.columns import EMBEDDING, FILE_NAME, LABEL
from fmlkit.errors import InputError
from fmlkit.io import atomic_path

READ_ROWS = 16_384  # rows per batch when reading an embeddings Parquet (32 MiB at 512-d)
ROW_GROUP = 65_536  # rows per row group when writing one (128 MiB at 512-d)


@dataclass(frozen=True, eq=False)
class EmbeddingTable:
    """An embeddings Parquet read back: rows by file name, the (N, E) matrix, the labels."""

    path: Path
    index: dict[str, int]  # file name → row, in row order
    vectors: np.ndarray  # (N, E), float32 (float64 if stored so)
    labels: np.ndarray | None  # str per row (None where null); None without a label column
    unusable: np.ndarray | None = None  # (N,) bool with ``lenient``: NaN, inf or zero rows

    @property
    def file_names(self) -> list[str]:
        """The file names in row order."""
        return list(self.index)


def read_embeddings(
    path: str | os.PathLike[str], *, lenient: bool = False, require_label: bool = False
) -> EmbeddingTable:
    """Read and check an embeddings Parquet as `fmlkit embed` writes it: ``file_name``,
    ``embedding`` (a list of floats per row, one dimension for all) and ``label`` (optional
    unless ``require_label``).

    Args:
        path: the Parquet file.
        lenient: rows whose vector holds NaN or infinite values, or is all zeros, are
            flagged in `EmbeddingTable.unusable` instead of refusing the file.
        require_label: refuse a file without a ``label`` column.

    Raises:
        InputError: a missing file, no rows, null or duplicated file names, null or empty
            embeddings, mixed dimensions, NaN or infinite values unless ``lenient`` (the
            first few rows named).
        FormatError: not a Parquet file.
        SchemaError: no ``file_name`` or ``embedding`` column (or ``label`` with
            ``require_label``), or embeddings that are not lists of floats.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fmlkit.columns import validate_columns
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
    required = [FILE_NAME, EMBEDDING] + ([LABEL] if require_label else [])
    validate_columns(_Columns(schema.names), required, what=str(source), fix=fix)
    kind = schema.field(EMBEDDING).type
    listed = pa.types.is_list(kind) or pa.types.is_large_list(kind)
    if not (
        (listed or pa.types.is_fixed_size_list(kind)) and pa.types.is_floating(kind.value_type)
    ):
        raise SchemaError(
            f"{source}: column {EMBEDDING} is {kind}; expected a list of floats. {fix}"
        )
    parquet = pq.ParquetFile(source, pre_buffer=False)  # pre-buffering holds the whole file
    table = parquet.read(columns=[FILE_NAME] + ([LABEL] if LABEL in schema.names else []))
    names = _check_names(source, table.column(FILE_NAME).to_pylist())
    labels = None
    if LABEL in schema.names:
        labels = np.asarray(table.column(LABEL).cast(pa.string()).to_pylist(), object)
    dtype = np.float64 if pa.types.is_float64(kind.value_type) else np.float32
    # a batch of rows at a time: the matrix is the only full copy (1M × 512 is 2 GB)
    batches = (b.column(0) for b in parquet.iter_batches(READ_ROWS, columns=[EMBEDDING]))
    vectors = _matrix(source, names, batches, dtype)
    pa.default_memory_pool().release_unused()  # the batches' buffers, back to the system
    finite = np.ones(len(vectors), bool)
    zero = np.zeros(len(vectors), bool)
    for start in range(0, len(vectors), READ_ROWS):  # bounded temporaries, no copy
        part = vectors[start : start + READ_ROWS]
        finite[start : start + len(part)] = np.isfinite(part).all(axis=1)
        zero[start : start + len(part)] = ~part.any(axis=1)  # NaN counts as non-zero
    unusable = None
    if lenient:
        unusable = ~finite | zero
    else:
        _bad_rows(source, names, ~finite, "NaN or infinite values")
    return EmbeddingTable(source, {n: i for i, n in enumerate(names)}, vectors, labels, unusable)


def write_embeddings(
    path: str | os.PathLike[str],
    file_names: Sequence[str] | np.ndarray,
    labels: Sequence[str] | np.ndarray | None,
    vectors: np.ndarray,
) -> Path:
    """Write ``vectors`` ((N, E) floats) with their file names and labels (``None``: no label
    column) as the embeddings Parquet `fmlkit embed` writes, atomically; returns the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    flat = pa.array(matrix.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, matrix.size + 1, max(matrix.shape[1], 1), dtype=np.int32))
    columns = {FILE_NAME: pa.array(list(file_names), pa.string())}
    if labels is not None:
        columns[LABEL] = pa.array(list(labels), pa.string())
    columns[EMBEDDING] = pa.ListArray.from_arrays(offsets, flat)
    out = Path(path)
    with atomic_path(out) as tmp:  # row groups of ROW_GROUP rows: a reader holds one at most
        pq.write_table(pa.table(columns), tmp, row_group_size=ROW_GROUP)
    return out


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
            "the rows could not be told apart. Embed each image once"
        )
    return [str(n) for n in names]


def _matrix(
    source: Path, names: list[str], columns: Iterable[Any], dtype: type[np.floating[Any]]
) -> np.ndarray:
    """The (N, E) matrix of list-column batches, after checking nulls and dimensions."""
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
