"""Run the real fmlkit CLI in a fresh interpreter, as a user would; or kill it half-way, as a
crash or an impatient user would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def run_fmlkit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m fmlkit ARGS`` to the end; capture stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "fmlkit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def kill_fmlkit_when(args: list[str], ready: Callable[[], bool], *, timeout: float = 60) -> None:
    """Run ``python -m fmlkit ARGS``; SIGKILL it as soon as ``ready()`` holds.

    Fails the test if ``ready()`` never holds in ``timeout`` seconds, or if the command had
    already finished when the signal came (then nothing was interrupted). Only the command
    is killed, as a crash would end it; then whatever it started and left (worker processes:
    its own process group) is killed too, so that no test leaves orphans behind.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmlkit", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=30)
                pytest.fail(f"fmlkit {' '.join(args[:2])} did not get there within {timeout} s")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL, "the command ended before it was killed"
    finally:
        end_session(proc)


def end_session(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """Kill ``proc``, started with ``start_new_session=True``, and every process left in its
    process group (workers it started)."""
    proc.kill()
    proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):  # nothing left
        os.killpg(proc.pid, signal.SIGKILL)
