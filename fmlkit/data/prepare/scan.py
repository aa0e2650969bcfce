"""`fmlkit prepare`: scan class folders into dataset_info (CSV or Parquet).

The walk (main process) lists and stats every entry in sorted order; files go out in chunks to
a process pool that reads each file once (`fmlkit.data.prepare.probe`); rows come back in order
and are streamed to the writer. At most a few chunks per worker are in flight, so memory stays
bounded on any dataset size. With ``cluster``, the chunks go to the workers of a Dask cluster
instead (`fmlkit.data.prepare.readers`); the table is the same.
With ``previous``, unchanged files (same name, size and mtime) are copied from the old table
without being opened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmlkit.columns import ERROR, LABEL, PHASH
from fmlkit.data.formats.hashing import parse_hash_names
from fmlkit.data.formats.table import (
    DatasetInfoWriter,
    InfoFormat,
    check_table_output,
    info_columns,
)
from fmlkit.data.prepare.previous import PreviousTable, damaged_note
from fmlkit.data.prepare.probe import Probe, warm_up
from fmlkit.data.prepare.readers import ClusterReader, FileTask, LocalReader, start_pool
from fmlkit.data.prepare.walk import (
    DEFAULT_EXTENSIONS,
    NOTICE_REASONS,
    FileEntry,
    Unlisted,
    check_dataset_dir,
    count_images,
    normalize_extensions,
    walk_dataset,
)
from fmlkit.errors import InputError, OptionError
from fmlkit.io import atomic_path
from fmlkit.progress import progress_counter, progress_enabled

if TYPE_CHECKING:
    from fmlkit.cluster import ClusterSession

log = logging.getLogger(__name__)

CHUNK_FILES = 64  # files per task sent to a local worker process
# files per task sent to a Dask cluster: its scheduler spends a few ms on each task, and 64
# files (30 ms of work) would make it the bottleneck (docs/scale.md, "Task sizes")
CLUSTER_CHUNK_FILES = 1024
MAX_WORKERS_PER_CPU = 4  # more workers than this per CPU are capped (reads may wait on I/O)
Row = tuple[Any, ...]


@dataclass(frozen=True)
class ScanReport:
    """What `scan_dataset` wrote and met.

    Attributes:
        output: the dataset_info file written.
        root: the dataset folder.
        images: rows written (files with an image extension).
        readable: rows without an error.
        labels: labels with at least one readable image.
        errors: rows by error reason.
        skipped: entries that are not rows, by reason (`fmlkit.data.prepare.walk.SKIP_REASONS`).
        notices: scanned entries worth a word, by reason
            (`fmlkit.data.prepare.walk.NOTICE_REASONS`).
        previous: the earlier table given for reuse, if any.
        reused: rows copied from ``previous`` without opening the file.
        damaged: rows of ``previous`` that matched an unchanged file but were not reused,
            being unlike what a scan writes, each with what is wrong (the file was read).
        read: files opened and decoded.
        workers: worker processes used (1: everything ran in this process; with a cluster,
            the workers connected when the scan started).
        seconds: wall-clock time of the whole scan.
    """

    output: Path
    root: Path
    images: int
    readable: int
    labels: int
    errors: Mapping[str, int]
    skipped: Mapping[str, tuple[str, ...]]
    notices: Mapping[str, tuple[str, ...]]
    previous: Path | None
    reused: int
    read: int
    workers: int
    seconds: float
    damaged: tuple[tuple[str, str], ...] = ()

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def summary(self, *, show: int = 5) -> str:
        """A few lines for the terminal; at most ``show`` example paths per skip reason."""
        errors = ", ".join(f"{k} {v:,}" for k, v in sorted(self.errors.items())) or "none"
        lines = [
            f"Scanned {self.root} in {self.seconds:.2f} s with {self.workers} worker(s): "
            f"{self.images:,} images ({self.images_per_second:,.0f} images/s), "
            f"{self.labels:,} labels",
            f"  readable {self.readable:,}; errors: {errors}",
        ]
        if self.previous is not None:
            lines.append(
                f"  read {self.read:,} files, reused {self.reused:,} rows from {self.previous}"
            )
            if self.damaged:
                lines.append(f"  Warning: {damaged_note(self.previous, self.damaged)}")
        for title, groups in (("skipped", self.skipped), ("notices", self.notices)):
            total = sum(len(v) for v in groups.values())
            if not total:
                continue
            counts = ", ".join(f"{k} {len(v):,}" for k, v in sorted(groups.items()))
            lines.append(f"  {title} {total:,}: {counts}")
            for reason, paths in sorted(groups.items()):
                more = f" … and {len(paths) - show:,} more" if len(paths) > show else ""
                lines.append(f"    {reason}: {', '.join(paths[:show])}{more}")
        lines.append(f"Wrote {self.output}")
        return "\n".join(lines)


def default_workers() -> int:
    """CPUs this process may run on (affinity and cgroup-aware where the OS tells)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def scan_dataset(
    root: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    hashes: Iterable[str] = (PHASH,),
    workers: int | None = None,
    previous: str | os.PathLike[str] | None = None,
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    chunk_files: int | None = None,
    cluster: str | ClusterSession | None = None,
) -> ScanReport:
    """Scan ``root`` (``<root>/<label>/…/<image>``) into a dataset_info table at ``output``.

    Args:
        root: the dataset folder.
        output: ``.csv`` or ``.parquet`` file to write (atomically: temp name, then rename).
        hashes: perceptual hashes to compute (phash, dhash, ahash, whash); empty for none.
            md5 is always computed.
        workers: processes reading files; None for every CPU this process may use.
        previous: an earlier dataset_info of the same folder; rows whose file_name, file_size
            and mtime_ns are unchanged (and had no error) are reused without reading the file.
        extensions: file extensions counted as images (case-insensitive).
        chunk_files: files per task sent to a worker: None for `CHUNK_FILES` (64) on local
            processes, `CLUSTER_CHUNK_FILES` (1,024) on a cluster. The table does not depend
            on it.
        cluster: a Dask cluster to read the files on instead of local processes
            (``workers`` is then unused): ``tcp://host:port`` (a running scheduler) or
            ``local:N`` (`fmlkit.cluster.parse_address`), or a session already open on one.
            ``root`` must be visible to every worker (a shared filesystem); this is checked
            first.

    Returns:
        A `ScanReport`.

    Raises:
        InputError: ``root`` is not a folder, ``output`` lies inside it (or is a folder), or
            the scan found no image file (nothing is written then).
        OptionError: ``workers`` or ``chunk_files`` below 1.
        SchemaError: ``previous`` cannot be read whole (`PreviousTable`).
        ClusterError: ``cluster`` cannot be reached, or a worker cannot read ``root``.
    """
    start = time.perf_counter()
    base = check_dataset_dir(root)
    out = Path(output)
    fmt = check_table_output(out)
    _check_output_outside(base, out)
    hash_names = parse_hash_names(hashes)
    exts = normalize_extensions(list(extensions))
    if chunk_files is None:
        chunk_files = CHUNK_FILES if cluster is None else CLUSTER_CHUNK_FILES
    if chunk_files < 1:
        raise OptionError(f"{{chunk_files}} must be at least 1, not {chunk_files}")
    if cluster is not None:
        from fmlkit.cluster import cluster_session

        connect = (
            cluster_session(cluster, what=f"prepare {base}")
            if isinstance(cluster, str)
            else contextlib.nullcontext(cluster)
        )
        with connect as session:
            session.check_shared(read=[base], write=[])
            n_workers = session.workers
            reader: LocalReader | ClusterReader = ClusterReader(
                str(base.absolute()), hash_names, session, f"prepare {base.name}"
            )
            old, tally = _write_table(
                base, out, fmt, hash_names, exts, previous, reader, chunk_files
            )
    else:
        n_workers = _worker_count(workers)
        warm_up(hash_names)  # imports once here; forked workers inherit them
        pool = start_pool(n_workers, hash_names) if n_workers > 1 else None
        try:
            reader = LocalReader(str(base), hash_names, pool, n_workers)
            old, tally = _write_table(
                base, out, fmt, hash_names, exts, previous, reader, chunk_files
            )
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    seconds = time.perf_counter() - start
    before = None if previous is None else Path(previous)
    report = tally.report(out, base, before, n_workers, seconds)
    if old is not None and old.damaged and before is not None:
        log.warning(damaged_note(before, old.damaged))
        report = dataclasses.replace(report, damaged=tuple(old.damaged))
    return report


def _write_table(
    base: Path,
    out: Path,
    fmt: InfoFormat,
    hash_names: Sequence[str],
    exts: frozenset[str],
    previous: str | os.PathLike[str] | None,
    reader: LocalReader | ClusterReader,
    chunk_files: int,
) -> tuple[PreviousTable | None, _Tally]:
    """Walk ``base`` and write its table to ``out`` (atomically), the files read by
    ``reader``; the previous table used (if any) and what the scan met. Only a local scan
    draws a bar here (a cluster's bar counts its chunks and files, `ClusterReader`)."""
    old = PreviousTable.load(previous, hash_names) if previous is not None else None
    tally = _Tally()
    entries = tally.files(walk_dataset(base, exts))
    with atomic_path(out) as tmp, DatasetInfoWriter(tmp, hash_names, fmt=fmt) as writer:
        rows = _scan_rows(entries, hash_names, reader, old, chunk_files, tally)
        local = isinstance(reader, LocalReader) and progress_enabled()
        total = count_images(base, exts) if local else None
        bar = progress_counter(total=total, desc=f"prepare {base.name}", unit="img")
        with bar if local else contextlib.nullcontext(_no_bar) as advance:
            for batch in rows:
                writer.write_rows(batch)
                advance(len(batch))
            if not writer.rows:
                raise _nothing_found(base, exts, tally)
    return old, tally


def _no_bar(n: int) -> None:
    """Nothing to advance: the cluster's own bar counts the work."""


def _check_output_outside(root: Path, output: Path) -> None:
    """Refuse an ``output`` inside the dataset folder ``root`` (links followed): a scan
    never writes into what it reads, and the next scan would meet the table."""
    if output.resolve().is_relative_to(root.resolve()):
        raise InputError(
            f"the output {output} lies inside the dataset folder {root}: fmlkit does not "
            "write into the folder it scans (the next scan would list the table). Write it "
            "beside the folder"
        )


def _worker_count(workers: int | None) -> int:
    """``workers``, or every CPU for None; more than `MAX_WORKERS_PER_CPU` per CPU are
    capped with a warning (each worker is a process)."""
    cpus = default_workers()
    if workers is None:
        return cpus
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise OptionError(f"{{workers}} must be an integer ≥ 1, not {workers!r}")
    cap = MAX_WORKERS_PER_CPU * cpus
    if workers > cap:
        log.warning("%d workers asked for, %d CPUs here: using %d", workers, cpus, cap)
        return cap
    return workers


def _nothing_found(root: Path, extensions: frozenset[str], tally: _Tally) -> InputError:
    """The error for a scan that met no file with an image extension, saying what it met."""
    met = {reason: len(paths) for reason, paths in tally.skipped.items()}
    seen = ", ".join(f"{k} {v:,}" for k, v in sorted(met.items())) or "nothing at all"
    return InputError(
        f"found no image file under {root} (extensions {', '.join(sorted(extensions))}); "
        f"the scan met: {seen}. Is it the right folder (DATASET_DIR/<label>/<image>), and "
        "are the images' extensions among those?"
    )


@dataclass
class _Tally:
    """Counts what the scan meets, for the report."""

    skipped: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    labels: set[str] = field(default_factory=set)
    images: int = 0
    reused: int = 0
    read: int = 0

    def files(self, walk: Iterable[FileEntry | Unlisted]) -> Iterator[FileEntry]:
        for item in walk:
            if isinstance(item, Unlisted):
                self.skipped[item.reason].append(item.rel)
            else:
                yield item

    def count(self, rows: Sequence[Row], columns: Sequence[str]) -> None:
        err, lab = columns.index(ERROR), columns.index(LABEL)
        for row in rows:
            if row[err]:
                self.errors[row[err]] += 1
            else:
                self.labels.add(row[lab])
        self.images += len(rows)

    def report(
        self, output: Path, root: Path, previous: Path | None, workers: int, seconds: float
    ) -> ScanReport:
        def pick(keep: bool) -> dict[str, tuple[str, ...]]:
            return {k: tuple(v) for k, v in self.skipped.items() if (k in NOTICE_REASONS) is keep}

        return ScanReport(
            output=output,
            root=root,
            images=self.images,
            readable=self.images - sum(self.errors.values()),
            labels=len(self.labels),
            errors=dict(self.errors),
            skipped=pick(False),
            notices=pick(True),
            previous=previous,
            reused=self.reused,
            read=self.read,
            workers=workers,
            seconds=seconds,
        )


def _scan_rows(
    entries: Iterator[FileEntry],
    hash_names: Sequence[str],
    reader: LocalReader | ClusterReader,
    previous: PreviousTable | None,
    chunk_files: int,
    tally: _Tally,
) -> Iterator[list[Row]]:
    """Rows in file_name order, one list per chunk of walked files."""
    columns = info_columns(hash_names)
    planned: deque[tuple[list[FileEntry], list[Row | None]]] = deque()

    def chunks() -> Iterator[list[FileTask]]:
        while chunk := list(itertools.islice(entries, chunk_files)):
            rows = [_known_row(e, previous, len(hash_names)) for e in chunk]
            pairs = list(zip(chunk, rows, strict=True))
            todo = [(e.rel, e.size, e.mtime_ns) for e, r in pairs if r is None]
            tally.read += len(todo)
            tally.reused += sum(1 for e, r in pairs if r and e.label)
            planned.append((chunk, rows))
            yield todo

    for probes in reader.read(chunks()):
        yield _finish(*planned.popleft(), probes, tally, columns)


def _known_row(entry: FileEntry, previous: PreviousTable | None, n_hashes: int) -> Row | None:
    """The row of a file that need not be read (no label, or unchanged since ``previous``)."""
    if not entry.label:  # directly under the root: listed, not read (it belongs to no class)
        empty = ("",) * n_hashes
        return (
            entry.rel,
            "",
            None,
            None,
            "",
            "",
            entry.size,
            entry.mtime_ns,
            "",
            *empty,
            "no_label",
        )
    return previous.row_for(entry) if previous is not None else None


def _finish(
    chunk: list[FileEntry],
    rows: list[Row | None],
    probes: list[Probe],
    tally: _Tally,
    columns: Sequence[str],
) -> list[Row]:
    found = iter(probes)
    out = [
        r if r is not None else _probe_row(e, next(found)) for e, r in zip(chunk, rows, strict=True)
    ]
    tally.count(out, columns)
    return out


def _probe_row(entry: FileEntry, p: Probe) -> Row:
    return (
        entry.rel,
        entry.label,
        p.width,
        p.height,
        p.mode,
        p.format,
        p.file_size,
        p.mtime_ns,
        p.md5,
        *p.hashes,
        p.error,
    )
