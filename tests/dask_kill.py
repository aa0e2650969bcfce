"""Test-only: a Dask cluster for a test module, and a worker that dies mid-task, for real.

`local_scheduler` starts a `distributed.LocalCluster` of worker processes (one thread each)
and yields its ``tcp://`` address, so that many commands can use it in turn (``--cluster
tcp://…``). `kill_workers` makes the first worker that starts a task of a given function
SIGKILL itself at that moment (a `distributed.WorkerPlugin`: no hook in fmlkit); a marker
file records each kill, so it happens as often as asked across the cluster and its restarts.
`seen_here_only` gives a folder a path the workers do not see (an unshared filesystem).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin


@contextlib.contextmanager
def local_scheduler(workers: int = 2) -> Iterator[str]:
    """A LocalCluster of ``workers`` processes with one thread each, run by a child process
    (as a user's scheduler runs apart from fmlkit: its logs and comms stay out of this
    process); its scheduler's address. The child closes the cluster when its stdin closes."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.dask_kill", str(workers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    try:
        assert child.stdout is not None
        address = child.stdout.readline().strip()
        assert address.startswith("tcp://"), f"the test cluster did not start: {address!r}"
        yield address
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _serve(workers: int) -> None:
    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        print(cluster.scheduler_address, flush=True)
        sys.stdin.read()  # until the test closes it


class KillInTask(WorkerPlugin):
    """SIGKILL this worker when it starts a task whose key begins with ``prefix``, until
    ``marker`` holds ``times`` lines (one is added, with the task's key, before each kill)."""

    def __init__(self, marker: str, prefix: str, times: int) -> None:
        self.marker, self.prefix, self.times = marker, prefix, times

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if finish != "executing" or not str(name).startswith(self.prefix):
            return
        with Path(self.marker).open("a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            if len(f.read().splitlines()) >= self.times:
                return
            f.write(f"{key}\n")
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def kill_workers(address: str, marker: Path, prefix: str, times: int = 1) -> Iterator[Path]:
    """While the block runs, the first ``times`` tasks of ``prefix`` (a function's name)
    started on the cluster at ``address`` kill their worker; ``marker`` then lists their
    keys, one a line."""
    name = f"kill-in-task-{marker.name}"
    with Client(address) as client:
        client.register_plugin(KillInTask(str(marker), prefix, times), name=name)
        try:
            yield marker
        finally:
            client.unregister_worker_plugin(name)


def kill_one_worker(
    address: str, marker: Path, prefix: str
) -> contextlib.AbstractContextManager[Path]:
    """`kill_workers` once."""
    return kill_workers(address, marker, prefix, times=1)


@contextlib.contextmanager
def seen_here_only(folder: Path, fd: int = 917) -> Iterator[Path]:
    """``folder`` under a path that only this process resolves (``/proc/self/fd/N``): what a
    folder on this machine's own disk is to the workers of a real cluster."""
    opened = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.dup2(opened, fd)
        yield Path(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
        os.close(opened)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
