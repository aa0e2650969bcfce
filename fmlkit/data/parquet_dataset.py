"""fmlkit's Parquet image datasets: a directory of shards any Arrow reader understands.

Layout of ``OUT/``:

- ``part-00000.parquet``, ``part-00001.parquet``, …: shards of about ``shard_bytes`` (512 MB),
  row groups of ``row_group_rows`` (1,000) rows, rows in input order;
- ``_manifest.json``, written last: rows, classes, source, and each shard's rows and sha256.

Columns: ``image`` struct<bytes: binary, path: string> (Hugging Face's Image layout; the bytes
are stored uncompressed: they are JPEG/PNG already), ``label`` int64 (class id), ``label_name``
(when known), ``key`` int64 (record key or row number), then any carried columns. The schema
carries Hugging Face ``datasets`` metadata, so ``load_dataset("parquet", data_dir=OUT)`` gives
``image`` as Image and ``label`` as ClassLabel.

The directory is built under a temporary name and renamed when complete: a run killed half-way
leaves no ``_manifest.json`` and no shard under the final name.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fmlkit import __version__
from fmlkit.errors import FormatError, InputError
from fmlkit.io import StagedOutput, check_overwrite, commit, temp_sibling

IMAGE, LABEL_ID, LABEL_NAME, KEY = "image", "label", "label_name", "key"
MANIFEST = "_manifest.json"
SHARD_BYTES = 512 * 2**20
ROW_GROUP_ROWS = 1000
IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])


@dataclass(frozen=True)
class Manifest:
    """What a finished Parquet dataset holds (``_manifest.json``)."""

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
        elif field.name == LABEL_ID:
            features[LABEL_ID] = {"names": list(class_names), "_type": "ClassLabel"}
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
        fields = [pa.field(IMAGE, IMAGE_TYPE), pa.field(LABEL_ID, pa.int64(), nullable=False)]
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
        self._file: _HashingFile | None = None
        self._shard_payload = 0
        self._shards: list[dict[str, Any]] = []
        self._shard_rows = 0
        self.rows = 0
        self.manifest: Manifest | None = None  # set by close

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row: ``image`` (dict with ``bytes`` and ``path``), ``label``, ``key``,
        ``label_name`` if enabled, and the carried columns."""
        label = row[LABEL_ID]
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
        labels = batch.column(LABEL_ID)
        if len(batch) and not (
            0 <= pc.min(labels).as_py() <= pc.max(labels).as_py() < len(self.class_names)
        ):
            raise InputError(f"labels outside the {len(self.class_names)} classes")
        self._open_shard()
        assert self._writer is not None
        self._writer.write_batch(batch.cast(self.schema), row_group_size=self.row_group_rows)
        self._shard_rows += len(batch)
        self.rows += len(batch)
        self._shard_payload += batch.column(IMAGE).field("bytes").nbytes
        if self._shard_payload >= self.shard_bytes:
            self._close_shard()

    def _open_shard(self) -> None:
        if self._writer is None:
            self._file = _HashingFile(self._tmp / shard_name(len(self._shards)))
            self._writer = pq.ParquetWriter(
                self._file,
                self.schema,
                compression=dict.fromkeys(self.schema.names, "zstd") | {IMAGE: "none"},
                use_dictionary=[c for c in self.schema.names if c != IMAGE],
                write_statistics=[c for c in self.schema.names if c != IMAGE],
            )

    def _flush(self) -> None:
        if not self._rows:
            return
        self._open_shard()
        assert self._writer is not None
        batch = pa.RecordBatch.from_pylist(self._rows, schema=self.schema)
        self._writer.write_batch(batch, row_group_size=self.row_group_rows)
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
        self._file.close()
        path = self._tmp / shard_name(len(self._shards))
        self._shards.append(
            {
                "file": path.name,
                "rows": self._shard_rows,
                "bytes": path.stat().st_size,
                "sha256": self._file.sha256.hexdigest(),
            }
        )
        self._file = None
        self._shard_rows = 0
        self._shard_payload = 0

    def add_file(self, name: str, text: str) -> None:
        """Write a small text file into the dataset directory; its name must start with "_"
        so that Parquet readers skip it (e.g. ``_pairs.csv``)."""
        if "/" in name or name == MANIFEST or not name.startswith("_"):
            raise InputError(f"cannot add a file named {name!r} to a Parquet dataset")
        (self._tmp / name).write_text(text, encoding="utf-8")

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
        (self._tmp / MANIFEST).write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        commit(self._tmp, self.out_dir)
        self.manifest = manifest
        return manifest

    def abort(self) -> None:
        """Drop everything written so far."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


class _HashingFile:
    """A binary file that hashes what is written to it (sha256), so a shard's digest costs
    no second read."""

    def __init__(self, path: Path) -> None:
        self._f = path.open("wb")
        self.sha256 = hashlib.sha256()

    @property
    def closed(self) -> bool:
        return self._f.closed

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self._f.write(data)

    def tell(self) -> int:
        return self._f.tell()

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def read_manifest(out_dir: str | os.PathLike[str]) -> Manifest:
    """The manifest of a finished dataset.

    Raises:
        InputError: not a directory, or no ``_manifest.json`` (an unfinished write).
        FormatError: a manifest that cannot be parsed or lists a missing shard.
    """
    root = Path(out_dir)
    path = root / MANIFEST
    if not path.is_file():
        raise InputError(
            f"{root} has no {MANIFEST}: not an fmlkit Parquet dataset, or its write did not finish"
        )
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest(
            int(body["rows"]), int(body["classes"]), tuple(body["shards"]), body["source"]
        )
    except (ValueError, KeyError, TypeError) as e:
        raise FormatError(f"{path}: cannot read the manifest ({e})") from e
    for shard in manifest.shards:
        if not (root / shard["file"]).is_file():
            raise FormatError(f"{path} lists {shard['file']}, which is missing")
    return manifest


def iter_batches(
    out_dir: str | os.PathLike[str], columns: Sequence[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Record batches (one row group each) of a finished dataset, in row order."""
    root = Path(out_dir)
    for shard in read_manifest(root).shards:
        parquet = pq.ParquetFile(root / shard["file"])
        for group in range(parquet.num_row_groups):
            yield from parquet.read_row_group(group, columns=columns).to_batches()


def take_rows(
    out_dir: str | os.PathLike[str], rows: Iterable[int], columns: Sequence[str] | None = None
) -> Iterator[pa.Table]:
    """The given rows (0-based, over the whole dataset), in ascending order, one table per row
    group that holds any of them; other row groups are not read."""
    wanted = sorted(set(rows))
    root = Path(out_dir)
    start = 0
    for shard in read_manifest(root).shards:
        parquet = pq.ParquetFile(root / shard["file"])
        for group in range(parquet.num_row_groups):
            end = start + parquet.metadata.row_group(group).num_rows
            local = wanted[bisect.bisect_left(wanted, start) : bisect.bisect_left(wanted, end)]
            if local:
                table = parquet.read_row_group(group, columns=columns)
                yield table.take([r - start for r in local])
            start = end
