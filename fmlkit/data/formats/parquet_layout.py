"""Where the files of an fmlkit Parquet dataset lie (docs/formats.md#parquet-image-datasets).

Every reader of ``DIR`` (pyarrow, pandas, polars, DuckDB, Hugging Face ``datasets``) must load
exactly its rows. polars' ``scan_parquet(DIR)`` reads every non-empty file under ``DIR`` and
refuses a folder whose files do not all end in ``.parquet`` (hidden ``.`` and ``_`` names
included), and ``datasets``' ``data_dir`` reads ``_`` names as data. So:

- the manifest is ``DIR/_manifest.parquet``: a footer-only Parquet file (no row groups) with the
  shards' schema, the manifest JSON under the `MANIFEST_KEY` schema metadata key. Readers that
  list it find no rows in it; pyarrow and pandas skip it (``_``);
- a ``.bin`` conversion's pair list lies beside the folder, as ``DIR.pairs.csv``.

Datasets written before this layout (``DIR/_manifest.json``, ``DIR/_pairs.csv``) are still
read. No pyarrow here: `fmlkit.pipeline.versions` finds manifests without importing it.
"""

from __future__ import annotations

import os
from pathlib import Path

MANIFEST = "_manifest.parquet"
LEGACY_MANIFEST = "_manifest.json"  # datasets written by fmlkit before _manifest.parquet
MANIFEST_KEY = "fmlkit_manifest"  # the schema metadata key holding the manifest JSON
PAIRS_SUFFIX = ".pairs.csv"
LEGACY_PAIRS = "_pairs.csv"


def manifest_path(root: str | os.PathLike[str]) -> Path | None:
    """The manifest file of the dataset folder ``root``: ``_manifest.parquet``, else an older
    dataset's ``_manifest.json``; None when there is neither (not an fmlkit dataset, or one
    whose write did not finish)."""
    for name in (MANIFEST, LEGACY_MANIFEST):
        path = Path(root) / name
        if path.is_file():
            return path
    return None


def is_manifest(name: str) -> bool:
    """Whether ``name`` (a file name in a dataset folder) is a manifest, new or old."""
    return name in (MANIFEST, LEGACY_MANIFEST)


def pairs_path(root: str | os.PathLike[str]) -> Path:
    """Where a ``.bin`` conversion to the dataset folder ``root`` writes its pair list:
    ``ROOT.pairs.csv``, beside the folder."""
    path = Path(root)
    return path.with_name(path.name + PAIRS_SUFFIX)


def find_pairs(root: str | os.PathLike[str]) -> Path | None:
    """The pair list of a ``.bin`` converted to ``root``: `pairs_path`, else an older
    conversion's ``ROOT/_pairs.csv``; None when there is neither."""
    for path in (pairs_path(root), Path(root) / LEGACY_PAIRS):
        if path.is_file():
            return path
    return None
