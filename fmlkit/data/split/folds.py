"""`fmlkit split`: folds and train/test splits of a dataset_info table, one added column.

Four rules, each a pure function of the rows' labels and a seed:

- `stratified_folds` (``--by image``): scikit-learn's StratifiedKFold allocation. Rows sorted by
  label are dealt round-robin to folds 0..k-1, so within each label fold sizes differ by at most
  one, and so do the folds' totals; which rows of a label get which fold is random. Labels with
  fewer than k rows cannot be stratified: their rows get fold -1 (always train).
- `label_folds` (``--by label``): identity-disjoint folds. Labels, largest first (ties in random
  order), each go to the fold with the fewest rows so far; every label lies in one fold, the
  folds' totals differ by at most the largest label's size.
- `class_range_split`: easy_metric_learning's rule: labels with ``min_samples`` to
  ``max_samples`` rows (inclusive) are train, the others test.
- `holdout_split`: a random identity-disjoint holdout of round(test_fraction × labels) labels.

Rows with an ``error`` (unreadable images) are not counted and not assigned: their fold is
empty (<NA>) and their split "". Input rows, their order and columns are kept; an existing
``fold`` or ``split`` column is replaced where it stands. Same input and seed, same bytes out.
"""

from __future__ import annotations

import heapq
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd

from fmlkit.choices import FoldBy, SplitMode
from fmlkit.columns import ERROR, FILE_NAME, FOLD, LABEL, SPLIT
from fmlkit.data.formats.table import check_unique_names, read_table, write_table
from fmlkit.errors import InputError, OptionError

log = logging.getLogger(__name__)

ALWAYS_TRAIN = -1  # the fold of rows whose label has fewer than k rows (``by="image"``)
DEFAULT_K: int = 5
DEFAULT_BY: FoldBy = "image"
_CLASS_OPTIONS = ("min_samples", "max_samples", "test_fraction")  # mode="classes" only


def stratified_folds(codes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Stratified K-fold over rows: a fold 0..k-1 per row, or -1 where the label has < k rows.

    Args:
        codes: integer label code per row (0..L-1).
        k: number of folds (≥ 2).
        seed: seeds the order of rows within each label.
    """
    codes = np.asarray(codes, dtype=np.int64)
    counts = np.bincount(codes)
    rng = np.random.default_rng(seed)
    # rows sorted by label, in random order within a label
    order = np.lexsort((rng.random(len(codes)), codes))
    order = order[counts[codes[order]] >= k]
    folds = np.full(len(codes), ALWAYS_TRAIN, dtype=np.int64)
    folds[order] = np.arange(len(order)) % k
    return folds


def label_folds(codes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Identity-disjoint folds balanced by row count: a fold 0..k-1 per row.

    Args:
        codes: integer label code per row (0..L-1, each code used); needs at least k labels.
        k: number of folds (≥ 2).
        seed: orders labels of equal size.
    """
    codes = np.asarray(codes, dtype=np.int64)
    counts = np.bincount(codes)
    assert len(counts) >= k, "fewer labels than folds"
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.permutation(len(counts)), -counts))
    totals = [(0, fold) for fold in range(k)]  # a heap: (rows so far, fold)
    label_fold = np.empty(len(counts), dtype=np.int64)
    for label in order.tolist():
        rows, fold = heapq.heappop(totals)
        label_fold[label] = fold
        heapq.heappush(totals, (rows + int(counts[label]), fold))
    return label_fold[codes]


def class_range_split(
    codes: np.ndarray, min_samples: int = 1, max_samples: int | None = None
) -> np.ndarray:
    """ "train" for rows of labels with ``min_samples``..``max_samples`` rows, else "test"."""
    counts = np.bincount(np.asarray(codes, dtype=np.int64))
    train = counts >= min_samples
    if max_samples is not None:
        train &= counts <= max_samples
    return np.where(train, "train", "test").astype(object)[codes]


def holdout_split(codes: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """ "test" for the rows of round(test_fraction × labels) random labels (at least one, and
    at least one label left to train), else "train"."""
    n_labels = int(np.max(codes)) + 1 if len(codes) else 0
    assert n_labels >= 2, "a holdout needs two labels"
    n_test = min(max(round(test_fraction * n_labels), 1), n_labels - 1)
    test = np.zeros(n_labels, dtype=bool)
    test[np.random.default_rng(seed).permutation(n_labels)[:n_test]] = True
    return np.where(test, "test", "train").astype(object)[codes]


@dataclass(frozen=True)
class SplitReport:
    """What `split_dataset` assigned and wrote."""

    output: Path
    column: str  # FOLD or SPLIT
    rule: str  # in words, with the seed
    rows: int
    unassigned: int  # rows with an error
    groups: Mapping[str, tuple[int, int]]  # fold or split value -> (rows, labels)
    seconds: float

    def summary(self) -> str:
        lines = [f"Split {self.rows:,} rows {self.rule} in {self.seconds:.2f} s", ""]
        lines.append(f"  {self.column:>6}  {'rows':>10}  {'labels':>8}")
        for value, (rows, labels) in self.groups.items():
            note = "  (labels with fewer than k rows: always train)" if value == "-1" else ""
            lines.append(f"  {value:>6}  {rows:>10,}  {labels:>8,}{note}")
        if self.unassigned:
            lines += [
                "",
                f"{self.unassigned:,} rows with an error were not assigned "
                f"(empty {self.column}); `fmlkit filter` removes them",
            ]
        lines += ["", f"Wrote {self.output}"]
        return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class SplitOptions:
    """`split_dataset`'s options, checked on construction: `OptionError` (naming the options)
    for a bad value or options that do not fit the mode.

    Attributes:
        mode: ``folds`` (k folds by image or label) or ``classes`` (train/test by label).
        k: number of folds (≥ 2), ``mode="folds"`` only; None: 5.
        by: ``image`` (stratified) or ``label`` (identity-disjoint), ``mode="folds"`` only;
            None: ``image``.
        seed: integer seed (≥ 0); the same input and seed give the same bytes.
        min_samples, max_samples: ``mode="classes"``: labels with ``min_samples`` to
            ``max_samples`` rows (either bound alone is fine) are train, the others test.
        test_fraction: ``mode="classes"``: instead, hold out this fraction of the labels
            (strictly between 0 and 1), chosen at random, as test.

    An option of the other mode is refused rather than ignored; ``k`` and ``by`` are None
    unless given, so that ``mode="classes"`` can tell.
    """

    mode: SplitMode = "folds"
    k: int | None = None
    by: FoldBy | None = None
    seed: int = 0
    min_samples: int | None = None
    max_samples: int | None = None
    test_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in get_args(SplitMode):
            raise OptionError(f"{{mode}} must be 'folds' or 'classes', not {self.mode!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise OptionError(f"{{seed}} must be an integer ≥ 0, not {self.seed!r}")
        for name in ("min_samples", "max_samples"):
            value = getattr(self, name)
            if value is not None and not _is_int(value):
                raise OptionError(f"{{{name}}} must be an integer, not {value!r}")
        fraction = self.test_fraction
        if fraction is not None and not isinstance(fraction, (int, float)):
            raise OptionError(f"{{test_fraction}} must be a number, not {fraction!r}")
        self._refuse_other_mode()
        if self.mode == "folds":
            if self.k is not None and (not _is_int(self.k) or self.k < 2):
                raise OptionError(f"{{k}} must be an integer ≥ 2 (folds), not {self.k!r}")
            if self.by is not None and self.by not in get_args(FoldBy):
                raise OptionError(f"{{by}} must be 'image' or 'label', not {self.by!r}")
        else:
            self._check_classes()

    def _refuse_other_mode(self) -> None:
        other = ("k", "by") if self.mode == "classes" else _CLASS_OPTIONS
        given = [name for name in other if getattr(self, name) is not None]
        if given:
            names = " and ".join(f"{{{name}}}" for name in given)
            verb = "does" if len(given) == 1 else "do"
            raise OptionError(f"{names} {verb} not apply to {{mode}}", mode=self.mode)

    def _check_classes(self) -> None:
        low, high, fraction = self.min_samples, self.max_samples, self.test_fraction
        if fraction is not None:
            if low is not None or high is not None:
                raise OptionError("give {test_fraction} or {min_samples}/{max_samples}, not both")
            if not 0 < fraction < 1:
                raise OptionError(
                    f"{{test_fraction}} must lie strictly between 0 and 1, not {fraction}"
                )
        elif low is None and high is None:
            raise OptionError(
                "{mode} needs {min_samples}/{max_samples} or {test_fraction}", mode="classes"
            )
        elif (low or 1) < 1 or (high is not None and high < (low or 1)):
            raise OptionError(f"need 1 ≤ {{min_samples}} ≤ {{max_samples}}, got {low} and {high}")


def split_dataset(
    info: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    mode: SplitMode = "folds",
    k: int | None = None,
    by: FoldBy | None = None,
    seed: int = 0,
    min_samples: int | None = None,
    max_samples: int | None = None,
    test_fraction: float | None = None,
) -> SplitReport:
    """Read ``info``, add a ``fold`` (``mode="folds"``) or ``split`` (``mode="classes"``)
    column, write ``output`` (CSV or Parquet by suffix, atomically).

    Args:
        info: dataset_info table (filtered or not) with ``file_name`` and ``label``.
        output: table to write; may be ``info`` itself.
        mode: ``folds`` (k folds ``by`` image or label) or ``classes`` (train/test by label).
        k: number of folds (≥ 2), with ``mode="folds"`` only; None: 5.
        by: ``image`` (stratified) or ``label`` (identity-disjoint), with ``mode="folds"``
            only; None: ``image``.
        seed: integer seed (≥ 0); the same input and seed give the same bytes.
        min_samples, max_samples: with ``mode="classes"``: the class-range rule.
        test_fraction: with ``mode="classes"``: a random holdout of this fraction of labels.

    Raises:
        OptionError: a bad option value, or options that do not fit the mode (`SplitOptions`,
            checked before anything is read).
        InputError: options that do not fit the data (too few rows or labels), or a table
            without rows.
        SchemaError: no ``label`` column, a damaged table, or a ``file_name`` in two rows
            (its copies could land in a training and a test fold).
    """
    start = time.perf_counter()
    SplitOptions(
        mode=mode,
        k=k,
        by=by,
        seed=seed,
        min_samples=min_samples,
        max_samples=max_samples,
        test_fraction=test_fraction,
    )
    df = read_table(info, required=[LABEL], what="dataset_info")
    if df.empty:
        raise InputError(f"{info} has no rows (a header only): there is nothing to split")
    if FILE_NAME in df:
        check_unique_names(df, info)
    usable = (df[ERROR] == "").to_numpy() if ERROR in df else np.ones(len(df), dtype=bool)
    codes, names = pd.factorize(df.loc[usable, LABEL], sort=True)
    if mode == "folds":
        k, by = k or DEFAULT_K, by or DEFAULT_BY
        column, values = FOLD, _folds(codes, len(names), k=k, by=by, seed=seed)
        rule = f"into {k} folds by {by} (seed {seed})"
        out = pd.Series(pd.NA, index=df.index, dtype="Int64")
    else:
        column = SPLIT
        values = _classes(codes, len(names), min_samples, max_samples, test_fraction, seed)
        rule = (
            f"holding out {test_fraction:g} of the labels (seed {seed})"
            if test_fraction is not None
            else f"by label size: train {min_samples or 1}..{max_samples or '∞'} rows, else test"
        )
        out = pd.Series("", index=df.index, dtype=object)
    out[usable] = values
    df[column] = out  # replaces an existing column where it stands
    write_table(df, output)
    return SplitReport(
        output=Path(output),
        column=column,
        rule=rule,
        rows=len(df),
        unassigned=int((~usable).sum()),
        groups=_group_sizes(df.loc[usable], column),
        seconds=time.perf_counter() - start,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _folds(codes: np.ndarray, n_labels: int, *, k: int, by: FoldBy, seed: int) -> np.ndarray:
    if k > len(codes):
        raise InputError(f"{k} folds need at least {k} usable rows; the table has {len(codes)}")
    if by == "label":
        if n_labels < k:
            raise InputError(
                f"{k} identity-disjoint folds need at least {k} labels; the table has "
                f"{n_labels}. Ask for fewer folds, or split by image (stratified)."
            )
        return label_folds(codes, k, seed)
    folds = stratified_folds(codes, k, seed)
    small = folds == ALWAYS_TRAIN
    if small.all():
        raise InputError(
            f"no label has {k} usable rows, so no fold can be stratified; ask for fewer "
            f"folds (the largest label has {int(np.bincount(codes).max())})"
        )
    if small.any():
        log.warning(
            "%d labels with fewer than %d rows (%d rows) get fold -1: always train",
            len(np.unique(codes[small])),
            k,
            int(small.sum()),
        )
    return folds


def _classes(
    codes: np.ndarray,
    n_labels: int,
    min_samples: int | None,
    max_samples: int | None,
    test_fraction: float | None,
    seed: int,
) -> np.ndarray:
    if test_fraction is None:
        return class_range_split(codes, min_samples or 1, max_samples)
    if n_labels < 2:
        raise InputError(f"a holdout of labels needs at least 2 labels; the table has {n_labels}")
    return holdout_split(codes, test_fraction, seed)


def _group_sizes(df: pd.DataFrame, column: str) -> dict[str, tuple[int, int]]:
    """Rows and labels per value of ``column``, values in sorted order."""
    grouped = df.groupby(column, sort=True)[LABEL].agg(["size", "nunique"])
    return {str(v): (int(r["size"]), int(r["nunique"])) for v, r in grouped.iterrows()}
