"""What every hostile case asserts, in one place.

A command given bad input either refuses it — exit 1 (or 2 for options that do not fit),
exactly one ``Error:`` line on stderr, no traceback — or takes it and records the reason in
its output. Either way it leaves no output that looks complete when it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from click.testing import CliRunner, Result

from fmlkit.main import main


def fmlkit(*args: str | os.PathLike[str], cwd: Path | None = None) -> Result:
    """Run ``fmlkit ARGS`` in this process (as the console script would, errors included)."""
    runner = CliRunner()
    argv = [os.fspath(a) for a in args]
    if cwd is None:
        return runner.invoke(main, argv, catch_exceptions=True, prog_name="fmlkit")
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(main, argv, catch_exceptions=True, prog_name="fmlkit")
    finally:
        os.chdir(old)


def fmlkit_process(
    *args: str | os.PathLike[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m fmlkit ARGS`` in a child process (for limits, signals, real stdio)."""
    return subprocess.run(
        [sys.executable, "-m", "fmlkit", *(os.fspath(a) for a in args)],
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def refused(
    result: Result | subprocess.CompletedProcess[str],
    *,
    says: str | Sequence[str] = (),
    code: int = 1,
) -> str:
    """Assert the command refused its input as promised, and return its ``Error:`` line.

    Exit ``code``; exactly one ``Error:`` line on stderr, containing each of ``says``
    (case-insensitive); no traceback; no exception escaped the command.
    """
    stderr = result.stderr
    exit_code = result.exit_code if isinstance(result, Result) else result.returncode
    shown = f"exit {exit_code}\nstderr:\n{stderr}\nstdout:\n{result.stdout}"
    if isinstance(result, Result) and result.exception is not None:
        assert isinstance(result.exception, SystemExit), (
            f"an exception escaped: {result.exception!r}\n{shown}"
        )
    assert "Traceback" not in stderr and "Traceback" not in result.stdout, shown
    assert exit_code == code, shown
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, f"expected one Error: line\n{shown}"
    for word in [says] if isinstance(says, str) else says:
        assert word.lower() in errors[0].lower(), f"{word!r} not in {errors[0]!r}\n{shown}"
    return errors[0]


def succeeded(result: Result | subprocess.CompletedProcess[str]) -> None:
    """Assert the command took its (odd) input: exit 0, no traceback, no escaped exception."""
    exit_code = result.exit_code if isinstance(result, Result) else result.returncode
    shown = f"exit {exit_code}\nstderr:\n{result.stderr}\nstdout:\n{result.stdout}"
    if isinstance(result, Result):
        assert result.exception is None, f"an exception escaped: {result.exception!r}\n{shown}"
    assert "Traceback" not in result.stderr, shown
    assert exit_code == 0, shown


def nothing_complete(*outputs: Path) -> None:
    """Assert none of ``outputs`` exists under its final name (temp files, hidden, may stay)."""
    present = [str(p) for p in outputs if p.exists() or p.is_symlink()]
    assert not present, f"a failed command left complete-looking output: {present}"


def unchanged(path: Path, before: bytes) -> None:
    """Assert ``path`` still holds exactly ``before`` (a previous version left untouched)."""
    assert path.read_bytes() == before, f"{path} was changed by a command that failed"
