from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fmlkit.io
from fmlkit.errors import InputError, OutputError
from fmlkit.io import (
    FAULT_ENV,
    FAULT_POINTS,
    StagedOutput,
    atomic_path,
    atomic_write_text,
    committed_together,
    temp_sibling,
    writing,
)


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


# a script that replaces ``target`` (a file, or a folder holding one file) with "new"
_REPLACE = """
import sys
from pathlib import Path
from fmlkit.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    if sys.argv[2] == "folder":
        tmp.mkdir()
        (tmp / "data").write_text("new")
    else:
        tmp.write_text("new")
"""


def _content(target: Path) -> str:
    return (target / "data" if target.is_dir() else target).read_text()


@pytest.mark.parametrize("kind", ["file", "folder"])
@pytest.mark.parametrize("point", FAULT_POINTS)
def test_the_fault_hook_kills_the_commit_at_its_point(
    tmp_path: Path, point: str, kind: str
) -> None:
    """Killed before the rename: the old version stays; after it: the new one is in place.
    Either way no other entry but a hidden temporary one, and a rerun replaces it."""
    target = tmp_path / "out"
    subprocess.run([sys.executable, "-c", _REPLACE, str(target), kind], check=True, timeout=60)
    (target / "data" if kind == "folder" else target).write_text("old")
    env = {**os.environ, FAULT_ENV: f"{point}@out"}
    run = [sys.executable, "-c", _REPLACE, str(target), kind]
    proc = subprocess.run(run, env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _content(target) == ("old" if point == "written" else "new")
    assert [p.name for p in tmp_path.iterdir() if p != target] == _leftovers(tmp_path)
    assert len(_leftovers(tmp_path)) == (1 if point == "written" or kind == "folder" else 0)
    subprocess.run(run, check=True, timeout=60)  # the rerun: no hook
    assert _content(target) == "new"


def test_the_fault_hook_kills_only_the_output_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_ENV, "written@other.csv")
    atomic_write_text(tmp_path / "out.csv", "a\n")
    assert (tmp_path / "out.csv").read_text() == "a\n"
    monkeypatch.setenv(FAULT_ENV, "half@out.csv")
    with pytest.raises(ValueError, match=r"FMLKIT_FAULT_WRITE='half@out\.csv': expected"):
        atomic_write_text(tmp_path / "out.csv", "b\n")
    assert (tmp_path / "out.csv").read_text() == "a\n"


def test_a_folder_is_replaced_where_it_cannot_be_exchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fmlkit.io, "_exchange", lambda a, b: False)
    target = tmp_path / "tree"
    (target / "old").mkdir(parents=True)
    with atomic_path(target) as tmp:
        (tmp / "new").mkdir(parents=True)
    assert [p.name for p in target.iterdir()] == ["new"]
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (errno.ENOSPC, "No space left on device (free some space"),
        (errno.EDQUOT, "Disk quota exceeded (free some of your disk quota"),
        (errno.EFBIG, "File too large (it outgrew the file-size limit"),
    ],
)
def test_atomic_path_names_the_output_when_the_disk_has_no_room(
    tmp_path: Path, code: int, says: str
) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(OutputError) as caught, atomic_path(target) as tmp:
        tmp.write_text("half")
        raise OSError(code, os.strerror(code))  # what a write of a full disk raises
    assert str(caught.value).startswith(f"cannot write {target}: {says}")
    assert "nothing was written under that name" in str(caught.value)
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_writing_finds_the_os_error_behind_a_library_error(tmp_path: Path) -> None:
    """torch.save raises a RuntimeError while handling the OSError of its file."""
    no_room = pytest.raises(OutputError, match=r"cannot write .*model\.pt: No space left")
    with no_room, writing(tmp_path / "model.pt"):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from None
    with pytest.raises(RuntimeError, match="not about room"), writing(tmp_path / "x"):
        raise RuntimeError("not about room")
    with pytest.raises(PermissionError), writing(tmp_path / "x"):
        raise PermissionError(errno.EACCES, "Permission denied")


def test_nested_atomic_paths_name_the_innermost_output(tmp_path: Path) -> None:
    outer, inner = tmp_path / "folder", tmp_path / "file.csv"
    with pytest.raises(OutputError, match=r"file\.csv"), atomic_path(outer) as tmp:
        tmp.mkdir()
        with atomic_path(inner):
            raise OSError(errno.EFBIG, "File too large")
    assert _leftovers(tmp_path) == []


def test_committed_together_renames_every_output_or_none(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b" / "c.csv"
    first.write_text("old a")
    before = first.stat().st_ino
    with pytest.raises(OutputError, match=r"c\.csv"), committed_together(first, second):
        atomic_write_text(first, "new a")
        assert first.read_text() == "old a"  # not renamed before the block ends
        with atomic_path(second) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert first.read_text() == "old a" and first.stat().st_ino == before
    assert not second.exists()
    assert _leftovers(tmp_path) == [] and _leftovers(second.parent) == []
    with committed_together(first, second, tmp_path / "tree"):
        atomic_write_text(first, "new a")
        with atomic_path(tmp_path / "tree") as tmp:  # an atomic output inside it: at once
            tmp.mkdir()
            with atomic_path(tmp / "leaf.txt") as leaf:
                leaf.write_text("leaf")
        atomic_write_text(second, "new c")
    assert first.read_text() == "new a" and second.read_text() == "new c"
    assert (tmp_path / "tree" / "leaf.txt").read_text() == "leaf"
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "tree") == []


class _Staged(StagedOutput):
    """A writer whose file fails when closed, as a buffered file does after a failed write."""

    def __init__(self, path: Path) -> None:
        self.path, self.tmp = path, temp_sibling(path)
        self.tmp.write_text("staged")

    @property
    def output_path(self) -> Path:
        return self.path

    def close(self) -> None:
        raise OSError(errno.EFBIG, "File too large")

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)


def test_staged_output_whose_close_fails_is_aborted_and_named(tmp_path: Path) -> None:
    too_large = pytest.raises(OutputError, match=r"cannot write .*out\.rec: File too large")
    with too_large, _Staged(tmp_path / "out.rec"):
        pass
    assert _leftovers(tmp_path) == []
