"""How `fmlkit.data.formats.table.read_table` reads a table file strictly, so that a damaged
table is refused rather than half read.

A CSV must be UTF-8 with a header of distinct names and every row as many fields as the header;
a Parquet file must open as one and name each column once. Integer columns must hold whole
numbers in their range (`INTEGER_RANGES`); a refusal is a `SchemaError` naming the file, the row
and the column.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmlkit.columns import FILE_NAME, FILE_SIZE, FOLD, HEIGHT, MTIME_NS, WIDTH
from fmlkit.errors import SchemaError

if TYPE_CHECKING:
    import pandas as pd

# The values an integer column may hold (inclusive; None: no bound but int64's).
INTEGER_RANGES: dict[str, tuple[int | None, int | None]] = {
    WIDTH: (0, 2**31 - 1),  # pixels; Parquet stores them as int32
    HEIGHT: (0, 2**31 - 1),
    FILE_SIZE: (0, None),
    MTIME_NS: (None, None),
    FOLD: (-1, None),  # -1: always train
}
_INT64 = (-(2**63), 2**63 - 1)


def read_csv_strict(path: Path, what: str) -> pd.DataFrame:
    """A CSV as text columns, refusing what is not a whole, well-formed table."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = _csv_header(path, what)
    short: list[Any] = []

    def bad_row(row: Any) -> str:  # pyarrow: a row whose field count is not the header's
        short.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=bad_row),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as e:
        if "Empty CSV" in str(e):  # a header without a line end: no rows
            return _empty(names)
        if "UTF8" in str(e):
            raise _not_utf8(path, what) from e
        raise SchemaError(f"{what} file {path} is not a well-formed CSV table: {e}") from e
    if short:
        row = short[0]
        raise SchemaError(
            f"{what} file {path}: a row has {row.actual_columns} field(s) where the header has "
            f"{row.expected_columns} ({len(short):,} such row(s)), the first: "
            f"{row.text[:120]!r}. Was the file cut off (a full disk, a killed write) or "
            "edited by hand? Re-create it, or repair that row."
        )
    return table.to_pandas()


def _empty(names: Sequence[str]) -> pd.DataFrame:
    """A table with ``names`` as text columns and no rows."""
    import pandas as pd

    return pd.DataFrame({n: pd.Series([], dtype=str) for n in names})


def _csv_header(path: Path, what: str) -> list[str]:
    """The column names of a CSV: its first record, UTF-8, distinct and not empty."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            names = next(csv.reader(f), [])
    except UnicodeDecodeError as e:
        raise _not_utf8(path, what) from e
    except csv.Error as e:
        raise SchemaError(f"{what} file {path}: its header is not a CSV line: {e}") from e
    if not names or not any(names):
        raise SchemaError(f"{what} file {path} has no header line of column names")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SchemaError(
            f"{what} file {path}: column(s) {', '.join(map(repr, twice))} appear more than "
            "once in the header; each column must have one name"
        )
    return names


def _not_utf8(path: Path, what: str) -> SchemaError:
    """The error for a CSV that is not UTF-8 text, naming the line of the first bad byte."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
        where = ""
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        where = f" (line {line}, byte {e.start:,}: {data[e.start : e.start + 1]!r})"
    return SchemaError(
        f"{what} file {path} is not UTF-8 text{where}. fmlkit writes its tables as UTF-8; "
        "was it saved by another program in another encoding? Save it as UTF-8."
    )


def read_parquet_strict(path: Path, what: str) -> pd.DataFrame:
    """A Parquet table, or `SchemaError` for a file that is not one (cut off, another format)."""
    import pandas as pd
    import pyarrow as pa

    try:
        df = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise SchemaError(
            f"{what} file {path} is not a readable Parquet table ({e}); was it cut off or "
            "written by another program? Re-create it."
        ) from e
    twice = sorted({str(c) for c in df.columns if list(df.columns).count(c) > 1})
    if twice:
        raise SchemaError(f"{what} file {path}: column(s) {', '.join(twice)} appear twice")
    return df


def integer_column(column: pd.Series, path: Path, table: pd.DataFrame) -> pd.Series:
    """``column`` as nullable Int64, or `SchemaError` naming the row of a value that is not an
    integer in the column's range (`INTEGER_RANGES`)."""
    import numpy as np
    import pandas as pd

    low, high = INTEGER_RANGES.get(str(column.name), (None, None))
    low, high = _INT64[0] if low is None else low, _INT64[1] if high is None else high
    try:  # numpy_nullable keeps 19-digit integers exact (no trip through float64)
        numbers = column
        if not pd.api.types.is_numeric_dtype(numbers):
            numbers = pd.to_numeric(column, dtype_backend="numpy_nullable")
        whole = numbers.dropna()
        if pd.api.types.is_float_dtype(whole):
            values = whole.to_numpy(dtype=np.float64)
            fine = np.isfinite(values) & (values == np.round(values))
            fine &= (values >= max(float(low), -(2.0**63))) & (values <= float(high))
            fine &= values < 2.0**63  # float(2**63 - 1) rounds up to 2**63
        else:
            fine = ((whole >= low) & (whole <= high)).to_numpy(dtype=bool)
        if fine.all():
            return numbers.astype("Int64")
    except (ValueError, TypeError, OverflowError):
        pass
    where, value = _first_bad(column, low, high)
    names = table.get(FILE_NAME)
    row = f"row {where + 1:,}"
    if names is not None:
        row += f" ({FILE_NAME} {names.iloc[where]!r})"
    allowed = f"whole numbers from {low:,} to {high:,}" if (low, high) != _INT64 else "integers"
    raise SchemaError(
        f"{path}, {row}: column {column.name} holds {value!r}; it should hold {allowed}. "
        "Was the table written by another tool or edited? Repair or drop that row, or "
        "rename the column if it means something else."
    )


def _first_bad(column: pd.Series, low: int, high: int) -> tuple[int, Any]:
    """The position and value of the first entry of ``column`` that is not an integer in
    ``low``..``high`` (missing entries are fine); (0, first value) if none is."""
    import pandas as pd

    values = column.tolist()
    for at, value in enumerate(values):
        if not pd.isna(value) and not _is_integer(value, low, high):
            return at, value
    return 0, values[0] if values else None


def _is_integer(value: Any, low: int, high: int) -> bool:
    """Whether ``value`` (a number or its text) is a whole number in ``low``..``high``."""
    try:
        if isinstance(value, str):
            text = value.strip()
            number = int(text) if text.lstrip("+-").isdigit() else float(text)
        else:
            number = value
        if isinstance(number, float):
            if not number.is_integer():
                return False
            number = int(number)
        return low <= int(number) <= high
    except (TypeError, ValueError, OverflowError):
        return False
