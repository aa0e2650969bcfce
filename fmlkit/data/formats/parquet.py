"""fmlkit's Parquet image datasets: a directory of shards any Arrow reader understands.

Layout of ``OUT/``:

- ``part-00000.parquet``, ``part-00001.parquet``, …: shards of about ``shard_bytes`` (512 MB),
  row groups of ``row_group_rows`` (1,000) rows, rows in input order;
- ``_manifest.parquet``, written last: rows, classes, source, and each shard's rows and sha256,
  as JSON in the schema metadata of a Parquet file with no rows (`fmlkit.data.formats.
  parquet_layout` says why; an older dataset's ``_manifest.json`` is read too).

Columns: ``image`` struct<bytes: binary, path: string> (Hugging Face's Image layout; the bytes
are stored uncompressed: they are JPEG/PNG already), ``label`` int64 (class id), ``label_name``
(when known), ``key`` int64 (record key or row number), then any carried columns. The schema
carries Hugging Face ``datasets`` metadata, so ``load_dataset("parquet", data_dir=OUT)`` gives
``image`` as Image and ``label`` as ClassLabel (``label`` is written nullable, though it never
holds a null: ``datasets`` applies the metadata only to a schema equal to its own, in which
every field is nullable).

The directory is built under a temporary name and renamed when complete: a run killed half-way
leaves no manifest and no shard under the final name.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import queue
import shutil
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fmlkit import __version__
from fmlkit.columns import CLASS_ID, IMAGE, KEY, LABEL_NAME
from fmlkit.data.formats.parquet_checks import (
    check_rows,
    checked_manifest,
    manifest_body,
    open_shard,
    read_row_group,
    write_manifest,
)
from fmlkit.data.formats.parquet_layout import LEGACY_MANIFEST, MANIFEST, manifest_path
from fmlkit.errors import InputError
from fmlkit.io import StagedOutput, check_overwrite, commit, temp_sibling

SHARD_BYTES = 512 * 2**20
ROW_GROUP_ROWS = 1000
IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])


@dataclass(frozen=True)
class Manifest:
    """What a finished Parquet dataset holds (its manifest)."""

    rows: int
    classes: int
    shards: tuple[dict[str, Any], ...]  # {"file", "rows", "bytes", "sha256"}
    source: Mapping[str, Any]


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _hf_features(schema: pa.Schema, class_names: Sequence[str]) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for field in schema:
        if field.name == IMAGE:
            features[IMAGE] = {"_type": "Image"}
        elif field.name == CLASS_ID:
            features[CLASS_ID] = {"names": list(class_names), "_type": "ClassLabel"}
        else:
            dtype = "string" if pa.types.is_string(field.type) else str(field.type)
            features[field.name] = {"dtype": dtype, "_type": "Value"}
    return features


class ParquetDatasetWriter(StagedOutput):
    """Stream rows into a sharded Parquet dataset directory (see the module docstring).

    Args:
        out_dir: the dataset directory to create (replaced if ``overwrite``).
        class_names: one name per class id (ClassLabel names; ``str(id)`` when unknown).
        extra: carried columns, name → Arrow type, written after ``key``.
        with_label_name: write the ``label_name`` column.
        source: what the rows came from, for the manifest.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        class_names: Sequence[str],
        extra: Mapping[str, pa.DataType] | None = None,
        with_label_name: bool = False,
        source: Mapping[str, Any] | None = None,
        shard_bytes: int = SHARD_BYTES,
        row_group_rows: int = ROW_GROUP_ROWS,
        overwrite: bool = False,
    ) -> None:
        self.out_dir = Path(out_dir)
        check_overwrite(self.out_dir, overwrite)
        fields = [pa.field(IMAGE, IMAGE_TYPE), pa.field(CLASS_ID, pa.int64())]
        if with_label_name:
            fields.append(pa.field(LABEL_NAME, pa.string()))
        fields.append(pa.field(KEY, pa.int64(), nullable=False))
        fields += [pa.field(name, dtype) for name, dtype in (extra or {}).items()]
        self.class_names = list(class_names)
        features = _hf_features(pa.schema(fields), self.class_names)
        meta = {
            "huggingface": json.dumps({"info": {"features": features}}),
            "fmlkit": json.dumps({"table": "images", "fmlkit_version": __version__}),
        }
        self.schema = pa.schema(fields, metadata=meta)
        self.source = dict(source or {})
        self.shard_bytes, self.row_group_rows = shard_bytes, row_group_rows
        self._tmp = temp_sibling(self.out_dir)
        self._tmp.mkdir(parents=True)
        self._rows: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None
        self._file: ShardFile | None = None
        self._shard_payload = 0
        self._shards: list[dict[str, Any]] = []
        self._shard_rows = 0
        self.rows = 0
        self.manifest: Manifest | None = None  # set by close

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row: ``image`` (dict with ``bytes`` and ``path``), ``label``, ``key``,
        ``label_name`` if enabled, and the carried columns."""
        label = row[CLASS_ID]
        if not 0 <= label < len(self.class_names):
            raise InputError(
                f"label {label} of key {row[KEY]} is outside the {len(self.class_names)} classes"
            )
        self._rows.append(dict(row))
        self._shard_payload += len(row[IMAGE]["bytes"] or b"")
        if len(self._rows) >= self.row_group_rows:
            self._flush()

    def write_batch(self, batch: pa.RecordBatch) -> None:
        """Append rows already in Arrow form (this writer's schema, labels in range): the
        fast path for large conversions; they follow any rows given to `write`."""
        self._flush()
        labels = batch.column(CLASS_ID)
        if len(batch) and not (
            0 <= pc.min(labels).as_py() <= pc.max(labels).as_py() < len(self.class_names)
        ):
            raise InputError(f"labels outside the {len(self.class_names)} classes")
        self._open_shard()
        assert self._writer is not None
        self._writer.write_batch(batch.cast(self.schema), row_group_size=self.row_group_rows)
        assert self._file is not None
        self._file.written()
        self._shard_rows += len(batch)
        self.rows += len(batch)
        self._shard_payload += batch.column(IMAGE).field("bytes").nbytes
        if self._shard_payload >= self.shard_bytes:
            self._close_shard()

    def _open_shard(self) -> None:
        if self._writer is None:
            self._file = ShardFile(self._tmp / shard_name(len(self._shards)))
            self._writer = open_parquet(self._file.sink, self.schema)

    def _flush(self) -> None:
        if not self._rows:
            return
        self._open_shard()
        assert self._writer is not None
        batch = pa.RecordBatch.from_pylist(self._rows, schema=self.schema)
        self._writer.write_batch(batch, row_group_size=self.row_group_rows)
        assert self._file is not None
        self._file.written()
        self._shard_rows += len(self._rows)
        self.rows += len(self._rows)
        self._rows = []
        if self._shard_payload >= self.shard_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        assert self._file is not None
        self._shards.append(self._file.close(self._shard_rows))
        self._file = None
        self._shard_rows = 0
        self._shard_payload = 0

    def next_shard_path(self, offset: int = 0) -> Path:
        """Where shard number ``len(shards) + offset`` goes, for shards written elsewhere
        (e.g. by worker processes, with `write_shard`) and then given to `adopt_shards`."""
        return self._tmp / shard_name(len(self._shards) + offset)

    def adopt_shards(self, shards: Sequence[Mapping[str, Any]]) -> None:
        """Add shards already written (by `write_shard`) to `next_shard_path`, in order."""
        self._flush()
        self._close_shard()
        for shard in shards:
            if shard["file"] != shard_name(len(self._shards)):
                raise ValueError(f"shard {shard['file']} adopted out of order")
            self._shards.append(dict(shard))
            self.rows += int(shard["rows"])

    def close(self) -> Manifest:
        """Write the last shard and the manifest, then move the directory into place."""
        self._flush()
        self._close_shard()
        if not self._shards:  # no rows: one empty shard keeps the schema readable
            self._open_shard()
            self._close_shard()
        manifest = Manifest(self.rows, len(self.class_names), tuple(self._shards), self.source)
        body = {
            "format": "fmlkit-images",
            "version": 1,
            "fmlkit_version": __version__,
            "rows": manifest.rows,
            "classes": manifest.classes,
            "source": manifest.source,
            "shards": list(manifest.shards),
        }
        write_manifest(self._tmp / MANIFEST, self.schema, body)
        commit(self._tmp, self.out_dir)
        self.manifest = manifest
        return manifest

    @property
    def output_path(self) -> Path:
        return self.out_dir

    def abort(self) -> None:
        """Drop everything written so far (closing fails again after a failed write)."""
        try:
            if self._writer is not None:
                with contextlib.suppress(OSError):
                    self._writer.close()
                self._writer = None
            if self._file is not None:
                self._file.abort()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)


def open_parquet(sink: pa.NativeFile, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer with the dataset's settings: image bytes stored as they are (they are
    JPEG/PNG already; no dictionary, no statistics), other columns zstd with dictionaries."""
    return pq.ParquetWriter(
        sink,
        schema,
        compression=dict.fromkeys(schema.names, "zstd") | {IMAGE: "none"},
        use_dictionary=[c for c in schema.names if c != IMAGE],
        write_statistics=[c for c in schema.names if c != IMAGE],
    )


def write_shard(
    path: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch], row_group_rows: int
) -> dict[str, Any]:
    """Write ``batches`` (each at most ``row_group_rows`` rows) as one shard file; its
    manifest entry. For shards written outside a `ParquetDatasetWriter` (worker processes)."""
    file = ShardFile(path)
    try:
        writer = open_parquet(file.sink, schema)
        rows = 0
        for batch in batches:
            writer.write_batch(batch, row_group_size=row_group_rows)
            file.written()
            rows += len(batch)
        writer.close()
    except BaseException:
        file.abort()
        raise
    return file.close(rows)


class ShardFile:
    """A shard being written: an Arrow file, and a thread that hashes (sha256) what has been
    written so far, read back from the page cache, while the next row groups are built.

    Call `written` after each row group; `close` returns the manifest entry.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sink = pa.OSFile(str(path), "wb")
        self._sha256 = hashlib.sha256()
        self._hashed = 0
        self._ends: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._hash, name=f"sha256 {path.name}", daemon=True)
        self._thread.start()

    def written(self) -> None:
        """Let the hashing thread catch up with what has been written."""
        self._ends.put(self.sink.tell())

    def _hash(self) -> None:
        try:
            with self.path.open("rb", buffering=0) as f:
                while (end := self._ends.get()) is not None:
                    while self._hashed < end:
                        chunk = os.pread(f.fileno(), min(end - self._hashed, 8 << 20), self._hashed)
                        if not chunk:
                            raise OSError(f"{self.path} is shorter than written")
                        self._sha256.update(chunk)
                        self._hashed += len(chunk)
        except BaseException as e:  # reported by close
            self._error = e
            while self._ends.get() is not None:
                pass

    def close(self, rows: int) -> dict[str, Any]:
        """Close the file, wait for its digest; its manifest entry."""
        try:
            self.sink.close()
        except BaseException:
            self.abort()
            raise
        size = self.path.stat().st_size
        self._ends.put(size)
        self._ends.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return {"file": self.path.name, "rows": rows, "bytes": size,
                "sha256": self._sha256.hexdigest()}  # fmt: skip

    def abort(self) -> None:
        """Close without a digest (the file is left for the caller to delete)."""
        if not self.sink.closed:
            with contextlib.suppress(OSError):  # a failed write fails again when closed
                self.sink.close()
        self._ends.put(None)
        self._thread.join()


def read_manifest(out_dir: str | os.PathLike[str]) -> Manifest:
    """The manifest of a finished dataset, checked against the directory
    (`fmlkit.data.formats.parquet_checks.checked_manifest`).

    Raises:
        InputError: not a directory, or no manifest (an unfinished write).
        FormatError: a manifest that cannot be parsed, or whose shards are missing, are not
            plain files of the directory, or disagree with it in rows or size.
    """
    root = Path(out_dir)
    path = manifest_path(root)
    if path is None:
        raise InputError(
            f"{root} has no {MANIFEST} (nor an older dataset's {LEGACY_MANIFEST}): not an fmlkit "
            "Parquet dataset, or its write did not finish; re-create it with `fmlkit convert`"
        )
    body = manifest_body(path)
    rows, classes, shards = checked_manifest(body, path)
    source = body.get("source") if isinstance(body, dict) else None
    return Manifest(rows, classes, shards, source if isinstance(source, dict) else {})


def iter_batches(
    out_dir: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    *,
    require_images: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Record batches (one row group each) of a finished dataset, in row order; the labels and
    keys among ``columns`` are checked as they are read (`check_rows`), and with
    ``require_images`` every row must have image bytes (a conversion needs them; training
    skips rows without)."""
    root = Path(out_dir)
    manifest = read_manifest(root)
    first = 0
    for shard in manifest.shards:
        parquet = open_shard(root, shard)
        for group in range(parquet.num_row_groups):
            table = read_row_group(parquet, root / shard["file"], group, columns)
            check_rows(
                table, root / shard["file"], first, manifest.classes, require_images=require_images
            )
            first += table.num_rows
            yield from table.to_batches()


def take_rows(
    out_dir: str | os.PathLike[str], rows: Iterable[int], columns: Sequence[str] | None = None
) -> Iterator[pa.Table]:
    """The given rows (0-based, over the whole dataset), in ascending order, one table per row
    group that holds any of them; other row groups are not read. Rows are checked as in
    `iter_batches`."""
    wanted = sorted(set(rows))
    root = Path(out_dir)
    manifest = read_manifest(root)
    start = 0
    for shard in manifest.shards:
        parquet = open_shard(root, shard)
        for group in range(parquet.num_row_groups):
            end = start + parquet.metadata.row_group(group).num_rows
            local = wanted[bisect.bisect_left(wanted, start) : bisect.bisect_left(wanted, end)]
            if local:
                table = read_row_group(parquet, root / shard["file"], group, columns)
                check_rows(table, root / shard["file"], start, manifest.classes)
                yield table.take([r - start for r in local])
            start = end
