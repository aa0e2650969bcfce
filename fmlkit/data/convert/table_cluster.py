"""`fmlkit convert` of a dataset_info table (or a scanned folder) on a Dask cluster: the
Parquet dataset `fmlkit.data.convert.from_images` writes in this process, byte for byte, its
files read and its shards written by the cluster's workers.

Two passes, both on the workers. The first opens each file (without reading it) for its size,
or the reason it cannot be used; from the sizes, this process finds the bad rows (the same
error, or the same skipped list, as without a cluster) and cuts the shards where the local
writer would (a shard closes after the row group that brings it to ``shard_bytes``). The
second writes each shard, reading each file once, straight into the dataset's staging folder;
the manifest and the final rename stay in this process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fmlkit.columns import CLASS_ID, ERROR, FILE_NAME, IMAGE, KEY, LABEL, LABEL_NAME
from fmlkit.data.convert.report import BadRecord, printable
from fmlkit.data.formats.parquet import ParquetDatasetWriter, write_shard
from fmlkit.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from fmlkit.cluster import ClusterSession

CHECK_FILES = 1024  # files per task of the first pass (one open and fstat each)
FILE_NAME_KEY = "__file_name"  # the file of a row, in `_ShardTask.values` (not a column)


@dataclass(frozen=True)
class _CheckTask:
    """First pass: ``files`` (path relative to ``root``) to open for their sizes."""

    root: str
    files: list[str]

    def __repr__(self) -> str:  # what an error about the task shows
        return f"{len(self.files)} files {self.files[0]} … {self.files[-1]} in {self.root}"


@dataclass(frozen=True)
class _ShardTask:
    """Second pass: one shard, its rows' values (all but the image bytes) in order."""

    root: str
    path: Path
    schema: pa.Schema
    row_group_rows: int
    values: list[dict[str, Any]]
    sizes: list[int]

    def __repr__(self) -> str:
        first, last = self.values[0][FILE_NAME_KEY], self.values[-1][FILE_NAME_KEY]
        return f"{self.path.name}: {len(self.values):,} files {first} … {last} in {self.root}"


def check_files(task: _CheckTask) -> list[tuple[int, str]]:
    """(size in bytes, reason it cannot be used or "") of each file: the reasons a read in
    `fmlkit.data.convert.from_images` gives, found by opening the file, not reading it."""
    found = []
    for name in task.files:
        try:
            with (Path(task.root) / name).open("rb") as f:
                size = os.fstat(f.fileno()).st_size
        except OSError as e:
            found.append((0, f"unreadable: {e.strerror or e}"))
            continue
        found.append((size, "" if size else "empty"))
    return found


def write_table_shard(task: _ShardTask) -> dict[str, object]:
    """Write one shard (on a worker); its manifest entry."""
    step = task.row_group_rows

    def batches() -> Any:
        for at in range(0, len(task.values), step):
            rows = [
                _with_image(task.root, values, size)
                for values, size in zip(
                    task.values[at : at + step], task.sizes[at : at + step], strict=True
                )
            ]
            yield pa.RecordBatch.from_pylist(rows, schema=task.schema)

    return write_shard(task.path, task.schema, batches(), step)


def _with_image(root: str, values: dict[str, Any], size: int) -> dict[str, Any]:
    row = dict(values)
    name = row.pop(FILE_NAME_KEY)
    path = Path(root) / name
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(
            f"{printable(str(path))} became unreadable while it was being converted "
            f"({e.strerror or e}); run the conversion again"
        ) from e
    if len(data) != size:
        raise InputError(
            f"{printable(str(path))} changed while it was being converted ({size:,} bytes, then "
            f"{len(data):,}); run the conversion again"
        )
    return row | {IMAGE: {"bytes": data, "path": name}}


def table_to_parquet_on_cluster(
    session: ClusterSession,
    df: pd.DataFrame,
    writer: ParquetDatasetWriter,
    *,
    root: Path,
    class_id: dict[str, int],
    carried: list[str],
    skip_bad: bool,
) -> list[BadRecord]:
    """Write the rows of ``df`` into ``writer`` (open, no row written yet) on the cluster;
    the rows skipped (``skip_bad``). Rows with an error (``error`` column) are not opened.

    Raises:
        InputError: a bad row and not ``skip_bad`` (the message of a local conversion), or
            a file that changed between the passes.
        ClusterError: a worker does not see ``root`` or the staging folder.
    """
    base = str(root.absolute())
    staging = writer.next_shard_path().absolute().parent
    session.check_shared(read=[Path(base)], write=[staging])
    records = df.to_dict("records")
    found = _check_all(session, base, records)
    bad: list[BadRecord] = []
    written: list[tuple[dict[str, Any], int]] = []  # values (no image bytes), image size
    for key, row in enumerate(records):
        size, reason = (0, f"error:{row[ERROR]}") if row.get(ERROR) else found[key]
        if reason:
            if not skip_bad:
                raise InputError(
                    f"row {key} ({printable(row[FILE_NAME])}): {reason}; --skip-bad skips it"
                )
            bad.append(BadRecord(key, row[FILE_NAME], reason))
            continue
        values = {c: plain(row[c]) for c in carried} | {
            CLASS_ID: class_id[row[LABEL]],
            LABEL_NAME: row[LABEL],
            KEY: key,
            FILE_NAME_KEY: row[FILE_NAME],
        }
        written.append((values, size))
    if not written:
        return bad  # the caller says why there is nothing
    plan = plan_shards([size for _, size in written], writer.shard_bytes, writer.row_group_rows)
    tasks = [
        _ShardTask(
            base,
            writer.next_shard_path(n).absolute(),
            writer.schema,
            writer.row_group_rows,
            [values for values, _ in written[first:end]],
            [size for _, size in written[first:end]],
        )
        for n, (first, end) in enumerate(plan)
    ]
    sizes = [end - first for first, end in plan]
    writer.adopt_shards(
        session.map(write_table_shard, tasks, sizes=sizes, desc="convert → parquet", unit="img")
    )
    return bad


def _check_all(
    session: ClusterSession, root: str, records: list[dict[str, Any]]
) -> dict[int, tuple[int, str]]:
    """The first pass: (size, reason) of every row without an error, by row number."""
    keys = [key for key, row in enumerate(records) if not row.get(ERROR)]
    tasks = [
        _CheckTask(root, [records[k][FILE_NAME] for k in keys[at : at + CHECK_FILES]])
        for at in range(0, len(keys), CHECK_FILES)
    ]
    sizes = [len(task.files) for task in tasks]
    results = session.map(check_files, tasks, sizes=sizes, desc="convert: sizes", unit="img")
    return dict(zip(keys, (found for part in results for found in part), strict=True))


def plain(value: Any) -> Any:
    """pandas' <NA> and numpy scalars as what Arrow takes (a row's value for the writer)."""
    import pandas as pd

    if value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


def plan_shards(sizes: list[int], shard_bytes: int, row_group_rows: int) -> list[tuple[int, int]]:
    """(first, end) rows of each shard of rows of ``sizes`` image bytes, cut where
    `ParquetDatasetWriter` cuts them: after the row group that brings a shard to
    ``shard_bytes``; the last shard takes what is left."""
    shards, first, payload = [], 0, 0
    for i, size in enumerate(sizes):
        payload += size
        if (i + 1) % row_group_rows == 0 and payload >= shard_bytes:
            shards.append((first, i + 1))
            first, payload = i + 1, 0
    if first < len(sizes):
        shards.append((first, len(sizes)))
    return shards
