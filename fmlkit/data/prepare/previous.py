"""An earlier dataset_info given to `fmlkit prepare` (``previous``): rows it may reuse.

The table is only a cache of what reading the files would give, so it is trusted no further
than it can be checked. A table that cannot be read whole (cut off mid-row, not UTF-8, a value
out of range, a file named twice) is refused with the reason; a row that reads but is not
what fmlkit writes (a malformed md5 or hash, a label that is not the file's folder, missing
sizes) is not reused: its file is read again, and the report counts and names such rows.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fmlkit.columns import (
    ERROR,
    FILE_NAME,
    FILE_SIZE,
    FORMAT,
    HEIGHT,
    LABEL,
    MD5,
    MODE,
    MTIME_NS,
    WIDTH,
)
from fmlkit.data.formats.table import check_unique_names, info_columns, read_dataset_info
from fmlkit.data.prepare.walk import FileEntry
from fmlkit.errors import SchemaError

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
_MD5 = re.compile(r"[0-9a-f]{32}")
_HASH = re.compile(r"[0-9a-f]{16}")


class PreviousTable:
    """An earlier dataset_info, matched against the (sorted) walk by a merge join.

    Attributes:
        damaged: file names of rows that matched a file unchanged but were not reused, with
            what is wrong with each (the file was read again).
    """

    def __init__(self, columns: dict[str, list[Any]], n: int, hash_names: Sequence[str]) -> None:
        self._cols = columns
        self._n = n
        self._at = 0
        self._hashes = tuple(hash_names)
        self.damaged: list[tuple[str, str]] = []

    @classmethod
    def load(cls, path: str | os.PathLike[str], hash_names: Sequence[str]) -> PreviousTable | None:
        """Read ``path``; None (with a warning) when it lacks a requested hash column.

        Raises:
            SchemaError: the table cannot be read whole (named, with what to do).
        """
        try:
            df = read_dataset_info(path)
            check_unique_names(df, path)
        except SchemaError as e:
            raise SchemaError(
                f"{e} (This is the previous table given for reuse: a scan without it reads "
                "every file again.)"
            ) from e
        wanted = info_columns(hash_names)
        missing = [c for c in wanted if c not in df.columns]
        if missing:
            log.warning(
                "%s has no %s column(s): every file is read again", path, ", ".join(missing)
            )
            return None
        df = df.sort_values(FILE_NAME, kind="stable", ignore_index=True)
        cols = {c: df[c].astype(object).where(df[c].notna(), None).tolist() for c in wanted}
        return cls(cols, len(df), hash_names)

    def row_for(self, entry: FileEntry) -> Row | None:
        """The old row of ``entry`` if the file is unchanged, was readable and the row is
        sound; else None (read the file)."""
        names = self._cols[FILE_NAME]
        while self._at < self._n and names[self._at] < entry.rel:
            self._at += 1
        i = self._at
        if not (
            i < self._n
            and names[i] == entry.rel
            and self._cols[FILE_SIZE][i] == entry.size
            and self._cols[MTIME_NS][i] == entry.mtime_ns
            and not self._cols[ERROR][i]  # errors are re-checked: `unreadable` can go away
        ):
            return None
        fault = self._fault(i, entry)
        if fault:
            self.damaged.append((entry.rel, fault))
            return None
        return tuple(col[i] for col in self._cols.values())

    def _fault(self, i: int, entry: FileEntry) -> str:
        """What makes row ``i`` unlike one fmlkit writes for a readable file ("" if nothing)."""
        col = self._cols
        if col[LABEL][i] != entry.label:
            return f"label {col[LABEL][i]!r}, but the file lies in {entry.label!r}"
        if not _MD5.fullmatch(str(col[MD5][i])):
            return f"md5 {col[MD5][i]!r} is not 32 hexadecimal digits"
        for name in self._hashes:
            if not _HASH.fullmatch(str(col[name][i])):
                return f"{name} {col[name][i]!r} is not 16 hexadecimal digits"
        if col[WIDTH][i] is None or col[HEIGHT][i] is None:
            return "no width or height"
        if not col[MODE][i] or not col[FORMAT][i]:
            return "no mode or format"
        return ""


def damaged_note(previous: Path, damaged: Sequence[tuple[str, str]], show: int = 3) -> str:
    """One line on the rows of ``previous`` that were not reused, with a few examples."""
    examples = "; ".join(f"{name!r}: {fault}" for name, fault in damaged[:show])
    more = f"; … and {len(damaged) - show:,} more" if len(damaged) > show else ""
    return (
        f"{len(damaged):,} row(s) of {previous} were not reused, being unlike what a scan "
        f"writes ({examples}{more}); their files were read again"
    )
