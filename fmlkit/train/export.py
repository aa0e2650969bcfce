"""A trained backbone from a checkpoint, and its exports: ONNX checked with onnxruntime, and
arcface_torch's format (a bare state dict, `fmlkit.train.weights`) read back and compared."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from fmlkit.errors import InputError
from fmlkit.io import atomic_path, committed_together
from fmlkit.train.weights import ARCFACE_TORCH_NAMES, ARCFACE_TORCH_SIZE, load_backbone_weights

if TYPE_CHECKING:
    from fmlkit.train.config import TrainConfig
    from fmlkit.train.data_config import DataConfig

INPUT, OUTPUT = "images", "embeddings"
MODEL_CARD = "MODEL_CARD.md"


def load_backbone(checkpoint: str | os.PathLike[str]) -> tuple[nn.Module, DataConfig]:
    """The backbone of a training checkpoint in eval mode, on the CPU, and the ``data``
    section it was trained with (image size, normalisation).

    Raises:
        InputError: not a readable fmlkit training checkpoint, or one whose weights do not
            fit the model its config names.
        ConfigError: a checkpoint whose config is not valid.
    """
    model, config = load_trained(checkpoint)
    return model, config.data


def load_trained(checkpoint: str | os.PathLike[str]) -> tuple[nn.Module, TrainConfig]:
    """The backbone of a training checkpoint in eval mode, on the CPU, and the whole config
    it was trained with. Raises as `load_backbone`."""
    model, config, _ = _load_trained(checkpoint)
    return model, config


def _load_trained(
    checkpoint: str | os.PathLike[str],
) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """`load_trained`, and the checkpoint's whole state."""
    from fmlkit.train.build import create_model
    from fmlkit.train.checkpoint import describe_error, load_checkpoint
    from fmlkit.train.config import config_from_dict

    state = load_checkpoint(checkpoint)
    if "model" not in state or "config" not in state:
        raise InputError(f"{checkpoint} is not an fmlkit training checkpoint (no model/config)")
    config = config_from_dict(state["config"], source=str(checkpoint))
    model = create_model(config)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        why = describe_error(exc).rstrip(".")
        backbone = f"{config.model.backbone} ({config.model.embedding_size}-d)"
        raise InputError(
            f"{checkpoint}: its weights do not fit the model its config names, {backbone}: "
            f"{why}. The file was changed after training or is not fmlkit's checkpoint"
        ) from exc
    return model.eval(), config, state


@dataclass(frozen=True)
class ExportReport:
    path: Path
    image_size: int
    max_abs_diff: float  # onnxruntime against torch on a check batch
    min_cosine: float
    model_card: Path | None = None


def export_onnx(
    checkpoint: str | os.PathLike[str], output: str | os.PathLike[str], *, opset: int = 17
) -> ExportReport:
    """Write the checkpoint's backbone as ONNX (input ``images`` (batch, 3, S, S) float32,
    normalised as in training; output ``embeddings`` (batch, E), not normalised), with a
    dynamic batch axis; then run it with onnxruntime on a batch of 3 and compare with torch.

    The file describes itself: ``fmlkit.*`` ``metadata_props`` (`fmlkit.train.onnx_meta`:
    input size, RGB, mean/std, NCHW, embedding size, whether outputs are L2-normalised,
    fmlkit version, config sha256) and a ``doc_string``; ``MODEL_CARD.md`` is written beside
    it. Both files are written atomically.
    """
    from fmlkit.train.config import config_to_dict
    from fmlkit.train.onnx_meta import metadata, model_card, validation_metrics, write_metadata

    model, config, state = _load_trained(checkpoint)
    data = config.data
    size = data.image_size
    example = torch.randn(2, 3, size, size)
    check = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(check).numpy()
    norms = np.linalg.norm(expected, axis=1)
    settings = config_to_dict(config)
    props = metadata(
        image_size=size,
        mean=tuple(data.normalisation.mean),
        std=tuple(data.normalisation.std),
        embedding_size=int(expected.shape[1]),
        normalized=bool(np.allclose(norms, 1.0, atol=1e-4)),
        config=settings,
    )
    steps = state.get("step")
    props.update(validation_metrics(Path(checkpoint).parent.parent,
                                    steps if isinstance(steps, int) else None))  # fmt: skip
    doc = (
        f"fmlkit {config.model.backbone} face embedding model: {INPUT} (N, 3, {size}, {size}) "
        f"float32 RGB, (x/255 - mean)/std with mean {list(data.normalisation.mean)} and std "
        f"{list(data.normalisation.std)} -> {OUTPUT} (N, {expected.shape[1]})"
    )
    card = Path(output).parent / MODEL_CARD
    with committed_together(output, card), atomic_path(output) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
        write_metadata(tmp, props, doc)
        got = OnnxModel(tmp)(check.numpy())
        with atomic_path(card) as card_tmp:
            card_tmp.write_text(
                model_card(settings, props, steps=steps if isinstance(steps, int) else None,
                           onnx_name=Path(output).name),
                encoding="utf-8",
            )  # fmt: skip
    cosine = (got * expected).sum(1) / (np.linalg.norm(got, axis=1) * norms)
    return ExportReport(
        Path(output), size, float(np.abs(got - expected).max()), float(cosine.min()), card
    )


class OnnxModel:
    """An exported model run by onnxruntime on the CPU: (B, 3, S, S) float32 → (B, E)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import onnxruntime

        from fmlkit.parallel import auto_threads

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = auto_threads()  # as torch's: the CPUs it may use
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InputError(f"{path} is not a readable ONNX model: {exc}") from exc
        first = self.session.get_inputs()[0]
        shape = list(first.shape)
        if len(shape) != 4 or shape[1] != 3:
            found = "×".join(str(d) if d is not None else "?" for d in shape) or "a scalar"
            raise InputError(
                f"{path}: its input {first.name!r} has shape {found}; expected N×3×H×W "
                "(batch, 3 colour channels, height, width), as face embedding models take"
            )
        self.input_name = first.name
        self.image_size = shape[-1] if isinstance(shape[-1], int) else None
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        (out,) = self.session.run(None, {self.input_name: images})
        return np.asarray(out, dtype=np.float32)


@dataclass(frozen=True)
class ArcfaceExport:
    """What `export_arcface_torch` wrote: the file, the backbone and arcface_torch's name for
    it, the embedding size, the training normalisation, and how close the written weights
    reloaded embed to the checkpoint's (min cosine over a check batch)."""

    path: Path
    backbone: str
    arcface_name: str
    embedding_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    min_cosine: float

    def summary(self) -> str:
        """The command line's report: what was written, and how to load it."""
        lines = [
            f"wrote {self.path}: {self.backbone} (arcface_torch get_model({self.arcface_name!r}, "
            f"num_features={self.embedding_size})), {ARCFACE_TORCH_SIZE} px; reloaded, "
            f"min cosine {self.min_cosine:.6f}"
        ]
        if self.mean != (0.5, 0.5, 0.5) or self.std != (0.5, 0.5, 0.5):
            lines.append(
                f"note: trained with mean {list(self.mean)} and std {list(self.std)}; "
                "arcface_torch's inference normalises with 0.5 and 0.5: use these instead"
            )
        return "\n".join(lines)


def export_arcface_torch(
    checkpoint: str | os.PathLike[str], output: str | os.PathLike[str]
) -> ArcfaceExport:
    """Write the checkpoint's backbone as a bare state dict that arcface_torch's own net of
    the same kind loads with ``load_state_dict(strict=True)``. Before the file is given its
    name, it is read back into a fresh backbone and compared with the checkpoint's on a
    check batch.

    Raises:
        InputError: not a usable checkpoint; a backbone arcface_torch does not have (timm
            models) or an image size other than 112 (its nets are sized for 112 px).
    """
    model, config = load_trained(checkpoint)
    backbone, size = config.model.backbone, config.data.image_size
    if backbone not in ARCFACE_TORCH_NAMES:
        raise InputError(
            f"{checkpoint}: backbone {backbone} has no arcface_torch counterpart; only "
            f"{', '.join(ARCFACE_TORCH_NAMES)} can be written in arcface_torch's format "
            "(export it with --onnx instead)"
        )
    if size != ARCFACE_TORCH_SIZE:
        raise InputError(
            f"{checkpoint}: trained at {size} px, and arcface_torch's {backbone} is built for "
            f"{ARCFACE_TORCH_SIZE} px (its last layer is sized for that): train with "
            f"data.image_size={ARCFACE_TORCH_SIZE}, or export it with --onnx instead"
        )
    state = {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}
    check = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with atomic_path(output) as tmp:
        with tmp.open("wb") as f:
            torch.save(state, f)
        reloaded = load_backbone_weights(tmp, backbone, image_size=size)
        with torch.no_grad():
            cosine = nn.functional.cosine_similarity(model(check), reloaded(check))
    norm = config.data.normalisation
    return ArcfaceExport(
        Path(output),
        backbone,
        ARCFACE_TORCH_NAMES[backbone],
        config.model.embedding_size,
        tuple(norm.mean),
        tuple(norm.std),
        float(cosine.min()),
    )
