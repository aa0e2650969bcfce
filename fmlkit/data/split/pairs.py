"""`fmlkit pairs`: verification pair lists drawn from a split table and written to disk.

The draw is `fmlkit.data.split.draw.draw_pairs`; the formats (CSV, LFW pairs.txt) are
`fmlkit.data.formats.pair_lists`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd

from fmlkit.choices import PairFormat
from fmlkit.columns import ERROR, FILE_NAME, FIRST, FOLD, ISSAME, LABEL, SECOND, SPLIT, SPLIT_VALUES
from fmlkit.data.formats.pair_lists import (
    PAIR_FOLDS,
    format_csv_pairs,
    format_lfw_pairs,
    lfw_numbers,
)
from fmlkit.data.formats.table import check_unique_names, read_table
from fmlkit.data.split.draw import draw_pairs
from fmlkit.errors import InputError, OptionError
from fmlkit.io import atomic_write_text, check_apart


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


@dataclass(frozen=True, kw_only=True)
class PairsOptions:
    """`make_pairs`'s options, checked on construction: `OptionError` (naming the options) for
    a bad value or options that do not fit together.

    Attributes:
        positives: same-label pairs to draw (≥ 0).
        negatives: cross-label pairs to draw (≥ 0; not both 0).
        fold: draw among the rows of this fold…
        split: …or of this split (``train`` or ``test``): exactly one of the two.
        seed: integer seed (≥ 0).
        fmt: ``csv`` or ``lfw`` (LFW's pairs.txt: equal counts, a multiple of 10).
        max_per_label: a label takes part in at most this many positive pairs, and this many
            negative pairs (≥ 1); None: no cap beyond the even spread.
    """

    positives: int
    negatives: int
    fold: int | None = None
    split: str | None = None
    seed: int = 0
    fmt: PairFormat = "csv"
    max_per_label: int | None = None

    def __post_init__(self) -> None:
        if (self.fold is None) == (self.split is None):
            raise OptionError("select the rows with exactly one of {fold} or {split}")
        if self.split is not None and self.split not in SPLIT_VALUES:
            raise OptionError(
                f"{{split}} must be one of {', '.join(SPLIT_VALUES)}, not {self.split!r}"
            )
        if self.positives < 0 or self.negatives < 0:
            raise OptionError(
                f"{{positives}} and {{negatives}} must be ≥ 0, not {self.positives} and "
                f"{self.negatives}"
            )
        if self.positives + self.negatives == 0:
            raise OptionError("ask for some {positives} or {negatives}, not both 0")
        if self.seed < 0:
            raise OptionError(f"need {{seed}} ≥ 0, not {self.seed}")
        if self.max_per_label is not None and self.max_per_label < 1:
            raise OptionError(f"need {{max_per_label}} ≥ 1, not {self.max_per_label}")
        if self.fmt not in get_args(PairFormat):
            raise OptionError(f"{{fmt}} must be csv or lfw, not {self.fmt!r}")
        if self.fmt == "lfw" and (self.positives != self.negatives or self.positives % PAIR_FOLDS):
            raise OptionError(
                f"{{fmt}} needs {{positives}} equal to {{negatives}} and a multiple of "
                f"{PAIR_FOLDS} (got {self.positives} and {self.negatives}): an LFW pairs.txt "
                f"holds the same number of each in each of its {PAIR_FOLDS} folds",
                fmt="lfw",
            )


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
        OptionError: options that do not fit together (`PairsOptions`: not exactly one of
            fold/split, no pairs asked for, LFW with unequal counts), checked first.
        InputError: nothing selected, too many pairs asked for, an LFW list that cannot be
            written (labels with whitespace), or ``output`` is ``info``.
        SchemaError: no ``fold``/``split`` column to select by, a damaged table, or a
            ``file_name`` in two rows (it would be paired with itself).
    """
    start = time.perf_counter()
    PairsOptions(
        positives=positives,
        negatives=negatives,
        fold=fold,
        split=split,
        seed=seed,
        fmt=fmt,
        max_per_label=max_per_label,
    )
    check_apart({"split table": info, "output": output}, fix="write the pairs to another file")
    column, value = (FOLD, fold) if fold is not None else (SPLIT, split)
    how = f"Add it with `fmlkit split --mode {'folds' if column == FOLD else 'classes'}`."
    df = read_table(info, required=[FILE_NAME, LABEL, column], what="split table", fix=how)
    check_unique_names(df, info)
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
