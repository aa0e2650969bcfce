"""The training command: fmlkit train --config CONFIG [KEY=VALUE …] [--resume]."""

from __future__ import annotations

from pathlib import Path

import click

from fmlkit.cli._common import CONTEXT_SETTINGS, echo_report


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Training config (YAML, e.g. configs/demo.yaml).",
)
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue from the newest complete checkpoint in OUTPUT_DIR/checkpoints (last.pt, or "
    "a newer step file left by a kill; unreadable ones are skipped with a warning).",
)
@click.option("--device", help="cpu, cuda, cuda:1 …  [default: this rank's GPU, else the CPU]")
def train(config_path: Path, overrides: tuple[str, ...], resume: bool, device: str | None) -> None:
    """Train an embedding model as CONFIG says, with dotted KEY=VALUE overrides.

    Dataset paths come as overrides: data.parquet=DIR (from `fmlkit convert`), or
    data.dataset_info=CSV data.root=DIR. Every key is checked before anything runs; the
    resolved config is saved as OUTPUT_DIR/config.yaml, metrics in OUTPUT_DIR/metrics.csv and
    OUTPUT_DIR/tensorboard, checkpoints in OUTPUT_DIR/checkpoints (last.pt the newest).
    Several processes: torchrun --nproc_per_node N -m fmlkit train --config …

    \b
    Example:
      fmlkit train --config configs/demo.yaml data.parquet=demo/parquet train.max_steps=50
    """
    from fmlkit.train.config import load_config
    from fmlkit.train.loop import train as run_training

    config = load_config(config_path, overrides)
    report = run_training(config, resume=resume, device=device)
    if report.is_main:  # under torchrun, rank 0 alone reports
        echo_report(report.summary())


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="A training checkpoint (OUTPUT_DIR/checkpoints/last.pt).",
)
@click.option(
    "--onnx",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The ONNX file to write.",
)
@click.option("--opset", type=click.IntRange(min=13), default=17, show_default=True)
def export(checkpoint: Path, output: Path, opset: int) -> None:
    """Export the backbone of CHECKPOINT to ONNX: input `images` (batch, 3, S, S), normalised
    as in training; output `embeddings` (batch, E); dynamic batch. The file is checked with
    onnxruntime against torch before the command ends."""
    from fmlkit.train.export import export_onnx

    report = export_onnx(checkpoint, output, opset=opset)
    echo_report(
        f"wrote {report.path} ({report.image_size} px); onnxruntime vs torch: max |Δ| "
        f"{report.max_abs_diff:.2e}, min cosine {report.min_cosine:.6f}"
    )


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint.",
)
@click.option(
    "--onnx", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="An ONNX model."
)
@click.option(
    "--input",
    "input_",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="A dataset_info table (with --root) or a Parquet dataset folder.",
)
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--flip-sum/--no-flip-sum", default=True, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
def embed(
    checkpoint: Path | None,
    onnx: Path | None,
    input_: Path,
    root: Path | None,
    output: Path,
    flip_sum: bool,
    batch_size: int,
) -> None:
    """Write the embeddings of every readable image of --input as Parquet: file_name, label,
    embedding (list<float32>, not normalised; with --flip-sum emb(x) + emb(flip(x)))."""
    from fmlkit.eval.embed import embed as run_embed

    report = run_embed(
        input_,
        output,
        checkpoint=checkpoint,
        onnx=onnx,
        root=root,
        flip_sum=flip_sum,
        batch_size=batch_size,
    )
    skipped = f"; {len(report.skipped)} images could not be decoded" if report.skipped else ""
    echo_report(
        f"wrote {report.images} embeddings of {report.dimension} to {report.output}{skipped}"
    )
