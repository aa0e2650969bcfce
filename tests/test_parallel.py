from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fmlkit.parallel import auto_threads, default_workers, run_tasks, torch_threads
from tests.processes import end_session


def _square(n: int) -> int:
    if n < 0:
        raise ValueError(f"negative: {n}")
    return n * n


def test_run_tasks_returns_results_in_task_order() -> None:
    assert run_tasks(_square, list(range(7)), workers=3) == [n * n for n in range(7)]
    assert run_tasks(_square, [3], workers=4) == [9]  # one task: no pool


@pytest.mark.parametrize("workers", [1, 2])
def test_run_tasks_with_desc_counts_the_tasks_on_a_bar(
    capsys: pytest.CaptureFixture[str], workers: int
) -> None:
    from fmlkit.progress import set_progress

    set_progress(True)
    try:
        assert run_tasks(_square, [1, 2, 3], workers, desc="shards", unit="shard") == [1, 4, 9]
    finally:
        set_progress(None)
    err = capsys.readouterr().err
    assert "shards" in err and "/3" in err and "shard" in err


def test_run_tasks_passes_on_the_first_error() -> None:
    with pytest.raises(ValueError, match="negative: -2"):
        run_tasks(_square, [1, -2, 3], workers=2)


# Each script starts two workers that print their pid and then block, the way a stage's
# workers do while the stage runs; the test kills the parent only.
_SCRIPTS = {
    "run_tasks": """
        from fmlkit.parallel import run_tasks

        run_tasks(block, [0, 1], workers=2)
    """,
    "worker_pool with an initializer": """
        from fmlkit.parallel import worker_pool

        EXPECT_WARM = True
        pool = worker_pool(2, initializer=warm_up, initargs=(True,))
        futures = [pool.submit(block, n) for n in range(2)]
        futures[0].result()
    """,
}
_BLOCK = """
    import os, threading

    WARM = EXPECT_WARM = False

    def warm_up(flag):
        global WARM
        WARM = flag

    def block(n):
        line = f"{os.getpid()}\\n" if WARM == EXPECT_WARM else "initializer not run\\n"
        os.write(1, line.encode())  # one write: the two workers' lines do not interleave
        threading.Event().wait()  # forever
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, dead and waiting to be reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("script", list(_SCRIPTS))
def test_workers_end_when_their_parent_is_killed(script: str) -> None:
    code = textwrap.dedent(_BLOCK) + textwrap.dedent(_SCRIPTS[script])
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, to clean up whatever is left
    )
    try:
        assert proc.stdout is not None
        workers = {int(line) for line in (proc.stdout.readline() for _ in range(2)) if line}
        assert len(workers) == 2, "the workers did not start"
        assert all(_alive(pid) for pid in workers)
        proc.send_signal(signal.SIGKILL)  # the parent only
        assert proc.wait(timeout=30) == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in workers if _alive(pid)] == [], "orphaned workers live on"
    finally:
        end_session(proc)


def test_auto_threads_is_at_least_one_and_at_most_the_cpus() -> None:
    cpus = default_workers()
    assert auto_threads() == cpus
    assert auto_threads(cpus + 5) == 1  # more loader workers than CPUs: still one thread
    assert auto_threads(processes=cpus * 2) == 1
    for workers in range(cpus + 2):
        assert 1 <= auto_threads(workers) <= cpus


def test_torch_threads_sets_auto_or_the_given_count_and_restores_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import torch

    before = torch.get_num_threads()
    with caplog.at_level("INFO", logger="fmlkit.parallel"):
        with torch_threads(None, loader_workers=1, what="embed") as chosen:
            assert chosen == torch.get_num_threads() == auto_threads(1)
        with torch_threads(1, what="train.threads"):
            assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert f"embed: {chosen} intra-op thread(s) (auto: {default_workers()} usable CPUs" in (
        caplog.text
    )
    assert "train.threads: 1 intra-op thread(s) (set)" in caplog.text
