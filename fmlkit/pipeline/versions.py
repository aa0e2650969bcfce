"""Content versions of the files and folders a pipeline reads and writes.

- a file: the sha256 of its bytes (streamed);
- a Parquet dataset folder (one with a manifest, ``_manifest.parquet`` or an older dataset's
  ``_manifest.json``: `fmlkit.data.formats.parquet_layout.manifest_path`, from `fmlkit
  convert`): the sha256 of the manifest, which lists every shard's sha256; the shards are not
  read, only checked to be there with the listed sizes (a missing or truncated shard changes the
  version). Other files in the folder (e.g. an older .bin conversion's ``_pairs.csv``) are
  hashed as files;
- any other folder: the sha256 of its sorted listing, one line per entry: each file's relative
  path and sha256, each symbolic link's target (links are not followed), each sub-folder.

A path is followed through symbolic links first, so a declared output (a link into the artifact
store) has the version of what it points at. Versions are hex strings prefixed by their kind
(``file:``, ``dir:``, ``parquet:``), so a file and a folder never share one.

File hashes are cached in a small SQLite table keyed by the real path, with the size, mtime,
ctime and inode they were computed at: an unchanged file is not read again. The ctime (the
inode's change time, which no user can set back) catches an edit that kept the size and had
its mtime restored (``touch -r``, ``rsync -t``); a ``chmod`` changes it too, costing one more
read. A file modified less than `RACY_SECONDS` before it was hashed is not cached (its mtime
might not change on a second write within the clock's resolution), as git does for "racily
clean" entries. The cache
is only a shortcut: a reader that finds it locked by a running `fmlkit run` (or damaged)
hashes without it, and a writer replaces a damaged one.
"""

# Walks every file of a folder: plain str paths and os calls, as fmlkit/data/prepare/walk.py.
# ruff: noqa: PTH113, PTH114, PTH115, PTH116, PTH118, PTH123
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fmlkit.data.formats.parquet_layout import is_manifest, manifest_path
from fmlkit.errors import FmlkitError, PipelineError
from fmlkit.io import Closing

logger = logging.getLogger(__name__)
RACY_SECONDS = 2.0
CHUNK = 1 << 20
# sqlite3.h's result codes for a write that found no room (sqlite3 has them only at run time)
_SQLITE_FULL, _SQLITE_IOERR_WRITE = 13, 10 | 3 << 8
# the cache's table (``files``, of caches before ctime was part of the key, is no longer read)
_TABLE = "file_hashes"
READ_TIMEOUT_S = 1.0  # how long a reader waits for a writer's lock before going without


class HashCache(Closing):
    """sha256 of files by (real path, size, mtime_ns, ctime_ns, inode), in SQLite at ``path``.

    Use as a context manager; new entries are committed on exit if ``write``, and by
    `commit` (the runner commits before each stage, so that no lock is held while a stage
    runs). ``path`` None keeps the cache in memory; with ``write`` False an existing cache is
    read and nothing is written (``fmlkit status``, ``--dry-run``): if it is locked for longer
    than `READ_TIMEOUT_S` or damaged, files are hashed without it (a warning says so). A writer
    replaces a damaged cache (it holds nothing but hashes), and goes on in memory if the disk
    has no room to write it (a warning says so; the run's outputs report the full disk).
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, write: bool = True) -> None:
        if path is not None and write:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        elif path is not None and not Path(path).exists():
            path = None
        self._write = write
        self._path = None if path is None else os.fspath(path)
        self._db = self._open()
        self.hashed_bytes = 0  # bytes read this session (the cache missed)

    def _open(self) -> sqlite3.Connection:
        if self._path is None:
            return _connect(":memory:", 0)
        try:
            return _connect(self._path, 60 if self._write else READ_TIMEOUT_S)
        except sqlite3.DatabaseError as e:
            if not self._write:  # locked by a run, damaged, unreadable: go without
                return self._without(f"it could not be read ({e}): is `fmlkit run` running?")
            if _no_room(e):
                return self._without(f"it could not be written ({e})")
            if isinstance(e, sqlite3.OperationalError):  # locked, or no permission
                raise PipelineError(
                    f"hash cache {self._path}: {e}; if no `fmlkit run` or `fmlkit status` of "
                    "this pipeline is running, delete it (it holds nothing but file hashes)"
                ) from None
            logger.warning("hash cache %s is damaged (%s): starting a new one", self._path, e)
            Path(self._path).unlink()
            return _connect(self._path, 60)

    def _without(self, why: str) -> sqlite3.Connection:
        """An empty in-memory cache in place of the one at ``self._path``."""
        logger.warning("hash cache %s not used, %s; hashing every file", self._path, why)
        self._path = None
        return _connect(":memory:", 0)

    def commit(self) -> None:
        """Write the new entries now (and release the write lock), if ``write``."""
        if self._write:
            with self._unless_no_room():
                self._db.commit()

    def close(self) -> None:
        if self._write:
            with self._unless_no_room():
                self._db.commit()
        else:
            self._db.rollback()
        self._db.close()

    @contextlib.contextmanager
    def _unless_no_room(self) -> Iterator[None]:
        """Go on in memory if the cache's file cannot be written for want of room (`_no_room`):
        it holds nothing but hashes, so a full disk must fail the outputs, not the cache."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            if not _no_room(e):
                raise
            with contextlib.suppress(sqlite3.Error):
                self._db.rollback()
            self._db.close()
            self._db = self._without(f"it could not be written ({e})")

    def _lookup(self, real: str) -> tuple[int, int, int, int, str] | None:
        """The cached (size, mtime_ns, ctime_ns, inode, sha256) of ``real``, if any."""
        try:
            row: tuple[int, int, int, int, str] | None = self._db.execute(
                f"SELECT size, mtime_ns, ctime_ns, inode, sha256 FROM {_TABLE} WHERE path = ?",
                (real,),
            ).fetchone()
            return row
        except sqlite3.DatabaseError as e:  # a reader kept out by a writer's lock
            if self._write:
                raise
            self._db.close()
            self._db = self._without(f"it could not be read ({e}): is `fmlkit run` running?")
            return None

    def file_sha256(self, real: str, st: os.stat_result) -> str:
        """The sha256 of the regular file at the real path ``real`` whose stat is ``st``."""
        row = self._lookup(real)
        stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        if row is not None and tuple(row[:4]) == stamp:
            return str(row[4])
        started = time.time_ns()
        digest = hashlib.sha256()
        with open(real, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        self.hashed_bytes += st.st_size
        sha = digest.hexdigest()
        # a reader never writes to the file: it would take the lock that a run needs
        on_disk_reader = self._path is not None and not self._write
        if st.st_mtime_ns < started - int(RACY_SECONDS * 1e9) and not on_disk_reader:
            with self._unless_no_room():
                self._db.execute(
                    f"INSERT OR REPLACE INTO {_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                    (real, *stamp, sha),
                )
        return sha


def _no_room(error: sqlite3.Error) -> bool:
    """Whether sqlite could not write for want of room: a full disk or quota (SQLITE_FULL), or
    a write refused by the OS (SQLITE_IOERR_WRITE, as at a file-size limit)."""
    code = getattr(error, "sqlite_errorcode", None)
    return code in (_SQLITE_FULL, _SQLITE_IOERR_WRITE)


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    """A connection to the cache at ``path`` with its table; raises what sqlite3 raises."""
    db = sqlite3.connect(path, timeout=timeout)
    try:
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {_TABLE} (path TEXT PRIMARY KEY, size INTEGER, "
            "mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, sha256 TEXT)"
        )
    except sqlite3.Error:
        db.close()
        raise
    return db


def version_of(path: str | os.PathLike[str], cache: HashCache) -> str | None:
    """The content version of ``path`` (see the module docstring); None if it does not exist
    (a dangling link included)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        manifest = manifest_path(real)
        if manifest is not None:
            return "parquet:" + _parquet_digest(real, str(manifest), cache)
        digest = hashlib.sha256()
        for line in _listing(real, "", cache):
            digest.update(line.encode("utf-8", "surrogateescape"))
        return "dir:" + digest.hexdigest()
    return "file:" + cache.file_sha256(real, st)


def _listing(root: str, rel: str, cache: HashCache) -> Iterator[str]:
    """Lines ``F path sha``, ``L path target``, ``D path/`` for the tree under root/rel."""
    with os.scandir(os.path.join(root, rel)) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        name = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_symlink():
            yield f"L {name} {os.readlink(entry.path)}\n"
        elif entry.is_dir():
            yield f"D {name}/\n"
            yield from _listing(root, name, cache)
        elif entry.is_file():
            yield f"F {name} {cache.file_sha256(entry.path, entry.stat())}\n"
        else:
            yield f"S {name}\n"  # FIFO, socket, device: present, not read


def _parquet_digest(root: str, manifest: str, cache: HashCache) -> str:
    manifest_sha = cache.file_sha256(manifest, os.stat(manifest))
    digest = hashlib.sha256(f"manifest {manifest_sha}\n".encode())
    try:
        shards = {str(s["file"]): int(s["bytes"]) for s in _manifest_body(manifest)["shards"]}
    except (ValueError, KeyError, TypeError, OSError):
        shards = {}
    for name, size in sorted(shards.items()):
        try:
            found = os.stat(os.path.join(root, name)).st_size
        except FileNotFoundError:
            found = -1
        if found != size:
            digest.update(f"shard {name} has {found} bytes, manifest says {size}\n".encode())
    with os.scandir(root) as it:
        others = sorted(e.name for e in it if e.name not in shards and not is_manifest(e.name))
    for name in others:
        path = os.path.join(root, name)
        if os.path.isfile(path) and not os.path.islink(path):
            digest.update(f"F {name} {cache.file_sha256(path, os.stat(path))}\n".encode())
        else:
            digest.update(f"? {name}\n".encode())
    return digest.hexdigest()


def _manifest_body(path: str) -> Any:
    """The parsed manifest at ``path``; ValueError (or OSError) when it cannot be read."""
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    from fmlkit.data.formats.parquet_checks import manifest_body  # pyarrow: only when met

    try:
        return manifest_body(Path(path))
    except FmlkitError as e:
        raise ValueError(str(e)) from e


def combined_version(versions: dict[str, str]) -> str:
    """One sha256 (hex) for named versions, independent of their order."""
    text = "".join(f"{name}={version}\n" for name, version in sorted(versions.items()))
    return hashlib.sha256(text.encode()).hexdigest()
