"""`fmlkit convert` from RecordIO to Parquet: `rec_to_parquet`, its shards written by worker
processes. The first pass over the headers (classes and their checks, the shard plan) is
`rec_scan`; the report every conversion returns is `report`.

A .rec becomes a Parquet image dataset (`fmlkit.data.formats.parquet`): one row per image
record in index order; InsightFace flavour A's header and identity records are not rows. The
class is taken from each image's own header (the first label of an array), never from the
identity records, whose float32 ranges go wrong past 2**24 (Glint360K); those records are only
cross-checked, with a warning when they disagree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fmlkit.data.convert.rec_scan import ImageRecords, scan_records, summarise
from fmlkit.data.convert.report import ConvertReport, shard_count
from fmlkit.data.formats.images import SUFFIXES, suffix_codes
from fmlkit.data.formats.parquet import (
    IMAGE_TYPE,
    ROW_GROUP_ROWS,
    SHARD_BYTES,
    ParquetDatasetWriter,
    write_shard,
)
from fmlkit.data.formats.recordio import unpack
from fmlkit.data.formats.recordio_flavour import Flavour
from fmlkit.data.formats.recordio_reader import RecordReader
from fmlkit.errors import InputError
from fmlkit.parallel import run_tasks

if TYPE_CHECKING:
    from fmlkit.cluster import ClusterSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _ShardTask:
    """One shard of a .rec → Parquet conversion, as a worker process gets it."""

    rec: Path
    keys: np.ndarray  # the shard's part of the index
    offsets: np.ndarray
    flavour: Flavour
    rows: int
    path: Path
    schema: pa.Schema
    row_group_rows: int

    def __repr__(self) -> str:  # what an error about the task shows (not the arrays)
        return f"{self.path.name} of {self.rec}: {self.rows:,} records from key {self.keys[0]}"


def _write_rec_shard(task: _ShardTask) -> dict[str, object]:
    """Write one shard (in a worker process, or in this one); its manifest entry."""
    with RecordReader.from_index(task.rec, task.keys, task.offsets) as reader:
        records = scan_records(reader, task.flavour, skip_bad=True)  # bad ones already listed
        if len(records) != task.rows:
            raise InputError(f"{task.rec} changed while it was being converted")
        step = task.row_group_rows
        batches = (
            _record_batch(reader, records.rows(at, at + step), task.schema)
            for at in range(0, len(records), step)
        )
        return write_shard(task.path, task.schema, batches, step)


def _record_batch(reader: RecordReader, rows: ImageRecords, schema: pa.Schema) -> pa.RecordBatch:
    """One row group: image bytes go from the memory map into one Arrow buffer (a single
    copy); records in several parts are read and joined."""
    spans = list(zip(rows.image_start.tolist(), rows.image_length.tolist(), strict=True))
    if (rows.image_start >= 0).all():
        values = reader.join_spans(spans)
    else:
        offsets = reader.offset_array[rows.positions].tolist()
        values = b"".join(
            reader.join_spans([span]) if span[0] >= 0 else unpack(reader.read_at(offset)[0])[1]
            for span, offset in zip(spans, offsets, strict=True)
        )
    ends = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(rows.image_length, out=ends[1:])
    data = pa.Array.from_buffers(
        pa.binary(), len(rows), [None, pa.py_buffer(ends.astype(np.int32)), pa.py_buffer(values)]
    )
    codes = suffix_codes(np.frombuffer(values, dtype=np.uint8), ends[:-1], rows.image_length)
    keys, labels = pa.array(rows.keys), pa.array(rows.labels)
    names = pc.binary_join_element_wise(pc.cast(keys, pa.string()), pa.array(SUFFIXES[codes]), ".")
    paths = pc.binary_join_element_wise(pc.cast(labels, pa.string()), names, "/")
    image = pa.StructArray.from_arrays([data, paths], fields=list(IMAGE_TYPE))
    return pa.RecordBatch.from_arrays([image, labels, keys], schema=schema)


def _cluster_session(
    address: str, *, what: str
) -> contextlib.AbstractContextManager[ClusterSession]:
    """`fmlkit.cluster.cluster_session`, imported only when a cluster is asked for."""
    from fmlkit.cluster import cluster_session

    return cluster_session(address, what=what)


def _write_shards(
    tasks: Sequence[_ShardTask], workers: int | None, session: ClusterSession | None
) -> list[dict[str, object]]:
    """Each task's shard, written by local processes or, with ``session``, on the cluster
    (paths made absolute: the workers do not share this process's working directory)."""
    desc = "convert rec → parquet"
    if session is None:
        return run_tasks(_write_rec_shard, tasks, workers, desc=desc, unit="shard")
    remote = [dataclasses.replace(t, rec=t.rec.absolute(), path=t.path.absolute()) for t in tasks]
    session.check_shared(read=[remote[0].rec], write=[remote[0].path.parent])
    return session.map(
        _write_rec_shard, remote, sizes=[t.rows for t in remote], desc=desc, unit="img"
    )


def rec_to_parquet(
    rec: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    idx: str | os.PathLike[str] | None = None,
    skip_bad: bool = False,
    shard_bytes: int = SHARD_BYTES,
    row_group_rows: int = ROW_GROUP_ROWS,
    workers: int | None = None,
    overwrite: bool = False,
    cluster: str | None = None,
) -> ConvertReport:
    """Convert ``rec`` (with its .idx, or scanned without) into a Parquet dataset ``out_dir``.

    A first pass reads every header (classes, checks, bad records, where shards end); then
    the shards are written, by up to ``workers`` processes (default: every CPU) when there are
    several, or with ``cluster`` (``tcp://host:port`` or ``local:N``, `fmlkit.cluster`) by the
    workers of a Dask cluster, straight into the dataset's staging folder: ``rec`` and
    ``out_dir`` must then be on a filesystem every worker sees (checked first). Memory: the
    index (16 bytes a record) and one row group per process.

    Raises:
        RecordIOError: a damaged record (unless ``skip_bad``: then it is skipped and listed).
        InputError: ``out_dir`` exists and not ``overwrite``; no image record to convert.
        ClusterError: ``cluster`` cannot be reached, or a worker does not see the paths.
    """
    start = time.perf_counter()
    connect = (
        contextlib.nullcontext(None)
        if cluster is None
        else _cluster_session(cluster, what=f"convert {rec}")
    )
    with connect as session:  # connected before the header pass: a bad address fails fast
        return _convert(
            rec, out_dir, idx, skip_bad, shard_bytes, row_group_rows, workers, overwrite, session,
            start,
        )  # fmt: skip


def _convert(
    rec: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    idx: str | os.PathLike[str] | None,
    skip_bad: bool,
    shard_bytes: int,
    row_group_rows: int,
    workers: int | None,
    overwrite: bool,
    session: ClusterSession | None,
    start: float,
) -> ConvertReport:
    """`rec_to_parquet` with its cluster (if any) connected."""
    with RecordReader(rec, idx) as reader:
        summary = summarise(
            reader, skip_bad=skip_bad, shard_bytes=shard_bytes, row_group_rows=row_group_rows
        )
        if not summary.rows:
            skipped = f" ({len(summary.bad):,} bad ones skipped)" if summary.bad else ""
            raise InputError(f"{rec} holds no image records{skipped}: nothing to convert")
        source = {"kind": "rec", "path": str(Path(rec).resolve()), "flavour": summary.flavour.kind}
        with ParquetDatasetWriter(
            out_dir,
            class_names=[str(c) for c in range(summary.classes)],
            source=source,
            shard_bytes=shard_bytes,
            row_group_rows=row_group_rows,
            overwrite=overwrite,
        ) as writer:
            tasks = [
                _ShardTask(
                    Path(rec),
                    reader.key_array[first:end],
                    reader.offset_array[first:end],
                    summary.flavour,
                    rows,
                    writer.next_shard_path(n),
                    writer.schema,
                    row_group_rows,
                )
                for n, (first, end, rows) in enumerate(summary.shards)
            ]
            writer.adopt_shards(_write_shards(tasks, workers, session))
    for w in summary.warnings:
        log.warning(w)
    return ConvertReport(
        source=Path(rec),
        output=Path(out_dir),
        kind="rec → parquet",
        rows=writer.rows,
        classes=summary.classes,
        flavour=summary.flavour.kind,
        bad=summary.bad,
        warnings=summary.warnings,
        seconds=time.perf_counter() - start,
        shards=shard_count(writer),
    )
