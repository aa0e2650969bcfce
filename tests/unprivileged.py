"""Run code as a user without root's power to read any file, for permission tests.

As root (CI containers often are), permission bits stop nobody; the child imports what it
needs as root (the interpreter may live under /root), then drops to ``nobody`` before it runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

NOBODY = 65534


@contextlib.contextmanager
def shared_tmp_dir() -> Iterator[Path]:
    """A temporary folder the unprivileged child can reach and write (pytest's is root-only)."""
    with tempfile.TemporaryDirectory(prefix="fmlkit-perm-") as tmp:
        path = Path(tmp)
        path.chmod(0o777)
        yield path


def run_unprivileged(setup: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``setup`` (imports), drop root if we have it, then run ``code`` with ``args``."""
    drop = (
        f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n" if os.geteuid() == 0 else ""
    )
    program = f"import os, sys\n{setup}\n{drop}{code}\n"
    return subprocess.run(
        [sys.executable, "-c", program, *args], capture_output=True, text=True, check=False
    )
