"""The Arrow cache of a Parquet dataset's image bytes, for `ParquetImageDataset`'s random access.

`ensure_arrow_cache` copies the image bytes once into an uncompressed Arrow IPC file that every
DataLoader worker memory-maps; `ImageBytes` reads a row's bytes from it (a slice of the map, no
Parquet decoding, no per-worker copy), or from the shards read into memory.

Both read the shards through `fmlkit.data.formats.parquet.iter_batches`, so a damaged or lying
dataset is an error naming the file (as in `fmlkit convert`), never a cache: a cache is made
under a temporary name and renamed only once every row is in it, is named by the shards' size
and modification time as well as their sha256 (which is not verified on read), and is checked
for the dataset's row count whenever it is used; one that falls short is built again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fmlkit.columns import CACHE_COLUMN, IMAGE
from fmlkit.data.formats.parquet import iter_batches, read_manifest
from fmlkit.data.formats.parquet_checks import MANIFEST_FIX
from fmlkit.errors import FormatError, InputError, OutputError
from fmlkit.io import atomic_path

log = logging.getLogger(__name__)


class ImageBytes:
    """The image bytes of every dataset row, by row number, from Arrow memory (a process's
    own: never pickled)."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        self._chunks = column.chunks
        self._starts = np.cumsum([0] + [len(chunk) for chunk in self._chunks])

    @classmethod
    def open(cls, source: Path, *, arrow: bool) -> ImageBytes:
        """The Arrow cache file ``source`` memory-mapped (``arrow``), or the image bytes of
        the Parquet dataset at ``source`` read into memory, every shard and row group checked
        (`iter_batches`).

        Raises:
            FormatError, SchemaError: a damaged or foreign shard (memory only).
        """
        if arrow:  # zero-copy: the arrays point into the memory map
            table = pa.ipc.open_file(pa.memory_map(str(source), "r")).read_all()
            return cls(table.column(CACHE_COLUMN))
        chunks = [
            pc.struct_field(batch.column(0), "bytes")
            for batch in iter_batches(source, columns=[IMAGE])
        ]
        return cls(pa.chunked_array(chunks, type=pa.binary()))

    def get(self, row: int) -> memoryview:
        chunk = int(np.searchsorted(self._starts, row, side="right")) - 1
        value = self._chunks[chunk][row - int(self._starts[chunk])]
        buffer = value.as_buffer() if value.is_valid else None
        if not buffer:  # null, or empty
            raise ValueError("the row has no image bytes (null or empty)")
        return memoryview(buffer)


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

    The digest covers each shard's size and modification time too, since the sha256 in the
    manifest is not checked against the file: a shard rewritten in place gets a new cache.
    A cache found is used only if it is a readable Arrow file of the dataset's row count;
    otherwise it is built again (with a warning).

    Built atomically; processes racing to build it each write their own and the last rename
    wins (in a distributed run, build it on one rank first, then wait at a barrier).
    Costs disk space about the size of the dataset.

    Raises:
        FormatError, SchemaError: a damaged or foreign shard (as `iter_batches`); no cache
            is left under the final name.
        InputError: the cache cannot be written (no room, not a folder).
    """
    root = Path(path)
    manifest = read_manifest(root)
    key = json.dumps([_shard_key(root, s) for s in manifest.shards])
    target = Path(cache_dir or default_cache_dir()) / (
        f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.arrow"
    )
    if target.is_file():
        found = _cached_rows(target)
        if found == manifest.rows:
            return target
        log.warning(
            "the Arrow cache %s holds %s of the %d rows of %s; building it again",
            target,
            "none (unreadable)" if found is None else f"{found:,}",
            manifest.rows,
            root,
        )
    log.info("caching the image bytes of %s in %s", root, target)
    schema = pa.schema([pa.field(CACHE_COLUMN, pa.binary())])
    try:
        with (
            atomic_path(target) as tmp,
            pa.OSFile(str(tmp), "wb") as sink,
            pa.ipc.new_file(sink, schema) as writer,
        ):
            rows = 0
            for batch in iter_batches(root, columns=[IMAGE]):
                column = pc.struct_field(batch.column(0), "bytes")
                writer.write_batch(pa.record_batch([column], schema=schema))
                rows += len(column)
            if rows != manifest.rows:  # open_shard checks each shard's rows: never expected
                raise FormatError(f"{root}: read {rows:,} rows, the manifest says "
                                  f"{manifest.rows:,}; {MANIFEST_FIX}")  # fmt: skip
    except (OSError, OutputError) as e:  # OutputError: a full disk (`fmlkit.io.writing`)
        raise InputError(
            f"cannot write the Arrow cache of {root} at {target} ({e}); choose another "
            "cache_dir with room for a copy of the dataset, or use cache='memory'"
        ) from e
    return target


def _shard_key(root: Path, shard: dict[str, Any]) -> list[object]:
    """What names a shard's content in the cache's digest: its manifest entry (sha256 if
    given) and the file's size and modification time."""
    stat = (root / shard["file"]).stat()
    return [shard["file"], shard["rows"], shard.get("sha256"), stat.st_size, stat.st_mtime_ns]


def _cached_rows(path: Path) -> int | None:
    """The rows of the Arrow cache file at ``path``; None if it is not a readable cache."""
    try:
        with pa.memory_map(str(path), "r") as source:
            reader = pa.ipc.open_file(source)
            if reader.schema.names != [CACHE_COLUMN]:
                return None
            return int(reader.count_rows())
    except (pa.ArrowException, OSError):
        return None
