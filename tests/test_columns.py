from __future__ import annotations

import pandas as pd
import pytest

from fmlkit import columns as C
from fmlkit.errors import SchemaError


def test_validate_columns_accepts_complete_table() -> None:
    df = pd.DataFrame(columns=list(C.DATASET_INFO_COLUMNS))
    C.validate_columns(df, C.DATASET_INFO_COLUMNS)


def test_validate_columns_names_missing_and_found() -> None:
    df = pd.DataFrame({C.FILE_NAME: ["a.jpg"], "lbl": ["x"]})
    with pytest.raises(SchemaError) as err:
        C.validate_columns(df, [C.FILE_NAME, C.LABEL], what="info.csv")
    message = str(err.value)
    assert "info.csv is missing column(s) label" in message
    assert "found: file_name, lbl" in message


def test_column_names_are_unique() -> None:
    assert len(set(C.DATASET_INFO_COLUMNS)) == len(C.DATASET_INFO_COLUMNS)
    assert C.TRUTH_COLUMNS == ("file_name", "label", "kind", "source")
