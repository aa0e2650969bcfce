"""Commands that make and clean a dataset_info table: synth, prepare, filter."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import click

from fmlkit.choices import Confirm, KeepOrder, Scope
from fmlkit.cli._common import (
    CONTEXT_SETTINGS,
    check_outputs,
    cluster_option,
    comma_list,
    echo_report,
    hash_list,
    overwrite_option,
    refuse_workers_with_cluster,
    seed_option,
    table_argument,
    table_output_option,
    table_path,
)


def _scene_size(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, int] | None:
    """``WIDTHxHEIGHT`` → (width, height), each 64–4096 pixels."""
    if value is None:
        return None
    width, sep, height = str(value).lower().partition("x")
    if sep and width.strip().isdigit() and height.strip().isdigit():
        size = (int(width), int(height))
        if all(64 <= v <= 4096 for v in size):
            return size
    raise click.BadParameter(f"expected WIDTHxHEIGHT, each 64–4096 pixels (320x240), got {value!r}")


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-n",
    "--identities",
    type=click.IntRange(min=1),
    required=True,
    help="Number of identities (N ≥ 1).",
)
@click.option(
    "-m",
    "--images-per-identity",
    type=click.IntRange(min=1),
    required=True,
    help="Clean images per identity (M ≥ 1).",
)
@seed_option("Same arguments and seed give a byte-identical tree and truth file.")
@click.option(
    "--size",
    type=click.IntRange(64, 1024),
    default=112,
    show_default=True,
    help="Side of the clean images in pixels.",
)
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Truth CSV to write.  [default: OUT_DIR.truth.csv beside the folder]",
)
@click.option(
    "--defects/--no-defects",
    default=True,
    show_default=True,
    help="Plant duplicates, broken files, PNG/greyscale images and odd file names.",
)
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes rendering identities (the output does not depend on it).",
)
@click.option(
    "--label-noise",
    is_flag=True,
    help="Also plant label noise: images of another identity (mislabel), identities split "
    "over two folders (split_identity), folders mixed with a new identity (mixed); N, M ≥ 4.",
)
@click.option(
    "--scenes",
    is_flag=True,
    help="Photos 'in the wild' instead of crops: 0–3 faces each, placed at random scale, "
    "position and rotation on a larger background, their boxes and 5 landmarks in --landmarks.",
)
@click.option(
    "--scene-size",
    callback=_scene_size,
    default=None,
    metavar="WxH",
    help="With --scenes: width x height of the photos.  [default: 320x240]",
)
@click.option(
    "--landmarks",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --scenes: the CSV of every face's box and 5 landmarks to write.  "
    "[default: OUT_DIR.landmarks.csv beside the folder]",
)
@click.option(
    "--ijb",
    type=click.Choice(["ijbc", "ijbb"]),
    default=None,
    help="A synthetic IJB-C or IJB-B folder instead: OUT_DIR/loose_crop/<k>.jpg (one face each, "
    "at random scale, rotation and offset) and OUT_DIR/meta/ (templates and medias, true 5 "
    "landmarks and a detector score, template pairs, 1:N gallery and probe lists); N ≥ 2, "
    "M ≥ 3. Not with --scenes or --label-noise; --defects has no effect.",
)
@overwrite_option
def synth(
    out_dir: Path,
    identities: int,
    images_per_identity: int,
    seed: int,
    size: int,
    truth: Path | None,
    defects: bool,
    workers: int,
    label_noise: bool,
    scenes: bool,
    scene_size: tuple[int, int] | None,
    landmarks: Path | None,
    ijb: str | None,
    overwrite: bool,
) -> None:
    """Write a synthetic identity dataset OUT_DIR/<identity>/<image> and its truth CSV.

    Exactly N × M clean face-like images (stable traits per identity, random pose, lighting,
    background, blur and noise; same-identity images stay > 10 pHash bits apart). With
    --defects, also exact, near and cross-identity duplicates, tiny, truncated, empty and
    non-image files, listed with their kind and source in the truth CSV
    (file_name,label,kind,source).

    With --scenes: N × M photos (SIZE is each face's drawing size), the truth CSV gains a
    faces column, and the landmark CSV lists every face (file_name,x1,y1,…,x5,y5,label,face,
    box), the layout `fmlkit align --landmarks` reads; --defects plants broken files only.

    With --label-noise (not with --scenes), the truth also lists mislabelled images,
    split identities and mixed folders, their source being the true identity's label.

    With --ijb: loose crops (SIZE is each face's drawing size) and the meta files of
    insightface's IJB evaluation; the truth CSV gives each crop's identity, template, media
    and 1:N role.
    """
    if ijb is not None:
        _synth_ijb(
            out_dir,
            ijb,
            identities,
            images_per_identity,
            seed,
            size,
            truth,
            workers,
            overwrite,
            conflicts={
                "--scenes": scenes,
                "--label-noise": label_noise,
                "--scene-size": scene_size is not None,
                "--landmarks": landmarks is not None,
            },
        )
        return
    if scenes and label_noise:
        raise click.UsageError("--label-noise does not work with --scenes; leave one out")
    if not scenes and (scene_size is not None or landmarks is not None):
        given = "--scene-size" if scene_size is not None else "--landmarks"
        raise click.UsageError(f"{given} needs --scenes")
    if scenes:
        from fmlkit.data.synth.scenes import DEFAULT_SCENE_SIZE, generate_scenes

        scene_report = generate_scenes(
            out_dir,
            identities=identities,
            images_per_identity=images_per_identity,
            seed=seed,
            size=size,
            scene_size=scene_size or DEFAULT_SCENE_SIZE,
            defects=defects,
            truth_path=truth,
            landmarks_path=landmarks,
            overwrite=overwrite,
            workers=workers,
        )
        echo_report(scene_report.summary())
        return
    from fmlkit.data.synth.synth import generate_synthetic_dataset

    report = generate_synthetic_dataset(
        out_dir,
        identities=identities,
        images_per_identity=images_per_identity,
        seed=seed,
        size=size,
        defects=defects,
        truth_path=truth,
        overwrite=overwrite,
        workers=workers,
        label_noise=label_noise,
    )
    echo_report(report.summary())


def _synth_ijb(
    out_dir: Path,
    kind: str,
    identities: int,
    images: int,
    seed: int,
    size: int,
    truth: Path | None,
    workers: int,
    overwrite: bool,
    *,
    conflicts: dict[str, bool],
) -> None:
    """`synth --ijb`: its option checks, the stage, the summary."""
    from fmlkit.data.synth.ijb import MIN_IDENTITIES, MIN_IMAGES, generate_ijb

    given = [name for name, on in conflicts.items() if on]
    if given:
        raise click.UsageError(f"--ijb does not work with {given[0]}; leave one out")
    if identities < MIN_IDENTITIES or images < MIN_IMAGES:
        raise click.UsageError(
            f"--ijb needs -n ≥ {MIN_IDENTITIES} (imposter pairs) and -m ≥ {MIN_IMAGES} (a "
            f"gallery template of 2 images and a probe), got -n {identities} -m {images}"
        )
    report = generate_ijb(
        out_dir,
        identities=identities,
        images_per_identity=images,
        kind=kind,
        seed=seed,
        size=size,
        truth_path=truth,
        overwrite=overwrite,
        workers=workers,
    )
    echo_report(report.summary())


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("dataset_dir", type=click.Path(path_type=Path))
@table_output_option("dataset_info file to write: .csv or .parquet.")
@click.option(
    "--hashes/--no-hashes",
    default=True,
    show_default=True,
    help="Compute perceptual hashes (md5 is always computed).",
)
@click.option(
    "--hash",
    "hash_names",
    default="phash",
    show_default=True,
    callback=hash_list,
    help="Perceptual hashes to compute, comma-separated: phash, dhash, ahash, whash.",
)
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes reading images.  [default: every CPU this process may use]",
)
@cluster_option
@click.option(
    "--previous",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=table_path,
    help="An earlier dataset_info of this folder: unchanged files (same name, size and "
    "mtime) are not read again. May be the same file as --output (with --overwrite).",
)
@click.option(
    "--extensions",
    default="jpg,jpeg,png,bmp,webp,tif,tiff",
    show_default=True,
    callback=comma_list,
    help="File extensions counted as images (case-insensitive); other files are listed "
    "in the summary as skipped.",
)
@overwrite_option
def prepare(
    dataset_dir: Path,
    output: Path,
    hashes: bool,
    hash_names: tuple[str, ...],
    workers: int | None,
    cluster: str | None,
    previous: Path | None,
    extensions: list[str],
    overwrite: bool,
) -> None:
    """Scan DATASET_DIR/<label>/…/<image> into a dataset_info table, one row per image file.

    Each file is read once (md5 of the bytes, one decode for size and hashes); width and
    height are after EXIF rotation. Files that cannot be used stay in the table with a
    reason in `error` (empty, not_image, corrupt, truncated, decompression_bomb,
    unreadable, no_label); other entries (hidden, non-image extension, links leaving the
    folder or looping) are counted and listed in the summary.
    """
    from fmlkit.data.prepare.scan import scan_dataset

    refuse_workers_with_cluster(cluster)
    check_outputs(overwrite, output=output)
    report = scan_dataset(
        dataset_dir,
        output,
        hashes=hash_names if hashes else (),
        workers=workers,
        previous=previous,
        extensions=extensions,
        cluster=cluster,
    )
    echo_report(report.summary())


@click.command("filter", context_settings=CONTEXT_SETTINGS)
@table_argument("dataset_info")
@table_output_option("Kept rows (input columns, input order): .csv or .parquet.")
@click.option(
    "--removed",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=table_path,
    help="Removed rows, with reason, duplicate_of and distance: .csv or .parquet.",
)
@click.option("--dedup", is_flag=True, help="Remove exact (md5) and near (pHash) duplicates.")
@click.option(
    "--threshold",
    type=click.IntRange(0, 64),
    default=10,
    show_default=True,
    help="Same-label near-duplicate radius in pHash bits. A 64-bit pHash has 32 set bits, so "
    "distances are even: an odd radius acts as the even one below.",
)
@click.option(
    "--scope",
    type=click.Choice(get_args(Scope)),
    default="label",
    show_default=True,
    help="label: compare rows of one label; global: also across labels (label noise).",
)
@click.option(
    "--global-threshold",
    type=click.IntRange(0, 64),
    default=3,
    show_default=True,
    help="Cross-label radius in pHash bits (with --scope global).",
)
@click.option(
    "--keep",
    type=click.Choice(get_args(KeepOrder)),
    default="first",
    show_default=True,
    help="Which image of a duplicate group stays: first in input order, or largest area.",
)
@click.option(
    "--min-size",
    type=click.IntRange(min=0),
    default=32,
    show_default=True,
    help="Remove images whose shorter side is smaller (too_small); 0 keeps all.",
)
@click.option(
    "--max-size", type=click.IntRange(min=1), help="Remove images whose longer side is larger."
)
@click.option("--keep-errors", is_flag=True, help="Keep rows with an error (they skip dedup).")
@click.option(
    "--confirm",
    type=click.Choice(get_args(Confirm)),
    default="pixels",
    show_default=True,
    help="pixels: remove a pHash candidate (not an md5 copy) only when the two images' "
    "normalised 16×16 grey thumbnails correlate ≥ --pixel-threshold (needs --root); none: "
    "trust the hashes alone (removes distinct images on real data).",
)
@click.option(
    "--pixel-threshold",
    type=click.FloatRange(-1, 1),
    default=0.995,  # fmlkit.data.filter.confirm.DEFAULT_PIXEL_THRESHOLD (tested equal)
    show_default=True,
    help="Least thumbnail correlation of a duplicate (with --confirm pixels).",
)
@click.option(
    "--embeddings",
    type=click.Path(dir_okay=False, path_type=Path),
    help="An `fmlkit embed` Parquet: a candidate must also have embedding cosine ≥ "
    "--embedding-threshold (an image without an embedding is not confirmed).",
)
@click.option(
    "--embedding-threshold",
    type=click.FloatRange(-1, 1),
    default=0.9,  # fmlkit.data.filter.confirm.DEFAULT_EMBEDDING_THRESHOLD (tested equal)
    show_default=True,
    help="Least embedding cosine of a duplicate (with --embeddings).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Implausible duplicate removals (≥ 50 % of a label of ≥ 4 rows, or ≥ 20 % of all "
    "rows) are an error (exit 1): the tables are not written, the report (--report) is.",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the curation report (DIR/index.html, thumbnails in DIR/thumbs) to this folder.",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="The dataset folder the file names are relative to (for --report, and for "
    "--dedup's pixel confirmation).",
)
@click.option(
    "--against",
    type=click.Path(path_type=Path),
    help="Leak check: remove rows (reason leak) within --against-threshold pHash bits of an "
    "image of this test list or benchmark: a .bin, a pair list, or a dataset_info table.",
)
@click.option(
    "--against-root",
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder a text pair list's (or table's) file names are relative to.  "
    "[default: --root]",
)
@click.option(
    "--against-threshold",
    type=click.IntRange(0, 64),
    default=3,
    show_default=True,
    help="Leak radius in pHash bits (with --against).",
)
@overwrite_option
def filter_(
    dataset_info: Path,
    output: Path,
    removed: Path | None,
    dedup: bool,
    threshold: int,
    scope: Scope,
    global_threshold: int,
    keep: KeepOrder,
    min_size: int,
    max_size: int | None,
    keep_errors: bool,
    confirm: Confirm,
    pixel_threshold: float,
    embeddings: Path | None,
    embedding_threshold: float,
    strict: bool,
    report_dir: Path | None,
    root: Path | None,
    against: Path | None,
    against_root: Path | None,
    against_threshold: int,
    overwrite: bool,
) -> None:
    """Remove broken, badly sized and duplicate rows from DATASET_INFO.

    In order: rows with an error (reason error:<kind>, unless --keep-errors), too_small /
    too_large, then with --dedup, walking rows in keep order, a row is removed when it
    duplicates a row already kept: same label and md5 (exact_duplicate), same label within
    --threshold bits (near_duplicate), or with --scope global another label with the same md5
    or within --global-threshold bits (cross_label_duplicate). Kept + removed = input.
    With --against, before dedup, rows within --against-threshold bits of an image of the
    test list or benchmark are removed as leak (duplicate_of names that image).
    A pHash pair is only a candidate: by default (--confirm pixels, needs --root) it is
    removed only when the images' thumbnails agree (and with --embeddings their embeddings).
    Removals of ≥ 50 % of a label or ≥ 20 % of all rows print a Warning (--strict: exit 1).
    """
    from fmlkit.data.filter.filter import FilterRules, check_filter_paths, filter_dataset
    from fmlkit.eval.leak_reference import load_reference

    check_outputs(overwrite, output=output, removed_table=removed, report_folder=report_dir)
    # before the --against list is read and hashed (thousands of images for a benchmark)
    rules = FilterRules(
        dedup=dedup,
        threshold=threshold,
        scope=scope,
        global_threshold=global_threshold,
        keep=keep,
        min_size=min_size or None,
        max_size=max_size,
        keep_errors=keep_errors,
        against_threshold=against_threshold,
        confirm=confirm,
        pixel_threshold=pixel_threshold,
        embedding_threshold=embedding_threshold,
        strict=strict,
    )
    check_filter_paths(
        dataset_info,
        output,
        removed=removed,
        report_dir=report_dir,
        root=root,
        against=against,
        rules=rules,
        embeddings=embeddings,
    )
    report = filter_dataset(
        dataset_info,
        output,
        rules,
        removed=removed,
        report_dir=report_dir,
        root=root,
        against=None if against is None else load_reference(against, root=against_root or root),
        embeddings=embeddings,
    )
    echo_report(report.summary())
