"""The reference images of `fmlkit filter --against` (the leakage check), read from any of:
a verification ``.bin`` (the images are inside), a text pair list (LFW ``pairs.txt`` or an
``is_same,first,second`` CSV, its files under a root), both read by `pair_sources.load_pairs`
with its path checks, or a dataset_info table (CSV with a ``file_name`` header, or Parquet),
whose ``phash`` column is used as is. Images are hashed as `fmlkit prepare` hashes them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from fmlkit.columns import FILE_NAME, PHASH
from fmlkit.data.filter.leak import Reference, reference_from_table
from fmlkit.errors import FormatError, InputError, OptionError
from fmlkit.progress import track


def load_reference(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> Reference:
    """Read and hash the reference images at ``path``; ``root`` is the folder a text pair
    list's or a table's file names are relative to.

    Raises:
        OptionError: a text pair list without ``root``.
        InputError: a missing file or a folder, names that lead outside ``root`` or are missing
            there, an unreadable image, a malformed hash, or no usable image at all.
        FormatError: content that is neither a pair list nor a dataset_info table.
    """
    source = Path(path)
    if not source.is_file():
        what = "is a directory, not a file" if source.is_dir() else "does not exist"
        raise InputError(
            f"--against {source} {what}; give a verification .bin, a pair list or a "
            "dataset_info table"
        )
    base = None if root is None else Path(root)
    ref = reference_from_table(source, base) if _is_table(source) else _from_pairs(source, base)
    if not len(ref):
        raise InputError(f"--against {source} holds no usable image to check the table against")
    return ref


def _is_table(source: Path) -> bool:
    """A dataset_info table: Parquet by suffix, or a CSV whose header names ``file_name``."""
    if source.suffix.lower() == ".parquet":
        return True
    with source.open("rb") as f:
        head = f.readline(1 << 16)
    fields = head.decode("utf-8", "replace").strip().lstrip("\ufeff").split(",")
    return FILE_NAME in fields


def _from_pairs(source: Path, root: Path | None) -> Reference:
    from fmlkit.eval.pair_sources import load_pairs, locate_files, unusable_error

    pairs = load_pairs(source)
    if pairs.images is not None:  # a .bin
        names = [f"{source.name}#{k}" for k in range(len(pairs.images))]
        hashes = [_hash(b, n, source) for b, n in zip(pairs.images, names, strict=True)]
        return Reference(source, names, np.asarray(hashes, np.uint64), list(pairs.images))
    if root is None:
        raise OptionError(
            "{against} is a text pair list: its file names need {against_root}, the folder "
            "they are relative to",
            against=source,
        )
    located = locate_files(pairs, root)
    problems = located.problems(root, option="--against-root")
    if problems:
        raise unusable_error(pairs, problems, 0, skip_hint=False)
    names = sorted(located.paths)
    work = [(n, located.paths[n]) for n in names]
    hashes = [_hash(p, n, source) for n, p in track(work, desc="hashing --against images")]
    return Reference(source, names, np.asarray(hashes, np.uint64), [p for _, p in work])


def _hash(image: Path | bytes, name: str, source: Path) -> int:
    """The pHash of one image as `fmlkit prepare` computes it (upright, as training sees it)."""
    from PIL import Image, ImageOps

    from fmlkit.data.formats.hashing import compute_hashes

    try:
        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as img:
            (value,) = compute_hashes(ImageOps.exif_transpose(img), [PHASH])
    except Exception as exc:  # any decoder failure: name the image
        error = FormatError if isinstance(image, bytes) else InputError
        raise error(
            f"--against {source}: image {name} cannot be read ({type(exc).__name__}); fix "
            "or remove it from the list"
        ) from None
    return int(value, 16)
