"""Atomic outputs: write under a temporary name beside the target, rename at the end.

A process killed half-way leaves at most a hidden ``.<name>.tmp-…`` entry, never an output that
looks complete. Rename is atomic on POSIX when source and target are on one filesystem, which
holds because the temporary entry sits in the target's own directory.

A write that fails because the disk is full (or a quota or file-size limit is reached) removes
its temporary entry and is reported as an `OutputError` naming the output (`writing`). A stage
that writes several outputs renames them into place together (`committed_together`), so that
one failing leaves every previous version as it was. Before writing, `check_output` (every
command's outputs: replaced only with ``--overwrite``, never inside a pipeline's artifact
store), `check_overwrite` and `check_apart` refuse an output that would replace an existing
file, an input or another output.

A folder replaces a folder by an atomic exchange of the two (``renameat2``'s RENAME_EXCHANGE,
on Linux); where the file system cannot exchange, the old folder is moved aside first, and a
kill between the two renames leaves neither under the name (its old version stays, hidden).
Several outputs renamed together (`committed_together`) are renamed one by one: a kill between
two renames leaves the first ones new and the rest as they were, each one whole.

Test hook: ``FMLKIT_FAULT_WRITE=<point>@<output name>`` makes `commit` SIGKILL its own process
at that point of putting the output of that file or folder name (the last part of the path)
into place, to test what a kill leaves: ``written`` (the temporary entry complete, not yet
renamed), ``renamed`` (the output in place under its name; a folder's old version not yet
deleted; the outputs renamed after it, together, not yet renamed). Unset, it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from fmlkit.errors import InputError, OutputError

# What an OSError's errno says when the disk has no room for a write: full, over a quota, or
# over the file-size limit (RLIMIT_FSIZE, ``ulimit -f``; CPython ignores SIGXFSZ, so such a write
# fails with EFBIG instead of killing the process).
NO_ROOM = {
    errno.ENOSPC: "free some space on its disk and run again",
    errno.EDQUOT: "free some of your disk quota and run again",
    errno.EFBIG: "it outgrew the file-size limit, ulimit -f, or its file system's largest file",
}


FAULT_ENV = "FMLKIT_FAULT_WRITE"
FAULT_POINTS = ("written", "renamed")

# While a `committed_together` block runs: the outputs whose renames wait for its end, and
# those renames, (temporary, final), in order.
_PENDING: ContextVar[tuple[set[str], list[tuple[Path, Path]]] | None] = ContextVar(
    "fmlkit_commits", default=None
)


def temp_sibling(path: Path) -> Path:
    """A hidden, unique temporary name beside ``path`` (same folder, so a rename is atomic)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def no_room(error: BaseException) -> OSError | None:
    """The OSError behind ``error`` that says the disk has no room (`NO_ROOM`): ``error``
    itself, or one it was raised from or while handling (torch.save raises a RuntimeError
    while handling the OSError of its file; pyarrow raises OSError with an errno of its own
    wording); None if there is none."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in NO_ROOM:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def no_room_error(
    path: str | os.PathLike[str], error: OSError, *, appending: bool = False
) -> OutputError:
    """The `OutputError` of ``path`` not written for want of room (``error``'s errno): written
    under a temporary name, so nothing was, or ``appending`` to, so what was there stays."""
    code = error.errno
    assert code in NO_ROOM, code
    left = "what it held before stays" if appending else "nothing was written under that name"
    return OutputError(
        f"cannot write {os.fspath(path)}: {os.strerror(code)} ({NO_ROOM[code]}); {left}"
    )


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], *, appending: bool = False) -> Iterator[None]:
    """Report a full disk (or quota, or file-size limit) met in the block as an `OutputError`
    naming ``path``, the output being written (under a temporary name, or ``appending`` to
    it); other errors pass unchanged, as does an `OutputError` raised by a nested block (it
    names the innermost output)."""
    try:
        yield
    except OutputError:
        raise
    except Exception as e:
        cause = no_room(e)
        if cause is None:
            raise
        raise no_room_error(path, cause, appending=appending) from e


def check_overwrite(path: Path, overwrite: bool) -> None:
    """Raise `InputError` if ``path`` exists and may not be replaced."""
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; choose another path or pass --overwrite")


# The artifact store of a pipeline (``<artifacts>/<pipeline>``, fmlkit.pipeline.artifacts) is
# known by its lock file; a stage writes its outputs under ``<store>/<stage>/.staging``.
STORE_MARKER = ".running"
STORE_STAGING = ".staging"


def pipeline_store(path: str | os.PathLike[str]) -> Path | None:
    """The artifact store of a pipeline that ``path`` really lies in (links followed: a
    declared output of a pipeline is a link into its store), or None; a stage's own staging
    folder (``<store>/<stage>/.staging/…``, where the runner has it write) counts as outside."""
    real = Path(os.path.realpath(path))
    for folder in real.parents:
        if (folder / STORE_MARKER).is_file():
            inside = real.relative_to(folder).parts
            return None if len(inside) > 2 and inside[1] == STORE_STAGING else folder
    return None


def check_not_in_store(path: str | os.PathLike[str], *, what: str = "output") -> None:
    """Refuse to write ``path`` when it lies in a pipeline's artifact store (`pipeline_store`):
    a declared output's link, or a path through a folder linked into the store.

    Raises:
        InputError: naming ``what``, ``path`` and where it leads.
    """
    out = Path(path)
    store = pipeline_store(out)
    if store is None:
        return
    if out.is_symlink():
        shown = f"{out} is a link managed by a pipeline"
    else:
        shown = f"{out} lies in the artifact store {store} of a pipeline"
    raise InputError(
        f"the {what} {shown} (→ {os.path.realpath(out)}); run the pipeline, or write "
        "elsewhere: it is not replaced, even with --overwrite"
    )


def check_output(path: str | os.PathLike[str], *, overwrite: bool, what: str = "output") -> None:
    """The one rule for a command's outputs, checked before any work: an existing output is
    replaced (atomically, by its writer) only with ``overwrite``; a path that lies in a
    pipeline's artifact store (a declared output's link, or a folder linked into it) is
    refused even so, since writing it would change a version the pipeline recorded; and no
    output may be the current folder or one above it.

    Raises:
        InputError: naming ``what`` and ``path``, and what to do.
    """
    out = Path(path)
    check_not_in_store(out, what=what)
    if not os.path.lexists(out):
        return
    if not overwrite:
        raise InputError(
            f"the {what} {out} already exists; pass --overwrite to replace it, or choose "
            "another path"
        )
    real, here = Path(os.path.realpath(out)), Path.cwd().resolve()
    if real == here or real in here.parents:
        raise InputError(
            f"the {what} {out} is the current folder or holds it; replacing it would delete "
            "the folder you work in: choose a new path"
        )


def check_apart(paths: dict[str, str | os.PathLike[str] | None], *, fix: str) -> None:
    """Raise `InputError` when two of ``paths`` (role → path; None: not given) are one file,
    links and ``..`` followed: writing one would replace the other (the input, or another
    output). ``fix`` ends the message."""
    seen: list[tuple[str, Path, Path]] = []
    for role, path in paths.items():
        if path is None:
            continue
        p = Path(path)
        real = p.resolve()
        for other_role, other, other_real in seen:
            both = p.exists() and other.exists()
            if real == other_real or (both and p.samefile(other)):
                raise InputError(f"the {role} {p} is the {other_role} {other}; {fix}")
        seen.append((role, p, real))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Works for files and directories: the caller creates whatever it wants at the yielded path.
    On an exception the temporary entry is removed and ``path`` is left as it was; a full
    disk (or quota, or file-size limit) is reported as an `OutputError` naming ``path``.

    Args:
        path: the final output path.
        overwrite: replace an existing ``path``; if False, raise `InputError` when it exists.
    """
    final = Path(path)
    check_overwrite(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    try:
        with writing(final):
            yield tmp
            if not tmp.exists():
                raise RuntimeError(f"atomic_path: nothing was written at {tmp}")
            commit(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def committed_together(*outputs: str | os.PathLike[str]) -> Iterator[None]:
    """Rename ``outputs``, written in the block (by `atomic_path` or a staged writer), onto
    their names together at its end, in order; if the block fails (a full disk met by the last
    output), none is renamed, every temporary entry of theirs is removed, and each output is
    left as it was. Other commits in the block (temporary files of a stage's own) happen at
    once. A block inside another joins the outer one."""
    names = {str(Path(p).absolute()) for p in outputs}
    outer = _PENDING.get()
    if outer is not None:
        outer[0].update(names)
        yield
        return
    renames: list[tuple[Path, Path]] = []
    token = _PENDING.set((names, renames))
    try:
        yield
    except BaseException:
        for tmp, _ in renames:
            _remove(tmp)
        raise
    finally:
        _PENDING.reset(token)
    for done, (tmp, final) in enumerate(renames, 1):
        try:
            commit(tmp, final)
        except BaseException:
            for rest, _ in renames[done:]:
                _remove(rest)
            raise


def commit(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` onto ``final``; a directory target is exchanged with ``tmp`` (or, where
    the file system cannot, moved aside first), then deleted. Inside a `committed_together`
    block naming ``final``, the rename waits for its end."""
    pending = _PENDING.get()
    if pending is not None and str(final.absolute()) in pending[0]:
        pending[1].append((tmp, final))
        return
    fault = _fault_point(final)
    _reached("written", fault)
    if final.is_dir() and not final.is_symlink():
        if _exchange(tmp, final):  # tmp now holds the old folder
            _reached("renamed", fault)
            _remove(tmp)
            return
        aside = temp_sibling(final)
        final.rename(aside)
        try:
            tmp.rename(final)
        except BaseException:
            aside.rename(final)
            raise
        _reached("renamed", fault)
        _remove(aside)
    else:
        tmp.replace(final)
        _reached("renamed", fault)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` in one atomic step (Linux ``renameat2`` with RENAME_EXCHANGE);
    False, and nothing done, where the system or the file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # a C library older than glibc 2.28
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(b))


def _fault_point(final: Path) -> str | None:
    """The point at which the test hook ``FMLKIT_FAULT_WRITE`` kills the commit of ``final``."""
    value = os.environ.get(FAULT_ENV)
    if not value:
        return None
    point, _, name = value.partition("@")
    if point not in FAULT_POINTS or not name or "/" in name:
        raise ValueError(
            f"{FAULT_ENV}={value!r}: expected <point>@<output name> with <point> one of "
            f"{', '.join(FAULT_POINTS)}"
        )
    return point if name == final.name else None


def _reached(point: str, fault: str | None) -> None:
    if point == fault:
        os.kill(os.getpid(), signal.SIGKILL)


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
    calls ``abort`` (which deletes what was staged), as does a ``close`` that fails. A full
    disk (or quota, or file-size limit) is reported as an `OutputError` naming `output_path`.

    ``abort`` must not fail where a write failed: closing a file whose last write failed
    raises again, so subclasses close under `contextlib.suppress` before deleting."""

    @property
    def output_path(self) -> Path:
        """The output being staged (named in the error of a full disk)."""
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with writing(self.output_path):
            if exc_type is None:
                try:
                    self.close()
                except BaseException:
                    self.abort()
                    raise
                return
            self.abort()
            if isinstance(exc, Exception) and not isinstance(exc, OutputError):
                cause = no_room(exc)
                if cause is not None:
                    raise no_room_error(self.output_path, cause) from exc


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
