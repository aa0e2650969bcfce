"""Content versions of the files and folders a pipeline reads and writes.

- a file: the sha256 of its bytes (streamed);
- a Parquet dataset folder (one with ``_manifest.json``, from `fmlkit convert`): the sha256 of
  the manifest, which lists every shard's sha256; the shards are not read, only checked to be
  there with the listed sizes (a missing or truncated shard changes the version). Other files
  in the folder (e.g. a .bin's ``_pairs.csv``) are hashed as files;
- any other folder: the sha256 of its sorted listing, one line per entry: each file's relative
  path and sha256, each symbolic link's target (links are not followed), each sub-folder.

A path is followed through symbolic links first, so a declared output (a link into the artifact
store) has the version of what it points at. Versions are hex strings prefixed by their kind
(``file:``, ``dir:``, ``parquet:``), so a file and a folder never share one.

File hashes are cached in a small SQLite table keyed by the real path, with the size, mtime
and inode they were computed at: an unchanged file is not read again. A file modified less
than `RACY_SECONDS` before it was hashed is not cached (its mtime might not change on a
second write within the clock's resolution), as git does for "racily clean" entries.
"""

# Walks every file of a folder: plain str paths and os calls, as fmlkit/data/prepare/walk.py.
# ruff: noqa: PTH113, PTH114, PTH115, PTH116, PTH118, PTH123
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from fmlkit.io import Closing

MANIFEST = "_manifest.json"  # fmlkit.data.formats.parquet.MANIFEST (not imported: pyarrow)
RACY_SECONDS = 2.0
CHUNK = 1 << 20


class HashCache(Closing):
    """sha256 of files by (real path, size, mtime_ns, inode), in SQLite at ``path``.

    Use as a context manager; new entries are committed on exit if ``write``. ``path`` None
    keeps the cache in memory; with ``write`` False an existing cache is read and nothing is
    written (``fmlkit status``, ``--dry-run``).
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, write: bool = True) -> None:
        if path is not None and write:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        elif path is not None and not Path(path).exists():
            path = None
        self._write = write
        self._db = sqlite3.connect(":memory:" if path is None else os.fspath(path), timeout=60)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
            "mtime_ns INTEGER, inode INTEGER, sha256 TEXT)"
        )
        self.hashed_bytes = 0  # bytes read this session (the cache missed)

    def close(self) -> None:
        if self._write:
            self._db.commit()
        else:
            self._db.rollback()
        self._db.close()

    def file_sha256(self, real: str, st: os.stat_result) -> str:
        """The sha256 of the regular file at the real path ``real`` whose stat is ``st``."""
        row = self._db.execute(
            "SELECT size, mtime_ns, inode, sha256 FROM files WHERE path = ?", (real,)
        ).fetchone()
        if row is not None and tuple(row[:3]) == (st.st_size, st.st_mtime_ns, st.st_ino):
            return str(row[3])
        started = time.time_ns()
        digest = hashlib.sha256()
        with open(real, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        self.hashed_bytes += st.st_size
        sha = digest.hexdigest()
        if st.st_mtime_ns < started - int(RACY_SECONDS * 1e9):
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                (real, st.st_size, st.st_mtime_ns, st.st_ino, sha),
            )
        return sha


def version_of(path: str | os.PathLike[str], cache: HashCache) -> str | None:
    """The content version of ``path`` (see the module docstring); None if it does not exist
    (a dangling link included)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        if os.path.isfile(os.path.join(real, MANIFEST)):
            return "parquet:" + _parquet_digest(real, cache)
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


def _parquet_digest(root: str, cache: HashCache) -> str:
    manifest_path = os.path.join(root, MANIFEST)
    manifest_sha = cache.file_sha256(manifest_path, os.stat(manifest_path))
    digest = hashlib.sha256(f"manifest {manifest_sha}\n".encode())
    try:
        with open(manifest_path, encoding="utf-8") as f:
            shards = {str(s["file"]): int(s["bytes"]) for s in json.load(f)["shards"]}
    except (ValueError, KeyError, TypeError):
        shards = {}
    for name, size in sorted(shards.items()):
        try:
            found = os.stat(os.path.join(root, name)).st_size
        except FileNotFoundError:
            found = -1
        if found != size:
            digest.update(f"shard {name} has {found} bytes, manifest says {size}\n".encode())
    with os.scandir(root) as it:
        others = sorted(e.name for e in it if e.name not in shards and e.name != MANIFEST)
    for name in others:
        path = os.path.join(root, name)
        if os.path.isfile(path) and not os.path.islink(path):
            digest.update(f"F {name} {cache.file_sha256(path, os.stat(path))}\n".encode())
        else:
            digest.update(f"? {name}\n".encode())
    return digest.hexdigest()


def combined_version(versions: dict[str, str]) -> str:
    """One sha256 (hex) for named versions, independent of their order."""
    text = "".join(f"{name}={version}\n" for name, version in sorted(versions.items()))
    return hashlib.sha256(text.encode()).hexdigest()
