"""What a Parquet image dataset must hold before fmlkit reads it (docs/formats.md).

`fmlkit.data.formats.parquet` calls these when it reads a dataset, so a damaged or foreign one
is an error naming the file (and row), never a traceback or a quietly wrong output:

- the manifest (`manifest_body`: the JSON under ``_manifest.parquet``'s ``fmlkit_manifest``
  schema metadata key, or an older dataset's ``_manifest.json``): a JSON object whose ``rows``
  and ``classes`` are integers ≥ 0, and whose ``shards`` each name a plain ``*.parquet`` file
  inside the directory, with its ``rows`` (they sum to ``rows``) and ``bytes`` (its size);
- each shard: a readable Parquet file with as many rows as the manifest gives it, and columns
  ``image`` struct<bytes: binary, …>, ``label`` and ``key`` integers;
- each row group read: no null ``label`` or ``key``; ``label`` a class id in
  ``0..classes-1``; and, where a conversion asks (training skips such rows instead), image
  bytes that are neither null nor empty.

Checked cheaply: sizes, footers and the columns read anyway. A shard's ``sha256`` is **not**
verified on read (that would read every byte once more); compare it with ``sha256sum`` after
copying a dataset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fmlkit.columns import CLASS_ID, IMAGE, KEY
from fmlkit.data.formats.parquet_layout import LEGACY_MANIFEST, MANIFEST_KEY
from fmlkit.errors import FormatError, SchemaError

MANIFEST_FIX = "re-create the dataset with `fmlkit convert`"


def _count(value: object, what: str, path: Path) -> int:
    """``value`` as an integer ≥ 0 (JSON ints only: no floats, bools or strings)."""
    if type(value) is not int or value < 0:
        raise FormatError(
            f"{path}: {what} is {value!r}, not an integer ≥ 0; the manifest is damaged: "
            f"{MANIFEST_FIX}"
        )
    return value


def write_manifest(path: Path, schema: pa.Schema, body: Mapping[str, Any]) -> None:
    """Write the manifest ``body`` at ``path``: a Parquet file of ``schema`` with no row groups
    (every reader that lists it finds no rows in it), ``body`` as JSON under `MANIFEST_KEY`."""
    meta = dict(schema.metadata or {})
    meta[MANIFEST_KEY.encode()] = json.dumps(body, indent=2).encode("utf-8")
    pq.write_metadata(schema.with_metadata(meta), path)


def manifest_body(path: Path) -> object:
    """The parsed JSON of the manifest file at ``path`` (``_manifest.parquet``, or an older
    dataset's ``_manifest.json``), not yet checked (`checked_manifest` does that).

    Raises:
        FormatError: not a Parquet file with the manifest key, or not JSON.
    """
    try:
        if path.name == LEGACY_MANIFEST:
            text: str | bytes = path.read_bytes()
        else:
            meta = pq.read_schema(path).metadata or {}
            if MANIFEST_KEY.encode() not in meta:
                raise FormatError(f"{path}: no {MANIFEST_KEY} metadata, so not an fmlkit "
                                  f"manifest; {MANIFEST_FIX}")  # fmt: skip
            text = meta[MANIFEST_KEY.encode()]
    except (pa.ArrowException, OSError) as e:
        raise FormatError(f"{path}: not a readable Parquet manifest ({e}); {MANIFEST_FIX}") from e
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise FormatError(f"{path}: not JSON ({e}); {MANIFEST_FIX}") from e


def checked_manifest(body: object, path: Path) -> tuple[int, int, tuple[dict[str, Any], ...]]:
    """(rows, classes, shards) of a parsed manifest (`manifest_body`) at ``path``, each shard
    checked against the directory: a plain file name that exists, rows summing to ``rows``,
    its size.

    Raises:
        FormatError: a field is missing, of the wrong kind, or disagrees with the directory.
    """
    if not isinstance(body, dict):
        raise FormatError(f"{path}: holds {type(body).__name__}, not a JSON object; {MANIFEST_FIX}")
    missing = [k for k in ("rows", "classes", "shards") if k not in body]
    if missing:
        raise FormatError(f"{path}: no {', '.join(missing)}; {MANIFEST_FIX}")
    rows = _count(body["rows"], "rows", path)
    classes = _count(body["classes"], "classes", path)
    if not isinstance(body["shards"], list) or not body["shards"]:
        raise FormatError(f"{path}: shards is {body['shards']!r}, not a list of shards; "
                          f"{MANIFEST_FIX}")  # fmt: skip
    shards = []
    for n, shard in enumerate(body["shards"]):
        if not isinstance(shard, dict):
            raise FormatError(f"{path}: shards[{n}] is not a JSON object; {MANIFEST_FIX}")
        name = shard.get("file")
        if not isinstance(name, str) or Path(name).name != name or not name.endswith(".parquet"):
            raise FormatError(
                f"{path}: shards[{n}] names {name!r}, not a .parquet file in the dataset folder "
                f"(no folders, no '..'); {MANIFEST_FIX}"
            )
        file = path.parent / name
        if not file.is_file():
            raise FormatError(f"{path} lists {name}, which is missing; {MANIFEST_FIX}")
        _count(shard.get("rows"), f"shards[{n}].rows", path)
        if "bytes" in shard:
            size = _count(shard["bytes"], f"shards[{n}].bytes", path)
            if size != file.stat().st_size:
                raise FormatError(
                    f"{file}: {file.stat().st_size:,} bytes, the manifest says {size:,}: the "
                    f"shard was truncated or replaced; {MANIFEST_FIX}"
                )
        shards.append(shard)
    if sum(s["rows"] for s in shards) != rows:
        raise FormatError(
            f"{path}: rows is {rows:,} but the shards' rows add up to "
            f"{sum(s['rows'] for s in shards):,}; {MANIFEST_FIX}"
        )
    return rows, classes, tuple(shards)


def open_shard(root: Path, shard: Mapping[str, Any]) -> pq.ParquetFile:
    """A shard of the dataset at ``root``, opened and checked: readable, its schema fmlkit's
    (`check_shard_schema`), its rows as many as the manifest says.

    Raises:
        FormatError: the file is not readable Parquet (truncated, damaged) or has other rows.
        SchemaError: a column is missing or of another type.
    """
    file = root / shard["file"]
    try:
        parquet = pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as e:
        raise FormatError(
            f"{file}: not a readable Parquet file ({e}); the shard is damaged or truncated: "
            f"{MANIFEST_FIX}"
        ) from e
    check_shard_schema(parquet.schema_arrow, file)
    if parquet.metadata.num_rows != shard["rows"]:
        raise FormatError(
            f"{file}: {parquet.metadata.num_rows:,} rows, the manifest says {shard['rows']:,}; "
            f"{MANIFEST_FIX}"
        )
    return parquet


def read_row_group(
    parquet: pq.ParquetFile, file: Path, group: int, columns: Sequence[str] | None
) -> pa.Table:
    """Row group ``group`` of ``file``; a damaged one is a `FormatError` naming the file."""
    try:
        return parquet.read_row_group(group, columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise FormatError(f"{file}: row group {group} is unreadable ({e}); {MANIFEST_FIX}") from e


def check_shard_schema(schema: pa.Schema, file: Path) -> None:
    """Refuse a shard without fmlkit's ``image``, ``label`` and ``key`` columns and types.

    Raises:
        SchemaError: a column is missing or of another type (named, with what was found).
    """
    expected = {
        IMAGE: "struct<bytes: binary, path: string>",
        CLASS_ID: "an integer",
        KEY: "an integer",
    }
    for name, want in expected.items():
        if name not in schema.names:
            raise SchemaError(f"{file}: no {name} column (expected {want}); {MANIFEST_FIX}")
        kind = schema.field(name).type
        if name == IMAGE:
            fine = (
                pa.types.is_struct(kind)
                and kind.get_field_index("bytes") >= 0
                and pa.types.is_binary(kind.field("bytes").type)
            )
        else:
            fine = pa.types.is_integer(kind)
        if not fine:
            raise SchemaError(
                f"{file}: column {name} is {kind}, expected {want}; the shard was not written by "
                f"fmlkit: {MANIFEST_FIX}"
            )


def check_rows(
    batch: pa.RecordBatch | pa.Table,
    file: Path,
    first: int,
    classes: int,
    *,
    require_images: bool = False,
) -> None:
    """Refuse rows of ``file`` (the first is dataset row ``first``) that fmlkit cannot use:
    checks whichever of ``label`` and ``key`` were read, and with ``require_images`` the
    ``image`` column too.

    Raises:
        FormatError: a null or out-of-range label, a null key; with ``require_images``, a row
            without image bytes (null or empty).
    """
    names = batch.schema.names

    def bad_row(mask: pa.Array | pa.ChunkedArray) -> int:
        return first + int(pc.index(pc.fill_null(mask, True), True).as_py())

    if CLASS_ID in names:
        labels = batch.column(names.index(CLASS_ID))
        wrong = pc.or_(pc.less(labels, 0), pc.greater_equal(labels, classes))
        if labels.null_count or pc.any(wrong).as_py():
            row = bad_row(wrong)
            value = labels[row - first].as_py()
            raise FormatError(
                f"{file}: row {row:,} has label {value}, not a class id 0..{classes - 1} "
                f"of this dataset ({classes:,} classes); {MANIFEST_FIX}"
            )
    if KEY in names and batch.column(names.index(KEY)).null_count:
        row = bad_row(pc.is_null(batch.column(names.index(KEY))))
        raise FormatError(f"{file}: row {row:,} has no key; {MANIFEST_FIX}")
    if require_images and IMAGE in names:
        images = batch.column(names.index(IMAGE))
        data = pc.struct_field(images, "bytes")
        empty = pc.or_(pc.is_null(images), pc.equal(pc.binary_length(data), 0))
        if pc.any(pc.fill_null(empty, True)).as_py():
            row = bad_row(empty)
            raise FormatError(
                f"{file}: row {row:,} has no image bytes (null or empty); a conversion needs "
                "every row's image (training skips such rows): drop the row, or re-create the "
                "dataset from images that can be read"
            )
