"""`fmlkit convert` from RecordIO to Parquet, and the report every conversion returns.

A .rec becomes a Parquet image dataset (`fmlkit.data.parquet_dataset`): one row per image
record in index order; InsightFace flavour A's header and identity records are not rows. The
class is taken from each image's own header (the first label of an array), never from the
identity records, whose float32 ranges go wrong past 2**24 (Glint360K); those records are only
cross-checked, with a warning when they disagree.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from fmlkit.data.parquet_dataset import (
    IMAGE_TYPE,
    ROW_GROUP_ROWS,
    SHARD_BYTES,
    ParquetDatasetWriter,
)
from fmlkit.data.recordio import (
    IR_HEADER,
    Flavour,
    RecordIOError,
    RecordReader,
    detect_flavour,
    unpack,
)
from fmlkit.errors import InputError

log = logging.getLogger(__name__)
FLOAT32_EXACT = 2**24  # float32 holds every integer up to here


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
            lines += [f"  key {b.key} ({b.where}): {b.reason}" for b in self.bad[:5]]
        lines += [f"Warning: {w}" for w in self.warnings]
        lines.append(f"Wrote {self.output}")
        return "\n".join(lines)


def shard_count(writer: ParquetDatasetWriter) -> int:
    assert writer.manifest is not None, "the writer was not closed"
    return len(writer.manifest.shards)


def image_suffix(image: bytes) -> str:
    """A file suffix for encoded image bytes, from their signature."""
    if image.startswith(b"\xff\xd8"):
        return "jpg"
    if image.startswith(b"\x89PNG"):
        return "png"
    return "bin"


def scan_labels(
    reader: RecordReader, flavour: Flavour, skip_bad: bool
) -> tuple[dict[int, int], list[BadRecord]]:
    """Each image record's class from its own header (only the header bytes are read); bad
    headers raise or, with ``skip_bad``, are listed."""
    labels: dict[int, int] = {}
    bad: list[BadRecord] = []
    for key in reader.keys:
        if not flavour.is_image(key):
            continue
        try:
            labels[key] = _header_label(reader, key)
        except RecordIOError as e:
            if not skip_bad:
                raise
            bad.append(_bad(reader, key, e))
    return labels, bad


def _where(reader: RecordReader, key: int) -> str:
    return f"{reader.path}, key {key} at byte {reader.offset(key):,}"


def _bad(reader: RecordReader, key: int, error: Exception) -> BadRecord:
    reason = str(error).removeprefix(_where(reader, key) + ": ")
    return BadRecord(key, f"byte {reader.offset(key):,}", reason)


def _header_label(reader: RecordReader, key: int) -> int:
    """The class in ``key``'s IRHeader; `RecordIOError` for a short record, a zero-length
    image or a label that is not an integer ≥ 0."""
    head, length = reader.head(key, IR_HEADER.size)
    flag = IR_HEADER.unpack_from(head)[0] if len(head) >= 4 else 0
    if flag:
        head, length = reader.head(key, IR_HEADER.size + 4 * flag)
    try:
        header, _ = unpack(head)
    except RecordIOError as e:
        raise RecordIOError(f"{_where(reader, key)}: {e}") from None
    if length is not None and length <= IR_HEADER.size + 4 * header.flag:
        raise RecordIOError(f"{_where(reader, key)}: zero-length image")
    label = header.labels[0] if header.labels else -1.0
    if label < 0 or label != int(label):
        raise RecordIOError(f"{_where(reader, key)}: label {label} is not a class id (integer ≥ 0)")
    return int(label)


def _record_batch(
    reader: RecordReader,
    chunk: list[tuple[int, int]],
    schema: pa.Schema,
    skip_bad: bool,
    bad: list[BadRecord],
) -> pa.RecordBatch:
    """One row group from (key, label) pairs. Image bytes go from the memory map into one
    Arrow buffer (a single copy); records in several parts are read and joined instead."""
    parts: list[bytes] = []
    spans: list[tuple[int, int]] = []
    rows: list[tuple[int, int]] = []
    for key, label in chunk:
        span = reader.image_span(key)
        if span is None:  # several parts, or damaged: the slow, checked path
            try:
                _, image = unpack(reader.read(key))
            except RecordIOError as e:
                if not skip_bad:
                    raise
                bad.append(_bad(reader, key, e))
                continue
            span = (-1 - len(parts), len(image))
            parts.append(image)
        spans.append(span)
        rows.append((key, label))
    values = _join(reader, spans, parts)
    lengths = np.fromiter((length for _, length in spans), dtype=np.int64, count=len(spans))
    if lengths.sum() >= 2**31:
        raise InputError(
            f"{reader.path}: the images of keys {rows[0][0]}..{rows[-1][0]} exceed 2 GiB, more "
            "than one Parquet row group can hold"
        )
    offsets = np.zeros(len(spans) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = pa.Array.from_buffers(
        pa.binary(), len(spans), [None, pa.py_buffer(offsets), pa.py_buffer(values)]
    )
    heads = [values[int(o) : int(o) + 4] for o in offsets[:-1]]
    paths = pa.array(
        [f"{label}/{key}.{image_suffix(h)}" for (key, label), h in zip(rows, heads, strict=True)],
        pa.string(),
    )
    image = pa.StructArray.from_arrays([data, paths], fields=list(IMAGE_TYPE))
    keys = pa.array([k for k, _ in rows], pa.int64())
    labels = pa.array([lab for _, lab in rows], pa.int64())
    return pa.RecordBatch.from_arrays([image, labels, keys], schema=schema)


def _join(reader: RecordReader, spans: list[tuple[int, int]], parts: list[bytes]) -> bytes:
    """The image bytes of ``spans`` in order: file spans, or (-1 - i, n) for ``parts[i]``."""
    if not parts:
        return reader.join_spans(spans)
    out = []
    for start, length in spans:
        out.append(parts[-1 - start] if start < 0 else reader.join_spans([(start, length)]))
    return b"".join(out)


def cross_check(reader: RecordReader, flavour: Flavour, labels: dict[int, int]) -> list[str]:
    """Flavour A: compare identity records' [start, end) key ranges with image labels."""
    warnings = []
    if len(labels) >= FLOAT32_EXACT or max(labels.values(), default=0) >= FLOAT32_EXACT:
        warnings.append(
            f"{len(labels):,} images / classes reach 2**24: float32 identity ranges are "
            "inexact here; classes come from each image's own header"
        )
    if flavour.identity_keys is None:
        return warnings
    start, end = flavour.identity_keys
    disagree, checked = 0, 0
    for class_id, key in enumerate(range(start, end)):
        if key not in reader:
            continue
        header, _ = unpack(reader.read(key))
        first, last = (int(v) for v in header.labels[:2])
        checked += 1
        disagree += any(labels.get(k, class_id) != class_id for k in range(first, last))
    if disagree:
        warnings.append(
            f"{disagree:,} of {checked:,} identity records disagree with the labels in the "
            "images' own headers (the images' labels were used)"
        )
    if checked != len(set(labels.values())):
        warnings.append(
            f"{checked:,} identity records for {len(set(labels.values())):,} classes in the images"
        )
    return warnings


def rec_to_parquet(
    rec: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    idx: str | os.PathLike[str] | None = None,
    skip_bad: bool = False,
    shard_bytes: int = SHARD_BYTES,
    row_group_rows: int = ROW_GROUP_ROWS,
    overwrite: bool = False,
) -> ConvertReport:
    """Convert ``rec`` (with its .idx, or scanned without) into a Parquet dataset ``out_dir``.

    Raises:
        RecordIOError: a damaged record (unless ``skip_bad``: then it is skipped and listed).
        InputError: ``out_dir`` exists and not ``overwrite``.
    """
    start = time.perf_counter()
    with RecordReader(rec, idx) as reader:
        flavour = detect_flavour(reader)
        labels, bad = scan_labels(reader, flavour, skip_bad)
        warnings = cross_check(reader, flavour, labels)
        classes = max(labels.values(), default=-1) + 1
        source = {"kind": "rec", "path": str(Path(rec).resolve()), "flavour": flavour.kind}
        with ParquetDatasetWriter(
            out_dir,
            class_names=[str(c) for c in range(classes)],
            source=source,
            shard_bytes=shard_bytes,
            row_group_rows=row_group_rows,
            overwrite=overwrite,
        ) as writer:
            items = iter(labels.items())
            while chunk := list(itertools.islice(items, row_group_rows)):
                writer.write_batch(_record_batch(reader, chunk, writer.schema, skip_bad, bad))
    for w in warnings:
        log.warning(w)
    if not labels and not bad:
        log.warning("%s holds no image records", rec)
    return ConvertReport(
        source=Path(rec),
        output=Path(out_dir),
        kind="rec → parquet",
        rows=writer.rows,
        classes=classes,
        flavour=flavour.kind,
        bad=tuple(bad),
        warnings=tuple(warnings),
        seconds=time.perf_counter() - start,
        shards=shard_count(writer),
    )
