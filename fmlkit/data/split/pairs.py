"""`fmlkit pairs`: verification pair lists drawn from a split table and written to disk.

The draw is `fmlkit.data.split.draw.draw_pairs`; the formats (CSV, LFW pairs.txt) are
`fmlkit.data.formats.pair_lists`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fmlkit.columns import ERROR, FILE_NAME, FIRST, FOLD, ISSAME, LABEL, SECOND, SPLIT, SPLIT_VALUES
from fmlkit.data.formats.pair_lists import (
    PAIR_FOLDS,
    PairFormat,
    format_csv_pairs,
    format_lfw_pairs,
    lfw_numbers,
)
from fmlkit.data.formats.table import read_table
from fmlkit.data.split.draw import draw_pairs
from fmlkit.errors import InputError
from fmlkit.io import atomic_write_text


@dataclass(frozen=True)
class PairsReport:
    """What `make_pairs` selected and wrote."""

    output: Path
    selection: str  # e.g. "fold 0" or "split test"
    rows: int  # selected usable rows
    labels: int
    positives: int
    negatives: int
    max_label_positives: int  # the most positive pairs any one label takes part in
    max_label_negatives: int
    numbering: str  # lfw: "names" or "positions"; csv: ""
    seconds: float

    def summary(self) -> str:
        lines = [
            f"Drew {self.positives:,} positive and {self.negatives:,} negative pairs from "
            f"{self.selection}: {self.rows:,} rows, {self.labels:,} labels "
            f"in {self.seconds:.2f} s; the most per label: {self.max_label_positives:,} "
            f"positive, {self.max_label_negatives:,} negative"
        ]
        if self.numbering == "positions":
            lines.append(
                "File names are not LFW's name/name_NNNN.jpg: numbers are 1-based positions "
                "in each label's rows, in file_name order"
            )
        lines.append(f"Wrote {self.output}")
        return "\n".join(lines)


def make_pairs(
    info: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    positives: int,
    negatives: int,
    fold: int | None = None,
    split: str | None = None,
    seed: int = 0,
    fmt: PairFormat = "csv",
    max_per_label: int | None = None,
) -> PairsReport:
    """Draw verification pairs among the rows of ``info`` in one ``fold`` or ``split`` and
    write them to ``output`` (atomically).

    Rows with an ``error`` are never used. See `fmlkit.data.split.draw` for the draw and the module
    docstring for the formats.

    Raises:
        InputError: not exactly one of fold/split, nothing selected, too many pairs asked for,
            or an LFW list that cannot be written (unequal counts, labels with whitespace).
        SchemaError: no ``fold``/``split`` column to select by.
    """
    start = time.perf_counter()
    _check_options(positives, negatives, fold, split, seed, fmt, max_per_label)
    column, value = (FOLD, fold) if fold is not None else (SPLIT, split)
    how = f"Add it with `fmlkit split --mode {'folds' if column == FOLD else 'classes'}`."
    df = read_table(info, required=[FILE_NAME, LABEL, column], what="split table", fix=how)
    chosen = (df[column] == value).fillna(False).to_numpy(dtype=bool, copy=True)
    if ERROR in df:
        chosen &= (df[ERROR] == "").to_numpy(dtype=bool)
    selection = f"{column} {value}"
    if chosen.sum() < 2:
        values = sorted(v for v in df[column].dropna().unique() if v != "")
        found = ", ".join(str(v) for v in values) or "none"
        raise InputError(
            f"{selection} has {int(chosen.sum())} usable rows; pairs need two. "
            f"Values of {column} in {info}: {found}"
        )
    rows = df.loc[chosen]
    codes, names = pd.factorize(rows[LABEL], sort=True)
    pairs = draw_pairs(
        codes, positives=positives, negatives=negatives, seed=seed, max_per_label=max_per_label
    )
    first, second = pairs[FIRST].to_numpy(), pairs[SECOND].to_numpy()
    if fmt == "csv":
        files = rows[FILE_NAME].to_numpy()
        text = format_csv_pairs(pairs[ISSAME].to_numpy(), files[first], files[second])
        numbering = ""
    else:
        numbers, numbering = lfw_numbers(df[FILE_NAME], df[LABEL])
        labels, numbers = rows[LABEL].to_numpy(), numbers[chosen]
        text = format_lfw_pairs(
            pairs[ISSAME].to_numpy(), labels[first], numbers[first], labels[second], numbers[second]
        )
    atomic_write_text(output, text)
    same = pairs[ISSAME].to_numpy() == 1
    negative_use = np.bincount(codes[np.concatenate([first[~same], second[~same]])])
    return PairsReport(
        output=Path(output),
        selection=selection,
        rows=len(rows),
        labels=len(names),
        positives=positives,
        negatives=negatives,
        max_label_positives=int(np.bincount(codes[first[same]]).max(initial=0)),
        max_label_negatives=int(negative_use.max(initial=0)),
        numbering=numbering,
        seconds=time.perf_counter() - start,
    )


def _check_options(
    positives: int,
    negatives: int,
    fold: int | None,
    split: str | None,
    seed: int,
    fmt: str,
    max_per_label: int | None,
) -> None:
    if (fold is None) == (split is None):
        raise InputError("select the rows with exactly one of fold or split")
    if split is not None and split not in SPLIT_VALUES:
        raise InputError(f"split must be one of {', '.join(SPLIT_VALUES)}, not {split!r}")
    if positives < 0 or negatives < 0 or positives + negatives == 0:
        raise InputError(
            f"ask for ≥ 0 positives and negatives, not both 0: {positives}, {negatives}"
        )
    if seed < 0 or (max_per_label is not None and max_per_label < 1):
        raise InputError(f"need seed ≥ 0 and max_per_label ≥ 1: {seed}, {max_per_label}")
    if fmt not in ("csv", "lfw"):
        raise InputError(f"format must be csv or lfw, not {fmt!r}")
    if fmt == "lfw" and (positives != negatives or positives % PAIR_FOLDS):
        raise InputError(
            f"an LFW pairs.txt holds the same number of positives and negatives in each of "
            f"{PAIR_FOLDS} folds: ask for equal counts, a multiple of {PAIR_FOLDS} "
            f"(got {positives} and {negatives})"
        )
