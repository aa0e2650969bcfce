"""Run the real fmlkit CLI in a fresh interpreter, as a user would; end what such a run
started. (A test that kills a command half-way has it kill itself at a chosen point, not by
timing: ``FMLKIT_FAULT_WRITE`` in fmlkit/io.py, ``FMLKIT_FAULT_SAVE``, ``FMLKIT_FAULT_RUN``.)"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path


def run_fmlkit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m fmlkit ARGS`` to the end; capture stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "fmlkit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def end_session(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """Kill ``proc``, started with ``start_new_session=True``, and every process left in its
    process group (workers it started)."""
    proc.kill()
    proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):  # nothing left
        os.killpg(proc.pid, signal.SIGKILL)
