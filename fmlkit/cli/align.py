"""`fmlkit align`: faces from raw photos, aligned crops out."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import click

from fmlkit.choices import AlignTemplate, AlignWarp, CropFormat, FaceSelect
from fmlkit.cli._common import (
    CONTEXT_SETTINGS,
    cluster_option,
    echo_report,
    overwrite_option,
    refuse_workers_with_cluster,
)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("input", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Aligned class-folder tree to write (the input's relative names).",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder a dataset_info INPUT's file names are relative to.",
)
@click.option("--detector", help="Find faces with this detector (retinaface).")
@click.option(
    "--landmarks",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Take 5 points per face from this file (VGGFace2, LFW, insightface, CSV).",
)
@click.option(
    "--table",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Table of every input image to write.  [default: OUT.csv beside OUT]",
)
@click.option("--size", type=int, default=112, show_default=True, help="Crop height, pixels.")
@click.option(
    "--template",
    type=click.Choice(get_args(AlignTemplate)),
    default="arcface",
    show_default=True,
    help="ArcFace 112×112, or its 112×96 variant.",
)
@click.option(
    "--select",
    type=click.Choice(get_args(FaceSelect)),
    default="largest",
    show_default=True,
    help="Which face of several; 'single' makes several faces an error row.",
)
@click.option(
    "--min-score",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Ignore faces scoring lower.",
)
@click.option(
    "--warp",
    type=click.Choice(get_args(AlignWarp)),
    default="cartesian",
    show_default=True,
    help="Similarity warp to the template, or RoI tanh-polar.",
)
@click.option(
    "--margin",
    type=click.FloatRange(0, 2),
    default=0.0,
    show_default=True,
    help="Looser crops: the template shrinks by 1/(1+MARGIN) about the centre.",
)
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes aligning images.",
)
@cluster_option
@click.option(
    "--format",
    "image_format",
    type=click.Choice(get_args(CropFormat)),
    default="png",
    show_default=True,
    help="Format of the crops.",
)
@click.option(
    "--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality."
)
@overwrite_option
def align(
    input: Path,
    out: Path,
    root: Path | None,
    detector: str | None,
    landmarks: Path | None,
    table: Path | None,
    size: int,
    template: str,
    select: str,
    min_score: float,
    warp: str,
    margin: float,
    workers: int,
    cluster: str | None,
    image_format: str,
    quality: int,
    overwrite: bool,
) -> None:
    """Align the face of every image of INPUT (class folders, or a dataset_info table with
    --root) to a 5-point template: one crop per image in OUT, and a table with each image's
    faces, chosen box, landmarks, score and residual, or why it gave no crop."""
    from fmlkit.data.align import align_dataset

    refuse_workers_with_cluster(cluster)

    report = align_dataset(
        input,
        out,
        landmarks=landmarks,
        detector=detector,
        size=size,
        template=template,
        select=select,
        min_score=min_score,
        warp=warp,
        margin=margin,
        workers=workers,
        root=root,
        table=table,
        image_format=image_format,
        quality=quality,
        overwrite=overwrite,
        cluster=cluster,
    )
    echo_report(report.summary())
