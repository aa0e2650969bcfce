"""The dataset_info table on disk: CSV or Parquet by suffix, one schema, one reader, one writer.

Strings are never null: a missing value is "" (``error`` is "" for a readable image). ``width``
and ``height`` are empty when the image could not be decoded; ``file_size`` and ``mtime_ns`` are
always present. Hash columns appear only when they were computed. Rows are sorted by
``file_name``.

Here: the format by suffix, `read_table` and `read_dataset_info`, `write_table` and the
streaming `DatasetInfoWriter`. How a file is parsed strictly (UTF-8, whole rows, integers in
range) is in `table_read`.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fmlkit import __version__
from fmlkit.columns import (
    DATASET_INFO_COLUMNS,
    FILE_NAME,
    FILE_SIZE,
    HASH_COLUMNS,
    HEIGHT,
    INTEGER_COLUMNS,
    MTIME_NS,
    WIDTH,
    validate_columns,
)
from fmlkit.data.formats.table_read import integer_column, read_csv_strict, read_parquet_strict
from fmlkit.errors import InputError, SchemaError
from fmlkit.io import Closing, atomic_path

if TYPE_CHECKING:
    import pandas as pd

InfoFormat = Literal["csv", "parquet"]
SCHEMA_VERSION = 1
# columns every dataset_info has; hash columns are optional
REQUIRED_COLUMNS = tuple(c for c in DATASET_INFO_COLUMNS if c not in HASH_COLUMNS)
_SUFFIXES: dict[str, InfoFormat] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_BATCH_ROWS = 50_000


def info_format(path: str | os.PathLike[str]) -> InfoFormat:
    """The table format of ``path`` from its suffix (.csv, .parquet or .pq)."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise InputError(
            f"cannot tell the table format of {path}: use a name ending in .csv or .parquet"
        )
    return _SUFFIXES[suffix]


def info_columns(hash_names: Sequence[str]) -> tuple[str, ...]:
    """dataset_info's columns, in order, with the given hash columns."""
    return tuple(c for c in DATASET_INFO_COLUMNS if c not in HASH_COLUMNS or c in hash_names)


def read_table(
    path: str | os.PathLike[str],
    *,
    required: Sequence[str] = (),
    what: str = "table",
    fix: str = "Re-create it with `fmlkit prepare`.",
) -> pd.DataFrame:
    """Read a CSV or Parquet table of fmlkit's: text stays text, known integer columns are Int64.

    Any columns may be present; ``required`` ones are checked (``fix`` ends the message: how
    to get a table that has them). In CSV, "" is an empty string
    (a label "NA" or a hash "1e10…" is text), or <NA> in an integer column.

    The reading is strict, so that a damaged table is refused rather than half read: a CSV
    must be UTF-8 with a header of distinct names and every row as many fields as the header
    (a file cut off mid-row fails here); integer columns must hold whole numbers in their
    range (`table_read.INTEGER_RANGES`: a width is 0..2³¹−1 pixels, a file size ≥ 0, …).

    Raises:
        InputError: the file is missing or not CSV/Parquet by name.
        SchemaError: the file is empty or damaged, a required column is missing, or an
            integer column holds other values (the message names the row and column).
    """
    import pandas as pd

    p = Path(path)
    fmt = info_format(p)
    if not p.is_file():
        raise InputError(f"{what} file {p} does not exist")
    if p.stat().st_size == 0:
        raise SchemaError(f"{what} file {p} is empty (zero bytes), not a table. {fix}")
    if fmt == "csv":
        df = read_csv_strict(p, what)
        validate_columns(df, required, what=str(p), fix=fix)
        for c in df.columns:
            if c in INTEGER_COLUMNS:
                df[c] = integer_column(df[c].mask(df[c] == ""), p, df)
    else:
        df = read_parquet_strict(p, what)
        validate_columns(df, required, what=str(p), fix=fix)
        for c in df.columns:
            if c in INTEGER_COLUMNS:
                df[c] = integer_column(df[c], p, df)
            elif not pd.api.types.is_numeric_dtype(df[c]):
                df[c] = df[c].fillna("").astype(str)
    return df


def check_unique_names(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Raise `SchemaError` if a ``file_name`` appears in more than one row of ``df`` (read
    from ``path``): a dataset_info has one row per file, and a repeated file would be paired
    with itself, or land in a training and a test fold at once."""
    repeated = df[FILE_NAME].duplicated(keep=False)
    if not repeated.any():
        return
    names = df.loc[repeated, FILE_NAME].unique().tolist()
    shown = ", ".join(repr(n) for n in names[:5]) + (" …" if len(names) > 5 else "")
    raise SchemaError(
        f"{path}: {len(names):,} {FILE_NAME}(s) appear in more than one row ({shown}); a "
        "dataset_info has one row per file. Drop the repeated rows (keep one of each), or "
        "re-create the table with `fmlkit prepare`."
    )


def check_table_output(path: str | os.PathLike[str]) -> InfoFormat:
    """The format of the table to write at ``path``, or `InputError` where writing it would
    replace something that is not a table file (a folder)."""
    fmt = info_format(path)
    p = Path(path)
    if p.is_dir():
        raise InputError(
            f"the output {p} is a folder; writing the table there would replace the folder. "
            "Give a file name ending in .csv or .parquet"
        )
    return fmt


def write_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``df`` as CSV or Parquet by suffix (no index), atomically: temp name, then rename.

    Raises:
        InputError: ``path`` is a folder (`check_table_output`).
    """
    fmt = check_table_output(path)
    with atomic_path(path) as tmp:
        if fmt == "csv":
            df.to_csv(tmp, index=False, lineterminator="\n")
        else:
            df.to_parquet(tmp, index=False, compression="zstd")


def read_dataset_info(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a dataset_info CSV or Parquet with fmlkit's dtypes.

    Strings stay strings (a label "NA" or a hash "1e10…" is text, "" stays ""), ``width`` and
    ``height`` are nullable ``Int64``, ``file_size`` and ``mtime_ns`` are ``int64``.

    Raises:
        InputError: the file is missing or not CSV/Parquet by name.
        SchemaError: a required column is missing.
    """
    p = Path(path)
    df = read_table(p, required=REQUIRED_COLUMNS, what="dataset_info")
    for c in (FILE_SIZE, MTIME_NS):
        if df[c].isna().any():
            raise InputError(f"{p}: column {c} has empty values; re-create it with fmlkit prepare")
        df[c] = df[c].astype("int64")
    return df


def write_dataset_info(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a dataset_info DataFrame to ``path`` (format by suffix), without renaming.

    Callers that need atomicity write to `fmlkit.io.atomic_path`'s temporary path.
    """
    hash_names = [c for c in HASH_COLUMNS if c in df.columns]
    columns = info_columns(hash_names)
    validate_columns(df, columns, what="dataset_info table")
    with DatasetInfoWriter(path, hash_names, fmt=info_format(path)) as writer:
        for start in range(0, len(df), _BATCH_ROWS):
            part = df.iloc[start : start + _BATCH_ROWS]
            writer.write_rows(list(zip(*(_as_python(part[c], c) for c in columns), strict=True)))


def _as_python(series: pd.Series, column: str) -> list[Any]:
    if column in INTEGER_COLUMNS:
        values = series.astype(object)
        return [int(v) if ok else None for v, ok in zip(values, series.notna(), strict=True)]
    return series.astype(str).tolist()


class DatasetInfoWriter(Closing):
    """Stream rows (tuples in `info_columns` order) to CSV or Parquet.

    Rows must arrive sorted by ``file_name``; the writer checks it (an internal invariant).
    """

    def __init__(
        self, path: str | os.PathLike[str], hash_names: Sequence[str], *, fmt: InfoFormat
    ) -> None:
        self.path = Path(path)
        self.columns = info_columns(hash_names)
        self.rows = 0
        self._fmt = fmt
        self._last = ""
        self._buffer: list[tuple[Any, ...]] = []
        self._csv_file: Any = None
        self._csv: Any = None
        self._parquet: Any = None
        if fmt == "csv":
            self._csv_file = self.path.open("w", encoding="utf-8", newline="")
            self._csv = csv.writer(self._csv_file, lineterminator="\n")
            self._csv.writerow(self.columns)
        else:
            import pyarrow.parquet as pq

            self._schema = _arrow_schema(self.columns)
            self._parquet = pq.ParquetWriter(self.path, self._schema, compression="zstd")

    def write_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append rows; they must continue the ``file_name`` order."""
        if not rows:
            return
        name_at = self.columns.index(FILE_NAME)
        for row in rows:
            assert len(row) == len(self.columns), "row does not match the columns"
            assert row[name_at] > self._last or self.rows == 0, "rows out of file_name order"
            self._last = row[name_at]
            self.rows += 1
        self._buffer.extend(rows)
        if len(self._buffer) >= _BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._csv is not None:
            self._csv.writerows(self._buffer)
        elif self._buffer:
            import pyarrow as pa

            arrays = [
                pa.array(list(col), type=field.type)
                for col, field in zip(zip(*self._buffer, strict=True), self._schema, strict=True)
            ]
            self._parquet.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        self._buffer = []

    def close(self) -> None:
        """Write what is buffered and close the file."""
        if self._csv_file is not None:
            self._flush()
            self._csv_file.close()
            self._csv_file = self._csv = None
        elif self._parquet is not None:
            self._flush()
            self._parquet.close()
            self._parquet = None


def _arrow_schema(columns: Sequence[str]) -> Any:
    import pyarrow as pa

    types = {WIDTH: pa.int32(), HEIGHT: pa.int32(), FILE_SIZE: pa.int64(), MTIME_NS: pa.int64()}
    meta = {
        "fmlkit": json.dumps(
            {
                "table": "dataset_info",
                "schema_version": SCHEMA_VERSION,
                "fmlkit_version": __version__,
            }
        )
    }
    fields = [
        pa.field(c, types.get(c, pa.string()), nullable=c in (WIDTH, HEIGHT)) for c in columns
    ]
    return pa.schema(fields, metadata=meta)
