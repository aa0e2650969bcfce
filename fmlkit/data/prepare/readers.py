"""Who reads the files of `fmlkit prepare`: local worker processes or a Dask cluster.

Both take the scan's chunks of files (each a list of (path relative to the root, size,
mtime_ns); empty when every file of the chunk is known already) and give back one list of
`Probe` per chunk, in chunk order, pulling chunks from the walk only a bounded number ahead.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fmlkit.data.prepare.probe import Probe, probe_files, warm_up
from fmlkit.errors import FmlkitError
from fmlkit.parallel import worker_pool

if TYPE_CHECKING:
    from fmlkit.cluster import ClusterSession

FileTask = tuple[str, int, int]  # path relative to the root, size, mtime_ns (from the walk)
CHUNKS_PER_WORKER = 4  # tasks in flight per local worker: keeps workers busy, memory bounded
CLUSTER_WAVE_CHUNKS = 4096  # chunks given to a Dask cluster at once: bounds the driver's memory


class LocalReader:
    """Chunks read in this process (``pool`` None) or by a local process pool of ``workers``."""

    def __init__(
        self, root: str, hash_names: Sequence[str], pool: ProcessPoolExecutor | None, workers: int
    ) -> None:
        self.root, self.hash_names = root, tuple(hash_names)
        self.pool, self.workers = pool, workers

    def read(self, chunks: Iterator[list[FileTask]]) -> Iterator[list[Probe]]:
        """One list of probes per chunk, in order; at most `CHUNKS_PER_WORKER` chunks per
        worker in flight."""
        pending: deque[tuple[list[FileTask], Future[list[Probe]]]] = deque()
        for todo in chunks:
            future: Future[list[Probe]] = Future()
            if not todo:
                future.set_result([])
            elif self.pool is not None:
                future = self.pool.submit(probe_files, self.root, todo, self.hash_names)
            else:
                future.set_result(probe_files(self.root, todo, self.hash_names))
            pending.append((todo, future))
            if len(pending) >= CHUNKS_PER_WORKER * self.workers:
                yield _result(*pending.popleft())
        while pending:
            yield _result(*pending.popleft())


def _result(todo: list[FileTask], future: Future[list[Probe]]) -> list[Probe]:
    try:
        return future.result()
    except BrokenProcessPool as e:
        raise FmlkitError(
            f"a worker process died while reading {todo[0][0]} … {todo[-1][0]} "
            "(a decoder crash or out of memory); rerun with --workers 1 to find the file"
        ) from e


def start_pool(workers: int, hash_names: Sequence[str]) -> ProcessPoolExecutor:
    """Start the workers now, before this process has helper threads (safe ``fork``); they
    end if this process dies (`fmlkit.parallel.worker_pool`)."""
    pool = worker_pool(workers, initializer=warm_up, initargs=(tuple(hash_names),))
    pool.submit(int).result()  # launches every worker (fork: all at once, before any thread)
    return pool


class ClusterReader:
    """Chunks read by the workers of a Dask cluster (`fmlkit.cluster.ClusterSession.map`), a
    wave of `CLUSTER_WAVE_CHUNKS` at a time; the progress bar counts chunks and files."""

    def __init__(
        self, root: str, hash_names: Sequence[str], session: ClusterSession, desc: str
    ) -> None:
        self.root, self.hash_names = root, tuple(hash_names)
        self.session, self.desc = session, desc

    def read(self, chunks: Iterator[list[FileTask]]) -> Iterator[list[Probe]]:
        """One list of probes per chunk, in order."""
        while wave := list(itertools.islice(chunks, CLUSTER_WAVE_CHUNKS)):
            work = [ProbeChunk(self.root, todo, self.hash_names) for todo in wave if todo]
            done = iter(
                self.session.map(
                    probe_chunk,
                    work,
                    sizes=[len(chunk.files) for chunk in work],
                    desc=self.desc,
                    unit="img",
                )
                if work
                else []
            )
            for todo in wave:
                yield next(done) if todo else []


_warm: set[tuple[str, ...]] = set()  # hash lists this process has warmed up for


@dataclass(frozen=True)
class ProbeChunk:
    """One task of a cluster scan: ``files`` under ``root`` (an absolute path)."""

    root: str
    files: list[FileTask]
    hash_names: tuple[str, ...]

    def __repr__(self) -> str:  # what an error about the task shows
        return f"{len(self.files)} files {self.files[0][0]} … {self.files[-1][0]} in {self.root}"


def probe_chunk(chunk: ProbeChunk) -> list[Probe]:
    """`probe_files` of one chunk, on a cluster worker. The first call in a worker process
    warms it up (`warm_up`: the fast pHash check, as a local pool's workers inherit it), so
    every worker hashes as this process would."""
    if chunk.hash_names not in _warm:
        warm_up(chunk.hash_names)
        _warm.add(chunk.hash_names)
    return probe_files(chunk.root, chunk.files, chunk.hash_names)
