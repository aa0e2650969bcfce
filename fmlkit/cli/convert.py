"""The convert and inspect commands: RecordIO, .bin, dataset_info and image folders ↔ Parquet."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import click

from fmlkit.choices import Target
from fmlkit.cli._common import (
    CONTEXT_SETTINGS,
    cluster_option,
    echo_report,
    overwrite_option,
    refuse_workers_with_cluster,
    seed_option,
    selection_options,
)

_UNITS = {None: 1, "K": 2**10, "M": 2**20, "G": 2**30}


def size_bytes(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """'512MB', '1GB', '65536' → bytes (binary units: 1 MB = 2**20 bytes)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG])?B?\s*", value.upper())
    if match is None or int(match.group(1)) == 0:
        raise click.BadParameter(f"expected a size such as 512MB or 1GB, not {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
@click.option(
    "--to",
    type=click.Choice(get_args(Target)),
    help="What to write.  [default: inferred from the paths]",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="The dataset folder a dataset_info SOURCE's file names are relative to.",
)
@click.option(
    "--shard-size",
    default="512MB",
    show_default=True,
    callback=size_bytes,
    help="Parquet shard size (image bytes per part file).",
)
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(min=1),
    help="Processes scanning an image folder SOURCE, or writing the Parquet shards of a .rec "
    "SOURCE.  [default: every CPU]",
)
@cluster_option
@click.option(
    "--shuffle",
    is_flag=True,
    help="Parquet → .rec: write the rows in a random order (for sequential readers such as "
    "DALI); memory stays bounded by one shard.",
)
@seed_option("Seed of --shuffle.")
@click.option(
    "--skip-bad", is_flag=True, help="Skip damaged records or files, count and list them."
)
@selection_options(
    "Convert only the rows of this fold (a dataset_info or Parquet SOURCE).",
    "…or of this split, e.g. train (rows without it are left out).",
)
@overwrite_option
def convert(
    source: Path,
    output: Path,
    to: Target | None,
    root: Path | None,
    shard_size: int,
    workers: int | None,
    cluster: str | None,
    shuffle: bool,
    seed: int,
    skip_bad: bool,
    fold: int | None,
    split_value: str | None,
    overwrite: bool,
) -> None:
    """Convert SOURCE to OUTPUT; the kind of conversion follows from the paths.

    \b
      X.rec (+ X.idx)              → Parquet dataset directory
      X.bin (InsightFace pairs)    → Parquet dataset DIR (+ DIR.pairs.csv beside)
      dataset_info + --root        → Parquet dataset (all columns carried)
      image folder label/…/file    → Parquet dataset
      Parquet dataset              → Y.rec + Y.idx (+ property), or an image folder

    A Parquet dataset is part-NNNNN.parquet shards (image struct<bytes, path>, label, key, …)
    and a _manifest.parquet (no rows) written last, so that datasets, polars, DuckDB, pandas and
    pyarrow all read the folder; outputs appear under their final names only when complete.
    Damaged input is an error naming file and offset, unless --skip-bad.
    """
    from fmlkit.data.convert.dispatch import convert as run

    refuse_workers_with_cluster(cluster)

    report = run(
        source,
        output,
        to=to,
        root=root,
        skip_bad=skip_bad,
        shard_bytes=shard_size,
        workers=workers,
        shuffle=shuffle,
        seed=seed,
        fold=fold,
        split=split_value,
        overwrite=overwrite,
        cluster=cluster,
    )
    echo_report(report.summary())


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Random images whose sizes are read.",
)
def inspect(path: Path, sample: int) -> None:
    """Describe PATH: a .rec, a Parquet dataset directory or a dataset_info table.

    Counts, classes and label range, images per class, the RecordIO flavour, a sample of image
    sizes, and warnings (identity records that disagree with the images' labels, labels past
    float32's exact range, rows with errors).
    """
    from fmlkit.data.convert.inspect import inspect_path

    echo_report(inspect_path(path, sample=sample).summary())
