"""Space-separated text columns (IJB's meta files), read fast and checked line by line.

`read_columns` parses with a C reader (numpy's ``loadtxt`` for all-integer files: IJB-C's
15.7M template pairs in about 1.5 s and half pandas' memory; pandas' C reader when a column
holds names). When that reader refuses the file, a line-by-line scan parses it (any whitespace
separates fields) or stops at its first bad line; when it reads a label other than 0/1 or a
NaN/inf, only that row's line is looked up. Either way the message names the file and line:
``FILE:LINE: expected "<fields>", found "<line>" (<why>)``.
"""

from __future__ import annotations

import csv
import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from fmlkit.errors import InputError

_DTYPES = {"name": str, "int": np.int64, "label": np.int64, "float": np.float64}
SHOWN = 120  # characters of a bad line quoted in a message


def read_columns(path: Path, kinds: tuple[str, ...], fields: str) -> list[np.ndarray]:
    """The columns of a space-separated file, one array per field, blank lines skipped.

    Args:
        path: the file.
        kinds: one per field: ``"name"`` (object array of str), ``"int"`` (int64),
            ``"label"`` (int64, 0 or 1) or ``"float"`` (float64, finite).
        fields: the expected line, for messages (``"template_a template_b label"``).

    Raises:
        InputError: ``FILE:LINE: expected "<fields>", found "<line>" (<why>)`` for the first
            line with the wrong number of fields or a bad value.
    """
    columns = _fast_columns(path, kinds)
    if columns is None:
        return _scan_columns(path, kinds, fields)
    bad = np.zeros(len(columns[0]), dtype=bool)
    for column, kind in zip(columns, kinds, strict=True):
        if kind == "label" and column.size and (column.min() < 0 or column.max() > 1):
            bad |= (column < 0) | (column > 1)
        elif kind == "float":
            bad |= ~np.isfinite(column)
    if bad.any():  # a label not 0/1 or a NaN/inf: name its line without parsing them all
        number, line = line_of_row(path, int(np.flatnonzero(bad)[0]))
        why = _bad_fields(line.split(), kinds) or "a bad value"
        raise InputError(f'{path}:{number}: expected "{fields}", found "{line[:SHOWN]}" ({why})')
    return columns


def _fast_columns(path: Path, kinds: tuple[str, ...]) -> list[np.ndarray] | None:
    """`read_columns` by a C reader (None when it refuses the file): numpy's ``loadtxt`` for
    integer files (half pandas' memory), pandas' C reader when a column holds names."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # loadtxt warns of an empty file
            if "name" not in kinds and "float" not in kinds:
                table = np.loadtxt(path, dtype=np.int64, comments=None, ndmin=2, encoding="utf-8")
                if table.size == 0 or table.shape[1] != len(kinds):
                    return None
                return [table[:, i] for i in range(len(kinds))]
            frame = pd.read_csv(
                path,
                sep=" ",
                header=None,
                dtype={i: _DTYPES[kind] for i, kind in enumerate(kinds)},
                engine="c",
                quoting=csv.QUOTE_NONE,
                na_filter=False,
                encoding="utf-8",
            )
    except (ValueError, OverflowError):  # pandas' ParserError and EmptyDataError included
        return None
    if frame.shape[1] != len(kinds):
        return None
    return [
        frame[i].to_numpy(dtype=object if kind == "name" else _DTYPES[kind])
        for i, kind in enumerate(kinds)
    ]


def _scan_columns(path: Path, kinds: tuple[str, ...], fields: str) -> list[np.ndarray]:
    """`read_columns`, line by line: any whitespace separates; the first bad line raises."""
    values: list[list[object]] = [[] for _ in kinds]
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(
                    f'{path}:{number}: not UTF-8 text; expected "{fields}" lines'
                ) from None
            parts = line.split()
            if not parts:
                continue
            why = _bad_fields(parts, kinds)
            if why:
                found = line.rstrip("\r\n")[:SHOWN]
                raise InputError(f'{path}:{number}: expected "{fields}", found "{found}" ({why})')
            for column, part, kind in zip(values, parts, kinds, strict=True):
                column.append(part if kind == "name" else _number(part, kind))
    return [
        np.array(column, dtype=object if kind == "name" else _DTYPES[kind])
        for column, kind in zip(values, kinds, strict=True)
    ]


def _number(text: str, kind: str) -> int | float:
    return float(text) if kind == "float" else int(text)


def _bad_fields(parts: list[str], kinds: tuple[str, ...]) -> str:
    """Why a line's fields do not fit ``kinds`` ('' when they do)."""
    if len(parts) != len(kinds):
        return f"{len(kinds)} fields, found {len(parts)}"
    for part, kind in zip(parts, kinds, strict=True):
        if kind == "name":
            continue
        try:
            value = _number(part, kind)
        except ValueError:
            return f"{part!r} is not {'a number' if kind == 'float' else 'an integer'}"
        if kind != "float" and not -(2**63) <= value < 2**63:
            return f"{part!r} is out of the 64-bit integer range"
        if kind == "label" and value not in (0, 1):
            return f"label {part!r} is not 0 or 1"
        if kind == "float" and not np.isfinite(value):
            return f"{part!r} is not a finite number"
    return ""


def line_of_row(path: Path, row: int) -> tuple[int, str]:
    """The 1-based line number and text of data row ``row`` (0-based, blank lines skipped)."""
    with path.open(encoding="utf-8", errors="replace") as f:
        rows = ((number, line) for number, line in enumerate(f, 1) if line.strip())
        number, line = next(itertools.islice(rows, row, None), (row + 1, ""))
    return number, line.rstrip("\r\n")
