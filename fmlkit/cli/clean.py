"""`fmlkit clean`: curation decisions from a face model's embeddings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args

import click

from fmlkit.choices import CleanCheck
from fmlkit.cli._common import (
    CONTEXT_SETTINGS,
    check_outputs,
    comma_list,
    echo_report,
    overwrite_option,
)
from fmlkit.data.clean.options import CleanOptions

_COSINE = click.FloatRange(-1.0, 1.0)
F = TypeVar("F", bound=Callable[..., Any])


def _threshold(flag: str, help: str, kind: click.ParamType = _COSINE) -> Callable[[F], F]:
    """A threshold option; its default (None: `CleanOptions`'s) is shown from the options."""
    default = getattr(CleanOptions(), flag[2:].replace("-", "_"))
    return click.option(flag, type=kind, default=None, help=f"{help}  [default: {default:.2f}]")


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("embeddings", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="The decisions folder: images.csv, classes.csv, merges.csv, summary.json.",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="The dataset folder the file names are relative to (for --report).",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the HTML report (DIR/index.html, DIR/thumbs) to this folder.",
)
@click.option(
    "--apply",
    "apply_to",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A dataset_info table: write it with the decisions applied as "
    "DECISIONS/dataset_info.csv (drops and duplicates out, relabels and merges in).",
)
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="fmlkit synth's truth CSV: score the decisions (summary.json).",
)
@click.option(
    "--auto", is_flag=True, help="Pick the thresholds from the data's similarity distributions."
)
@_threshold("--drop-below", "Drop an image less alike to its class centroid.")
@_threshold("--review-below", "Send an image less alike to review.")
@_threshold("--relabel-above", "Relabel a flagged image at least this alike to another "
            "class's centroid …")  # fmt: skip
@_threshold("--relabel-margin", "… and by this much more than to its own.",
            click.FloatRange(0.0, 2.0))  # fmt: skip
@_threshold("--merge-above", "Merge classes whose centroids are at least this alike.")
@_threshold("--split-below", "Split a class whose two groups' centroids are less alike.")
@_threshold("--duplicate-above", "Near-duplicate images at least this alike.")
@click.option(
    "--checks",
    callback=comma_list,
    default=",".join(get_args(CleanCheck)),
    show_default=True,
    help="Which checks run, comma-separated.",
)
@overwrite_option
def clean(
    embeddings: Path,
    output: Path,
    root: Path | None,
    report_dir: Path | None,
    apply_to: Path | None,
    truth: Path | None,
    auto: bool,
    checks: list[str],
    overwrite: bool,
    **thresholds: float | None,
) -> None:
    """Decide, from EMBEDDINGS (fmlkit embed's Parquet), which images to keep, review, drop,
    relabel or remove as near-duplicates, and which classes to merge or split; every
    decision with its reason and numbers (cosines to class centroids). Nothing is deleted:
    --apply writes a cleaned dataset_info. See docs/clean.md.
    """
    from fmlkit.data.clean import clean

    check_outputs(overwrite, decisions_folder=output, report_folder=report_dir)
    given = {k: v for k, v in thresholds.items() if v is not None}
    picked = sorted(set(given) - {"relabel_margin", "duplicate_above"})
    if auto and picked:
        flags = ", ".join("--" + k.replace("_", "-") for k in picked)
        raise click.UsageError(f"--auto picks {flags} from the data: give one or the other")
    options = CleanOptions(auto=auto, checks=tuple(checks), **given)  # type: ignore[arg-type]
    result = clean(embeddings, output, root=root, report=report_dir, apply=apply_to,
                   truth=truth, options=options, overwrite=overwrite)  # fmt: skip
    echo_report(result.summary())
