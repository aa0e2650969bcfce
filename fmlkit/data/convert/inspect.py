"""`fmlkit inspect`: what a .rec, a Parquet image dataset or a dataset_info holds.

Counts, classes, label range, the RecordIO flavour, a sample of image sizes (decoded headers of
up to ``sample`` random images), and warnings: identity records that disagree with the images'
labels, datasets with no images, rows with errors. What cannot be read (a damaged record or
shard, a manifest that disagrees with its shards) is an error, as for `fmlkit convert`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmlkit.errors import InputError


@dataclass(frozen=True)
class InspectReport:
    """Facts about one input, in the order they are printed, and warnings."""

    path: Path
    kind: str
    facts: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        width = max((len(k) for k, _ in self.facts), default=0)
        lines = [f"{self.path}: {self.kind}"]
        lines += [f"  {k:<{width}}  {v}" for k, v in self.facts]
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def inspect_path(
    path: str | os.PathLike[str], *, sample: int = 200, seed: int = 0
) -> InspectReport:
    """Describe ``path``: a ``.rec``, a Parquet dataset directory or a dataset_info table.

    Raises:
        InputError: the path is missing or none of these.
    """
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".rec":
        return _inspect_rec(p, sample, seed)
    if p.is_dir():
        return _inspect_parquet(p, sample, seed)
    if p.is_file() and p.suffix.lower() in (".csv", ".parquet", ".pq"):
        return _inspect_table(p)
    raise InputError(
        f"{p} is not a .rec, a Parquet dataset directory or a dataset_info table"
        + ("" if p.exists() else " (it does not exist)")
    )


def _label_facts(counts: np.ndarray, classes: int) -> list[tuple[str, str]]:
    """Facts about labels from the number of images of each class id."""
    present = np.flatnonzero(counts)
    per_class = counts[present] if len(present) else np.zeros(1, dtype=np.int64)
    low, high = (int(present[0]), int(present[-1])) if len(present) else (0, -1)
    return [
        ("classes", f"{classes:,} ({len(present):,} with images)"),
        ("label range", f"{low}..{high}"),
        ("images per class", _spread(per_class)),
    ]


def _spread(values: np.ndarray) -> str:
    return f"min {values.min():,}, median {int(np.median(values)):,}, max {values.max():,}"


def _size_facts(images: list[bytes]) -> list[tuple[str, str]]:
    from fmlkit.data.formats.images import peek_image

    sizes: Counter[str] = Counter()
    for data in images:
        peek = peek_image(data)
        sizes["undecodable" if peek is None else f"{peek[0]}x{peek[1]} {peek[2]}"] += 1
    common = ", ".join(f"{k} ({v})" for k, v in sizes.most_common(4))
    return [("image sizes", f"{common or 'none'} in a sample of {len(images):,}")]


def _inspect_rec(path: Path, sample: int, seed: int) -> InspectReport:
    from fmlkit.data.convert.rec_scan import summarise
    from fmlkit.data.formats.recordio import unpack
    from fmlkit.data.formats.recordio_reader import RecordReader

    with RecordReader(path) as reader:
        summary = summarise(reader, skip_bad=False)
        warnings = list(summary.warnings)
        images_at = np.flatnonzero(summary.flavour.image_mask(reader.key_array))
        rng = np.random.default_rng(seed)
        picked = np.sort(rng.choice(images_at, min(sample, len(images_at)), replace=False))
        images = [unpack(reader.read(int(reader.key_array[i])))[1] for i in picked.tolist()]
        facts = [
            ("records", f"{len(reader):,} ({summary.rows:,} images)"),
            ("index", str(reader.idx_path) if reader.idx_path else "none (scanned)"),
            ("flavour", summary.flavour.kind),
            ("bytes", f"{reader.size:,}"),
        ]
    if not summary.rows:
        warnings.append("no image records: `fmlkit convert` refuses to convert it")
    facts += _label_facts(summary.counts, summary.classes) + _size_facts(images)
    return InspectReport(path, "MXNet RecordIO", tuple(facts), tuple(warnings))


def _inspect_parquet(path: Path, sample: int, seed: int) -> InspectReport:
    from fmlkit.columns import IMAGE
    from fmlkit.data.convert.from_parquet import dataset_labels
    from fmlkit.data.formats.parquet import read_manifest, take_rows

    manifest = read_manifest(path)
    labels, names = dataset_labels(path)
    rng = np.random.default_rng(seed)
    wanted = rng.choice(len(labels), min(sample, len(labels)), replace=False).tolist()
    images = [
        (image or {}).get("bytes") or b""  # a null image is undecodable
        for part in take_rows(path, wanted, [IMAGE])
        for image in part[IMAGE].to_pylist()
    ]
    facts = [
        ("rows", f"{manifest.rows:,}"),
        (
            "shards",
            f"{len(manifest.shards)} ({sum(int(s['bytes']) for s in manifest.shards):,} bytes)",
        ),
        ("source", ", ".join(f"{k} {v}" for k, v in manifest.source.items()) or "-"),
    ]
    warnings = [] if labels else ["no rows: `fmlkit convert` refuses to convert it"]
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(names))
    facts += _label_facts(counts, len(names)) + _size_facts(images)
    return InspectReport(path, "Parquet image dataset", tuple(facts), tuple(warnings))


def _inspect_table(path: Path) -> InspectReport:
    from fmlkit.columns import ERROR, FOLD, HEIGHT, LABEL, SPLIT, WIDTH
    from fmlkit.data.formats.table import read_table

    df = read_table(path, required=[LABEL], what="dataset_info")
    usable = df[df[ERROR] == ""] if ERROR in df else df
    counts = usable[LABEL].value_counts()
    facts = [
        ("rows", f"{len(df):,} ({len(usable):,} without an error)"),
        ("labels", f"{df[LABEL].nunique():,}"),
        ("images per label", _spread(counts.to_numpy() if len(counts) else np.zeros(1))),
    ]
    if WIDTH in df and HEIGHT in df and len(usable):
        sides = usable[[WIDTH, HEIGHT]].astype("float64")
        facts.append(("sizes", f"{int(sides.min().min())}..{int(sides.max().max())} px per side"))
    for column in (FOLD, SPLIT):
        if column in df:
            values = df[column].astype(str).value_counts().sort_index()
            facts.append((column, ", ".join(f"{k or '(none)'}: {v:,}" for k, v in values.items())))
    warnings = []
    if ERROR in df and (df[ERROR] != "").any():
        errors = Counter(df.loc[df[ERROR] != "", ERROR])
        warnings.append(f"{sum(errors.values()):,} rows with an error: {dict(errors)}")
    return InspectReport(path, "dataset_info", tuple(facts), tuple(warnings))
