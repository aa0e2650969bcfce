"""Walk a class-folder dataset in sorted order, accounting for every entry.

``DATASET_DIR/<label>/…/<file>``: the first folder level is the label; deeper folders belong to
their class. The walk yields a `FileEntry` for every file with an image extension and an
`Unlisted` for everything else it meets, so nothing disappears without a reason.

Entries come out sorted by their POSIX path relative to the root (Python string order): each
folder's entries are sorted by name, with ``/`` appended to folder names, which makes the
depth-first order equal to the order of the full paths.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from fmlkit.errors import InputError

DEFAULT_EXTENSIONS = ("jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff")

# Why an entry is not a row of dataset_info.
SKIP_REASONS = {
    "hidden": "hidden file or folder (name starts with '.'), not scanned",
    "not_image_extension": "file without one of the image extensions",
    "special_file": "not a regular file (FIFO, socket or device)",
    "symlink_outside": "symbolic link to a place outside the dataset folder, not followed",
    "symlink_loop": "symbolic link back into a folder above it, not followed",
    "broken_symlink": "symbolic link to nothing",
    "unreadable_folder": "folder that could not be listed",
    "undecodable_name": "name that is not valid UTF-8 (shown with \\x escapes)",
    "vanished": "deleted while the scan ran",
}
# Entries that are scanned but worth a word.
NOTICE_REASONS = {
    "folder_named_like_image": "folder whose name has an image extension (scanned as a folder)",
}


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file with an image extension. ``label`` is "" for files directly under the root."""

    rel: str
    label: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Unlisted:
    """An entry that is not a row (``reason`` in `SKIP_REASONS`) or a notice (`NOTICE_REASONS`).

    Folders are shown with a trailing ``/``.
    """

    rel: str
    reason: str


def normalize_extensions(extensions: Collection[str]) -> frozenset[str]:
    """Lower-case extensions without their dot: ``{".JPG", "png"}`` → ``{"jpg", "png"}``."""
    exts = frozenset(e.strip().lower().lstrip(".") for e in extensions if e.strip(" ."))
    if not exts:
        raise InputError("no image extensions given; pass e.g. --extensions jpg,png")
    return exts


def check_dataset_dir(root: str | os.PathLike[str]) -> Path:
    """Return ``root`` as a Path, or raise `InputError` if it is missing or not a folder."""
    path = Path(root)
    if not path.exists():
        raise InputError(f"dataset folder {path} does not exist")
    if not path.is_dir():
        raise InputError(f"{path} is not a folder; expected DATASET_DIR/<label>/<image>")
    return path


def walk_dataset(
    root: str | os.PathLike[str], extensions: Collection[str] = DEFAULT_EXTENSIONS
) -> Iterator[FileEntry | Unlisted]:
    """Yield every entry under ``root`` in sorted order (see the module docstring).

    Symbolic links are followed only to targets inside ``root`` and never into a folder that
    encloses the link (a loop). Hidden entries are reported, not descended into.

    Args:
        root: the dataset folder.
        extensions: file extensions counted as images, case-insensitive.
    """
    base = check_dataset_dir(root)
    exts = normalize_extensions(extensions)
    root_real = os.path.realpath(base)
    # depth-first with an explicit stack: (entries left, rel prefix, real paths of the folders
    # on the way down, used to refuse loops)
    stack: list[tuple[Iterator[os.DirEntry[str]], str, tuple[str, ...]]] = []
    first = _list(str(base), "")
    if isinstance(first, Unlisted):
        raise InputError(f"cannot list dataset folder {base}: permission denied or I/O error")
    stack.append((iter(first), "", (root_real,)))
    while stack:
        entries, prefix, ancestors = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        rel = prefix + entry.name
        for item in _classify(entry, rel, exts, root_real, ancestors):
            if isinstance(item, tuple):  # a folder to descend into: (real path)
                (real,) = item
                listing = _list(entry.path, rel + "/")
                if isinstance(listing, Unlisted):
                    yield listing
                else:
                    stack.append((iter(listing), rel + "/", (*ancestors, real)))
            else:
                yield item


def count_images(root: str | os.PathLike[str], extensions: Collection[str]) -> int:
    """How many files under ``root`` have an image extension, counted cheaply for a progress
    bar's total: names only (the directory listing's file types, no stat of a file), hidden
    entries and unreadable folders skipped, folder links not followed. `walk_dataset` may
    list a few more (files in linked folders) or fewer (special files)."""
    exts = normalize_extensions(extensions)
    folders, count = [os.fspath(root)], 0
    while folders:
        try:
            with os.scandir(folders.pop()) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    if _is_dir(entry):
                        folders.append(entry.path)
                    elif _extension(entry.name) in exts:
                        count += 1
        except OSError:
            continue
    return count


def _list(path: str, rel_prefix: str) -> list[os.DirEntry[str]] | Unlisted:
    try:
        with os.scandir(path) as it:
            entries = list(it)
    except OSError:
        return Unlisted(rel_prefix or "./", "unreadable_folder")
    return sorted(entries, key=_sort_key)


def _sort_key(entry: os.DirEntry[str]) -> str:
    try:
        is_dir = entry.is_dir()  # follows links: a linked folder sorts as a folder
    except OSError:
        is_dir = False
    return entry.name + "/" if is_dir else entry.name


def _classify(
    entry: os.DirEntry[str],
    rel: str,
    exts: frozenset[str],
    root_real: str,
    ancestors: tuple[str, ...],
) -> Iterator[FileEntry | Unlisted | tuple[str]]:
    """What one directory entry is: a file row, an unlisted entry, or ``(real,)`` to descend."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
        yield Unlisted(shown, "undecodable_name")
        return
    if entry.name.startswith("."):
        yield Unlisted(rel + "/" if _is_dir(entry) else rel, "hidden")
        return
    if entry.is_symlink():
        real = os.path.realpath(entry.path)
        try:
            st = os.stat(entry.path)
        except OSError as e:
            yield Unlisted(rel, "symlink_loop" if e.errno == errno.ELOOP else "broken_symlink")
            return
        if real != root_real and not real.startswith(root_real + os.sep):
            yield Unlisted(rel, "symlink_outside")
            return
        if stat.S_ISDIR(st.st_mode):
            if any(real == a or a.startswith(real + os.sep) for a in ancestors):
                yield Unlisted(rel + "/", "symlink_loop")
            else:
                yield from _folder(rel, real, exts)
            return
    elif entry.is_dir(follow_symlinks=False):
        yield from _folder(rel, os.path.join(ancestors[-1], entry.name), exts)
        return
    yield from _file(entry, rel, exts)


def _folder(rel: str, real: str, exts: frozenset[str]) -> Iterator[Unlisted | tuple[str]]:
    if _extension(rel) in exts:
        yield Unlisted(rel + "/", "folder_named_like_image")
    yield (real,)


def _file(
    entry: os.DirEntry[str], rel: str, exts: frozenset[str]
) -> Iterator[FileEntry | Unlisted]:
    try:
        st = entry.stat()  # follows a link (already known to stay inside the root)
    except FileNotFoundError:
        yield Unlisted(rel, "vanished")
        return
    except OSError:
        st = None  # cannot even stat it: the probe records it as unreadable
    if st is not None and not stat.S_ISREG(st.st_mode):
        yield Unlisted(rel, "special_file")
    elif _extension(entry.name) not in exts:
        yield Unlisted(rel, "not_image_extension")
    else:
        label = rel.split("/", 1)[0] if "/" in rel else ""
        yield FileEntry(rel, label, st.st_size if st else 0, st.st_mtime_ns if st else 0)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _extension(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""
