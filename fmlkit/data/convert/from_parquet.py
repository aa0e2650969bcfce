"""`fmlkit convert` from a Parquet image dataset: to RecordIO (InsightFace's layout when it
fits) and to image folders."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from itertools import compress
from pathlib import Path, PurePosixPath

from fmlkit.columns import CLASS_ID, IMAGE, KEY
from fmlkit.data.convert.report import ConvertReport
from fmlkit.data.formats.images import image_suffix, peek_image
from fmlkit.data.formats.parquet import iter_batches, read_manifest
from fmlkit.data.formats.parquet_checks import open_shard
from fmlkit.data.formats.recordio import IRHeader, RecordWriter, pack
from fmlkit.data.split.select import selected_rows, selection_column
from fmlkit.errors import FormatError, InputError
from fmlkit.io import atomic_path, atomic_write_text, check_overwrite, committed_together
from fmlkit.progress import progress_counter, track


def dataset_labels(dataset: Path) -> tuple[list[int], list[str]]:
    """Every row's label id (one column read, checked as it is read) and the class names from
    the schema (``str(id)`` for each id up to the largest when it names none).

    Raises:
        FormatError: a label has no name among the schema's class names.
    """
    labels: list[int] = []
    for batch in iter_batches(dataset, columns=[CLASS_ID]):
        labels += batch.column(0).to_pylist()
    first = open_shard(dataset, read_manifest(dataset).shards[0]).schema_arrow
    names = _class_names(first.metadata or {})
    if names is None:
        return labels, [str(c) for c in range(max(labels, default=-1) + 1)]
    if max(labels, default=-1) >= len(names):
        raise FormatError(
            f"{dataset}: label {max(labels)} has no name among the schema's {len(names):,} class "
            "names; re-create the dataset with `fmlkit convert`"
        )
    return labels, names


def _class_names(metadata: Mapping[bytes, bytes]) -> list[str] | None:
    """The ClassLabel names in Hugging Face ``datasets`` schema metadata; None if absent."""
    try:
        features = json.loads(metadata.get(b"huggingface", b"{}"))["info"]["features"]
        names = features[CLASS_ID]["names"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    ok = isinstance(names, list) and all(isinstance(n, str) for n in names)
    return names if ok else None


def labels_to_convert(dataset: Path) -> tuple[list[int], list[str]]:
    """`dataset_labels`, refusing a dataset with no rows (a conversion would write nothing)."""
    labels, names = dataset_labels(dataset)
    if not labels:
        raise InputError(f"{dataset} holds no rows: nothing to convert")
    return labels, names


def _grouped(labels: list[int]) -> bool:
    """True when each label's rows are contiguous (identity records can name their range)."""
    seen: set[int] = set()
    previous = None
    for label in labels:
        if label != previous:
            if label in seen:
                return False
            seen.add(label)
            previous = label
    return True


def parquet_to_rec(
    dataset: str | os.PathLike[str],
    rec: str | os.PathLike[str],
    *,
    insightface: bool = True,
    shuffle: bool = False,
    seed: int = 0,
    fold: int | None = None,
    split: str | None = None,
    overwrite: bool = False,
) -> ConvertReport:
    """Write a Parquet image dataset as ``rec`` + ``.idx`` (+ ``property``), rows in order;
    with ``fold`` or ``split``, only the rows of that fold or split, their classes numbered
    0..C−1 in class id order (as training numbers the classes of the rows it keeps), so that
    ``property`` counts only the classes present.

    With ``insightface`` and each label's rows contiguous, the layout is InsightFace's flavour A
    (header record 0, images 1..N, one identity record per class, a ``property`` file
    ``classes,height,width``); otherwise flavour C (keys 0..N-1, scalar labels). ``shuffle``
    writes the rows in a random order fixed by ``seed`` (for sequential readers such as DALI;
    flavour C), with memory bounded by one shard (`fmlkit.data.convert.shuffle`).
    """
    start = time.perf_counter()
    source, rec_path = Path(dataset), Path(rec)
    check_overwrite(rec_path, overwrite)
    labels, names = labels_to_convert(source)
    rows = _rows(source)
    chosen = _chosen_rows(source, fold, split)
    if chosen is not None:
        labels = list(compress(labels, chosen))
        used = sorted(set(labels))
        renumber = {old: new for new, old in enumerate(used)}
        labels, names = [renumber[c] for c in labels], [names[c] for c in used]
        rows = ((renumber[c], data) for c, data in compress(rows, chosen))
    flavour_a = insightface and not shuffle and bool(labels) and _grouped(labels)
    n, k = len(labels), len(names)
    size = None
    if shuffle:
        from fmlkit.data.convert.shuffle import shuffled

        total = sum(int(s["bytes"]) for s in read_manifest(source).shards)
        rows = shuffled(rows, total_bytes=total, seed=seed, tmp_dir=rec_path.parent)
    idx, prop = rec_path.with_suffix(".idx"), rec_path.with_name("property")
    # .rec, .idx and property: renamed into place together, or none of them
    with committed_together(rec_path, idx, prop), RecordWriter(rec_path, idx) as writer:
        if flavour_a:
            writer.write(0, pack(IRHeader(2, (float(n + 1), float(n + 1 + k)))))
        shown = track(rows, total=n, desc="convert → rec", unit="img")
        for key, (label, data) in enumerate(shown, 1 if flavour_a else 0):
            size = size or _image_size(data)
            writer.write(key, pack(IRHeader(0, float(label), id=key), data))
        if flavour_a:
            _write_identities(writer, labels, k)
            height, width = size or (0, 0)
            atomic_write_text(prop, f"{k},{height},{width}\n")
    return ConvertReport(
        source=source,
        output=rec_path,
        kind="parquet → rec",
        rows=n,
        classes=k,
        flavour="A" if flavour_a else "C",
        warnings=()
        if flavour_a or not insightface or shuffle
        else ("rows of a label are not contiguous: no InsightFace header or identity records",),
        seconds=time.perf_counter() - start,
    )


def _chosen_rows(source: Path, fold: int | None, split: str | None) -> list[bool] | None:
    """Which rows of the dataset ``source`` are in ``fold`` or ``split``; None for all.

    Raises:
        OptionError: both given. SchemaError: no such column. InputError: no such row.
    """
    import pandas as pd

    selection = selection_column(fold, split)
    if selection is None:
        return None
    column, value = selection
    names = open_shard(source, read_manifest(source).shards[0]).schema_arrow.names
    values = None
    if column in names:
        batches = iter_batches(source, columns=[column])
        values = pd.Series([v for b in batches for v in b.column(0).to_pylist()], dtype=object)
    return selected_rows(values, column, value, what=str(source)).tolist()


def _rows(source: Path) -> Iterator[tuple[int, bytes]]:
    """(label, image bytes) of every row, in order."""
    for batch in iter_batches(source, columns=[IMAGE, CLASS_ID], require_images=True):
        for image, label in zip(*(c.to_pylist() for c in batch.columns), strict=True):
            yield label, image["bytes"]


def _write_identities(writer: RecordWriter, labels: list[int], classes: int) -> None:
    """Flavour A's identity records: class c's image keys [first, end), keyed N+1+c."""
    n, counts = len(labels), Counter(labels)
    firsts: dict[int, int] = {}
    for row, label in enumerate(labels, 1):
        firsts.setdefault(label, row)
    for c in range(classes):  # an unused class gets an empty range
        begin = firsts.get(c, n + 1)
        writer.write(n + 1 + c, pack(IRHeader(2, (float(begin), float(begin + counts[c])))))


def _image_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) of encoded image bytes, or None if Pillow cannot tell."""
    peek = peek_image(data)
    return None if peek is None else (peek[1], peek[0])


def parquet_to_folder(
    dataset: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, overwrite: bool = False
) -> ConvertReport:
    """Write every row's image bytes to ``out_dir/<label name>/<file>`` (the file from
    ``image.path``, else ``<key>.<ext>``), unchanged."""
    start = time.perf_counter()
    source = Path(dataset)
    labels, names = labels_to_convert(source)
    rows = 0
    with (
        atomic_path(out_dir, overwrite=overwrite) as tmp,
        progress_counter(total=len(labels), desc="convert → folder", unit="img") as advance,
    ):
        tmp.mkdir()
        for batch in iter_batches(source, columns=[IMAGE, CLASS_ID, KEY], require_images=True):
            for image, label, key in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                name = (
                    PurePosixPath(image["path"] or "").name
                    or f"{key}.{image_suffix(image['bytes'])}"
                )
                target = tmp / _safe_part(names[label]) / _safe_part(name)
                if target.exists():
                    target = target.with_name(f"{key}_{target.name}")
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(image["bytes"])
                rows += 1
            advance(batch.num_rows)
    return ConvertReport(
        source=source,
        output=Path(out_dir),
        kind="parquet → folder",
        rows=rows,
        classes=len(names),
        flavour="",
        seconds=time.perf_counter() - start,
    )


def _safe_part(name: str) -> str:
    """A single path component: no separators, not '.', '..' or empty."""
    cleaned = name.replace("/", "_").replace("\\", "_").replace("\0", "_")
    return cleaned if cleaned not in ("", ".", "..") else f"_{cleaned}_"
