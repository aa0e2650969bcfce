"""What `fmlkit embed` embeds with: the model (`load_embedder`: a checkpoint, an ONNX model or
a bare backbone state dict, with its evaluation transform) and the rows (`open_rows`: a
dataset_info table with its root, or a Parquet dataset, one fold or split of it).

`fmlkit.eval.embed` (the stage) and `fmlkit.eval.embed_cluster` (its shards on a Dask
cluster's workers) both load through here, so neither imports the other back. This module
loads checkpoints through `fmlkit.train.export`, so it sits above `fmlkit.train`; nothing in
`fmlkit.train` imports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from fmlkit.errors import InputError, OptionError
from fmlkit.eval.embedder import Embedder

if TYPE_CHECKING:  # torch is imported where it is used: `fmlkit evaluate --embeddings` needs none
    import torch

    from fmlkit.data.loading.datasets import ImageDataset
    from fmlkit.data.loading.transforms import ImageTransform
    from fmlkit.train.onnx_meta import Preprocess


def check_model_options(
    checkpoint: object,
    onnx: object,
    weights: object,
    backbone: str | None,
    image_size: object,
    preprocess: str | None = None,
) -> None:
    """The rules of the model options: ``backbone`` with ``weights`` and only with it (a bare
    state dict does not say its architecture); ``image_size`` only with ``weights``, from 16
    to `MAX_IMAGE_SIZE`; ``preprocess`` only with ``onnx``, one of `PREPROCESS_MODES`. Which
    one source is given is the caller's rule.

    Raises:
        OptionError: naming the options.
    """
    from fmlkit.train.data_config import MAX_IMAGE_SIZE
    from fmlkit.train.onnx_meta import PREPROCESS_MODES

    if weights is not None and backbone is None:
        raise OptionError(
            "{weights} is a bare state dict: name its architecture with {backbone} (e.g. "
            "iresnet50 for arcface_torch's r50, mobilefacenet for its mbf)"
        )
    for name, value in (("backbone", backbone), ("image_size", image_size)):
        if value is not None and weights is None:
            raise OptionError(
                f"{{{name}}} is for {{weights}}: a checkpoint or an ONNX model knows its own"
            )
    if image_size is not None and not (
        isinstance(image_size, int) and 16 <= image_size <= MAX_IMAGE_SIZE
    ):
        raise OptionError(f"{{image_size}}: expected 16 to {MAX_IMAGE_SIZE}, found {image_size}")
    if preprocess is not None and onnx is None:
        raise OptionError(
            "{preprocess} is for {onnx}: a checkpoint or weights know their preprocessing"
        )
    if preprocess is not None and preprocess not in PREPROCESS_MODES:
        raise OptionError(
            f"{{preprocess}}: expected one of {', '.join(PREPROCESS_MODES)}, found {preprocess!r}"
        )
    del checkpoint  # the sources: the caller checks that exactly one is given


def load_embedder(
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    onnx: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    backbone: str | None = None,
    image_size: int | None = None,
    preprocess: str | None = None,
) -> Embedder:
    """The backbone of a training checkpoint, an exported ONNX model, or ``weights`` (a bare
    state dict of the backbone ``backbone``, as arcface_torch saves it): exactly one, with
    its evaluation transform: the checkpoint's image size and normalisation; the ONNX
    input's size and its ``fmlkit.*`` metadata, else the default (x/255 − 0.5)/0.5, or as
    ``preprocess`` says (`fmlkit.train.onnx_meta.read_preprocessing`); ``image_size``
    (default 112) and (x/255 − 0.5)/0.5 for ``weights`` (arcface_torch's RGB inference
    normalisation).

    Raises:
        OptionError: not exactly one model, or ``backbone``/``image_size`` without
            ``weights`` (`check_model_options`).
        InputError: not a checkpoint / ONNX model / state dict of that backbone, or an ONNX
            model without a fixed image size.
        ConfigError: an unknown backbone.
    """
    from fmlkit.data.loading.transforms import build_transforms

    given = [f"{{{n}}}" for n, v in (("checkpoint", checkpoint), ("onnx", onnx),
                                     ("weights", weights)) if v is not None]  # fmt: skip
    if len(given) != 1:
        raise OptionError(
            "give exactly one of {checkpoint}, {onnx} and {weights} (the model); found "
            + (", ".join(given) or "none")
        )
    check_model_options(checkpoint, onnx, weights, backbone, image_size, preprocess)
    if weights is not None:
        assert backbone is not None  # check_model_options
        run, size, mean, std = _weights_model(weights, backbone, image_size)
    else:
        run, size, mean, std = _model(checkpoint, onnx, preprocess)
    # evaluation only resizes, with fmlkit's own steps whatever the backend: "pil" spares
    # importing torchvision (seconds)
    transform = build_transforms(size, train=False, mean=mean, std=std, backend="pil")
    return Embedder(run, transform)


_Model = tuple[Callable[["torch.Tensor"], np.ndarray], int, tuple[float, ...], tuple[float, ...]]


def _weights_model(
    weights: str | os.PathLike[str], backbone: str, image_size: int | None
) -> _Model:
    import torch

    from fmlkit.train.weights import ARCFACE_TORCH_SIZE, load_backbone_weights

    size = image_size or ARCFACE_TORCH_SIZE
    model = load_backbone_weights(weights, backbone, image_size=size)

    def run_torch(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return model(images).float().numpy()

    return run_torch, size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _model(
    checkpoint: str | os.PathLike[str] | None,
    onnx: str | os.PathLike[str] | None,
    preprocess: str | None = None,
) -> _Model:
    import torch

    if checkpoint is not None:
        from fmlkit.train.export import load_backbone

        model, data = load_backbone(checkpoint)  # one read of the checkpoint
        size, norm = data.image_size, data.normalisation

        def run_torch(images: torch.Tensor) -> np.ndarray:
            # subnormal activations (a trained net on black borders makes many) run ~6× slower
            # on x86 CPUs: flush them to zero while embedding (docs/evaluate.md, "Speed")
            flushed = torch.set_flush_denormal(True)
            try:
                with torch.no_grad():
                    return model(images).float().numpy()
            finally:
                if flushed:
                    torch.set_flush_denormal(False)

        return run_torch, size, norm.mean, norm.std
    from fmlkit.train.export import OnnxModel
    from fmlkit.train.onnx_meta import read_preprocessing

    assert onnx is not None
    session = OnnxModel(onnx)
    mode = cast("Preprocess", preprocess or "auto")
    how = read_preprocessing(onnx, session.metadata, session.image_size, mode)
    bgr = how.channel_order == "BGR"

    def run_onnx(images: torch.Tensor) -> np.ndarray:
        if bgr:  # the transform gives RGB
            images = images.flip(1)
        return session(np.ascontiguousarray(images.numpy(), dtype=np.float32))

    mean, std = how.rgb_mean_std()
    return run_onnx, how.size, mean, std


def open_rows(
    input: Path,
    root: str | os.PathLike[str] | None,
    transform: ImageTransform,
    *,
    fold: int | None = None,
    split: str | None = None,
) -> ImageDataset:
    """The rows to embed: a Parquet dataset folder ``input`` (its image bytes read into
    memory), or a dataset_info table with its image ``root``; only ``fold`` or ``split``.

    Raises:
        InputError: a table without ``root``, or no row left (see `ImageFolderDataset`).
        OptionError: both ``fold`` and ``split``.
    """
    from fmlkit.data.loading.datasets import ImageFolderDataset, ParquetImageDataset
    from fmlkit.data.split.select import selection_column

    selection_column(fold, split)  # both: an OptionError
    folds = None if fold is None else [fold]
    if input.is_dir():
        return ParquetImageDataset(
            input, transform=transform, cache="memory", folds=folds, split=split
        )
    if root is None:
        raise InputError(f"{input} is a dataset_info table: pass --root, the images' folder")
    return ImageFolderDataset(input, root, transform=transform, folds=folds, split=split)
