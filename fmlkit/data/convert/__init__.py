"""`fmlkit convert` and `fmlkit inspect`: datasets between RecordIO, Parquet, image folders,
dataset_info tables and InsightFace ``.bin`` (`dispatch` picks the route: `from_rec`,
`from_images`, `from_parquet`, with `shuffle` for RecordIO; `rec_scan` is the first pass over a
.rec's headers, `report` what every route returns), and a look inside any of them (`inspect`)."""

from __future__ import annotations

from fmlkit.data.convert.dispatch import convert
from fmlkit.data.convert.inspect import InspectReport, inspect_path
from fmlkit.data.convert.report import ConvertReport

__all__ = ["ConvertReport", "InspectReport", "convert", "inspect_path"]
