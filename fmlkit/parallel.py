"""Run independent tasks in worker processes, results in task order.

The workers of a `worker_pool` (that of `run_tasks`, and `fmlkit prepare`'s) end when the
process that made them dies, even by SIGKILL (a crash, the OOM killer, an impatient user),
instead of living on as orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_WATCH_SECONDS = 1.0  # how often a worker without prctl looks for its parent


def default_workers() -> int:
    """Every CPU this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_threads(loader_workers: int = 0, *, processes: int = 1) -> int:
    """Intra-op threads for torch in one of ``processes`` processes sharing this machine's
    usable CPUs (`default_workers`; torchrun's local ranks), each feeding ``loader_workers``
    loader processes: the CPUs left to it, at least 1. (torch's default, one thread per
    core, oversubscribes a machine whose cores also decode images: on a busy 2-core machine
    the demo's training steps ran about 5× faster with 1 thread beside 2 loader workers than
    with 2 threads, on a quiet one about 20 % slower; docs/train.md.)"""
    return max(1, default_workers() // max(1, processes) - max(0, loader_workers))


@contextlib.contextmanager
def torch_threads(
    threads: int | None, *, loader_workers: int = 0, processes: int = 1, what: str = "torch"
) -> Iterator[int]:
    """Run the block with torch's intra-op threads set to ``threads`` (None: `auto_threads`),
    yielding that number; torch's previous setting comes back after. The choice is logged
    once (INFO), naming ``what`` it is for."""
    import torch

    chosen = auto_threads(loader_workers, processes=processes) if threads is None else threads
    how = "set" if threads is not None else (
        f"auto: {default_workers()} usable CPUs, {processes} process(es), "
        f"{loader_workers} loader worker(s) each"
    )  # fmt: skip
    log.info("%s: %d intra-op thread(s) (%s)", what, chosen, how)
    previous = torch.get_num_threads()
    torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        torch.set_num_threads(previous)


def run_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    workers: int | None = None,
    *,
    desc: str = "",
    unit: str = "task",
) -> list[R]:
    """``[fn(t) for t in tasks]``, with up to ``workers`` processes (default: every CPU) when
    there is more than one task. ``fn`` must be a module-level function; processes are forked
    on Linux (no re-import), spawned elsewhere. The first task that raises stops the rest and
    its exception propagates; a worker that dies is a `RuntimeError`. With ``desc``, a
    progress bar (`fmlkit.progress`) counts the tasks done, in ``unit``, as they finish.
    """
    from fmlkit.progress import progress_counter, track

    workers = min(workers or default_workers(), len(tasks))
    if workers <= 1:
        shown = track(tasks, total=len(tasks), desc=desc, unit=unit) if desc else tasks
        return [fn(task) for task in shown]
    with worker_pool(workers) as pool:
        futures = [pool.submit(fn, task) for task in tasks]
        try:
            if desc:
                with progress_counter(total=len(tasks), desc=desc, unit=unit) as advance:
                    for done in as_completed(futures):
                        advance(1)
                        if done.exception() is not None:
                            break
            return [future.result() for future in futures]
        except BrokenProcessPool as e:
            raise RuntimeError(
                f"a worker process died (killed, or out of memory) while running {fn.__name__}"
            ) from e
        finally:
            for future in futures:
                future.cancel()


def worker_pool(
    workers: int,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes, forked on Linux (no re-import), spawned elsewhere, that
    end when this process dies (`die_with_parent`); each then runs ``initializer(*initargs)``.

    Use and shut the pool down from the thread that made it: on Linux a worker is also ended
    when the thread that started it ends (the kernel ties the signal to that thread).
    """
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_start_worker,
        initargs=(os.getpid(), initializer, initargs),
    )


def _start_worker(
    parent: int, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]
) -> None:
    die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def die_with_parent(parent: int) -> None:
    """End this process as soon as ``parent``, the process that started it, dies: on Linux
    the kernel sends it SIGKILL (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread
    looks once a second whether the parent has changed. A parent already gone ends it now."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):  # no prctl in this libc: watch instead
            armed = False
        if armed:
            if os.getppid() != parent:  # it died before the signal was armed
                os._exit(1)
            return
    threading.Thread(
        target=_watch_parent, args=(parent,), name="fmlkit-watch-parent", daemon=True
    ).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_WATCH_SECONDS)
    os._exit(1)
