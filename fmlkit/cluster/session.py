"""`ClusterSession`: a connected Dask client, with what a stage needs of it: the shared-
filesystem check (`ClusterSession.check_shared`) and one function over shards
(`ClusterSession.map`)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fmlkit.errors import ClusterError

if TYPE_CHECKING:
    from distributed import Client

T = TypeVar("T")
R = TypeVar("R")

SHARED_FS = "paths must be on a filesystem every worker sees (a shared filesystem)"


class ClusterSession:
    """A connected Dask client, with the two things a stage needs of it.

    Attributes:
        client: the `distributed.Client`.
        address: the cluster address as `parse_address` gave it.
        what: what the session is for (``"prepare"``), named in messages.
    """

    def __init__(self, client: Client, *, address: str, what: str) -> None:
        self.client = client
        self.address = address
        self.what = what

    @property
    def workers(self) -> int:
        """How many workers are connected now."""
        return len(self.client.nthreads())

    def check_shared(self, *, read: Sequence[Path], write: Sequence[Path]) -> None:
        """Check on every worker that each ``read`` path exists and is readable, and that
        each ``write`` folder is the one this process sees (a file written here is visible
        there) and is writable (a file can be created and deleted there).

        Relative paths are taken from this process's working directory, which the workers do
        not share: give the tasks absolute paths too.

        Raises:
            ClusterError: naming each worker and path that fails; or a ``write`` folder this
                process cannot write in.
        """
        readable = [str(Path(p).absolute()) for p in read]
        tokens: list[tuple[str, str]] = []
        try:
            for folder in write:
                folder = Path(folder).absolute()
                token = folder / f".fmlkit-cluster-check-{secrets.token_hex(8)}"
                try:
                    token.write_text(token.name, encoding="utf-8")
                except OSError as e:
                    raise ClusterError(
                        f"{self.what}: cannot write in {folder} to check that the workers see "
                        f"it: {e.strerror or e}"
                    ) from e
                tokens.append((str(folder), str(token)))
            answers = self.client.run(_check_paths, readable, tokens, on_error="return")
        finally:
            for _, token_path in tokens:
                Path(token_path).unlink(missing_ok=True)
        problems = []
        for worker, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                problems.append(f"worker {worker}: the check failed: {answer!r}")
            else:
                problems.extend(f"worker {worker}: {problem}" for problem in answer)
        if problems:
            shown = "; ".join(problems[:10])
            more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
            raise ClusterError(f"{self.what} on {self.address}: {shown}{more}: {SHARED_FS}")

    def map(
        self,
        fn: Callable[[T], R],
        shards: Sequence[T],
        *,
        sizes: Sequence[int] | None = None,
        desc: str = "",
        unit: str = "img",
    ) -> list[R]:
        """``[fn(s) for s in shards]``, each call a task on the cluster; results in shard order.

        ``fn`` must be a module-level function (pickled by name: fmlkit must be installed on
        every worker) and each shard a small picklable value. A progress bar
        (`fmlkit.progress`, silenced by ``-q``) counts the shards done and, with ``sizes``
        (the number of ``unit`` in each shard), the units done.

        Raises:
            ClusterError: a task that killed every worker that ran it (naming its shard), or
                a task lost with the scheduler.
            Exception: the first exception a task raised, as it was raised (an
                `fmlkit.errors.FmlkitError` keeps its class and message); the other tasks
                are cancelled first.
        """
        from fmlkit.progress import progress_counter

        if sizes is not None and len(sizes) != len(shards):
            raise ValueError(f"{len(sizes)} sizes for {len(shards)} shards")
        if not shards:
            return []
        label = desc or self.what
        with contextlib.ExitStack() as stack:
            shard_done = stack.enter_context(
                progress_counter(total=len(shards), desc=f"{label} shards", unit="shard")
            )
            unit_done = (
                stack.enter_context(progress_counter(total=sum(sizes), desc=label, unit=unit))
                if sizes is not None
                else (lambda n: None)
            )

            def done(i: int) -> None:
                shard_done(1)
                unit_done(sizes[i] if sizes is not None else 0)

            return self._run(fn, shards, done)

    def _run(
        self, fn: Callable[[T], R], shards: Sequence[T], done: Callable[[int], object]
    ) -> list[R]:
        from distributed import as_completed

        futures = self.client.map(fn, list(shards), pure=False)
        index = {future.key: i for i, future in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        try:
            for future, result in as_completed(futures, with_results=True, raise_errors=False):
                i = index[future.key]
                if future.status == "error":
                    _, error, traceback = result
                    failure = self._task_error(error, i, shards[i])
                    raise failure.with_traceback(traceback if failure is error else None)
                if future.status == "cancelled":
                    raise ClusterError(
                        f"{self.what}: the task of shard {i} ({describe(shards[i])}) was "
                        f"cancelled: was the connection to {self.address} lost?"
                    )
                results[i] = result
                future.release()  # its result is here now: nothing to recompute if a worker dies
                done(i)
        finally:
            self.client.cancel([f for f in futures if not f.done()])
        return results

    def _task_error(self, error: BaseException, i: int, shard: object) -> BaseException:
        """What to raise for a task's ``error``: a `ClusterError` for a task that killed its
        workers; the task's own exception otherwise."""
        from distributed import KilledWorker

        if isinstance(error, KilledWorker):
            return ClusterError(
                f"{self.what}: the task of shard {i} ({describe(shard)}) killed "
                f"{error.allowed_failures + 1} workers in turn (out of memory, or a crash in "
                f"native code), the last one {error.last_worker.address}: see the workers' "
                "logs (a local:N cluster shows Dask's logs with -v)"
            )
        return error


def describe(shard: object, limit: int = 120) -> str:
    """A short description of a shard for a message: its size and first item, or its repr."""
    if isinstance(shard, (list, tuple)) and shard:
        text = f"{len(shard)} items, the first {shard[0]!r}"
    else:
        text = repr(shard)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_paths(read: Sequence[str], tokens: Sequence[tuple[str, str]]) -> list[str]:
    """On a worker: what is wrong with ``read`` (paths to read) and ``tokens`` (folder to
    write in, the file the driver wrote there), one line each."""
    problems = []
    for path in map(Path, read):
        if not path.exists():
            problems.append(f"{path} does not exist")
        elif not os.access(path, os.R_OK):
            problems.append(f"{path} is not readable")
    for folder, token in ((Path(f), Path(t)) for f, t in tokens):
        if not folder.is_dir():
            problems.append(f"{folder} does not exist")
            continue
        if not token.exists():
            problems.append(f"{folder} is another folder there (a file written here is missing)")
        probe = folder / f".fmlkit-cluster-probe-{secrets.token_hex(8)}"
        try:
            probe.touch(exist_ok=False)
            probe.unlink()
        except OSError as e:
            problems.append(f"cannot create a file in {folder}: {e.strerror or e}")
    return problems
