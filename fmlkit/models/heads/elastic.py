"""ElasticFace heads: ArcFace and CosFace with a random margin per sample (Boutros et al.,
2022). Registered by importing `fmlkit.models.heads.base`.

Margins are in radians. In training mode every call draws the batch's margins from the global
torch RNG (reproducible with ``torch.manual_seed`` and a checkpointed RNG state); in eval
mode the margin is the mean, and the heads equal ``arcface`` and ``cosface`` exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fmlkit.errors import ConfigError
from fmlkit.models.heads.base import HEADS, CosineHead, arc_target, check_angular_margin


class ElasticHead(CosineHead):
    """Base of the ElasticFace heads (Boutros et al., 2022, "ElasticFace: Elastic Margin Loss
    for Deep Face Recognition"): a margin m_i ~ N(margin, std) per sample and call in training
    mode, ``margin`` in eval mode.

    With ``plus`` (ElasticFace+), the drawn margins are sorted and assigned by the rank of
    cos θ_y in the (local) batch: the sample farthest from its class centre (lowest cos θ_y)
    gets the largest margin, the nearest the smallest. The official code means this (cosines
    sorted descending, margins ascending) but writes ``margin[order]`` where the assignment is
    ``margin[rank]`` (``assigned[order] = margin``), which permutes the sorted margins by the
    wrong permutation whenever the sort order is not its own inverse.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        margin: float,
        std: float,
        scale: float,
        plus: bool,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        if margin < 0 or std < 0:
            raise ConfigError(f"elasticface margin and std must be ≥ 0; got {margin} and {std}")
        self.margin, self.std, self.plus = float(margin), float(std), bool(plus)

    def margins(self, cos_y: Tensor) -> float | Tensor:
        """The margins of the batch, in radians for the arc head: ``margin`` in eval mode; in
        training mode ``torch.normal(margin, std, size=cos_y.shape)`` in ``cos_y``'s dtype and
        device (B, 1), ranked by ``cos_y`` when ``plus``."""
        if not self.training:
            return self.margin
        drawn = torch.normal(
            self.margin, self.std, size=cos_y.shape, dtype=cos_y.dtype, device=cos_y.device
        )
        if not self.plus:
            return drawn
        order = cos_y.detach().flatten().argsort(descending=True, stable=True)
        ranked = torch.empty_like(drawn).flatten()
        ranked[order] = drawn.flatten().sort().values
        return ranked.view_as(drawn)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.margin}, std={self.std}, plus={self.plus}"


@HEADS.register("elasticface_arc")
class ElasticArcFace(ElasticHead):
    """ElasticFace-Arc (Boutros et al., 2022, "ElasticFace: Elastic Margin Loss for Deep Face
    Recognition"): target s·cos(θ_y + m_i), m_i ~ N(margin, std), others s·cos θ_j.

    Past θ_y > π − m_i the target is s·(cos θ_y − m_i·sin m_i), ArcFace's fallback. The
    official code has none (it adds m_i to acos θ_y and takes the cosine), so its target rises
    again near θ_y = π and its acos has an infinite gradient at cos θ_y = ±1; the fallback
    keeps the target decreasing in θ_y and the gradient exact.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        margin: float = 0.5,
        std: float = 0.05,
        scale: float = 64.0,
        plus: bool = False,
    ) -> None:
        super().__init__(embedding_size, num_classes, margin, std, scale, plus)
        check_angular_margin("elasticface_arc margin", margin)

    def target(self, cos_y: Tensor) -> Tensor:
        return arc_target(cos_y, self.margins(cos_y))


@HEADS.register("elasticface_cos")
class ElasticCosFace(ElasticHead):
    """ElasticFace-Cos (Boutros et al., 2022, "ElasticFace: Elastic Margin Loss for Deep Face
    Recognition"): target s·(cos θ_y − m_i), m_i ~ N(margin, std), others s·cos θ_j."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        margin: float = 0.35,
        std: float = 0.05,
        scale: float = 64.0,
        plus: bool = False,
    ) -> None:
        super().__init__(embedding_size, num_classes, margin, std, scale, plus)

    def target(self, cos_y: Tensor) -> Tensor:
        return cos_y - self.margins(cos_y)
