"""The first pass of a .rec → Parquet conversion (and of `fmlkit inspect`): every header read,
in blocks, memory bounded by the index and per-class counts.

`scan_records` finds the image records and their classes, each taken from the image's own
header and checked to be a class id (an integer 0..2**24 - 1); `IdentityCheck` cross-checks
flavour A's identity records against those labels; `ShardPlanner` cuts the rows into shards;
`summarise` runs all three over the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from fmlkit.data.convert.report import BadRecord
from fmlkit.data.formats.parquet import ROW_GROUP_ROWS, SHARD_BYTES
from fmlkit.data.formats.recordio import RecordIOError, unpack
from fmlkit.data.formats.recordio_flavour import Flavour, detect_flavour
from fmlkit.data.formats.recordio_reader import RecordReader
from fmlkit.errors import InputError
from fmlkit.progress import progress_counter

FLOAT32_EXACT = 2**24  # float32 holds every integer up to here; class ids stay below it


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
    with progress_counter(total=len(reader), desc="read headers", unit="rec") as advance:
        for begin in range(0, len(reader), HEADER_BLOCK):
            end = begin + HEADER_BLOCK
            records = scan_records(
                reader, flavour, skip_bad=skip_bad, bad=bad, begin=begin, end=end
            )
            if len(records):
                block = np.bincount(records.labels)
                counts = np.pad(counts, (0, max(0, len(block) - len(counts))))
                counts[: len(block)] += block
            planner.add(records.positions, records.image_length)
            identities.add(records.keys, records.labels)
            advance(min(end, len(reader)) - begin)
    shards = tuple(planner.finish(len(reader)))
    warnings = identities.warnings(int(np.count_nonzero(counts)))
    if planner.rows >= FLOAT32_EXACT or len(counts) > FLOAT32_EXACT:
        warnings.insert(
            0,
            f"{planner.rows:,} images / {len(counts):,} classes reach 2**24: float32 identity "
            "ranges are inexact here; classes come from each image's own header",
        )
    return RecSummary(flavour, planner.rows, counts, tuple(bad), tuple(warnings), shards)
