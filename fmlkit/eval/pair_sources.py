"""Verification pair lists for `fmlkit evaluate` and the training's validation, in any of three
formats, told apart by their content (never by the file name's extension):

- an InsightFace ``.bin`` (a pickle: the first byte is ``\\x80``, or ``(``/``]`` for protocols
  0-1): the images are inside the file; pair k is images 2k and 2k + 1 (docs/formats.md). Loaded
  with `fmlkit.data.formats.insightface_bin.load_bin`, which runs nothing the file contains.
- LFW's ``pairs.txt``: a first line ``<folds> <pairs per fold>``, then ``name n1 n2`` (matched)
  and ``name1 n1 name2 n2`` (mismatched) lines; the files are ``name/name_%04d.jpg``
  (docs/formats.md). When that ``.jpg`` is absent, the same name with another image extension
  (`LFW_SUFFIXES`, in that order) is used, so lists that `fmlkit pairs --format lfw` wrote for
  PNG files work too.
- a CSV of ``is_same,first,second`` lines (``1,a/1.jpg,a/2.jpg``), no header.

Names in text lists are relative to an image root. `locate_files` finds them there and refuses
every name that would lead outside it (``../../etc/passwd``, absolute paths, symbolic links
that resolve outside the root): such a file is never opened.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from fmlkit.data.formats.parquet_layout import find_pairs
from fmlkit.errors import FormatError, InputError

PairSource = Literal["csv", "lfw", "bin"]
LFW_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
PICKLE_STARTS = (b"\x80", b"(", b"]")  # protocol ≥ 2; a tuple or a list at protocols 0-1
SHOWN = 3  # how many bad names an error message lists
EXPECTED = (
    "an InsightFace verification .bin (a pickle of images and issame flags), LFW's pairs.txt "
    "(a first line '<folds> <pairs per fold>', e.g. '10\\t300', then 'name n1 n2' and "
    "'name1 n1 name2 n2' lines), or a CSV of 'is_same,first,second' lines "
    "(e.g. '1,id1/a.jpg,id1/b.jpg')"
)


@dataclass(frozen=True, eq=False)
class PairList:
    """The pairs of one list, in file order.

    Attributes:
        name: the file's stem (``lfw`` for ``lfw.bin``): the benchmark's name in reports.
        path: the file it was read from.
        source: ``csv``, ``lfw`` or ``bin``.
        first: per pair, the first image: a file name relative to the image root (object
            array of str), or for a ``.bin`` an index into ``images`` (int64).
        second: the second image, likewise.
        same: per pair, True when both images show one identity.
        images: a ``.bin``'s encoded images (JPEG/PNG bytes); None for text lists.
    """

    name: str
    path: Path
    source: PairSource
    first: np.ndarray
    second: np.ndarray
    same: np.ndarray
    images: tuple[bytes, ...] | None = None

    def __len__(self) -> int:
        return len(self.same)

    @property
    def files(self) -> list[str]:
        """The distinct file names of a text list, sorted (empty for a ``.bin``)."""
        if self.images is not None:
            return []
        return sorted(set(self.first.tolist()) | set(self.second.tolist()))

    def candidates(self, name: str) -> tuple[str, ...]:
        """The file names to try, in order, for ``name``: itself, and for an LFW list the
        same name with the other `LFW_SUFFIXES`."""
        if self.source != "lfw":
            return (name,)
        stem = name.rsplit(".", 1)[0]
        return (name, *(stem + s for s in LFW_SUFFIXES if stem + s != name))


def load_pairs(path: str | os.PathLike[str]) -> PairList:
    """Read a pair list, detecting its format from the content (see the module docstring).

    Raises:
        InputError: ``path`` is missing, a directory, or holds no pairs.
        FormatError: content in none of the three formats, or a malformed line or pickle.
    """
    source = Path(path)
    try:
        pairs = _read(source, sniff(source))
    except UnicodeDecodeError as exc:
        raise FormatError(f"{source}: byte {exc.start} is not UTF-8; expected {EXPECTED}") from None
    if not len(pairs):
        raise InputError(f"{source} holds no pairs; expected {EXPECTED}")
    return pairs


def _read(source: Path, kind: PairSource) -> PairList:
    from fmlkit.columns import (
        FIRST,
        FIRST_LABEL,
        FIRST_NUMBER,
        ISSAME,
        SECOND,
        SECOND_LABEL,
        SECOND_NUMBER,
    )
    from fmlkit.data.formats.pair_lists import read_csv_pairs, read_lfw_pairs

    if kind == "bin":
        from fmlkit.data.formats.insightface_bin import load_bin

        data = load_bin(source)
        index = np.arange(0, 2 * data.num_pairs, 2, dtype=np.int64)
        pairs = PairList(
            source.stem, source, kind, index, index + 1, np.asarray(data.issame, bool),
            tuple(data.images),
        )  # fmt: skip
    elif kind == "lfw":
        table = read_lfw_pairs(source)
        first = [
            _lfw_name(a, n) for a, n in zip(table[FIRST_LABEL], table[FIRST_NUMBER], strict=True)
        ]
        second = [
            _lfw_name(b, n) for b, n in zip(table[SECOND_LABEL], table[SECOND_NUMBER], strict=True)
        ]
        same = table[ISSAME].to_numpy() == 1
        pairs = PairList(source.stem, source, kind, _names(first), _names(second), same)
    else:
        table = read_csv_pairs(source)
        first, second = table[FIRST].tolist(), table[SECOND].tolist()
        same = table[ISSAME].to_numpy() == 1
        pairs = PairList(source.stem, source, kind, _names(first), _names(second), same)
    return pairs


def sniff(path: Path) -> PairSource:
    """The format of the pair list at ``path``, from its first bytes and first line.

    Raises:
        InputError: a missing file, a directory, or an empty file.
        FormatError: none of the three formats.
    """
    try:
        with path.open("rb") as f:
            head = f.read(1 << 16)
    except FileNotFoundError:
        raise InputError(f"pair list {path}: no such file") from None
    except IsADirectoryError:
        hint, pairs = "", find_pairs(path)
        if pairs is not None:
            hint = f"; the pair list of a .bin converted to Parquet is {pairs}"
        raise InputError(f"pair list {path} is a directory, not a file{hint}") from None
    if head.startswith(PICKLE_STARTS):
        return "bin"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(head) < 1 << 16 or exc.start < len(head) - 4:  # not a character cut in two
            raise FormatError(
                f"{path}: not UTF-8 text nor a pickle, so not a pair list; expected {EXPECTED}"
            ) from None
        text = head[: exc.start].decode("utf-8")
    line = next((ln for ln in text.splitlines() if ln.strip()), None)
    if line is None:
        raise InputError(f"{path} is empty: it holds no pairs; expected {EXPECTED}")
    fields = line.split()
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return "lfw"
    record = next(csv.reader([line]))
    if len(record) == 3 and record[0] in ("0", "1"):
        return "csv"
    raise FormatError(f"{path}: not a pair list; expected {EXPECTED}; found first line {line!r}")


@dataclass(frozen=True)
class LocatedFiles:
    """Where the images of a text pair list lie under a root."""

    paths: dict[str, Path]  # file name in the list → the file (resolved, inside the root)
    outside: list[str]  # names that lead outside the root: refused, never opened
    missing: list[str]  # names with no file under the root

    def problems(self, root: Path, *, option: str = "--root") -> list[tuple[str, str]]:
        """``(name, why)`` for every name that cannot be used, outside-root names first
        (``option``: how the root was given, for the message)."""
        return [(n, f"outside {option} {root}") for n in self.outside] + [
            (n, f"not found under {root}") for n in self.missing
        ]


def locate_files(pairs: PairList, root: str | os.PathLike[str]) -> LocatedFiles:
    """Find the files a text pair list names under ``root``.

    A name is refused (listed in ``outside``) when it is absolute or, once ``..`` and symbolic
    links are resolved, leads outside ``root``; it is ``missing`` when no regular file is there
    (for an LFW list: under any of its `PairList.candidates`).

    Raises:
        InputError: ``root`` is not a directory.
    """
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"image root {base} is not a directory; pass the folder the pair list's "
                         "file names are relative to")  # fmt: skip
    base = base.resolve()
    paths: dict[str, Path] = {}
    outside, missing = [], []
    for name in pairs.files:
        found, escaped = None, False
        for candidate in pairs.candidates(name):
            path = _inside(base, candidate)
            if path is None:
                escaped = True
                break
            if path.is_file():
                found = path
                break
        if escaped:
            outside.append(name)
        elif found is None:
            missing.append(name)
        else:
            paths[name] = found
    return LocatedFiles(paths, outside, missing)


def _inside(root: Path, name: str) -> Path | None:
    """``root/name`` resolved, or None when it leads outside ``root`` (or cannot be a path)."""
    if not name or PurePosixPath(name).is_absolute() or Path(name).is_absolute() or "\0" in name:
        return None
    try:
        path = (root / name).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, an impossible name
        return None
    return path if path.is_relative_to(root) else None


def unusable_error(
    pairs: PairList, problems: Sequence[tuple[str, str]], dropped: int, *, skip_hint: bool = True
) -> InputError:
    """The error for a list naming files that cannot be used: how many, the first few and
    why, and how many pairs ``--skip-missing`` would drop."""
    shown = "; ".join(f"{name} ({why})" for name, why in problems[:SHOWN])
    more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    hint = (
        f". Fix the list or the root, or pass --skip-missing to drop the {dropped:,} of "
        f"{len(pairs):,} pairs that name them"
        if skip_hint
        else ""
    )
    return InputError(
        f"{pairs.path} names {len(problems):,} image(s) that cannot be used: {shown}{more}{hint}"
    )


def pair_positions(pairs: PairList, rows: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """``first`` and ``second`` of a text list as int64 rows of ``rows`` (−1 for a name
    ``rows`` lacks or maps to −1: an unusable image)."""
    first = np.fromiter((rows.get(n, -1) for n in pairs.first.tolist()), np.int64, len(pairs))
    second = np.fromiter((rows.get(n, -1) for n in pairs.second.tolist()), np.int64, len(pairs))
    return first, second


def _lfw_name(label: str, number: int) -> str:
    return f"{label}/{label}_{int(number):04d}.jpg"


def _names(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
