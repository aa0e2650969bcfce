"""Margin heads: the classification losses that train face and metric embeddings.

A head is an ``nn.Module`` called as ``head(embeddings, labels)`` → the mean softmax
cross-entropy over the batch; ``head.logits(embeddings, labels)`` gives the logits it feeds to
it. Cosine heads hold the class centres as ``head.weight`` (num_classes, embedding_size) and
work on cos θ_j = Ŵ_j · x̂. Margins are in radians. Formulas and defaults: docs/heads.md.

Numerics: logits are computed with autocast off, in float32 or wider (float64 inputs stay
float64). Angle terms come from the cosine without ``acos`` where the formula allows
(cos(θ + m) = cos θ cos m − sin θ sin m), exact in value; gradients are exact except within
√eps of θ = 0 and θ = π, where the infinite derivative of sin θ is cut (`sin_from_cos`).
"""

from __future__ import annotations

import inspect
import math
from contextlib import AbstractContextManager
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlkit.errors import ConfigError
from fmlkit.registry import Registry

HEADS: Registry[type[nn.Module]] = Registry("head")


def create_head(name: str, embedding_size: int, num_classes: int, **kwargs: object) -> nn.Module:
    """The head registered as ``name``, with its paper's defaults unless ``kwargs`` override them.

    Raises:
        ConfigError: an unknown head name or keyword (the message lists the valid ones).
    """
    cls = HEADS.get(name)
    valid = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    ]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(
            f"head {name!r} takes no {', '.join(map(repr, unknown))}; valid keywords: "
            f"{', '.join(valid) or 'none'}"
        )
    return cls(embedding_size, num_classes, **kwargs)


def list_heads() -> list[str]:
    return HEADS.names()


def compute_dtype(x: Tensor) -> torch.dtype:
    """float32, or wider when ``x`` is (float64 stays float64)."""
    return torch.promote_types(x.dtype, torch.float32)


def full_precision(x: Tensor) -> AbstractContextManager[object]:
    """Autocast off on ``x``'s device, so logits are not computed in bf16/fp16."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def check_embedding_size(embedding_size: int) -> None:
    """Every head, the pair losses included, needs embedding_size ≥ 1."""
    if embedding_size < 1:
        raise ConfigError(f"a head needs embedding_size ≥ 1, got {embedding_size}")


def _check_size(embedding_size: int, num_classes: int) -> None:
    """The heads with class centres also need num_classes ≥ 2 (the pair losses take any)."""
    check_embedding_size(embedding_size)
    if num_classes < 2:
        raise ConfigError(f"a head needs num_classes ≥ 2, got {num_classes}")


class ClassificationHead(nn.Module):
    """Base of the heads that feed `logits` to softmax cross-entropy."""

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels.long())


@HEADS.register("softmax")
class Softmax(ClassificationHead):
    """Plain softmax: a linear layer with bias, then cross-entropy (no normalisation, no margin)."""

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        _check_size(embedding_size, num_classes)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.normal_(self.weight, std=0.01)

    def logits(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        dtype = compute_dtype(embeddings)
        with full_precision(embeddings):
            return F.linear(embeddings.to(dtype), self.weight.to(dtype), self.bias.to(dtype))


class CosineHead(ClassificationHead):
    """Base of the heads on cos θ_j = Ŵ_j · x̂.

    Subclasses change the target logit (`target`), or override `cosine_logits` when the
    other logits, the scale or the state change too. Heads that keep state (running
    statistics, an iteration count) update it only in training mode, like batch norm, and
    keep it in buffers so that it is saved in ``state_dict``.
    """

    #: `cosine_logits` depends on each row alone and honours label −1, so `PartialFC` can
    #: shard the classes (normface, cosface, arcface, combined).
    supports_partial_fc: ClassVar[bool] = False

    def __init__(self, embedding_size: int, num_classes: int, scale: float) -> None:
        super().__init__()
        _check_size(embedding_size, num_classes)
        if scale <= 0:
            raise ConfigError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def cosines(self, embeddings: Tensor) -> Tensor:
        """cos θ_j of every embedding with every class centre, (B, C), in `compute_dtype`."""
        dtype = compute_dtype(embeddings)
        with full_precision(embeddings):
            x = F.normalize(embeddings.to(dtype), dim=1)
            return F.linear(x, F.normalize(self.weight.to(dtype), dim=1))

    def target(self, cos_y: Tensor) -> Tensor:
        """The target cosine after the margin (before scaling), (B, 1); identity here (NormFace)."""
        return cos_y

    def cosine_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor) -> Tensor:
        """Logits from the cosines ``cos`` (B, C): the target column of each row replaced by
        `target`, all scaled. A row whose label is −1 has no target among these columns (its
        class is elsewhere, see `PartialFC`) and is only scaled. ``embeddings`` (B, E) are the
        raw, unnormalised inputs, for heads that use their norms."""
        labels = labels.long().view(-1, 1)
        index = labels.clamp_min(0)
        cos_y = cos.gather(1, index)
        target = torch.where(labels >= 0, self.target(cos_y), cos_y)
        return cos.scatter(1, index, target) * self.scale

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        with full_precision(embeddings):
            cos = self.cosines(embeddings)
            return self.cosine_logits(cos, labels, embeddings.to(cos.dtype))

    def extra_repr(self) -> str:
        weight = getattr(self, "weight", None)  # PartialFC keeps the rows itself
        shape = (
            "" if weight is None else f"classes={weight.shape[0]}, embedding={weight.shape[-1]}, "
        )
        return f"{shape}s={self.scale}"


def sin_from_cos(cos: Tensor) -> Tensor:
    """sin θ = √(1 − cos² θ) for θ in [0, π], exact in value. Its gradient, which is infinite at
    θ = 0 and θ = π, is cut to zero where 1 − cos² ≤ eps (|θ| < √eps: 0.02° in float32),
    and is at most about 1/√eps elsewhere."""
    eps = torch.finfo(cos.dtype).eps
    sin2 = 1 - cos * cos
    return torch.where(sin2 > eps, sin2.clamp_min(eps).sqrt(), sin2.clamp_min(0).sqrt().detach())


def acos_exact(cos: Tensor) -> Tensor:
    """θ = acos(cos) in [0, π], exact in value, for cosines that may stray outside [−1, 1] by
    rounding (clamped first). Its gradient −1/sin θ, infinite at θ = 0 and θ = π, is cut to
    zero where 1 − cos² ≤ eps, as in `sin_from_cos`."""
    eps = torch.finfo(cos.dtype).eps
    cos = cos.clamp(-1, 1)
    inside = 1 - cos * cos > eps
    safe = torch.where(inside, cos, torch.zeros_like(cos))
    return torch.where(inside, torch.acos(safe), torch.acos(cos).detach())


def shifted_cos(cos_y: Tensor, margin: float | Tensor) -> Tensor:
    """cos(θ + m) from cos θ (θ in [0, π]) as cos θ cos m − sin θ sin m, exact in value, with no
    fallback. ``margin`` in radians: a float, or a tensor broadcast against ``cos_y``."""
    if isinstance(margin, Tensor):
        return cos_y * torch.cos(margin) - sin_from_cos(cos_y) * torch.sin(margin)
    return cos_y * math.cos(margin) - sin_from_cos(cos_y) * math.sin(margin)


def arc_target(cos_y: Tensor, margin: float | Tensor) -> Tensor:
    """ArcFace's target cosine: cos(θ_y + m), and past θ_y > π − m (where cos(θ + m) would rise
    again) insightface's fallback cos θ_y − m·sin m, which steps down there. ``margin`` in
    radians: a float, or a per-sample tensor (B, 1) such as MagFace's m(a)."""
    shifted = shifted_cos(cos_y, margin)
    if isinstance(margin, Tensor):
        inside = cos_y > torch.cos(math.pi - margin)
        return torch.where(inside, shifted, cos_y - margin * torch.sin(margin))
    inside = cos_y > math.cos(math.pi - margin)
    return torch.where(inside, shifted, cos_y - margin * math.sin(margin))


def check_angular_margin(name: str, margin: float) -> None:
    """An additive angular margin in radians must lie in [0, π/2)."""
    if not 0 <= margin < math.pi / 2:
        raise ConfigError(f"{name} is in radians, in [0, π/2); got {margin}")


@HEADS.register("normface")
class NormFace(CosineHead):
    """NormFace (Wang et al., 2017, "NormFace: L2 Hypersphere Embedding for Face
    Verification"): s·cos θ_j for every class, no margin."""

    supports_partial_fc = True

    def __init__(self, embedding_size: int, num_classes: int, *, scale: float = 64.0) -> None:
        super().__init__(embedding_size, num_classes, scale)


@HEADS.register("cosface")
class CosFace(CosineHead):
    """CosFace / AM-Softmax (Wang et al., 2018, "CosFace: Large Margin Cosine Loss for Deep
    Face Recognition"): target s·(cos θ_y − m). Use m 0.4 for Glint360K / WebFace."""

    supports_partial_fc = True

    def __init__(
        self, embedding_size: int, num_classes: int, *, margin: float = 0.35, scale: float = 64.0
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        self.margin = float(margin)

    def target(self, cos_y: Tensor) -> Tensor:
        return cos_y - self.margin


@HEADS.register("arcface")
class ArcFace(CosineHead):
    """ArcFace / additive angular margin (Deng et al., 2019, "ArcFace: Additive Angular Margin
    Loss for Deep Face Recognition"): target s·cos(θ_y + m).

    Past θ_y > π − m, where cos(θ + m) would rise again, the target is s·(cos θ_y − m·sin m)
    (insightface's fallback, exact gradient); with ``easy_margin`` the target keeps cos θ_y
    wherever cos θ_y ≤ 0 instead.
    """

    supports_partial_fc = True

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        margin: float = 0.5,
        scale: float = 64.0,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        check_angular_margin("arcface margin", margin)
        self.margin, self.easy_margin = float(margin), bool(easy_margin)

    def target(self, cos_y: Tensor) -> Tensor:
        if self.easy_margin:
            return torch.where(cos_y > 0, shifted_cos(cos_y, self.margin), cos_y)
        return arc_target(cos_y, self.margin)
