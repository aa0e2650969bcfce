"""The rows of one fold or split of a table (the ``fold`` and ``split`` columns `fmlkit split`
writes), as `convert --fold/--split` selects them; `pairs`, `embed` and `evaluate` select the
same way (`fmlkit.data.split.pairs`, `fmlkit.data.loading.datasets.select_rows`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fmlkit.columns import FOLD, SPLIT
from fmlkit.errors import InputError, OptionError, SchemaError

if TYPE_CHECKING:
    import pandas as pd


def selection_column(fold: int | None, split: str | None) -> tuple[str, int | str] | None:
    """(column, value) of the rows asked for; None for all rows.

    Raises:
        OptionError: both ``fold`` and ``split``.
    """
    if fold is not None and split is not None:
        raise OptionError("select the rows with one of {fold} or {split}, not both")
    if fold is not None:
        return FOLD, fold
    return None if split is None else (SPLIT, split)


def selected_rows(
    values: pd.Series | None, column: str, value: int | str, *, what: str
) -> np.ndarray:
    """A boolean mask of the rows whose ``column`` (its ``values``; None: the table has no such
    column) equals ``value``.

    Raises:
        SchemaError: the table has no ``column``.
        InputError: no row has that value (the message lists the values present).
    """
    how = f"add it with `fmlkit split --mode {'folds' if column == FOLD else 'classes'}`"
    if values is None:
        raise SchemaError(f"{what} has no {column} column to select {column} {value} by: {how}")
    mask = (values == value).fillna(False).to_numpy(dtype=bool, copy=True)
    if not mask.any():
        present = sorted({str(v) for v in values.dropna().unique() if v != ""})
        found = ", ".join(present[:20]) or "none"
        raise InputError(
            f"{what}: no row has {column} {value}; the values of {column} there: {found}"
        )
    return mask
