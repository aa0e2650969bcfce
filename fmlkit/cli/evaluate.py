"""The evaluation command: fmlkit evaluate (--checkpoint | --onnx | --weights | --embeddings)
… -o DIR."""

from __future__ import annotations

from pathlib import Path

import click

from fmlkit.cli._common import (
    CONTEXT_SETTINGS,
    echo_report,
    overwrite_option,
    selection_options,
)
from fmlkit.cli.train import preprocess_option, weights_options

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--checkpoint", type=_FILE, help="A training checkpoint (checkpoints/last.pt).")
@click.option("--onnx", type=_FILE, help="An ONNX model from `fmlkit export`.")
@weights_options
@preprocess_option
@click.option(
    "--embeddings",
    type=_FILE,
    help="A Parquet from `fmlkit embed` (file_name, embedding, optional label): pairs are "
    "looked up by file name, embeddings used as stored.",
)
@click.option(
    "--pairs",
    "pairs",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="A pair list, repeatable: a `1,a,b` CSV, LFW pairs.txt or InsightFace .bin (told "
    "apart by content; a .bin needs a model). Each is one benchmark named by its stem.",
)
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model mode: the folder the pair lists' (and a --input table's) file names are "
    "relative to; names leading outside it are refused.",
)
@click.option(
    "--retrieval",
    is_flag=True,
    help="Also leave-one-out retrieval (P@1, R-precision, MAP@R, recall@1/5/10) over the "
    "embeddings' labels, or with a model over --input.",
)
@click.option(
    "--input",
    "retrieval_input",
    type=click.Path(exists=True, path_type=Path),
    help="Model-mode retrieval: a dataset_info table (with --root) or a Parquet dataset folder.",
)
@selection_options(
    "Retrieval over the rows of this fold of --input only.", "…or of this split (e.g. test)."
)
@click.option(
    "--ijb",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="An IJB-B or IJB-C folder (meta/, loose_crop/; told apart by the file names): "
    "template-based 1:1 verification, TAR@FAR 1e-6…1e-1, and 1:N when its gallery and probe "
    "files are there. With --embeddings, that table holds each crop's flip sum.",
)
@click.option(
    "--norm-score/--no-norm-score",
    default=True,
    show_default=True,
    help="IJB: keep each image feature's norm before pooling (insightface's N1); off: "
    "L2-normalise it.",
)
@click.option(
    "--detector-score/--no-detector-score",
    default=True,
    show_default=True,
    help="IJB: weight each image feature by its detector score (insightface's D1).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="IJB with a model: where the crops' embeddings are cached, so that switching modes "
    "does not embed again.  [default: $FMLKIT_CACHE_DIR or ~/.cache/fmlkit]",
)
@click.option(
    "--gallery",
    type=click.Path(exists=True, path_type=Path),
    help="1:N identification, with --probes: a Parquet from `fmlkit embed` (optional "
    "template/media columns pool rows into templates), or with a model an image table as "
    "--input takes.",
)
@click.option(
    "--probes",
    type=click.Path(exists=True, path_type=Path),
    help="1:N identification: the probes, as --gallery (a probe whose identity is not in the "
    "gallery counts toward FPIR).",
)
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The report folder (created; other files in it are kept, and its report files "
    "replaced only with --overwrite).",
)
@click.option(
    "--flip-sum/--no-flip-sum",
    default=True,
    show_default=True,
    help="Model mode: embed each image plus its mirror image (insightface's evaluation).",
)
@click.option(
    "--skip-missing",
    is_flag=True,
    help="Drop pairs naming images that are missing, outside --root or undecodable "
    "(counted as skipped_missing) instead of failing.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@overwrite_option
def evaluate(
    checkpoint: Path | None,
    onnx: Path | None,
    weights: Path | None,
    backbone: str | None,
    image_size: int | None,
    preprocess: str | None,
    embeddings: Path | None,
    pairs: tuple[Path, ...],
    root: Path | None,
    retrieval: bool,
    retrieval_input: Path | None,
    fold: int | None,
    split_value: str | None,
    out_dir: Path,
    flip_sum: bool,
    skip_missing: bool,
    batch_size: int,
    overwrite: bool,
    ijb: Path | None,
    norm_score: bool,
    detector_score: bool,
    cache_dir: Path | None,
    gallery: Path | None,
    probes: Path | None,
) -> None:
    """Verification metrics per pair list, IJB-B/C template verification, 1:N
    identification and retrieval metrics, as one report in OUTPUT.

    Protocol (insightface's, as papers report): L2-normalised embeddings, squared-L2 distance,
    10 folds in file order, the best of thresholds 0…4 step 0.01 on 9 folds applied to the
    10th; accuracy is the mean ± population std of the 10 folds. Also VAL@FAR=1e-3, ROC AUC,
    EER and TAR@FAR 1e-1…1e-6 from the cosine similarities.

    IJB-B/C (insightface's eval_ijbc.py): each crop aligned from its 5 points, embedded plus
    its mirror image, pooled per media and template; TAR@FAR at the ROC point closest to the
    target (insightface's number) and interpolated. 1:N: closed-set CMC (rank 1, 5, 10, 20)
    and open-set TPIR@FPIR 1e-3, 1e-2, 1e-1.

    \b
    OUTPUT receives:
      metrics.json  {benchmark: {metric: value}}: each pair list's stem, `ijbc` (or
                    `ijbb`) and `ijbc_1n`, `identification`, and `retrieval`
      metrics.md    the same numbers as Markdown tables
      roc.png       TAR against FAR (log axis), one curve per pair list and IJB set
      scores.png    genuine and imposter similarity histograms with the threshold
      ijbc.npy      with --ijb: every pair's score, as insightface saves it

    \b
    Examples:
      fmlkit evaluate --checkpoint run/checkpoints/last.pt --pairs lfw.bin -o eval/
      fmlkit evaluate --weights backbone.pth --backbone iresnet50 --pairs lfw.bin -o eval/
      fmlkit evaluate --embeddings emb.parquet --pairs pairs.csv --retrieval -o eval/
      fmlkit evaluate --weights backbone.pth --backbone iresnet100 --ijb IJBC -o eval/
      fmlkit evaluate --gallery gallery.parquet --probes probes.parquet -o eval/
    """
    from fmlkit.eval.evaluate import evaluate as run_evaluate
    from fmlkit.eval.report import REPORT_FILES
    from fmlkit.io import check_output

    for name in REPORT_FILES:  # the folder may exist: its report files are the outputs
        check_output(out_dir / name, overwrite=overwrite, what="report file")
    report = run_evaluate(
        out_dir,
        pairs=pairs,
        checkpoint=checkpoint,
        onnx=onnx,
        weights=weights,
        backbone=backbone,
        image_size=image_size,
        preprocess=preprocess,
        embeddings=embeddings,
        root=root,
        retrieval=retrieval,
        retrieval_input=retrieval_input,
        fold=fold,
        split=split_value,
        flip_sum=flip_sum,
        skip_missing=skip_missing,
        batch_size=batch_size,
        ijb=ijb,
        norm_score=norm_score,
        detector_score=detector_score,
        cache_dir=cache_dir,
        gallery=gallery,
        probes=probes,
    )
    echo_report(report.summary())
