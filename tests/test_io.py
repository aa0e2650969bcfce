from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fmlkit.errors import InputError
from fmlkit.io import atomic_path, atomic_write_text


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_atomic_write_text_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    atomic_write_text(target, "a\n")
    atomic_write_text(target, "b\n")
    assert target.read_text() == "b\n"
    assert _leftovers(tmp_path) == []


def test_atomic_path_failure_keeps_old_output_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise ValueError("boom")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_atomic_path_replaces_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "tree"
    (target / "old").mkdir(parents=True)
    with atomic_path(target) as tmp:
        (tmp / "new").mkdir(parents=True)
    assert [p.name for p in target.iterdir()] == ["new"]
    assert _leftovers(tmp_path) == []


def test_atomic_path_refuses_existing_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "x"
    target.write_text("keep")
    with pytest.raises(InputError, match="already exists"), atomic_path(target, overwrite=False):
        pass
    assert target.read_text() == "keep"


def test_atomic_path_killed_process_leaves_no_complete_looking_output(tmp_path: Path) -> None:
    target = tmp_path / "result.csv"
    code = textwrap.dedent(f"""
        import os, signal, sys
        from fmlkit.io import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("header\\nrow 1\\n")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -9
    assert not target.exists()
    assert all(name.startswith(".result.csv.tmp-") for name in _leftovers(tmp_path))
