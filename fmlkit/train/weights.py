"""Bare backbone weights: insightface arcface_torch's ``backbone.pth`` in and out.

arcface_torch saves a trained backbone as its bare ``state_dict``
(``torch.save(backbone.state_dict(), "backbone.pth")``). fmlkit's ``iresnet18/34/50/100`` and
``mobilefacenet`` (arcface_torch's ``mbf``) have its parameter names and shapes
(`fmlkit.models.iresnet`, `fmlkit.models.mobilefacenet`), so such a file loads as it is:

- `load_backbone_weights`: a named backbone built from a weights file (``fmlkit embed`` and
  ``fmlkit evaluate --weights FILE --backbone NAME``);
- `init_backbone`: a model about to train starts from a file (``model.init``), every tensor
  or, not strict, those that fit;
- `fmlkit.train.export.export_arcface_torch` writes a checkpoint's backbone as such a file
  (``fmlkit export --arcface-torch FILE``), for tools that expect arcface_torch's format.

Files are read with ``torch.load(weights_only=True)``: tensors and plain values only, so a
pickle asking for other objects (which could run code) is refused and nothing in it runs.
A fmlkit training checkpoint is taken as its backbone's weights (its ``model``).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from fmlkit.errors import InputError
from fmlkit.train.checkpoint import describe_error

log = logging.getLogger(__name__)

#: The input size arcface_torch's nets are built for (their last layers are sized for 7×7 maps).
ARCFACE_TORCH_SIZE = 112
#: fmlkit's in-house backbones and arcface_torch's name for each (``get_model(name)``).
ARCFACE_TORCH_NAMES = {
    "iresnet18": "r18",
    "iresnet34": "r34",
    "iresnet50": "r50",
    "iresnet100": "r100",
    "mobilefacenet": "mbf",
}
_SHOWN = 4  # keys named in an error, of each kind
_DDP_PREFIX = "module."  # what a DistributedDataParallel wrapper adds to every key


def read_weights(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The state dict (parameter name → tensor) in ``path``, read on the CPU with
    ``weights_only=True``: a bare state dict (arcface_torch's ``backbone.pth``), or a fmlkit
    training checkpoint's ``model``. A ``module.`` prefix on every key (a model saved inside
    DistributedDataParallel) is dropped.

    Raises:
        InputError: no such file, an empty or unreadable one, a pickle that asks for Python
            objects (nothing in it is run), or one that holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no weights file at {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is not a weights file: it is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise InputError(
            f"{path} is not a readable weights file (a state dict saved with torch.save): "
            f"{describe_error(exc)}"
        ) from exc
    if isinstance(found, dict) and "model" in found and "config" in found:
        found = found["model"]  # a fmlkit training checkpoint: its backbone
    if not _is_state_dict(found):
        raise InputError(
            f"{path} is not a state dict (parameter name → tensor): it holds {_kind(found)}. "
            "Expected a backbone's weights as arcface_torch saves them, "
            "torch.save(backbone.state_dict(), PATH)"
        )
    state = dict(found)
    if all(key.startswith(_DDP_PREFIX) for key in state):
        state = {key[len(_DDP_PREFIX) :]: value for key, value in state.items()}
    return state


def _is_state_dict(found: object) -> bool:
    return (
        isinstance(found, Mapping)
        and bool(found)
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in found.items())
    )


def _kind(found: object) -> str:
    """What a loaded object is, in a few words (for the error when it is no state dict)."""
    if isinstance(found, Mapping):
        if not found:
            return "an empty dict"
        keys = [str(k) for k in list(found)[:_SHOWN]]
        return f"a dict of other things (keys {', '.join(keys)}{', …' if len(found) > 4 else ''})"
    return f"a {type(found).__name__}"


def embedding_size_of(state: Mapping[str, Tensor]) -> int | None:
    """The embedding size a backbone's state dict was trained for: the length of its last
    1-d floating tensor (the final BatchNorm1d's, in the in-house nets and timm necks)."""
    for tensor in reversed(list(state.values())):
        if tensor.dim() == 1 and tensor.is_floating_point():
            return int(tensor.shape[0])
    return None


@dataclass(frozen=True)
class Fit:
    """How a state dict fits a model: keys the model has that the file lacks, keys of the
    file the model lacks, and keys in both with other shapes (key, model's, file's)."""

    missing: list[str]
    unexpected: list[str]
    shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.shapes)


def fit(model: nn.Module, state: Mapping[str, Tensor]) -> Fit:
    """How ``state`` fits ``model``'s state dict (see `Fit`)."""
    own = model.state_dict()
    return Fit(
        [k for k in own if k not in state],
        [k for k in state if k not in own],
        [
            (k, tuple(own[k].shape), tuple(v.shape))
            for k, v in state.items()
            if k in own and own[k].shape != v.shape
        ],
    )


def describe_fit(found: Fit) -> str:
    """A `Fit` in words: the first few missing and unexpected keys, every shape mismatch."""
    parts = []
    if found.missing:
        parts.append(f"{len(found.missing)} keys missing (expected {_first(found.missing)})")
    if found.unexpected:
        parts.append(f"{len(found.unexpected)} keys unexpected (found {_first(found.unexpected)})")
    if found.shapes:
        shapes = "; ".join(
            f"{key} {_shape(mine)} expected, {_shape(theirs)} found"
            for key, mine, theirs in found.shapes
        )
        parts.append(f"{len(found.shapes)} shapes differ: {shapes}")
    return "; ".join(parts)


def _first(keys: list[str]) -> str:
    more = ", …" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) or "scalar"


def load_into(model: nn.Module, state: Mapping[str, Tensor], *, strict: bool = True) -> Fit:
    """Copy ``state`` into ``model``: every tensor (``strict``), or only those whose key and
    shape the model has. Returns how it fitted; raises nothing itself.

    Raises:
        ValueError: ``strict`` and the state does not fit exactly (see `fit`), or not
            ``strict`` and no tensor fits at all; the message is `describe_fit`'s.
    """
    found = fit(model, state)
    if strict and not found.exact:
        raise ValueError(describe_fit(found))
    mismatched = {key for key, _, _ in found.shapes}
    usable = {k: v for k, v in state.items() if k not in found.unexpected and k not in mismatched}
    if not usable:
        raise ValueError(f"none of its tensors fit: {describe_fit(found)}")
    model.load_state_dict(usable, strict=False)
    return found


def load_backbone_weights(
    path: str | os.PathLike[str],
    backbone: str,
    *,
    image_size: int = ARCFACE_TORCH_SIZE,
    embedding_size: int | None = None,
) -> nn.Module:
    """The backbone ``backbone`` with the weights in ``path``, in eval mode on the CPU.

    Args:
        path: a bare state dict (arcface_torch's ``backbone.pth``) or a fmlkit checkpoint.
        backbone: the architecture, an fmlkit backbone name (arcface_torch's r18/r34/r50/r100
            are ``iresnet18/34/50/100``, its mbf ``mobilefacenet``).
        image_size: the input size it was trained for (arcface_torch: 112).
        embedding_size: its embedding length; None reads it from the file.

    Raises:
        InputError: an unreadable file or one of another architecture or size: names the
            file, the keys expected and found (first few) and every mismatched shape.
        ConfigError: an unknown backbone name or a bad size.
    """
    from fmlkit.models.backbones import create_backbone

    state = read_weights(path)
    size = embedding_size or embedding_size_of(state) or 512
    model = create_backbone(backbone, embedding_size=size, image_size=image_size)
    what = f"{backbone} ({size}-d, {image_size} px)"
    try:
        load_into(model, state, strict=True)
    except ValueError as exc:
        hint = _hint(state, model, backbone, image_size, size)
        raise InputError(f"{path} does not fit backbone {what}: {exc}.{hint}") from None
    return model.eval()


def init_backbone(model: nn.Module, path: str | os.PathLike[str], *, strict: bool = True) -> Fit:
    """Start ``model`` (about to train) from the weights in ``path`` (``model.init``): every
    tensor with ``strict``, else those whose key and shape fit, the others left as built and
    logged.

    Raises:
        InputError: an unreadable file; with ``strict`` any key or shape that does not fit
            (every one named); without, a file of which nothing fits.
    """
    state = read_weights(path)
    try:
        found = load_into(model, state, strict=strict)
    except ValueError as exc:
        fix = (
            " Set model.init_strict=false to load what fits and start the rest fresh"
            if strict
            else ""
        )
        raise InputError(f"model.init {path} does not fit the model: {exc}.{fix}") from None
    loaded = len(state) - len(found.unexpected) - len(found.shapes)
    if found.exact:
        log.info("model.init: loaded all %d tensors of %s", loaded, path)
    else:
        log.warning(
            "model.init: loaded %d tensors of %s; left as initialised: %s",
            loaded,
            path,
            describe_fit(found),
        )
    return found


def _hint(
    state: Mapping[str, Tensor], model: nn.Module, backbone: str, image_size: int, size: int
) -> str:
    """What the file probably is, when that can be told: the in-house backbone whose keys it
    has, or the image size its last layers were sized for."""
    from fmlkit.models.backbones import create_backbone, list_backbones

    found = fit(model, state)
    if found.missing or found.unexpected:
        for name in list_backbones():
            if name == backbone:
                continue
            with torch.device("meta"):  # the keys and shapes without allocating the weights
                other = create_backbone(name, embedding_size=size, image_size=image_size)
            if set(other.state_dict()) == set(state):
                return f" Its keys are those of backbone {name}: use that name."
        return " It is not the weights of this backbone; check the architecture."
    trained = _image_size(found)
    if trained is not None and trained != image_size:
        return f" Its last layers were sized for {trained} px images: use image size {trained}."
    return ""


def _image_size(found: Fit) -> int | None:
    """The image size an in-house net's last layer was built for, from its mismatched
    shape: iresnet's fc (512·(S/16)² inputs), mobilefacenet's global depthwise conv (S/16)."""
    for key, _, theirs in found.shapes:
        if key == "fc.weight" and len(theirs) == 2:
            side = math.isqrt(theirs[1] // 512)
            if 512 * side * side == theirs[1]:
                return 16 * side
        if key == "features.layers.0.layers.0.weight" and len(theirs) == 4:
            return 16 * theirs[-1]
    return None
