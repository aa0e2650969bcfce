"""Margin heads beyond CosFace and ArcFace: the combined margin, SphereFace (A-Softmax) and
sub-centre ArcFace; the ElasticFace heads live in `fmlkit.models.heads.elastic`.

Margins are in radians, except the outlier threshold of `SubCenterArcFace.outliers`, which is
in degrees as in the paper's data cleaning. Logits are computed as in `fmlkit.models.heads.base`:
autocast off, float32 or wider, exact values and gradients (cut only within √eps of θ = 0
and θ = π).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlkit.errors import ConfigError
from fmlkit.models.collectives import all_gather_rows
from fmlkit.models.heads.base import (
    HEADS,
    ArcFace,
    CosineHead,
    acos_exact,
    arc_target,
    compute_dtype,
    full_precision,
)


@HEADS.register("combined")
class CombinedMargin(CosineHead):
    """Combined margin (Deng et al., 2019, "ArcFace: Additive Angular Margin Loss for Deep Face
    Recognition", eq. 4): target s·(cos(m1·θ_y + m2) − m3), others s·cos θ_j.

    (1, 0.5, 0) is ArcFace, (1, 0, 0.35) CosFace, and (m, 0, 0) SphereFace without its
    annealing. The whole formula is applied (insightface's ``CombinedMarginLoss`` drops m2
    whenever m3 > 0). Past θ_t = (π − m2)/m1, where cos(m1·θ + m2) would rise again (only when
    θ_t < π), the target is cos θ_y − m3 − (π − θ_t)·sin θ_t, which starts below −1 − m3 (the
    tangent of cos at θ_t lies under cos) whenever θ_t ≥ 0.81 rad (every m1 ≤ 3.87 at m2 = 0).
    For smaller θ_t, where that would step up, it is cos θ_y − cos θ_t − 1 − m3 instead
    (continuous at θ_t), so the target always decreases in θ_y. For m1 = 1 it is ArcFace's
    fallback cos θ_y − m2·sin m2 (minus m3): the head equals ``arcface`` and ``cosface``
    exactly at their settings.
    """

    supports_partial_fc = True

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        m1: float = 1.0,
        m2: float = 0.3,
        m3: float = 0.2,
        scale: float = 64.0,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        if not (m1 > 0 and 0 <= m2 < math.pi and m3 >= 0):
            raise ConfigError(
                f"combined margins must be m1 > 0, 0 ≤ m2 < π (radians) and m3 ≥ 0; got "
                f"m1={m1}, m2={m2}, m3={m3}"
            )
        self.m1, self.m2, self.m3 = float(m1), float(m2), float(m3)

    def target(self, cos_y: Tensor) -> Tensor:
        m1, m2 = self.m1, self.m2
        if m1 == 1:
            return arc_target(cos_y, m2) - self.m3
        theta = acos_exact(cos_y)
        shifted = torch.cos(m1 * theta + m2)
        theta_t = (math.pi - m2) / m1
        if theta_t < math.pi:
            start = min(math.cos(theta_t) - (math.pi - theta_t) * math.sin(theta_t), -1.0)
            fallback = cos_y + (start - math.cos(theta_t))
            shifted = torch.where(theta > theta_t, fallback, shifted)
        return shifted - self.m3

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m1={self.m1}, m2={self.m2}, m3={self.m3}"


def chebyshev(m: int, x: Tensor) -> Tensor:
    """T_m(x) for m ≥ 1, the Chebyshev polynomial of the first kind: T_m(cos θ) = cos(mθ), with
    a finite gradient everywhere (unlike cos(m·acos x))."""
    previous, current = torch.ones_like(x), x
    for _ in range(m - 1):
        previous, current = current, 2 * x * current - previous
    return current


@HEADS.register("sphereface")
class SphereFace(CosineHead):
    """SphereFace / A-Softmax (Liu et al., 2017, "SphereFace: Deep Hypersphere Embedding for Face
    Recognition"): class weights normalised, no bias and no constant scale; logits are scaled
    by the embedding norm ‖x‖.

    Target ‖x‖·(λ·cos θ_y + ψ(θ_y))/(1 + λ), others ‖x‖·cos θ_j, with
    ψ(θ) = (−1)^k·cos(mθ) − 2k on [kπ/m, (k+1)π/m] (continuous and decreasing; cos(mθ) as the
    Chebyshev polynomial T_m(cos θ)) and the annealing weight
    λ = max(lambda_min, lambda_base·(1 + lambda_gamma·iteration)^(−lambda_power)).
    ``iteration`` is a buffer (saved in ``state_dict``, the same on every rank) that each
    forward in training mode increments after using it.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        margin: int = 4,
        lambda_base: float = 1000.0,
        lambda_gamma: float = 1e-4,
        lambda_power: float = 2.0,
        lambda_min: float = 5.0,
    ) -> None:
        # The constant part of the scale is 1: `cosine_logits` scales every row by ‖x‖.
        super().__init__(embedding_size, num_classes, scale=1.0)
        if isinstance(margin, bool) or int(margin) != margin or margin < 1:
            raise ConfigError(f"sphereface margin is an integer ≥ 1 (4 in the paper); got {margin}")
        if min(lambda_base, lambda_gamma, lambda_power, lambda_min) < 0:
            raise ConfigError(
                f"sphereface lambda_base, lambda_gamma, lambda_power and lambda_min must be ≥ 0; "
                f"got {lambda_base}, {lambda_gamma}, {lambda_power}, {lambda_min}"
            )
        self.margin = int(margin)
        self.lambda_base, self.lambda_gamma = float(lambda_base), float(lambda_gamma)
        self.lambda_power, self.lambda_min = float(lambda_power), float(lambda_min)
        self.iteration: Tensor
        self.register_buffer("iteration", torch.zeros((), dtype=torch.int64))

    @property
    def lambda_(self) -> Tensor:
        """λ at the current ``iteration``, a float64 scalar tensor (no host sync)."""
        t = self.iteration.double()
        decayed = self.lambda_base * (1 + self.lambda_gamma * t) ** -self.lambda_power
        return decayed.clamp_min(self.lambda_min)

    def psi(self, cos: Tensor) -> Tensor:
        """ψ(θ) = (−1)^k·cos(mθ) − 2k for θ in [kπ/m, (k+1)π/m], from cos θ; k carries no
        gradient (ψ is continuous where k steps)."""
        m = self.margin
        with torch.no_grad():
            k = (acos_exact(cos) * (m / math.pi)).floor().clamp(0, m - 1)
        return (1 - 2 * (k % 2)) * chebyshev(m, cos) - 2 * k

    def target(self, cos_y: Tensor) -> Tensor:
        lam = self.lambda_.to(cos_y.dtype)
        return (lam * cos_y + self.psi(cos_y)) / (1 + lam)

    def cosine_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor) -> Tensor:
        norms = torch.linalg.vector_norm(embeddings, dim=1, keepdim=True)
        return super().cosine_logits(cos, labels, embeddings) * norms

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        loss = super().forward(embeddings, labels)
        if self.training:
            self.iteration += 1
        return loss

    def extra_repr(self) -> str:
        classes, size = self.weight.shape
        return (
            f"classes={classes}, embedding={size}, m={self.margin}, iteration={int(self.iteration)}"
        )


@HEADS.register("subcenter_arcface")
class SubCenterArcFace(ArcFace):
    """Sub-center ArcFace (Deng et al., 2020, "Sub-center ArcFace: Boosting Face Recognition by
    Large-scale Noisy Web Faces"): K sub-centres per class, ``weight`` (num_classes,
    sub_centers, embedding_size); cos θ_j = max_k Ŵ_jk·x̂ for every class, then ArcFace's
    target (with its fallback) on the target class.

    In training mode each forward counts, in the buffer ``sub_center_counts`` (num_classes,
    sub_centers), the sub-centre of its label nearest to each sample, over the global batch
    under DDP (so the counts stay the same on every rank). `dominant_centers` and `outliers`
    use the counts for the paper's data cleaning.
    """

    supports_partial_fc = False

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        margin: float = 0.5,
        scale: float = 64.0,
        sub_centers: int = 3,
    ) -> None:
        super().__init__(embedding_size, num_classes, margin=margin, scale=scale)
        if isinstance(sub_centers, bool) or int(sub_centers) != sub_centers or sub_centers < 1:
            raise ConfigError(f"sub_centers is an integer ≥ 1 (3 in the paper); got {sub_centers}")
        self.weight = nn.Parameter(torch.empty(num_classes, int(sub_centers), embedding_size))
        nn.init.normal_(self.weight, std=0.01)
        self.sub_center_counts: Tensor
        self.register_buffer(
            "sub_center_counts", torch.zeros(num_classes, int(sub_centers), dtype=torch.int64)
        )

    def sub_center_cosines(self, embeddings: Tensor) -> Tensor:
        """cos(x̂, Ŵ_jk) of every embedding with every sub-centre, (B, C, K), in
        `compute_dtype`."""
        dtype = compute_dtype(embeddings)
        with full_precision(embeddings):
            x = F.normalize(embeddings.to(dtype), dim=1)
            return torch.einsum("be,cke->bck", x, F.normalize(self.weight.to(dtype), dim=2))

    def cosines(self, embeddings: Tensor) -> Tensor:
        return self.sub_center_cosines(embeddings).amax(dim=2)

    def _logits(self, embeddings: Tensor, labels: Tensor, count: bool) -> Tensor:
        with full_precision(embeddings):
            sub = self.sub_center_cosines(embeddings)
            if count:
                self._count(sub.detach(), labels)
            return self.cosine_logits(sub.amax(dim=2), labels, embeddings.to(sub.dtype))

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self._logits(embeddings, labels, count=False)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        logits = self._logits(embeddings, labels, count=self.training)
        return F.cross_entropy(logits, labels.long())

    def _count(self, sub: Tensor, labels: Tensor) -> None:
        """Adds 1 at (y_i, argmax_k cos(x̂_i, Ŵ_{y_i k})) for every sample of every rank."""
        labels = labels.long()
        nearest = sub[torch.arange(len(labels), device=sub.device), labels].argmax(dim=1)
        pairs = all_gather_rows(torch.stack([labels, nearest], dim=1))
        ones = torch.ones_like(pairs[:, 0])
        self.sub_center_counts.index_put_((pairs[:, 0], pairs[:, 1]), ones, accumulate=True)

    def dominant_centers(self) -> Tensor:
        """The normalised sub-centre of each class that the most training samples were nearest
        to, (C, E); ties go to the lowest index (sub-centre 0 before any training)."""
        best = self.sub_center_counts.argmax(dim=1)
        rows = torch.arange(len(best), device=best.device)
        return F.normalize(self.weight[rows, best], dim=1)

    @torch.no_grad()
    def outliers(self, embeddings: Tensor, labels: Tensor, angle: float = 75.0) -> Tensor:
        """True where an embedding lies more than ``angle`` DEGREES (not radians: the paper's
        data-cleaning threshold is 75°) from the dominant sub-centre of its label, (B,) bool."""
        if not 0 <= angle <= 180:
            raise ConfigError(f"outlier angle is in degrees, in [0, 180]; got {angle}")
        dtype = compute_dtype(embeddings)
        x = F.normalize(embeddings.to(dtype), dim=1)
        centres = self.dominant_centers().to(dtype)[labels.long()]
        return (x * centres).sum(dim=1) < math.cos(math.radians(angle))

    def extra_repr(self) -> str:
        classes, k, size = self.weight.shape
        return f"classes={classes}, sub_centers={k}, embedding={size}, s={self.scale}"
