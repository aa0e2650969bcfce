"""Embedding backbones by name: the in-house face nets, or any timm model as ``timm:<name>``.

Every backbone maps float images (B, 3, S, S) to embeddings (B, E), not normalised; the heads
normalise. In-house nets (`list_backbones`): ``iresnet18``/``34``/``50``/``100`` (arcface_torch's
IResNet) and ``mobilefacenet`` (arcface_torch's ``mbf``); they take S a multiple of 16.

``timm:<name>`` builds ``timm.create_model(name, pretrained=False, num_classes=0)`` (its pooled
features) followed by an embedding neck, Linear(features → E, no bias) → BatchNorm1d(E), the
neck that face models put after their trunk (arcface_torch's nets and ViTs end the same way)
rather than timm's bare classifier Linear: the batch norm keeps the embedding's scale steady for
margin heads. Weights are never downloaded. Models whose timm config says their input size is
fixed (ViTs and the like) are built for ``image_size`` (``img_size=image_size``).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from fmlkit.errors import ConfigError
from fmlkit.models.iresnet import IRESNET_LAYERS, IResNet
from fmlkit.models.mobilefacenet import MobileFaceNet
from fmlkit.registry import Registry

BackboneFactory = Callable[..., nn.Module]

BACKBONES: Registry[BackboneFactory] = Registry("backbone")

TIMM_PREFIX = "timm:"
#: Keywords `create_backbone` sets itself for timm models; a user may not pass them.
_TIMM_RESERVED = ("pretrained", "num_classes")


def create_backbone(
    name: str, *, embedding_size: int = 512, image_size: int = 112, **kwargs: Any
) -> nn.Module:
    """The backbone ``name``, untrained: images (B, 3, image_size, image_size) → (B, E).

    Args:
        name: an in-house name (`list_backbones`) or ``timm:<any timm model name>``.
        embedding_size: length E of the embedding.
        image_size: input height and width in pixels (in-house nets: a multiple of 16).
        **kwargs: the in-house net's options (iresnet: ``dropout``), or keywords passed on to
            ``timm.create_model`` (e.g. ``drop_path_rate``).

    Raises:
        ConfigError: an unknown name (with the closest names), a bad size or an unknown option.
    """
    for key, value in (("embedding_size", embedding_size), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be an integer ≥ 1, got {value!r}")
    if name.startswith(TIMM_PREFIX):
        timm_name = name[len(TIMM_PREFIX) :]
        return _create_timm_backbone(
            timm_name, embedding_size=embedding_size, image_size=image_size, **kwargs
        )
    factory = _get_in_house(name)
    valid = [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name not in ("embedding_size", "image_size")
    ]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(
            f"backbone {name!r} takes no {', '.join(map(repr, unknown))}; valid options: "
            f"{', '.join(valid) or 'none'}"
        )
    return factory(embedding_size=embedding_size, image_size=image_size, **kwargs)


def list_backbones() -> list[str]:
    """The in-house backbone names; any ``timm:<name>`` is accepted besides."""
    return BACKBONES.names()


def _get_in_house(name: str) -> BackboneFactory:
    try:
        return BACKBONES.get(name)
    except ConfigError as error:  # the registry's message (valid and closest names), and timm's
        import timm  # deferred: heavy, needed only to help the user here

        if timm.is_model(name):
            hint = f"{name!r} is a timm model: write 'timm:{name}'"
        else:
            hint = "Or 'timm:<model>' for any timm model"
        raise ConfigError(f"{error} {hint}.") from None


def _check_image_size(name: str, image_size: int) -> None:
    """Refuse a size an in-house net cannot take, saying which backbones need what."""
    if image_size % 16:
        below, above = image_size // 16 * 16, image_size // 16 * 16 + 16
        sizes = f"{below} or {above}" if below else f"{above}"
        raise ConfigError(
            f"backbone {name!r} needs image_size a multiple of 16, got {image_size}; use "
            f"{sizes}, or a timm:<model> backbone (they take any size they can run). The "
            f"in-house backbones ({', '.join(list_backbones())}) halve the image 4 times and "
            "size their last layer for the final map"
        )


def _register_iresnet(name: str) -> None:
    def create(*, embedding_size: int, image_size: int, dropout: float = 0.0) -> nn.Module:
        _check_image_size(name, image_size)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"{name} dropout must be in [0, 1), got {dropout}")
        return IResNet(
            IRESNET_LAYERS[name],
            embedding_size=embedding_size,
            image_size=image_size,
            dropout=dropout,
        )

    create.__doc__ = f"{name}: arcface_torch's IResNet with {IRESNET_LAYERS[name]} blocks."
    BACKBONES.register(name)(create)


for _name in IRESNET_LAYERS:
    _register_iresnet(_name)


@BACKBONES.register("mobilefacenet")
def _mobilefacenet(*, embedding_size: int, image_size: int) -> nn.Module:
    """mobilefacenet: arcface_torch's ``mbf`` (blocks (1, 4, 6, 2), width scale 2)."""
    _check_image_size("mobilefacenet", image_size)
    return MobileFaceNet(embedding_size=embedding_size, image_size=image_size)


class TimmBackbone(nn.Module):
    """A timm model's pooled features (``body``) → embedding neck (``neck``): Linear (no bias)
    → BatchNorm1d."""

    def __init__(self, body: nn.Module, features: int, embedding_size: int) -> None:
        super().__init__()
        self.body = body
        self.neck = nn.Sequential(
            nn.Linear(features, embedding_size, bias=False), nn.BatchNorm1d(embedding_size)
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.neck(self.body(x))
        return out


def _create_timm_backbone(
    name: str, *, embedding_size: int = 512, image_size: int = 112, **kwargs: Any
) -> TimmBackbone:
    """timm's ``name`` without its classifier, untrained, followed by the embedding neck.

    Raises:
        ConfigError: ``name`` is not a timm model (the message lists close names), or timm
            rejects an option.
    """
    import timm  # deferred: a heavy import

    if not timm.is_model(name):
        close = _close_timm_names(name)
        hint = f" Close names: {', '.join(close)}." if close else ""
        if name in BACKBONES:
            hint = f" {name!r} is an fmlkit backbone: write {name!r} without 'timm:'."
        raise ConfigError(
            f"unknown timm model {name!r} (in backbone 'timm:{name}').{hint} "
            "List them with timm.list_models('*part*')."
        )
    reserved = sorted(set(kwargs) & set(_TIMM_RESERVED))
    if reserved:
        raise ConfigError(
            f"backbone 'timm:{name}' does not take {', '.join(map(repr, reserved))}: fmlkit "
            "builds timm models untrained and without classifier, followed by its embedding neck"
        )
    cfg = timm.get_pretrained_cfg(name)
    if cfg is not None and cfg.fixed_input_size and "img_size" not in kwargs:
        kwargs["img_size"] = image_size
    try:
        body = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except TypeError as error:
        raise ConfigError(f"timm model {name!r} rejected the options {kwargs}: {error}") from None
    except Exception as error:  # timm's models assert their sizes at build (AssertionError, …)
        raise ConfigError(
            f"timm model {name!r} cannot be built for image_size {image_size} with options "
            f"{kwargs}: {_first_line(error)}. Use another image_size (the model's own is "
            f"{_timm_size(name)}) or another backbone"
        ) from None
    # Width of what the classifier-less model returns: after a pre-logits layer where it has one.
    features = getattr(body, "head_hidden_size", None) or getattr(body, "num_features", None)
    assert isinstance(features, int), (name, features)  # every timm model sets num_features
    backbone = TimmBackbone(body, features, embedding_size)
    _check_runs(backbone, name, image_size)
    return backbone


def _check_runs(model: TimmBackbone, name: str, image_size: int) -> None:
    """Refuse an image size the timm model ``name`` cannot run: one forward pass of a
    1×3×S×S image (most take any size; some need a minimum, e.g. a ViT its patch size, or
    a multiple, e.g. LeViT's attention grids)."""
    import torch

    training = model.training
    model.eval()  # the neck's BatchNorm1d cannot take a batch of one in training mode
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    except Exception as error:  # RuntimeError mostly; IndexError, AssertionError in some models
        raise ConfigError(
            f"timm model {name!r} cannot run on {image_size}×{image_size} px images "
            f"(image_size {image_size}): {_first_line(error)}. Use another image_size (the "
            f"model's own is {_timm_size(name)}) or another backbone"
        ) from None
    finally:
        model.train(training)


def _first_line(error: Exception) -> str:
    """The first line of ``error``'s message, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _timm_size(name: str) -> str:
    """The input size of timm's default config for ``name``, as words."""
    import timm

    cfg = timm.get_pretrained_cfg(name)
    size = getattr(cfg, "input_size", None)
    return f"{size[-1]} px" if size else "not known"


def _close_timm_names(name: str) -> list[str]:
    """Up to 5 timm names like ``name``: from its family (the names that start like it, e.g.
    ``swin*`` for ``swin``) where it has one, else from all of timm's."""
    import timm

    stem = name.split("_")[0].rstrip("0123456789")
    family: list[str] = timm.list_models(f"{stem}*") if stem else []
    return difflib.get_close_matches(name, family or timm.list_models(), n=5) or family[:5]
