"""The Arrow cache of a Parquet dataset's image bytes, for `ParquetImageDataset`'s random access.

`ensure_arrow_cache` copies the image bytes once into an uncompressed Arrow IPC file that every
DataLoader worker memory-maps; `ImageBytes` reads a row's bytes from it (a slice of the map, no
Parquet decoding, no per-worker copy), or from the shards read into memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fmlkit.columns import CACHE_COLUMN, IMAGE
from fmlkit.data.formats.parquet import iter_batches, read_manifest
from fmlkit.errors import InputError, OutputError
from fmlkit.io import atomic_path

log = logging.getLogger(__name__)


class ImageBytes:
    """The image bytes of every dataset row, by row number, from Arrow memory (a process's
    own: never pickled)."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        self._chunks = column.chunks
        self._starts = np.cumsum([0] + [len(chunk) for chunk in self._chunks])

    @classmethod
    def open(cls, files: Sequence[Path], *, arrow: bool) -> ImageBytes:
        if arrow:  # zero-copy: the arrays point into the memory map
            table = pa.ipc.open_file(pa.memory_map(str(files[0]), "r")).read_all()
            return cls(table.column(CACHE_COLUMN))
        tables = [pq.read_table(f, columns=[IMAGE], memory_map=True) for f in files]
        return cls(pc.struct_field(pa.concat_tables(tables).column(IMAGE), "bytes"))

    def get(self, row: int) -> memoryview:
        chunk = int(np.searchsorted(self._starts, row, side="right")) - 1
        value = self._chunks[chunk][row - int(self._starts[chunk])]
        if not value.is_valid:
            raise ValueError("the row has no image bytes")
        return memoryview(value.as_buffer())


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fmlkit/arrow``, or ``~/.cache/fmlkit/arrow``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fmlkit" / "arrow"


def ensure_arrow_cache(
    path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The Arrow cache of a Parquet dataset's image bytes, built if missing: one uncompressed
    Arrow IPC file (column ``bytes``, record batches as the row groups read, rows in dataset
    order), named by a digest of the shards' sha256, so a changed dataset gets a new cache.

    Built atomically; processes racing to build it each write their own and the last rename
    wins (in a distributed run, build it on one rank first, then wait at a barrier).
    Costs disk space about the size of the dataset.
    """
    root = Path(path)
    manifest = read_manifest(root)
    key = json.dumps([[s["file"], s["rows"], s["sha256"]] for s in manifest.shards])
    target = Path(cache_dir or default_cache_dir()) / (
        f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.arrow"
    )
    if target.is_file():
        return target
    log.info("caching the image bytes of %s in %s", root, target)
    schema = pa.schema([pa.field(CACHE_COLUMN, pa.binary())])
    try:
        with (
            atomic_path(target) as tmp,
            pa.OSFile(str(tmp), "wb") as sink,
            pa.ipc.new_file(sink, schema) as writer,
        ):
            for batch in iter_batches(root, columns=[IMAGE]):
                column = pc.struct_field(batch.column(0), "bytes")
                writer.write_batch(pa.record_batch([column], schema=schema))
    except (OSError, OutputError) as e:  # OutputError: a full disk (`fmlkit.io.writing`)
        raise InputError(
            f"cannot write the Arrow cache of {root} at {target} ({e}); choose another "
            "cache_dir with room for a copy of the dataset, or use cache='memory'"
        ) from e
    return target
