"""`fmlkit convert` from image files: a folder tree or a dataset_info table, and InsightFace
``.bin`` verification sets, to Parquet image datasets (`fmlkit.data.formats.parquet`)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fmlkit.columns import (
    CLASS_ID,
    ERROR,
    FILE_NAME,
    IMAGE,
    INTEGER_COLUMNS,
    KEY,
    LABEL,
    LABEL_NAME,
)
from fmlkit.data.convert.report import BadRecord, ConvertReport, printable, shard_count
from fmlkit.data.convert.table_cluster import plain, table_to_parquet_on_cluster
from fmlkit.data.formats.images import image_suffix, peek_image
from fmlkit.data.formats.parquet import ROW_GROUP_ROWS, SHARD_BYTES, ParquetDatasetWriter
from fmlkit.data.formats.parquet_layout import pairs_path
from fmlkit.data.formats.table import read_table
from fmlkit.data.split.select import selected_rows, selection_column
from fmlkit.errors import FormatError, InputError
from fmlkit.io import atomic_path, check_overwrite, committed_together
from fmlkit.progress import track

if TYPE_CHECKING:
    import pandas as pd

    from fmlkit.cluster import ClusterSession

# what a folder scan passes over without a word: hidden files, files of other kinds
QUIET_SKIPS = frozenset({"hidden", "not_image_extension"})


def folder_to_parquet(
    root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    workers: int | None = None,
    skip_bad: bool = False,
    shard_bytes: int = SHARD_BYTES,
    overwrite: bool = False,
    cluster: str | None = None,
) -> ConvertReport:
    """Scan ``root/<label>/…/<image>`` (as `fmlkit prepare` does) and convert the table.

    The scan (one decode per file) runs on ``workers`` local processes, and the shards are
    written by this process; with ``cluster`` (``tcp://host:port`` or ``local:N``), both run
    on a Dask cluster (`scan_dataset`, `table_to_parquet`), with the same result.

    Entries the scan passes over (FIFOs, symlinks leaving the folder, names that are not
    UTF-8, …; not hidden files or other extensions) are named in the report's warnings.

    Raises:
        InputError: the folder holds no image files (`scan_dataset`), or a file is bad and
            not ``skip_bad``, or every one is.
        ClusterError: ``cluster`` cannot be reached, or a worker does not see ``root``.
    """
    from fmlkit.data.prepare.scan import scan_dataset

    check_overwrite(Path(out_dir), overwrite)  # before a scan that may take long
    with tempfile.TemporaryDirectory() as tmp, _connect(cluster, f"convert {root}") as session:
        info = Path(tmp) / "dataset_info.parquet"
        scan = scan_dataset(root, info, workers=workers, cluster=session)
        warnings = tuple(
            f"skipped {len(paths):,} {reason} entr{'y' if len(paths) == 1 else 'ies'}: "
            + ", ".join(printable(p) for p in paths[:3])
            + (" …" if len(paths) > 3 else "")
            for reason, paths in sorted(scan.skipped.items())
            if reason not in QUIET_SKIPS
        )
        report = _table_to_parquet(
            read_table(info, required=[FILE_NAME, LABEL], what="dataset_info"),
            out_dir,
            root=Path(root),
            source={"kind": "folder", "path": str(Path(root).resolve())},
            skip_bad=skip_bad,
            shard_bytes=shard_bytes,
            row_group_rows=ROW_GROUP_ROWS,
            overwrite=overwrite,
            session=session,
        )
    return dataclasses.replace(
        report, source=Path(root), kind="folder → parquet", warnings=report.warnings + warnings
    )


def table_to_parquet(
    info: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str],
    skip_bad: bool = False,
    shard_bytes: int = SHARD_BYTES,
    row_group_rows: int = ROW_GROUP_ROWS,
    fold: int | None = None,
    split: str | None = None,
    overwrite: bool = False,
    cluster: str | None = None,
) -> ConvertReport:
    """Convert the rows of a dataset_info table, reading each ``root/file_name``; with
    ``fold`` or ``split``, only the rows of that fold or split (`selected_rows`).

    With ``cluster`` (``tcp://host:port`` or ``local:N``), the files are read and the shards
    written by the workers of a Dask cluster (`fmlkit.data.convert.table_cluster`): the same
    dataset, byte for byte; ``root`` and the output's folder must be on a filesystem every
    worker sees (checked first).

    ``label`` (a name) becomes ``label_name``, and ``label`` the class id in sorted name order;
    every other column is carried (``fold``, ``split``, sizes, hashes, …); ``key`` is the row
    number and ``image.path`` the file name. Rows with an ``error``, missing or empty files are
    an error, or with ``skip_bad`` skipped and listed. A table with no row left to convert is
    an `InputError`.
    """
    df = read_table(info, required=[FILE_NAME, LABEL], what="dataset_info")
    selection = selection_column(fold, split)
    if selection is not None:
        column, value = selection
        values = df.get(column)
        df = df[selected_rows(values, column, value, what=str(info))].reset_index(drop=True)
    root_dir = Path(root)
    source = {"kind": "dataset_info", "path": str(Path(info).resolve()), "root": str(root_dir)}
    with _connect(cluster, f"convert {info}") as session:
        report = _table_to_parquet(
            df,
            out_dir,
            root=root_dir,
            source=source,
            skip_bad=skip_bad,
            shard_bytes=shard_bytes,
            row_group_rows=row_group_rows,
            overwrite=overwrite,
            session=session,
        )
    return dataclasses.replace(report, source=Path(info))


def _connect(address: str | None, what: str) -> AbstractContextManager[ClusterSession | None]:
    """A session on the cluster at ``address`` (`fmlkit.cluster.cluster_session`), or None."""
    if address is None:
        return contextlib.nullcontext(None)
    from fmlkit.cluster import cluster_session

    return cluster_session(address, what=what)


def _table_to_parquet(
    df: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    root: Path,
    source: dict[str, str],
    skip_bad: bool,
    shard_bytes: int,
    row_group_rows: int,
    overwrite: bool,
    session: ClusterSession | None = None,
) -> ConvertReport:
    """`table_to_parquet` of a table already read, in this process or on the cluster of
    ``session``; ``source`` goes into the manifest."""
    start = time.perf_counter()
    usable = df[df[ERROR] == ""] if skip_bad and ERROR in df else df
    names = sorted(set(usable[LABEL]))  # a class whose every row is skipped is no class
    class_id = {name: i for i, name in enumerate(names)}
    carried = [c for c in df.columns if c != LABEL]
    extra = {c: pa.int64() if c in INTEGER_COLUMNS else pa.string() for c in carried}
    base = root
    bad: list[BadRecord]
    with ParquetDatasetWriter(
        out_dir,
        class_names=names,
        extra=extra,
        with_label_name=True,
        source=source,
        shard_bytes=shard_bytes,
        row_group_rows=row_group_rows,
        overwrite=overwrite,
    ) as writer:
        if session is None:
            bad = _write_rows(df, writer, root=base, class_id=class_id, carried=carried,
                              skip_bad=skip_bad)  # fmt: skip
        else:
            bad = table_to_parquet_on_cluster(
                session, df, writer, root=base, class_id=class_id, carried=carried,
                skip_bad=skip_bad,
            )  # fmt: skip
        if len(bad) == len(df):  # every row skipped, or none
            raise InputError(
                f"no row of the table could be converted ({len(bad):,} bad ones skipped, "
                f"first: {printable(bad[0].where)}: {bad[0].reason})"
                if bad
                else "the table has no rows: nothing to convert"
            )
    return ConvertReport(
        source=root,
        output=Path(out_dir),
        kind="dataset_info → parquet",
        rows=writer.rows,
        classes=len(names),
        flavour="",
        bad=tuple(bad),
        seconds=time.perf_counter() - start,
        shards=shard_count(writer),
    )


def _write_rows(
    df: pd.DataFrame,
    writer: ParquetDatasetWriter,
    *,
    root: Path,
    class_id: dict[str, int],
    carried: list[str],
    skip_bad: bool,
) -> list[BadRecord]:
    """Write the rows of ``df``, reading each file in this process; the rows skipped."""
    bad: list[BadRecord] = []
    records = track(df.to_dict("records"), total=len(df), desc="convert", unit="img")
    for key, row in enumerate(records):
        data, reason = _read_image(root, row)
        if reason:
            if not skip_bad:
                raise InputError(
                    f"row {key} ({printable(row[FILE_NAME])}): {reason}; --skip-bad skips it"
                )
            bad.append(BadRecord(key, row[FILE_NAME], reason))
            continue
        values: dict[str, Any] = {c: plain(row[c]) for c in carried}
        values |= {
            IMAGE: {"bytes": data, "path": row[FILE_NAME]},
            CLASS_ID: class_id[row[LABEL]],
            LABEL_NAME: row[LABEL],
            KEY: key,
        }
        writer.write(values)
    return bad


def _read_image(root: Path, row: dict[str, Any]) -> tuple[bytes, str]:
    if row.get(ERROR):
        return b"", f"error:{row[ERROR]}"
    try:
        data = (root / row[FILE_NAME]).read_bytes()
    except OSError as e:
        return b"", f"unreadable: {e.strerror or e}"
    return data, "" if data else "empty"


def bin_to_parquet(
    bin_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> ConvertReport:
    """An InsightFace ``.bin`` to a Parquet dataset of its images (``<name>/<index>.<ext>``,
    one class ``unlabelled``: the file has pairs, not identities) plus ``OUT.pairs.csv`` beside
    the dataset directory (`fmlkit.data.formats.parquet_layout.pairs_path`: inside, Parquet
    readers would take it for data): ``1,a,b`` / ``0,a,b`` lines naming the images by
    ``image.path``. Both appear under their names together, when complete.

    Raises:
        FormatError: the file is not a safe, well-formed ``.bin`` (`load_bin`), or an image's
            bytes are not an image Pillow can identify (its header is read, not its pixels).
        InputError: the pair list's path is taken (without ``overwrite``; by anything but a
            file, with it).
    """
    import numpy as np

    from fmlkit.data.formats.insightface_bin import load_bin
    from fmlkit.data.formats.pair_lists import format_csv_pairs

    start = time.perf_counter()
    data = load_bin(bin_path)
    for index, image in enumerate(data.images):
        if peek_image(image) is None:
            raise FormatError(
                f"{bin_path}: image {index} (pair {index // 2}) is not an image Pillow can read "
                f"({len(image):,} bytes starting {image[:8]!r}); expected JPEG/PNG bytes"
            )
    stem = Path(bin_path).stem
    paths = [f"{stem}/{i:05d}.{image_suffix(img)}" for i, img in enumerate(data.images)]
    source = {"kind": "insightface_bin", "path": str(Path(bin_path).resolve())}
    pairs = pairs_path(out_dir)
    check_overwrite(pairs, overwrite)
    if pairs.exists() and (pairs.is_symlink() or not pairs.is_file()):
        raise InputError(f"{pairs} exists and is not a file; --overwrite replaces only a "
                         "previous pair list: remove it yourself if it may go")  # fmt: skip
    same = np.asarray(data.issame, dtype=np.int64)
    files = np.asarray(paths, dtype=object)
    with committed_together(out_dir, pairs):
        with ParquetDatasetWriter(
            out_dir, class_names=["unlabelled"], source=source, overwrite=overwrite
        ) as writer:
            images = track(data.images, total=len(paths), desc="convert", unit="img")
            for key, (image, path) in enumerate(zip(images, paths, strict=True)):
                writer.write({IMAGE: {"bytes": image, "path": path}, CLASS_ID: 0, KEY: key})
        with atomic_path(pairs) as tmp:
            tmp.write_text(format_csv_pairs(same, files[0::2], files[1::2]), encoding="utf-8")
    return ConvertReport(
        source=Path(bin_path),
        output=Path(out_dir),
        kind=".bin → parquet",
        rows=len(paths),
        classes=1,
        flavour="",
        seconds=time.perf_counter() - start,
        shards=shard_count(writer),
    )
