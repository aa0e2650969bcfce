"""`fmlkit convert` from RecordIO to Parquet, and the report every conversion returns.

A .rec becomes a Parquet image dataset (`fmlkit.data.formats.parquet`): one row per image
record in index order; InsightFace flavour A's header and identity records are not rows. The
class is taken from each image's own header (the first label of an array), never from the
identity records, whose float32 ranges go wrong past 2**24 (Glint360K); those records are only
cross-checked, with a warning when they disagree.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fmlkit.data.formats.images import SUFFIXES, suffix_codes
from fmlkit.data.formats.parquet import (
    IMAGE_TYPE,
    ROW_GROUP_ROWS,
    SHARD_BYTES,
    ParquetDatasetWriter,
    write_shard,
)
from fmlkit.data.formats.recordio import (
    Flavour,
    RecordIOError,
    RecordReader,
    detect_flavour,
    unpack,
)
from fmlkit.errors import InputError
from fmlkit.parallel import run_tasks

log = logging.getLogger(__name__)
FLOAT32_EXACT = 2**24  # float32 holds every integer up to here; class ids stay below it


@dataclass(frozen=True)
class BadRecord:
    """A record or file that was skipped: its key, where it is (byte offset or file), why."""

    key: int
    where: str
    reason: str


@dataclass(frozen=True)
class ConvertReport:
    """What a conversion read and wrote."""

    source: Path
    output: Path
    kind: str  # e.g. "rec → parquet"
    rows: int
    classes: int
    flavour: str
    bad: tuple[BadRecord, ...] = ()
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0
    shards: int | None = None  # Parquet outputs

    def summary(self) -> str:
        flavour = f", flavour {self.flavour}" if self.flavour else ""
        shards = f", {self.shards} shard(s)" if self.shards is not None else ""
        lines = [
            f"Converted {self.source} ({self.kind}{flavour}): {self.rows:,} rows, "
            f"{self.classes:,} classes{shards} in {self.seconds:.1f} s",
        ]
        if self.bad:
            reasons = Counter(b.reason.split(":")[0] for b in self.bad)
            lines.append(f"Skipped {len(self.bad):,} bad records: {dict(reasons)}")
            lines += [f"  key {b.key} ({printable(b.where)}): {b.reason}" for b in self.bad[:5]]
        lines += [f"Warning: {w}" for w in self.warnings]
        lines.append(f"Wrote {self.output}")
        return "\n".join(lines)


def printable(text: str) -> str:
    """``text`` as is, or quoted with escapes when it holds a newline, tab or other control
    character (a file name must not break a report's lines)."""
    return text if text.isprintable() else repr(text)


def shard_count(writer: ParquetDatasetWriter) -> int:
    assert writer.manifest is not None, "the writer was not closed"
    return len(writer.manifest.shards)


@dataclass(frozen=True)
class ImageRecords:
    """Image records of a .rec, in index order, as parallel arrays.

    Attributes:
        keys, labels: record key and class id.
        positions: where each record is in the reader's index.
        image_start, image_length: where the image bytes are in the file; ``image_start`` is
            -1 for a record in several parts (its bytes are read and joined instead).
    """

    keys: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    image_start: np.ndarray
    image_length: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, start: int, stop: int) -> ImageRecords:
        return ImageRecords(*(getattr(self, f.name)[start:stop] for f in fields(self)))


HEADER_BLOCK = 1 << 18  # index entries whose headers are parsed in one go


def scan_records(
    reader: RecordReader,
    flavour: Flavour,
    *,
    skip_bad: bool,
    bad: list[BadRecord] | None = None,
    begin: int = 0,
    end: int | None = None,
) -> ImageRecords:
    """The image records among index positions [``begin``, ``end``): each one's class from its
    own header, and where its image bytes are.

    Only the header bytes are read, parsed for all the records at once; records that are in
    several parts or look wrong are read whole and checked one by one. A bad record raises
    `RecordIOError` or, with ``skip_bad``, is left out (and added to ``bad``).
    """
    positions = begin + np.flatnonzero(flavour.image_mask(reader.key_array[begin:end]))
    heads = reader.headers(positions)
    label, start, length = heads.label, heads.image_start.copy(), heads.image_length.copy()
    fine = heads.intact & (length > 0) & np.isfinite(label) & (label >= 0)
    fine &= (label == np.floor(label)) & (label < FLOAT32_EXACT)
    keep = fine.copy()
    labels = np.where(fine, label, 0).astype(np.int64)
    for i in np.flatnonzero(~fine).tolist():  # the slow, checked path
        key = int(reader.key_array[positions[i]])
        try:
            labels[i], length[i] = _checked_record(reader, key)
        except RecordIOError as e:
            if not skip_bad:
                raise
            if bad is not None:
                bad.append(_bad(reader, key, e))
            continue
        start[i] = -1
        keep[i] = True
    positions = positions[keep]
    return ImageRecords(
        reader.key_array[positions], labels[keep], positions, start[keep], length[keep]
    )


def _where(reader: RecordReader, key: int) -> str:
    return f"{reader.path}, key {key} at byte {reader.offset(key):,}"


def _bad(reader: RecordReader, key: int, error: Exception) -> BadRecord:
    reason = str(error).removeprefix(_where(reader, key) + ": ")
    return BadRecord(key, f"byte {reader.offset(key):,}", reason)


def _checked_record(reader: RecordReader, key: int) -> tuple[int, int]:
    """``key``'s class and image length, from the whole record; `RecordIOError` for a damaged
    or short record, a zero-length image or a label that is not a class id: an integer from 0
    to 2**24 - 1 (float32 cannot tell larger ids apart, and a class id sizes the per-class
    counts: a stray 3e9 must not ask for 24 GB)."""
    payload = reader.read(key)  # its errors name the file and offset already
    try:
        header, image = unpack(payload)
    except RecordIOError as e:
        raise RecordIOError(f"{_where(reader, key)}: {e}") from None
    if not image:
        raise RecordIOError(f"{_where(reader, key)}: zero-length image")
    label = header.labels[0] if header.labels else -1.0
    if not (math.isfinite(label) and 0 <= label < FLOAT32_EXACT and label == int(label)):
        raise RecordIOError(
            f"{_where(reader, key)}: label {label} is not a class id (an integer 0..2**24 - 1)"
        )
    return int(label), len(image)


class ShardPlanner:
    """Cuts the image rows of a .rec into shards as they stream past, holding no per-row state.

    Rows go in row groups of ``row_group_rows``; a shard ends after the row group that brings
    its image bytes to ``shard_bytes`` (the rule `ParquetDatasetWriter` follows). A shard is a
    range of index positions; the index entries in it that are not image rows (flavour A's
    identity records, skipped bad records) are not rows of it.
    """

    def __init__(self, shard_bytes: int, row_group_rows: int) -> None:
        self.shard_bytes, self.row_group_rows = shard_bytes, row_group_rows
        self._ends: list[tuple[int, int]] = []  # (end position, rows) of each closed shard
        self._group_rows = self._group_bytes = self._shard_rows = self._shard_bytes = 0
        self.rows = 0

    def add(self, positions: np.ndarray, lengths: np.ndarray) -> None:
        """The next image rows: their index positions and image byte counts."""
        sums = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).tolist()
        i, n = 0, len(lengths)
        while i < n:
            take = min(self.row_group_rows - self._group_rows, n - i)
            self._group_bytes += sums[i + take] - sums[i]
            self._group_rows += take
            i += take
            if self._group_rows == self.row_group_rows:
                self._end_group(int(positions[i - 1]) + 1)

    def _end_group(self, after: int) -> None:
        if self._group_bytes >= 2**31:
            raise InputError(
                f"the images of rows {self.rows:,}..{self.rows + self._group_rows - 1:,} exceed "
                "2 GiB, more than one Parquet row group can hold"
            )
        self.rows += self._group_rows
        self._shard_rows += self._group_rows
        self._shard_bytes += self._group_bytes
        self._group_rows = self._group_bytes = 0
        if self._shard_bytes >= self.shard_bytes:
            self._ends.append((after, self._shard_rows))
            self._shard_rows = self._shard_bytes = 0

    def finish(self, end: int) -> list[tuple[int, int, int]]:
        """The shards, as (first position, end position, rows); the last one runs to ``end``
        (the index length)."""
        if self._group_rows:
            self._end_group(end)
        if self._shard_rows:
            self._ends.append((end, self._shard_rows))
        elif self._ends:
            self._ends[-1] = (end, self._ends[-1][1])
        starts = [0, *(e for e, _ in self._ends)][: len(self._ends)]
        return [(s, e, rows) for s, (e, rows) in zip(starts, self._ends, strict=True)]


class IdentityCheck:
    """Flavour A: compares the identity records' [first, end) key ranges with the labels of
    the images as they stream past, holding only per-class state."""

    def __init__(self, reader: RecordReader, flavour: Flavour) -> None:
        self.checked = 0
        self._first = self._end = self._class = np.zeros(0, dtype=np.int64)
        self.overlap = False
        if flavour.identity_keys is None:
            return
        start, end = flavour.identity_keys  # the index's keys in it: not np.arange(start, end)
        keys = reader.key_array
        ids = np.sort(keys[(keys >= start) & (keys < end)])
        at = reader.positions(ids)
        heads = reader.headers(at)
        first, last = heads.label.copy(), heads.second.copy()
        for i in np.flatnonzero(~heads.intact | (heads.flag < 2)).tolist():
            labels = unpack(reader.read(int(ids[i])), where=_where(reader, int(ids[i])))[0]
            first[i], last[i] = (*labels.labels, math.nan, math.nan)[:2]
        usable = np.isfinite(first) & np.isfinite(last)
        order = np.argsort(first[usable], kind="stable")
        self._first = first[usable][order].astype(np.int64)
        self._end = last[usable][order].astype(np.int64)
        self._class = (ids[usable] - start)[order]
        self.checked = len(ids)
        self.overlap = bool((self._first[1:] < self._end[:-1]).any())
        self._disagree = np.zeros(len(self._first), dtype=bool)

    def add(self, keys: np.ndarray, labels: np.ndarray) -> None:
        if not len(self._first):
            return
        j = np.searchsorted(self._first, keys, side="right") - 1
        inside = j >= 0
        inside[inside] = keys[inside] < self._end[j[inside]]
        wrong = inside & (labels != self._class[np.maximum(j, 0)])
        self._disagree[j[wrong]] = True

    def warnings(self, classes_seen: int) -> list[str]:
        warnings = []
        if disagree := int(self._disagree.sum()) if len(self._first) else 0:
            warnings.append(
                f"{disagree:,} of {self.checked:,} identity records disagree with the labels in "
                "the images' own headers (the images' labels were used)"
            )
        if self.overlap:
            warnings.append("identity records' key ranges overlap (each image was compared "
                            "with the range that starts nearest below its key)")  # fmt: skip
        if self.checked != classes_seen:
            warnings.append(
                f"{self.checked:,} identity records for {classes_seen:,} classes in the images"
            )
        return warnings


@dataclass(frozen=True)
class RecSummary:
    """What a pass over all the headers of a .rec found (`summarise`)."""

    flavour: Flavour
    rows: int
    counts: np.ndarray  # images per class id
    bad: tuple[BadRecord, ...]
    warnings: tuple[str, ...]
    shards: tuple[tuple[int, int, int], ...]  # (first, end) index positions, rows

    @property
    def classes(self) -> int:
        return len(self.counts)


def summarise(
    reader: RecordReader,
    *,
    skip_bad: bool,
    shard_bytes: int = SHARD_BYTES,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> RecSummary:
    """One pass over every header, in blocks (memory: the index and per-class counts, not
    per-record state): flavour, classes, checks, bad records and the shard plan."""
    flavour = detect_flavour(reader)
    counts = np.zeros(0, dtype=np.int64)
    bad: list[BadRecord] = []
    planner = ShardPlanner(shard_bytes, row_group_rows)
    identities = IdentityCheck(reader, flavour)
    for begin in range(0, len(reader), HEADER_BLOCK):
        records = scan_records(
            reader, flavour, skip_bad=skip_bad, bad=bad, begin=begin, end=begin + HEADER_BLOCK
        )
        if len(records):
            block = np.bincount(records.labels)
            counts = np.pad(counts, (0, max(0, len(block) - len(counts))))
            counts[: len(block)] += block
        planner.add(records.positions, records.image_length)
        identities.add(records.keys, records.labels)
    shards = tuple(planner.finish(len(reader)))
    warnings = identities.warnings(int(np.count_nonzero(counts)))
    if planner.rows >= FLOAT32_EXACT or len(counts) > FLOAT32_EXACT:
        warnings.insert(
            0,
            f"{planner.rows:,} images / {len(counts):,} classes reach 2**24: float32 identity "
            "ranges are inexact here; classes come from each image's own header",
        )
    return RecSummary(flavour, planner.rows, counts, tuple(bad), tuple(warnings), shards)


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
) -> ConvertReport:
    """Convert ``rec`` (with its .idx, or scanned without) into a Parquet dataset ``out_dir``.

    A first pass reads every header (classes, checks, bad records, where shards end); then
    the shards are written, by up to ``workers`` processes (default: every CPU) when there are
    several. Memory: the index (16 bytes a record) and one row group per process.

    Raises:
        RecordIOError: a damaged record (unless ``skip_bad``: then it is skipped and listed).
        InputError: ``out_dir`` exists and not ``overwrite``; no image record to convert.
    """
    start = time.perf_counter()
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
            writer.adopt_shards(run_tasks(_write_rec_shard, tasks, workers))
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
