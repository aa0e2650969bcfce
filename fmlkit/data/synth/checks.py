"""What `fmlkit synth` checks before it writes a file: a request its memory and disk can hold,
and outputs it may create or replace.

The plan keeps every file name in memory and the tree lands on one disk, so the request is
bounded by `MAX_CLEAN_IMAGES` and by the free space of the output's disk (an estimate from the
image side). Replacing needs ``overwrite`` and is limited to what synth itself wrote: a folder
of identity folders (``id00000``, …) and a truth CSV with synth's header, so that an
``overwrite`` aimed at the wrong path (``/``, ``..``, a home folder) deletes nothing.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

from fmlkit import columns as C
from fmlkit.errors import InputError
from fmlkit.io import check_output

MAX_CLEAN_IMAGES = 10_000_000  # identities × images per identity: the plan is held in memory
# Bytes on disk per clean image of side s: about 0.2 s² for the JPEG (measured: ~0.15), a block
# of file-system overhead, and 15 % more for the planted defects.
_BYTES_PER_PIXEL, _FILE_OVERHEAD, _DEFECTS = 0.2, 4096, 1.15
_LABEL_FOLDER = re.compile(r"id\d{5,}")


def estimated_bytes(identities: int, images_per_identity: int, size: int) -> int:
    """About how many bytes the tree takes on disk (an upper estimate)."""
    per_image = _BYTES_PER_PIXEL * size * size + _FILE_OVERHEAD
    return int(identities * images_per_identity * per_image * _DEFECTS)


def check_request(identities: int, images_per_identity: int, size: int, workers: int) -> None:
    """Raise `InputError` for counts out of range or a request beyond `MAX_CLEAN_IMAGES`."""
    for name, value in (
        ("identities", identities),
        ("images per identity", images_per_identity),
        ("workers", workers),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an integer ≥ 1, got {value!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 64 <= size <= 1024:
        raise InputError(f"size must be 64–1024 px, got {size!r}")
    clean = identities * images_per_identity
    if clean > MAX_CLEAN_IMAGES:
        raise InputError(
            f"{identities:,} identities × {images_per_identity:,} images = {clean:,} images; "
            f"synth writes at most {MAX_CLEAN_IMAGES:,} (it plans every file in memory). "
            "Ask for fewer, or make several datasets"
        )


def output_folder(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` as a path with a name of its own (``.`` and ``..`` resolved), or
    `InputError` for the root of the file system."""
    out = Path(out_dir)
    if out.name in ("", ".", ".."):
        out = out.resolve()
    if not out.name:
        raise InputError(
            f"the output folder {out_dir} is the root of the file system; choose a folder"
        )
    return out


def check_outputs(
    out: Path,
    truth: Path,
    *,
    overwrite: bool,
    needed_bytes: int,
    folders: re.Pattern[str] = _LABEL_FOLDER,
    truth_headers: tuple[tuple[str, ...], ...] = (C.TRUTH_COLUMNS, C.SCENE_TRUTH_COLUMNS),
) -> None:
    """Refuse outputs that cannot or may not be written: the root folder, a truth file inside
    the tree, an existing output without ``overwrite`` or not synth's own, too little space.

    Args:
        out, truth: the folder and the truth CSV to write.
        overwrite: replace them, if synth wrote them.
        needed_bytes: about how much the output takes on disk.
        folders: names of the only entries (folders) synth's own ``out`` holds.
        truth_headers: the first lines synth's own truth file may have.

    Raises:
        InputError: naming the path and what to do.
    """
    real = out.resolve()
    if truth.resolve().is_relative_to(real):
        raise InputError(f"the truth file {truth} must not be inside the output folder {out}")
    if real in Path.cwd().resolve().parents or real == Path.cwd().resolve():
        raise InputError(
            f"the output folder {out} holds the current folder; replacing it would delete "
            "the folder you work in. Choose a new folder"
        )
    for path, what in ((out, "output folder"), (truth, "truth file")):
        check_output(path, overwrite=overwrite, what=what)  # exists: only with overwrite
    for path, foreign in (
        (out, _foreign_entry(out, folders)),
        (truth, foreign_csv(truth, *truth_headers)),
    ):
        if foreign:
            raise InputError(
                f"{path} was not written by synth ({foreign}); it is not replaced even with "
                "overwrite. Delete it yourself, or choose another path"
            )
    _check_space(real, needed_bytes)


def _foreign_entry(out: Path, folders: re.Pattern[str] = _LABEL_FOLDER) -> str:
    """Why the existing ``out`` is not a synth tree, holding only folders named like
    ``folders`` ("" if it is one, or empty, or absent)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        return "not a folder"
    if not out.exists():
        return ""
    for entry in sorted(os.scandir(out), key=lambda e: e.name):
        if not (entry.is_dir(follow_symlinks=False) and folders.fullmatch(entry.name)):
            if folders is _LABEL_FOLDER:
                return f"it holds {entry.name!r}, which is not an identity folder id00000…"
            msg = f"it holds {entry.name!r}, which is not a folder "
            return msg + folders.pattern.replace("|", " or ")
    return ""


def foreign_csv(path: Path, *headers: tuple[str, ...]) -> str:
    """Why the existing ``path`` is not a CSV whose first line is one of ``headers`` ("" if it
    is one, or absent)."""
    if not (path.exists() or path.is_symlink()):
        return ""
    if path.is_symlink() or not path.is_file():
        return "not a plain file"
    try:
        with path.open(encoding="utf-8", newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        header = []
    if tuple(header) not in headers:
        return f"its first line is not {','.join(headers[0])}"
    return ""


def _check_space(out: Path, needed: int) -> None:
    """Refuse a tree that would not fit on the disk of ``out`` (nearest existing folder)."""
    where = out
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return  # cannot tell: the write itself will say
    if needed > free:
        raise InputError(
            f"the dataset would take about {needed / 2**30:,.1f} GiB, and {where} has "
            f"{free / 2**30:,.1f} GiB free; ask for fewer or smaller images, or write elsewhere"
        )
