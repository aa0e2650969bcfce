"""`fmlkit inspect`: what a .rec, a Parquet image dataset or a dataset_info holds.

Counts, classes, label range, the RecordIO flavour, a sample of image sizes (decoded headers of
up to ``sample`` random images), and warnings: identity records that disagree with the images'
labels, labels past float32's exact range, classes with no images, rows with errors.
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


def _label_facts(labels: list[int], classes: int) -> list[tuple[str, str]]:
    counts = Counter(labels)
    per_class = np.array(list(counts.values()) or [0])
    low, high = (min(counts), max(counts)) if counts else (0, -1)
    return [
        ("classes", f"{classes:,} ({len(counts):,} with images)"),
        ("label range", f"{low}..{high}"),
        ("images per class", _spread(per_class)),
    ]


def _spread(values: np.ndarray) -> str:
    return f"min {values.min():,}, median {int(np.median(values)):,}, max {values.max():,}"


def _size_facts(images: list[bytes]) -> list[tuple[str, str]]:
    from fmlkit.data.probe import peek_image

    sizes: Counter[str] = Counter()
    for data in images:
        peek = peek_image(data)
        sizes["undecodable" if peek is None else f"{peek[0]}x{peek[1]} {peek[2]}"] += 1
    common = ", ".join(f"{k} ({v})" for k, v in sizes.most_common(4))
    return [("image sizes", f"{common or 'none'} in a sample of {len(images):,}")]


def _inspect_rec(path: Path, sample: int, seed: int) -> InspectReport:
    from fmlkit.data.convert import FLOAT32_EXACT, cross_check, scan_labels
    from fmlkit.data.recordio import RecordReader, detect_flavour, unpack

    with RecordReader(path) as reader:
        flavour = detect_flavour(reader)
        labels, _ = scan_labels(reader, flavour, skip_bad=False)
        warnings = cross_check(reader, flavour, labels)
        keys = list(labels)
        rng = np.random.default_rng(seed)
        picked = rng.choice(len(keys), min(sample, len(keys)), replace=False).tolist()
        images = [unpack(reader.read(keys[i]))[1] for i in sorted(picked)]
        facts = [
            ("records", f"{len(reader):,} ({len(labels):,} images)"),
            ("index", str(reader.idx_path) if reader.idx_path else "none (scanned)"),
            ("flavour", flavour.kind),
            ("bytes", f"{reader.size:,}"),
        ]
    classes = max(labels.values(), default=-1) + 1
    if classes > FLOAT32_EXACT:
        warnings.append("class ids exceed 2**24: float32 labels are inexact")
    facts += _label_facts(list(labels.values()), classes) + _size_facts(images)
    return InspectReport(path, "MXNet RecordIO", tuple(facts), tuple(warnings))


def _inspect_parquet(path: Path, sample: int, seed: int) -> InspectReport:
    from fmlkit.data.convert_parquet import dataset_labels
    from fmlkit.data.parquet_dataset import IMAGE, read_manifest, take_rows

    manifest = read_manifest(path)
    labels, names = dataset_labels(path)
    rng = np.random.default_rng(seed)
    wanted = rng.choice(len(labels), min(sample, len(labels)), replace=False).tolist()
    images = [
        image["bytes"]
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
    warnings = (
        []
        if len(labels) == manifest.rows
        else [f"the manifest says {manifest.rows:,} rows, the shards hold {len(labels):,}"]
    )
    facts += _label_facts(labels, len(names)) + _size_facts(images)
    return InspectReport(path, "Parquet image dataset", tuple(facts), tuple(warnings))


def _inspect_table(path: Path) -> InspectReport:
    from fmlkit.columns import ERROR, FOLD, HEIGHT, LABEL, SPLIT, WIDTH
    from fmlkit.data.info import read_table

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
