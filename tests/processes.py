"""Kill a real fmlkit command half-way, as a crash or an impatient user would."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest


def kill_fmlkit_when(args: list[str], ready: Callable[[], bool], *, timeout: float = 60) -> None:
    """Run ``python -m fmlkit ARGS``; SIGKILL it as soon as ``ready()`` holds.

    Fails the test if ``ready()`` never holds in ``timeout`` seconds, or if the command had
    already finished when the signal came (then nothing was interrupted).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmlkit", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(timeout=30)
            pytest.fail(f"fmlkit {' '.join(args[:2])} did not get there within {timeout} s")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the command ended before it was killed"
