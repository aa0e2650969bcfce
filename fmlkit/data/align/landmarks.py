"""Landmark files: 5 points per face read from VGGFace2's ``loose_landmark_*.csv``, LFW's list,
insightface/IJB's ``name x1 y1 … x5 y5 score`` lists, or a CSV ``file_name,x1,y1,…,x5,y5``.

The format is told from the content (`read_landmarks`): a first line ``NAME_ID,P1X,…`` is
VGGFace2's; another comma-separated header with ``file_name`` and ``x1``…``y5`` is the CSV (other
columns, such as ``label``, box columns or ``score``, are ignored; several rows of one file are
several faces); whitespace-separated lines of 11 fields are LFW's (``path`` and 10 numbers), of
12 fields insightface's (the 12th a score). A line that fits none is an `InputError` naming the
file and its line number.

Names are matched to the images as given, and without their extension (VGGFace2's NAME_ID
``n000002/0001_01`` names ``n000002/0001_01.jpg``); points are in the pixels of the image as
fmlkit decodes it (EXIF orientation applied; VGGFace2 and LFW store no orientation, so their
stored pixels are those).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from fmlkit.columns import FILE_NAME, LANDMARK_COLUMNS
from fmlkit.data.align.types import Face
from fmlkit.errors import InputError

_VGGFACE2_HEADER = ["NAME_ID", *(f"P{i}{axis}" for i in range(1, 6) for axis in "XY")]
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Landmarks:
    """The faces of a landmark file, by image name.

    Attributes:
        path: the file read.
        format: ``vggface2``, ``lfw``, ``insightface`` or ``csv``.
        faces: image name (as written, "/"-separated) → its faces, in file order.
    """

    path: Path
    format: str
    faces: dict[str, list[Face]] = field(default_factory=dict)

    def lookup(self, file_name: str) -> tuple[str, list[Face]] | None:
        """The key and faces of ``file_name`` (a POSIX path relative to the dataset root): as
        written, or without its extension; None when the file names no such image."""
        for key in (file_name, str(PurePosixPath(file_name).with_suffix(""))):
            if key in self.faces:
                return key, self.faces[key]
        return None


def read_landmarks(path: str | os.PathLike[str]) -> Landmarks:
    """Read a landmark file in any of the module's formats, told from its content.

    Raises:
        InputError: the file cannot be read, is empty, or has a line that fits no format
            (naming the file and the line number).
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"landmark file {source} is not UTF-8 text ({e.reason})") from e
    except OSError as e:
        raise InputError(f"cannot read landmark file {source}: {e.strerror or e}") from e
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise InputError(f"landmark file {source} is empty; expected one face per line")
    head = lines[first]
    if "," in head:
        return _read_csv(source, lines, first)
    fields = len(_SPACES.split(head.strip()))
    kind = {11: "lfw", 12: "insightface"}.get(fields)
    if kind is None:
        raise InputError(
            f"{source} line {first + 1}: {fields} fields; expected a CSV header (NAME_ID,P1X,… "
            "or file_name,x1,y1,…,y5), or 'path x1 y1 … x5 y5' (11 fields, LFW) or "
            "'name x1 y1 … x5 y5 score' (12 fields, insightface)"
        )
    result = Landmarks(source, kind)
    for number, line in enumerate(lines[first:], first + 1):
        if not line.strip():
            continue
        parts = _SPACES.split(line.strip())
        if len(parts) != fields:
            raise InputError(
                f"{source} line {number}: {len(parts)} fields, expected {fields} as on line "
                f"{first + 1} ({kind} format: name, 10 coordinates"
                f"{', score' if fields == 12 else ''}); fix or delete the line"
            )
        values = _numbers(parts[1:], source, number)
        score = values[10] if fields == 12 else 1.0
        _add(result, parts[0], values[:10], score, source, number)
    return result


def _read_csv(source: Path, lines: list[str], first: int) -> Landmarks:
    rows = csv.reader(lines[first:])
    header = [name.strip() for name in next(rows)]
    if header[: len(_VGGFACE2_HEADER)] == _VGGFACE2_HEADER:
        kind, name_col = "vggface2", 0
        coords = list(range(1, 11))
    elif FILE_NAME in header and all(c in header for c in LANDMARK_COLUMNS):
        kind, name_col = "csv", header.index(FILE_NAME)
        coords = [header.index(c) for c in LANDMARK_COLUMNS]
    else:
        raise InputError(
            f"{source} line {first + 1}: a CSV header without the landmark columns; expected "
            f"{','.join(_VGGFACE2_HEADER)} (VGGFace2) or {FILE_NAME},"
            f"{','.join(LANDMARK_COLUMNS)} (other columns are ignored)"
        )
    result = Landmarks(source, kind)
    for number, row in enumerate(rows, first + 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InputError(
                f"{source} line {number}: {len(row)} fields, expected {len(header)} as in the "
                "header; fix or delete the line"
            )
        values = _numbers([row[i] for i in coords], source, number)
        _add(result, row[name_col].strip(), values, 1.0, source, number)
    return result


def _numbers(cells: Iterable[str], source: Path, number: int) -> list[float]:
    values = []
    for cell in cells:
        try:
            value = float(cell)
        except ValueError:
            raise InputError(
                f"{source} line {number}: {cell.strip()!r} is not a number; fix or delete the line"
            ) from None
        values.append(value)
    return values


def _add(
    result: Landmarks, name: str, values: list[float], score: float, source: Path, number: int
) -> None:
    if not name:
        raise InputError(f"{source} line {number}: no image name; fix or delete the line")
    if not math.isfinite(score):
        raise InputError(f"{source} line {number}: score {score} is not a finite number")
    points = np.array(values, dtype=np.float64).reshape(5, 2)
    with np.errstate(invalid="ignore"):
        box = (
            float(np.min(points[:, 0])),
            float(np.min(points[:, 1])),
            float(np.max(points[:, 0])),
            float(np.max(points[:, 1])),
        )
    key = name.replace("\\", "/")
    key = key[2:] if key.startswith("./") else key
    result.faces.setdefault(key, []).append(Face(box, points, min(max(score, 0.0), 1.0)))
