from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fmlkit.columns import ERROR, FILE_NAME, HEIGHT, LABEL, MD5, PHASH, WIDTH
from fmlkit.data.formats.table import (
    DatasetInfoWriter,
    info_columns,
    info_format,
    read_dataset_info,
    write_dataset_info,
)
from fmlkit.errors import InputError, SchemaError

TRICKY = [
    # file_name, label, width, height, mode, format, size, mtime, md5, phash, error
    ("NA/1e10.jpg", "NA", 112, 112, "RGB", "JPEG", 10, 1, "0" * 32, "0000000000000000", ""),
    ("None/x.jpg", "None", None, None, "", "", 0, 2, "", "", "empty"),
    ('a,b/"q".jpg', "a,b", 3, 4, "L", "PNG", 5, 3, "f" * 32, "8000000000000000", ""),
    ("nl/new\nline.jpg", "nl", 1, 1, "P", "GIF", 6, 4, "e" * 32, "ffffffffffffffff", ""),
    ("stray.jpg", "", None, None, "", "", 7, 5, "", "", "no_label"),
]


def _write(path: Path, rows: list[tuple[object, ...]]) -> None:
    with DatasetInfoWriter(path, [PHASH], fmt=info_format(path)) as w:
        w.write_rows(rows)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_keeps_text_as_text_and_missing_sizes_empty(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"info{suffix}"
    _write(path, sorted(TRICKY))
    df = read_dataset_info(path)
    assert list(df.columns) == list(info_columns([PHASH]))
    assert list(df[FILE_NAME]) == sorted(r[0] for r in TRICKY)
    by_name = df.set_index(FILE_NAME)
    assert by_name.loc["NA/1e10.jpg", LABEL] == "NA"
    assert by_name.loc["NA/1e10.jpg", PHASH] == "0000000000000000"
    assert by_name.loc["stray.jpg", LABEL] == ""
    assert pd.isna(by_name.loc["None/x.jpg", WIDTH])
    assert by_name.loc["NA/1e10.jpg", MD5] == "0" * 32
    assert str(df[WIDTH].dtype) == "Int64" and str(df[HEIGHT].dtype) == "Int64"
    assert (df[ERROR] == "").sum() == 3


def test_csv_and_parquet_read_back_equal(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", sorted(TRICKY))
    _write(tmp_path / "a.parquet", sorted(TRICKY))
    a, b = read_dataset_info(tmp_path / "a.csv"), read_dataset_info(tmp_path / "a.parquet")
    pd.testing.assert_frame_equal(a, b)
    write_dataset_info(b, tmp_path / "b.csv")  # DataFrame → CSV gives the same bytes
    assert (tmp_path / "b.csv").read_bytes() == (tmp_path / "a.csv").read_bytes()


def test_parquet_carries_fmlkit_metadata(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    _write(tmp_path / "a.parquet", sorted(TRICKY))
    meta = pq.read_schema(tmp_path / "a.parquet").metadata
    assert b'"table": "dataset_info"' in meta[b"fmlkit"]


def test_writer_refuses_rows_out_of_order(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="order"):
        _write(tmp_path / "a.csv", [TRICKY[2], TRICKY[0]])


def test_unknown_suffix_and_missing_file_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"ending in \.csv or \.parquet"):
        info_format(tmp_path / "info.json")
    with pytest.raises(InputError, match="does not exist"):
        read_dataset_info(tmp_path / "missing.csv")


def test_missing_column_is_a_schema_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "old.csv").write_text("file_name,label,width\na/b.jpg,a,3\n")
    with pytest.raises(SchemaError, match=r"missing column.*height"):
        read_dataset_info(tmp_path / "old.csv")
