"""Atomic outputs: write under a temporary name beside the target, rename at the end.

A process killed half-way leaves at most a hidden ``.<name>.tmp-…`` entry, never an output that
looks complete. Rename is atomic on POSIX when source and target are on one filesystem, which
holds because the temporary entry sits in the target's own directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from fmlkit.errors import InputError


def temp_sibling(path: Path) -> Path:
    """A hidden, unique temporary name beside ``path`` (same folder, so a rename is atomic)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def check_overwrite(path: Path, overwrite: bool) -> None:
    """Raise `InputError` if ``path`` exists and may not be replaced."""
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; choose another path or pass --overwrite")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Works for files and directories: the caller creates whatever it wants at the yielded path.
    On an exception the temporary entry is removed and ``path`` is left as it was.

    Args:
        path: the final output path.
        overwrite: replace an existing ``path``; if False, raise `InputError` when it exists.
    """
    final = Path(path)
    check_overwrite(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"atomic_path: nothing was written at {tmp}")
        commit(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def commit(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` onto ``final``; a directory target is moved aside first, then deleted."""
    if final.is_dir() and not final.is_symlink():
        aside = temp_sibling(final)
        final.rename(aside)
        try:
            tmp.rename(final)
        except BaseException:
            aside.rename(final)
            raise
        _remove(aside)
    else:
        tmp.replace(final)


_C = TypeVar("_C", bound="Closing")


class Closing:
    """Base of readers and writers used as context managers: leaving the block calls
    ``close``."""

    def close(self) -> Any:
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class StagedOutput(Closing):
    """Base of writers that build their output under temporary names: used as a context
    manager, a clean exit calls ``close`` (which moves the output into place) and an exception
    calls ``abort`` (which deletes what was staged)."""

    def abort(self) -> None:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (optionally fsync'd before the rename)."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = True) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)
