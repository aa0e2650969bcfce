"""Commands that split a dataset_info table and draw verification pairs: split, pairs."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import click

from fmlkit.choices import FoldBy, PairFormat, SplitMode
from fmlkit.cli._common import (
    CONTEXT_SETTINGS,
    check_outputs,
    echo_report,
    overwrite_option,
    seed_option,
    table_argument,
    table_output_option,
)
from fmlkit.columns import SPLIT_VALUES


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT


@click.command(context_settings=CONTEXT_SETTINGS)
@table_argument("dataset_info")
@table_output_option(
    "Table to write (.csv or .parquet): the input rows, order and columns, plus fold or "
    "split. May be DATASET_INFO itself (with --overwrite)."
)
@click.option(
    "--mode",
    type=click.Choice(get_args(SplitMode)),
    default="folds",
    show_default=True,
    help="folds: add `fold` (--k, --by); classes: add `split` = train/test by label.",
)
@click.option("--k", type=click.IntRange(min=2), default=5, show_default=True, help="Folds.")
@click.option(
    "--by",
    type=click.Choice(get_args(FoldBy)),
    default="image",
    show_default=True,
    help="image: stratified by label (labels with fewer than k images get fold -1, always "
    "train); label: identity-disjoint folds balanced by image count.",
)
@seed_option()
@click.option(
    "--min-samples",
    type=click.IntRange(min=1),
    help="classes: labels with at least this many images (and at most --max-samples) are "
    "train, the others test.",
)
@click.option("--max-samples", type=click.IntRange(min=1), help="classes: see --min-samples.")
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="classes: hold out this fraction of the labels, chosen at random, as test.",
)
@overwrite_option
@click.pass_context
def split(
    ctx: click.Context,
    dataset_info: Path,
    output: Path,
    mode: SplitMode,
    k: int,
    by: FoldBy,
    seed: int,
    min_samples: int | None,
    max_samples: int | None,
    test_fraction: float | None,
    overwrite: bool,
) -> None:
    """Add a fold or train/test column to DATASET_INFO (any dataset_info, filtered or not).

    --mode folds (default): --by image deals each label's images round-robin over k folds
    (scikit-learn StratifiedKFold: per label, fold sizes differ by at most one); --by label puts
    every label in one fold, largest first into the emptiest fold. --mode classes: a label-size
    range (--min-samples, --max-samples: easy_metric_learning's rule) or --test-fraction
    (random labels held out).
    Rows with an error are not assigned (empty fold/split).
    """
    from fmlkit.data.split.folds import split_dataset

    check_outputs(overwrite, output=output)
    # The option rules are SplitOptions'. --k and --by go to it only when given (on the
    # command line or in a pipeline), so that --mode classes refuses them, not their defaults.
    report = split_dataset(
        dataset_info,
        output,
        mode=mode,
        k=k if _given(ctx, "k") else None,
        by=by if _given(ctx, "by") else None,
        seed=seed,
        min_samples=min_samples,
        max_samples=max_samples,
        test_fraction=test_fraction,
    )
    echo_report(report.summary())


@click.command(context_settings=CONTEXT_SETTINGS)
@table_argument("split_info")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Pair list to write.",
)
@click.option("--fold", type=int, help="Draw among the rows of this fold.")
@click.option("--split", "split_value", type=click.Choice(SPLIT_VALUES), help="…or of this split.")
@click.option("--positives", type=click.IntRange(min=0), required=True, help="Same-label pairs.")
@click.option("--negatives", type=click.IntRange(min=0), required=True, help="Cross-label pairs.")
@seed_option()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(get_args(PairFormat)),
    default="csv",
    show_default=True,
    help="csv: `1,a.jpg,b.jpg` lines; lfw: LFW pairs.txt with 10 folds (equal counts, "
    "a multiple of 10).",
)
@click.option(
    "--max-per-label",
    type=click.IntRange(min=1),
    help="A label takes part in at most this many positive pairs, and this many negative "
    "pairs.  [default: no cap beyond the even spread]",
)
@overwrite_option
def pairs(
    split_info: Path,
    output: Path,
    fold: int | None,
    split_value: str | None,
    positives: int,
    negatives: int,
    seed: int,
    fmt: PairFormat,
    max_per_label: int | None,
    overwrite: bool,
) -> None:
    """Draw verification pairs among the rows of one fold or split of SPLIT_INFO.

    Positives share a label, negatives do not; no self-pairs, no pair twice in either order;
    pairs are spread as evenly as the labels allow. The list comes in 10 blocks with a tenth
    of each kind, for the 10-fold protocol. Rows with an error are never used.
    """
    from fmlkit.data.split.pairs import make_pairs

    check_outputs(overwrite, output=output)
    report = make_pairs(
        split_info,
        output,
        positives=positives,
        negatives=negatives,
        fold=fold,
        split=split_value,
        seed=seed,
        fmt=fmt,
        max_per_label=max_per_label,
    )
    echo_report(report.summary())
