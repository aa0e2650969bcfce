"""`fmlkit convert`: RecordIO → Parquet (more directions follow, issue #6).

A .rec becomes a Parquet image dataset (`fmlkit.data.parquet_dataset`): one row per image
record in index order; InsightFace flavour A's header and identity records are not rows. The
class is taken from each image's own header (the first label of an array), never from the
identity records, whose float32 ranges go wrong past 2**24 (Glint360K); those records are only
cross-checked, with a warning when they disagree.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fmlkit.data.parquet_dataset import (
    IMAGE,
    KEY,
    LABEL_ID,
    ROW_GROUP_ROWS,
    SHARD_BYTES,
    ParquetDatasetWriter,
)
from fmlkit.data.recordio import (
    Flavour,
    RecordIOError,
    RecordReader,
    detect_flavour,
    unpack,
)

log = logging.getLogger(__name__)
FLOAT32_EXACT = 2**24  # float32 holds every integer up to here


@dataclass(frozen=True)
class BadRecord:
    key: int
    offset: int
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
    shards: int = field(default=1)

    def summary(self) -> str:
        lines = [
            f"Converted {self.source} ({self.kind}, flavour {self.flavour}): {self.rows:,} rows, "
            f"{self.classes:,} classes, {self.shards} shard(s) in {self.seconds:.1f} s",
        ]
        if self.bad:
            reasons = Counter(b.reason.split(":")[0] for b in self.bad)
            lines.append(f"Skipped {len(self.bad):,} bad records: {dict(reasons)}")
            lines += [f"  key {b.key} at byte {b.offset:,}: {b.reason}" for b in self.bad[:5]]
        lines += [f"Warning: {w}" for w in self.warnings]
        lines.append(f"Wrote {self.output}")
        return "\n".join(lines)


def _image_suffix(image: bytes) -> str:
    if image.startswith(b"\xff\xd8"):
        return "jpg"
    if image.startswith(b"\x89PNG"):
        return "png"
    return "bin"


def _scan_labels(
    reader: RecordReader, flavour: Flavour, skip_bad: bool
) -> tuple[dict[int, int], list[BadRecord]]:
    """Each image record's class from its own header; bad records raise or are listed."""
    labels: dict[int, int] = {}
    bad: list[BadRecord] = []
    for key in reader.keys:
        if not flavour.is_image(key):
            continue
        where = f"{reader.path}, key {key} at byte {reader.offset(key):,}"
        try:
            header, image = unpack(reader.read(key), where=where)
            label = header.labels[0] if header.labels else -1.0
            if not image:
                raise RecordIOError(f"{where}: zero-length image")
            if label < 0 or label != int(label):
                raise RecordIOError(f"{where}: label {label} is not a class id (integer ≥ 0)")
            labels[key] = int(label)
        except RecordIOError as e:
            if not skip_bad:
                raise
            bad.append(BadRecord(key, reader.offset(key), str(e).removeprefix(where + ": ")))
    return labels, bad


def _cross_check(reader: RecordReader, flavour: Flavour, labels: dict[int, int]) -> list[str]:
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
        labels, bad = _scan_labels(reader, flavour, skip_bad)
        warnings = _cross_check(reader, flavour, labels)
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
            for key, label in labels.items():
                _, image = unpack(reader.read(key))
                path = f"{label}/{key}.{_image_suffix(image)}"
                writer.write({IMAGE: {"bytes": image, "path": path}, LABEL_ID: label, KEY: key})
        shards = len(list(Path(out_dir).glob("part-*.parquet")))
    for w in warnings:
        log.warning(w)
    if not labels and not bad:
        log.warning("%s holds no image records", rec)
    return ConvertReport(
        source=Path(rec),
        output=Path(out_dir),
        kind="rec → parquet",
        rows=len(labels),
        classes=classes,
        flavour=flavour.kind,
        bad=tuple(bad),
        warnings=tuple(warnings),
        seconds=time.perf_counter() - start,
        shards=shards,
    )
