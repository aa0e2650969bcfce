"""Verification pair lists on disk: the ``1,a,b`` CSV and LFW's pairs.txt, written and read.

Two formats:

- ``csv``: one pair per line, no header: ``1,a/x.jpg,a/y.jpg`` (same label) or
  ``0,a/x.jpg,b/z.jpg``, file names as in dataset_info (quoted by the CSV rules where they hold
  a comma or quote). `fmlkit pairs` lays the pairs out in 10 blocks, each with a tenth of the
  positives then a tenth of the negatives, so the 10-fold protocol (folds in file order) sees
  both in each fold.
- ``lfw``: LFW's ``pairs.txt``: a first line ``10<TAB>n``, then per fold n matched lines
  ``name<TAB>n1<TAB>n2`` and n mismatched lines ``name1<TAB>n1<TAB>name2<TAB>n2``. The numbers
  are those in LFW-style names ``name/name_0001.jpg`` when every file is named so (four or
  more digits, zero-padded to four, one file per number); otherwise each file's 1-based
  position among its label's rows of the table, in file_name order.

docs/formats.md describes both, with the other pair sources `fmlkit evaluate` reads.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from fmlkit.columns import FIRST, ISSAME, LFW_COLUMNS, SECOND
from fmlkit.errors import FormatError, InputError

PAIR_FOLDS = 10  # the verification protocol's folds, and the blocks of a pair list


def format_csv_pairs(is_same: np.ndarray, first: np.ndarray, second: np.ndarray) -> str:
    """CSV text, one ``is_same,first,second`` line per pair, no header."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(zip(is_same.tolist(), first.tolist(), second.tolist(), strict=True))
    return out.getvalue()


def read_csv_pairs(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV pair list (``is_same,first,second``, no header) into ``is_same`` (0/1),
    ``first``, ``second``.

    Raises:
        FormatError: a line without three fields or with ``is_same`` not 0 or 1.
    """
    with Path(path).open(encoding="utf-8", newline="") as f:
        records = list(csv.reader(f))
    for number, record in enumerate(records, 1):
        if len(record) != 3 or record[0] not in ("0", "1"):
            raise FormatError(
                f"{path}, line {number}: expected is_same,first,second with is_same 0 or 1, "
                f"found {record!r}"
            )
    table = pd.DataFrame(records, columns=[ISSAME, FIRST, SECOND])
    return table.astype({ISSAME: np.int64})


def lfw_numbers(file_names: pd.Series, labels: pd.Series) -> tuple[np.ndarray, str]:
    """The number LFW's pairs.txt gives each row: from ``name/name_0001.ext`` names
    ("names"), else the 1-based position among the label's rows in file_name order
    ("positions")."""
    names = file_names.astype(str).to_numpy()
    label = labels.astype(str).to_numpy()
    numbers = np.zeros(len(names), dtype=np.int64)
    for at, (name, lab) in enumerate(zip(names.tolist(), label.tolist(), strict=True)):
        match = re.fullmatch(re.escape(lab) + "/" + re.escape(lab) + r"_(\d{4,})\.\w+", name)
        if match is None or f"{int(match.group(1)):04d}" != match.group(1):
            break  # LFW readers build name_%04d: other spellings would not map back
        numbers[at] = int(match.group(1))
    else:
        if not pd.DataFrame({"l": label, "n": numbers}).duplicated().any():
            return numbers, "names"  # (A_0001.jpg and A_0001.png would be ambiguous)
    order = np.lexsort((names, label))
    ranks = pd.Series(label[order]).groupby(label[order]).cumcount().to_numpy() + 1
    numbers[order] = ranks
    return numbers, "positions"


def format_lfw_pairs(
    is_same: np.ndarray,
    first_label: np.ndarray,
    first_number: np.ndarray,
    second_label: np.ndarray,
    second_number: np.ndarray,
) -> str:
    """LFW pairs.txt text for pairs laid out as `draw_pairs` does (10 blocks of n positives
    then n negatives)."""
    for name in set(first_label.tolist()) | set(second_label.tolist()):
        if not name or re.search(r"\s", name):
            raise InputError(
                f"label {name!r} is empty or holds whitespace, which LFW's tab-separated "
                "pairs.txt cannot carry; use --format csv"
            )
    per_fold = int(is_same.sum()) // PAIR_FOLDS
    lines = [f"{PAIR_FOLDS}\t{per_fold}"]
    for same, a, m, b, n in zip(
        is_same.tolist(),
        first_label.tolist(),
        first_number.tolist(),
        second_label.tolist(),
        second_number.tolist(),
        strict=True,
    ):
        lines.append(f"{a}\t{m}\t{n}" if same else f"{a}\t{m}\t{b}\t{n}")
    return "\n".join(lines) + "\n"


def read_lfw_pairs(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read LFW's pairs.txt into `LFW_COLUMNS` (``fold`` 0..folds-1 from the line order).

    Raises:
        FormatError: a bad header, a line of the wrong shape, or too few lines.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    head = lines[0].split() if lines else []
    if len(head) != 2 or not all(h.isdigit() for h in head):
        raise FormatError(f"{path}: the first line must be '<folds> <pairs per fold>', not {head}")
    folds, per_fold = int(head[0]), int(head[1])
    body = [line.split() for line in lines[1:] if line.strip()]
    if len(body) != 2 * folds * per_fold:
        raise FormatError(
            f"{path}: the header promises {folds} folds of {per_fold} matched and "
            f"{per_fold} mismatched pairs ({2 * folds * per_fold} lines); found {len(body)}"
        )
    records = []
    for at, fields in enumerate(body):
        fold, same = at // (2 * per_fold), at % (2 * per_fold) < per_fold
        shape = 3 if same else 4
        if len(fields) != shape or not (fields[1].isdigit() and fields[-1].isdigit()):
            kind = "matched: name n1 n2" if same else "mismatched: name1 n1 name2 n2"
            raise FormatError(f"{path}, line {at + 2}: expected {kind}, found {fields}")
        a, m, b, n = (fields[0], fields[1], fields[0], fields[2]) if same else fields
        records.append((int(same), a, int(m), b, int(n), fold))
    return pd.DataFrame(records, columns=list(LFW_COLUMNS))
