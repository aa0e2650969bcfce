"""Run independent tasks in worker processes, results in task order."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Every CPU this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_tasks(fn: Callable[[T], R], tasks: Sequence[T], workers: int | None = None) -> list[R]:
    """``[fn(t) for t in tasks]``, with up to ``workers`` processes (default: every CPU) when
    there is more than one task. ``fn`` must be a module-level function; processes are forked
    on Linux (no re-import), spawned elsewhere. The first task that raises stops the rest and
    its exception propagates; a worker that dies is a `RuntimeError`.
    """
    workers = min(workers or default_workers(), len(tasks))
    if workers <= 1:
        return [fn(task) for task in tasks]
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(fn, task) for task in tasks]
        try:
            return [future.result() for future in futures]
        except BrokenProcessPool as e:
            raise RuntimeError(
                f"a worker process died (killed, or out of memory) while running {fn.__name__}"
            ) from e
        finally:
            for future in futures:
                future.cancel()
