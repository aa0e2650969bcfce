"""`fmlkit filter --against`: the leakage check. Rows of the table within
``against_threshold`` pHash bits of an image of a test list or benchmark are removed as
``leak`` (`fmlkit.data.filter.filter.decide`).

The images come as a `Reference`: their names and hashes. A dataset_info table gives one here
(`reference_from_table`: its ``phash`` column as is); a ``.bin`` or a pair list gives one
through `fmlkit.eval.leak_reference.load_reference`, which reads them with the evaluation's
own readers and hashes the images (``fmlkit.data`` imports nothing from ``fmlkit.eval``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmlkit.columns import ERROR, FILE_NAME, PHASH
from fmlkit.data.filter.hamming import MalformedHash, hex_to_uint64, nearest_within
from fmlkit.errors import InputError

LEAK = "leak"


@dataclass(frozen=True, eq=False)
class Reference:
    """The hashed images of a test list or benchmark.

    Attributes:
        path: the file they were read from.
        names: per image, its name in reports: a file name, or ``NAME.bin#K`` for image K
            of a ``.bin``.
        hashes: per image, its pHash (uint64).
        sources: per image, where the report finds it: a file, encoded bytes, or None.
    """

    path: Path
    names: list[str]
    hashes: np.ndarray
    sources: list[Path | bytes | None]

    def __len__(self) -> int:
        return len(self.names)


def find_leaks(hashes: np.ndarray, reference: Reference, radius: int) -> tuple[np.ndarray, ...]:
    """For each hash, the nearest reference image within ``radius`` bits: ``(index,
    distance)``, -1 where none is (`fmlkit.data.filter.hamming.nearest_within`)."""
    return nearest_within(hashes, reference.hashes, radius)


def reference_from_table(source: Path, root: Path | None) -> Reference:
    """The reference images of a dataset_info table (CSV or Parquet): its ``phash`` column
    as is, rows with an ``error`` or no hash skipped; ``root``: where its files lie (for the
    report's thumbnails), or None.

    Raises:
        SchemaError: no ``file_name`` or ``phash`` column, or a table that cannot be read.
        InputError: a malformed hash (naming the row).
    """
    from fmlkit.data.formats.table import read_table

    df = read_table(source, required=[FILE_NAME, PHASH], what="the --against table")
    usable = df[PHASH].astype(str).ne("") & df[PHASH].notna()
    if ERROR in df:
        usable &= df[ERROR].fillna("").astype(str).eq("")
    df = df.loc[usable]
    names = df[FILE_NAME].astype(str).tolist()
    try:
        hashes = hex_to_uint64(df[PHASH].astype(str).tolist())
    except MalformedHash as e:
        raise InputError(
            f"--against {source}: row {df.index[e.position]} ({names[e.position]}): phash "
            f"{e.value!r} is not 16 hexadecimal characters; re-create it with `fmlkit prepare`"
        ) from e
    sources: list[Path | bytes | None] = [_inside(root, n) for n in names]
    return Reference(source, names, hashes, sources)


def _inside(root: Path | None, name: str) -> Path | None:
    """``root / name`` when it stays inside ``root`` (links followed); None otherwise, so that
    the report shows a tile saying so instead of reading a file outside the folder."""
    if root is None or Path(name).is_absolute():
        return None
    path = root / name
    return path if path.resolve().is_relative_to(root.resolve()) else None
