"""The training command: fmlkit train --config CONFIG [KEY=VALUE …] [--resume]."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from fmlkit.cli._common import (
    CONTEXT_SETTINGS,
    check_outputs,
    cluster_option,
    echo_report,
    overwrite_option,
    selection_options,
)

F = TypeVar("F", bound=Callable[..., Any])


def weights_options(command: F) -> F:
    """``--weights``, ``--backbone`` and ``--image-size``: a bare backbone state dict (as
    arcface_torch saves it) as the model of `embed` and `evaluate`."""
    for option in reversed(
        [
            click.option(
                "--weights",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="A bare backbone state dict, e.g. arcface_torch's backbone.pth (with "
                "--backbone); images RGB, (x/255 − 0.5)/0.5.",
            ),
            click.option(
                "--backbone",
                help="The architecture of --weights: iresnet18/34/50/100 (arcface_torch's "
                "r18…r100), mobilefacenet (its mbf), or a fmlkit backbone name.",
            ),
            click.option(
                "--image-size",
                type=int,
                help="The input size --weights was trained for.  [default: 112]",
            ),
        ]
    ):
        command = option(command)
    return command


preprocess_option = click.option(
    "--preprocess",
    type=click.Choice(["auto", "insightface", "fmlkit"]),
    help="With --onnx, how images become its input: auto = from the file's fmlkit metadata "
    "when present, else fmlkit's default; insightface = BGR, (x − 127.5)/127.5, 112 px "
    "unless the model's input says otherwise; fmlkit = RGB, (x/255 − 0.5)/0.5.  "
    "[default: auto]",
)


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
    OUTPUT_DIR/tensorboard (W&B and MLflow too with log.wandb=true, log.mlflow=true),
    checkpoints in OUTPUT_DIR/checkpoints (last.pt the newest).
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
    help="The ONNX file to write.",
)
@click.option(
    "--arcface-torch",
    "arcface_torch",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The backbone.pth to write: a bare state dict that arcface_torch's net of the same "
    "kind loads with strict=True (iresnet18/34/50/100, mobilefacenet; 112 px).",
)
@click.option("--opset", type=click.IntRange(min=13), default=17, show_default=True)
@overwrite_option
def export(
    checkpoint: Path, output: Path | None, arcface_torch: Path | None, opset: int, overwrite: bool
) -> None:
    """Export the backbone of CHECKPOINT to ONNX (--onnx), to arcface_torch's format
    (--arcface-torch), or both.

    ONNX: input `images` (batch, 3, S, S), normalised as in training; output `embeddings`
    (batch, E); dynamic batch; checked with onnxruntime against torch before the command ends.
    The file carries its preprocessing as `fmlkit.*` metadata (read by `embed`/`evaluate
    --onnx`), and MODEL_CARD.md is written beside it.
    arcface_torch: the backbone's state_dict, read back and compared with the checkpoint's
    before the command ends.
    """
    from fmlkit.errors import OptionError

    if output is None and arcface_torch is None:
        raise OptionError("nothing to write: give {output}, {arcface_torch} or both")
    from fmlkit.train.export import MODEL_CARD

    card = None if output is None else output.parent / MODEL_CARD
    check_outputs(overwrite, onnx_file=output, model_card=card, state_dict=arcface_torch)
    if output is not None:
        from fmlkit.train.export import export_onnx

        report = export_onnx(checkpoint, output, opset=opset)
        echo_report(
            f"wrote {report.path} ({report.image_size} px); onnxruntime vs torch: max |Δ| "
            f"{report.max_abs_diff:.2e}, min cosine {report.min_cosine:.6f}; model card "
            f"{report.model_card}"
        )
    if arcface_torch is not None:
        from fmlkit.train.export import export_arcface_torch

        echo_report(export_arcface_torch(checkpoint, arcface_torch).summary())


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint.",
)
@click.option(
    "--onnx", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="An ONNX model."
)
@weights_options
@preprocess_option
@click.option(
    "--input",
    "input_",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="A dataset_info table (with --root) or a Parquet dataset folder.",
)
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@selection_options(
    "Embed only the rows of this fold of --input.", "…or of this split (train or test)."
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--flip-sum/--no-flip-sum", default=True, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@cluster_option
@overwrite_option
def embed(
    checkpoint: Path | None,
    onnx: Path | None,
    weights: Path | None,
    backbone: str | None,
    image_size: int | None,
    preprocess: str | None,
    input_: Path,
    root: Path | None,
    fold: int | None,
    split_value: str | None,
    output: Path,
    flip_sum: bool,
    batch_size: int,
    cluster: str | None,
    overwrite: bool,
) -> None:
    """Write the embeddings of every readable image of --input as Parquet: file_name, label,
    embedding (list<float32>, not normalised; with --flip-sum emb(x) + emb(flip(x))).

    The model: --checkpoint, --onnx, or --weights with --backbone (e.g. arcface_torch's
    backbone.pth: --weights backbone.pth --backbone iresnet50).
    """
    from fmlkit.eval.embed import embed as run_embed

    check_outputs(overwrite, output=output)
    report = run_embed(
        input_,
        output,
        checkpoint=checkpoint,
        onnx=onnx,
        weights=weights,
        backbone=backbone,
        image_size=image_size,
        preprocess=preprocess,
        root=root,
        fold=fold,
        split=split_value,
        flip_sum=flip_sum,
        batch_size=batch_size,
        cluster=cluster,
    )
    skipped = f"; {len(report.skipped)} images could not be decoded" if report.skipped else ""
    echo_report(
        f"wrote {report.images} embeddings of {report.dimension} to {report.output}{skipped}"
    )
