"""The columns of a Parquet image dataset that `ParquetImageDataset` keeps in memory: every
column but the image bytes, read through the checks `fmlkit convert` makes
(`fmlkit.data.formats.parquet_checks`), so that a damaged or lying dataset is an error naming
the file and row when a dataset is made, before any model is built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from fmlkit.columns import CLASS_ID, ERROR, FILE_NAME, FOLD, IMAGE, KEY, LABEL_NAME, SPLIT
from fmlkit.data.formats.parquet import read_manifest
from fmlkit.data.formats.parquet_checks import (
    MANIFEST_FIX,
    check_rows,
    open_shard,
    read_row_group,
)
from fmlkit.errors import FormatError, InputError, SchemaError

if TYPE_CHECKING:
    import pandas as pd

ROW = "__row"  # the dataset row, while the columns are read


def parquet_rows(root: Path) -> tuple[pd.DataFrame, dict[int, str]]:
    """Every column of a Parquet dataset but the image bytes (``file_name`` made from
    ``image.path`` when not carried, else ``row N``), and its class names by id (from the
    metadata). The manifest, each shard and each row group read are checked as `fmlkit
    convert` checks them (`fmlkit.data.formats.parquet_checks`); so are the labels (class
    ids of the dataset), keys and label names (none null)."""
    import pandas as pd

    manifest = read_manifest(root)
    if manifest.rows == 0:
        raise InputError(f"{root} has no rows (its manifest says 0): nothing to read; "
                         f"{MANIFEST_FIX} from a source with images")  # fmt: skip
    wanted = (CLASS_ID, KEY, LABEL_NAME, FILE_NAME, ERROR, FOLD, SPLIT)
    tables, metadata, first = [], None, 0
    for shard in manifest.shards:
        file = root / shard["file"]
        parquet = open_shard(root, shard)  # readable, fmlkit's columns, the manifest's rows
        schema = parquet.schema_arrow
        metadata = metadata or schema.metadata
        columns = [c for c in wanted if c in schema.names]
        image = schema.field(IMAGE).type  # a struct with binary bytes (open_shard)
        paths = (  # file names from image.path where the dataset carries none
            FILE_NAME not in schema.names
            and image.get_field_index("path") >= 0
            and pa.types.is_string(image.field("path").type)
        )
        for group in range(parquet.num_row_groups):
            table = read_row_group(parquet, file, group, columns + [f"{IMAGE}.path"] * paths)
            check_rows(table, file, first, manifest.classes)
            if paths:
                table = table.drop_columns([IMAGE]).append_column(
                    FILE_NAME, pc.struct_field(table.column(IMAGE), "path")
                )
            tables.append(table.append_column(ROW, pa.array(range(first, first + len(table)))))
            first += len(table)
    try:  # shards written by fmlkit share one schema; others must at least fit together
        df = pa.concat_tables(tables, promote_options="default").to_pandas()
    except pa.ArrowException as e:
        raise SchemaError(f"{root}: its shards' columns do not fit together ({e}); "
                          f"{MANIFEST_FIX}") from e  # fmt: skip
    if LABEL_NAME in df and df[LABEL_NAME].isna().any():
        row = int(df.loc[df[LABEL_NAME].isna(), ROW].iloc[0])
        raise FormatError(f"{root}: row {row:,} has no {LABEL_NAME}; {MANIFEST_FIX}")
    names = df[FILE_NAME] if FILE_NAME in df else pd.Series(None, index=df.index, dtype=object)
    df[FILE_NAME] = [
        n if isinstance(n, str) else f"row {r}" for n, r in zip(names, df[ROW], strict=True)
    ]
    try:
        features = json.loads((metadata or {})[b"huggingface"])["info"]["features"]
        class_names = dict(enumerate(map(str, features[CLASS_ID]["names"])))
    except (KeyError, TypeError, ValueError):
        class_names = {}
    return df.drop(columns=[ROW]), class_names
