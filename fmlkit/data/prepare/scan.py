"""`fmlkit prepare`: scan class folders into dataset_info (CSV or Parquet).

The walk (main process) lists and stats every entry in sorted order; files go out in chunks to
a process pool that reads each file once (`fmlkit.data.prepare.probe`); rows come back in order
and are streamed to the writer. At most a few chunks per worker are in flight, so memory stays
bounded on any dataset size. With ``previous``, unchanged files (same name, size and mtime) are
copied from the old table without being opened.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmlkit.columns import ERROR, FILE_NAME, FILE_SIZE, LABEL, MTIME_NS, PHASH
from fmlkit.data.formats.hashing import parse_hash_names
from fmlkit.data.formats.table import (
    DatasetInfoWriter,
    info_columns,
    info_format,
    read_dataset_info,
)
from fmlkit.data.prepare.probe import Probe, probe_files, warm_up
from fmlkit.data.prepare.walk import (
    DEFAULT_EXTENSIONS,
    NOTICE_REASONS,
    FileEntry,
    Unlisted,
    check_dataset_dir,
    normalize_extensions,
    walk_dataset,
)
from fmlkit.errors import FmlkitError
from fmlkit.io import atomic_path
from fmlkit.progress import progress_counter

log = logging.getLogger(__name__)

CHUNK_FILES = 64  # files per task sent to a worker
CHUNKS_PER_WORKER = 4  # tasks in flight per worker: keeps workers busy, memory bounded
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
        read: files opened and decoded.
        workers: worker processes used (1: everything ran in this process).
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
    chunk_files: int = CHUNK_FILES,
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
        chunk_files: files per task sent to a worker.

    Returns:
        A `ScanReport`.
    """
    start = time.perf_counter()
    base = check_dataset_dir(root)
    out = Path(output)
    fmt = info_format(out)
    hash_names = parse_hash_names(hashes)
    exts = normalize_extensions(list(extensions))
    n_workers = default_workers() if workers is None else workers
    if n_workers < 1 or chunk_files < 1:
        raise FmlkitError("workers and chunk_files must be at least 1")

    warm_up(hash_names)  # imports once here; forked workers inherit them
    pool = _start_pool(n_workers, hash_names) if n_workers > 1 else None
    try:
        old = _Previous.load(previous, hash_names) if previous is not None else None
        tally = _Tally()
        entries = tally.files(walk_dataset(base, exts))
        with atomic_path(out) as tmp, DatasetInfoWriter(tmp, hash_names, fmt=fmt) as writer:
            rows = _scan_rows(
                str(base), entries, hash_names, pool, n_workers, old, chunk_files, tally
            )
            with progress_counter(desc=f"prepare {base.name}", unit="img") as advance:
                for batch in rows:
                    writer.write_rows(batch)
                    advance(len(batch))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    seconds = time.perf_counter() - start
    return tally.report(out, base, None if previous is None else Path(previous), n_workers, seconds)


def _start_pool(workers: int, hash_names: Sequence[str]) -> ProcessPoolExecutor:
    """Start the workers now, before this process has helper threads (safe ``fork``)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=warm_up, initargs=(tuple(hash_names),)
    )
    pool.submit(int).result()  # launches every worker (fork: all at once, before any thread)
    return pool


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


class _Previous:
    """An earlier dataset_info, matched against the (sorted) walk by a merge join."""

    def __init__(self, columns: dict[str, list[Any]], n: int) -> None:
        self._cols = columns
        self._n = n
        self._at = 0

    @classmethod
    def load(cls, path: str | os.PathLike[str], hash_names: Sequence[str]) -> _Previous | None:
        df = read_dataset_info(path)
        wanted = info_columns(hash_names)
        missing = [c for c in wanted if c not in df.columns]
        if missing:
            log.warning(
                "%s has no %s column(s): every file is read again", path, ", ".join(missing)
            )
            return None
        df = df.sort_values(FILE_NAME, kind="stable", ignore_index=True)
        cols = {c: df[c].astype(object).where(df[c].notna(), None).tolist() for c in wanted}
        return cls(cols, len(df))

    def row_for(self, entry: FileEntry) -> Row | None:
        """The old row of ``entry`` if the file is unchanged and was readable, else None."""
        names = self._cols[FILE_NAME]
        while self._at < self._n and names[self._at] < entry.rel:
            self._at += 1
        i = self._at
        if (
            i < self._n
            and names[i] == entry.rel
            and self._cols[FILE_SIZE][i] == entry.size
            and self._cols[MTIME_NS][i] == entry.mtime_ns
            and not self._cols[ERROR][i]  # errors are re-checked: `unreadable` can go away
        ):
            return tuple(col[i] for col in self._cols.values())
        return None


def _scan_rows(
    root: str,
    entries: Iterator[FileEntry],
    hash_names: Sequence[str],
    pool: ProcessPoolExecutor | None,
    workers: int,
    previous: _Previous | None,
    chunk_files: int,
    tally: _Tally,
) -> Iterator[list[Row]]:
    """Rows in file_name order, one list per chunk of walked files."""
    columns = info_columns(hash_names)
    pending: deque[tuple[list[FileEntry], list[Row | None], Future[list[Probe]] | None]] = deque()
    while chunk := list(itertools.islice(entries, chunk_files)):
        rows = [_known_row(e, previous, len(hash_names)) for e in chunk]
        todo = [(e.rel, e.size, e.mtime_ns) for e, r in zip(chunk, rows, strict=True) if r is None]
        tally.read += len(todo)
        tally.reused += sum(1 for e, r in zip(chunk, rows, strict=True) if r and e.label)
        future: Future[list[Probe]] | None = None
        if todo and pool is not None:
            future = pool.submit(probe_files, root, todo, hash_names)
        elif todo:
            future = Future()
            future.set_result(probe_files(root, todo, hash_names))
        pending.append((chunk, rows, future))
        if len(pending) >= CHUNKS_PER_WORKER * workers:
            yield _finish(*pending.popleft(), tally, columns)
    while pending:
        yield _finish(*pending.popleft(), tally, columns)


def _known_row(entry: FileEntry, previous: _Previous | None, n_hashes: int) -> Row | None:
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
    future: Future[list[Probe]] | None,
    tally: _Tally,
    columns: Sequence[str],
) -> list[Row]:
    try:
        probes = iter(future.result() if future is not None else ())
    except BrokenProcessPool as e:
        raise FmlkitError(
            f"a worker process died while reading {chunk[0].rel} … {chunk[-1].rel} "
            "(a decoder crash or out of memory); rerun with --workers 1 to find the file"
        ) from e
    out = [
        r if r is not None else _probe_row(e, next(probes))
        for e, r in zip(chunk, rows, strict=True)
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
