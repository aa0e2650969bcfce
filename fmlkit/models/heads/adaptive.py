"""Adaptive margin heads: margins, scales or negative weights that follow the training.

CurricularFace, SV-Softmax (MV-Softmax), AdaCos, MagFace and AdaFace. State (CurricularFace t,
AdaCos s̃, AdaFace μ/σ) lives in buffers, so it is saved in ``state_dict``; like batch norm it
is updated only in training mode, before it is used, from the statistics of the global batch
under DDP (`fmlkit.models.collectives`: in one process the collectives are no-ops, and the
update equals the one-process update on the concatenation of the ranks' batches). The state is
detached: gradients treat it as a constant. Formulas and defaults: docs/heads.md.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from fmlkit.errors import BatchError, ConfigError
from fmlkit.models.collectives import all_gather_rows, all_reduce_max, all_reduce_sum
from fmlkit.models.heads.base import (
    HEADS,
    CosineHead,
    acos_exact,
    arc_target,
    check_angular_margin,
    compute_dtype,
    full_precision,
    shifted_cos,
)


def _global_mean(values: Tensor) -> Tensor:
    """Mean of ``values`` over the global batch (every rank's elements), no gradient."""
    total = all_reduce_sum(torch.stack([values.sum(), values.new_tensor(values.numel())]))
    return total[0] / total[1]


def _read(state: Tensor, dtype: torch.dtype) -> Tensor:
    """A copy of a state buffer, so that autograd never saves the buffer itself: a later
    update in place (a second forward before backward) would invalidate the graph."""
    return state.to(dtype, copy=True)


@HEADS.register("curricularface")
class CurricularFace(CosineHead):
    """CurricularFace (Huang et al., 2020, "CurricularFace: Adaptive Curriculum Learning Loss
    for Deep Face Recognition"): ArcFace's target s·cos(θ_y + m) (with its fallback), and hard
    negatives re-weighted by a running curriculum t.

    A negative j is hard where cos θ_j > cos(θ_y + m) (compared with cos(θ_y + m) before the
    fallback, as the official code does); its logit is s·cos θ_j·(t + cos θ_j), an easy one's
    s·cos θ_j. The buffer ``t`` (t₀ = 0) is updated in training mode before it is used:
    t ← 0.01·mean(cos θ_y) + 0.99·t over the global batch.
    """

    t: Tensor

    def __init__(
        self, embedding_size: int, num_classes: int, *, margin: float = 0.5, scale: float = 64.0
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        check_angular_margin("curricularface margin", margin)
        self.margin = float(margin)
        self.register_buffer("t", torch.zeros(()))

    def cosine_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor) -> Tensor:
        labels = labels.long().view(-1, 1)
        cos_y = cos.gather(1, labels)
        if self.training:
            with torch.no_grad():
                self.t.copy_(0.01 * _global_mean(cos_y) + 0.99 * self.t)
        t = _read(self.t, cos.dtype)
        shifted = shifted_cos(cos_y, self.margin)
        others = torch.where(cos > shifted, cos * (t + cos), cos)
        return others.scatter(1, labels, arc_target(cos_y, self.margin)) * self.scale

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.margin}, t={float(self.t):.4f}"


@HEADS.register("sv_softmax")
class SVSoftmax(CosineHead):
    """SV-Softmax / MV-Softmax (Wang et al., 2020, "Support Vector Guided Softmax Loss for Face
    Recognition", also published as "Mis-classified Vector Guided Softmax Loss for Face
    Recognition"): a margin target, and mis-classified negatives (support vectors) pushed up.

    The target is CosFace's s·(cos θ_y − m) (``margin_type`` "cos") or ArcFace's
    s·cos(θ_y + m) with its fallback ("arc"). A negative j with cos θ_j > f, f the target's
    margin function (cos θ_y − m, or cos(θ_y + m) before the fallback, as in the authors'
    and FaceX-Zoo's code), gets s·((t + 1)·cos θ_j + t); the others s·cos θ_j.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        t: float = 0.2,
        margin: float = 0.35,
        scale: float = 32.0,
        margin_type: Literal["cos", "arc"] = "cos",
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        if margin_type not in ("cos", "arc"):
            raise ConfigError(f"sv_softmax margin_type is 'cos' or 'arc', got {margin_type!r}")
        if margin_type == "arc":
            check_angular_margin("sv_softmax arc margin", margin)
        if t < 0 or margin < 0:
            raise ConfigError(f"sv_softmax needs t ≥ 0 and margin ≥ 0, got t={t}, m={margin}")
        self.t, self.margin, self.margin_type = float(t), float(margin), margin_type

    def cosine_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor) -> Tensor:
        labels = labels.long().view(-1, 1)
        cos_y = cos.gather(1, labels)
        if self.margin_type == "cos":
            boundary = target = cos_y - self.margin
        else:
            boundary, target = shifted_cos(cos_y, self.margin), arc_target(cos_y, self.margin)
        others = torch.where(cos > boundary, (self.t + 1) * cos + self.t, cos)
        return others.scatter(1, labels, target) * self.scale

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.margin} ({self.margin_type}), t={self.t}"


@HEADS.register("adacos")
class AdaCos(CosineHead):
    """AdaCos (Zhang et al., 2019, "AdaCos: Adaptively Scaling Cosine Logits for Effectively
    Learning Deep Face Representations"): s̃·cos θ_j for every class, no margin, the scale s̃
    set from the batch instead of chosen.

    The buffer ``s`` holds s̃, initially √2·ln(C − 1) (``scale``, which the fixed variant keeps).
    With ``dynamic``, in training mode and before use, s̃ ← ln(B_avg) / cos(min(π/4, θ_med)):
    B_avg the batch mean of Σ_{j≠y} exp(s̃·cos θ_j) with the current s̃ (its log computed with
    logsumexp, so it does not overflow for many classes), θ_med the median target angle
    (`torch.median`: the lower of the two middle values for an even count, as in the
    reference code), both over the global batch.
    """

    s: Tensor

    def __init__(self, embedding_size: int, num_classes: int, *, dynamic: bool = True) -> None:
        if num_classes < 3:
            raise ConfigError(
                f"adacos needs num_classes ≥ 3 (its scale √2·ln(C − 1) is 0 for 2), "
                f"got {num_classes}"
            )
        super().__init__(embedding_size, num_classes, math.sqrt(2) * math.log(num_classes - 1))
        self.dynamic = bool(dynamic)
        self.register_buffer("s", torch.tensor(self.scale))

    def cosine_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor) -> Tensor:
        if self.training and self.dynamic:
            self._update_scale(cos, labels.long().view(-1, 1))
        return cos * _read(self.s, cos.dtype)

    @torch.no_grad()
    def _update_scale(self, cos: Tensor, labels: Tensor) -> None:
        scaled = (cos * self.s.to(cos.dtype)).scatter(1, labels, -math.inf)
        per_sample = torch.logsumexp(scaled, dim=1)  # ln Σ_{j≠y} exp(s̃·cos θ_j)
        top = all_reduce_max(per_sample.max())
        shifted = (per_sample - top).exp()
        total = all_reduce_sum(torch.stack([shifted.sum(), cos.new_tensor(len(shifted))]))
        log_b_avg = top + total[0].log() - total[1].log()
        angles = all_gather_rows(acos_exact(cos.gather(1, labels)).flatten())
        median = torch.median(angles)  # the lower middle value for an even count
        self.s.copy_(log_b_avg / torch.cos(median.clamp(max=math.pi / 4)))

    def extra_repr(self) -> str:
        kind = "dynamic" if self.dynamic else "fixed"
        return f"{super().extra_repr()}, s̃={float(self.s):.4f} ({kind})"


@HEADS.register("magface")
class MagFace(CosineHead):
    """MagFace (Meng et al., 2021, "MagFace: A Universal Representation for Face Recognition
    and Quality Assessment"): an ArcFace margin growing with the feature norm, and a norm
    regulariser in the loss; the norm is the quality score (`quality`).

    a = ‖x‖ clipped to [lower_norm, upper_norm] (its gradient flows inside the range);
    m(a) = lower_margin + (upper_margin − lower_margin)·(a − lower_norm)/(upper_norm −
    lower_norm); target s·cos(θ_y + m(a)), past θ_y > π − m(a) s·(cos θ_y − m(a)·sin m(a));
    others s·cos θ_j. The loss is CE(logits) + lambda_g·mean(g(a)), g(a) = a/upper_norm² + 1/a
    (the regulariser is in the loss, not in the logits, where it would cancel).
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        scale: float = 64.0,
        lower_norm: float = 10.0,
        upper_norm: float = 110.0,
        lower_margin: float = 0.45,
        upper_margin: float = 0.8,
        lambda_g: float = 35.0,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        if not 0 < lower_norm < upper_norm:
            raise ConfigError(
                f"magface needs 0 < lower_norm < upper_norm, got {lower_norm}, {upper_norm}"
            )
        check_angular_margin("magface lower_margin", lower_margin)
        check_angular_margin("magface upper_margin", upper_margin)
        if lambda_g < 0:
            raise ConfigError(f"magface lambda_g must be ≥ 0, got {lambda_g}")
        self.lower_norm, self.upper_norm = float(lower_norm), float(upper_norm)
        self.lower_margin, self.upper_margin = float(lower_margin), float(upper_margin)
        self.lambda_g = float(lambda_g)

    def quality(self, embeddings: Tensor) -> Tensor:
        """The quality score of each embedding, (B,): its feature norm ‖x‖ (not clipped)."""
        with full_precision(embeddings):
            return torch.linalg.vector_norm(embeddings.to(compute_dtype(embeddings)), dim=1)

    def clipped_norm(self, embeddings: Tensor) -> Tensor:
        """a = ‖x‖ clipped to [lower_norm, upper_norm], (B, 1)."""
        return self.quality(embeddings).clamp(self.lower_norm, self.upper_norm).unsqueeze(1)

    def cosine_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor) -> Tensor:
        return self._logits_at(cos, labels, self.clipped_norm(embeddings))

    def _logits_at(self, cos: Tensor, labels: Tensor, a: Tensor) -> Tensor:
        """The logits from the cosines (B, C) and the clipped norms ``a`` (B, 1)."""
        labels = labels.long().view(-1, 1)
        slope = (self.upper_margin - self.lower_margin) / (self.upper_norm - self.lower_norm)
        margin = self.lower_margin + slope * (a - self.lower_norm)
        return cos.scatter(1, labels, arc_target(cos.gather(1, labels), margin)) * self.scale

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        with full_precision(embeddings):
            cos = self.cosines(embeddings)
            a = self.clipped_norm(embeddings.to(cos.dtype))  # once, for the margin and g(a)
            regulariser = (a / self.upper_norm**2 + 1 / a).mean()
            loss = F.cross_entropy(self._logits_at(cos, labels, a), labels.long())
            return loss + self.lambda_g * regulariser


@HEADS.register("adaface")
class AdaFace(CosineHead):
    """AdaFace (Kim et al., 2022, "AdaFace: Quality Adaptive Margin for Face Recognition"): a
    margin that moves between angular and additive with the feature norm, a proxy of quality.

    norms = ‖x‖, detached, clipped to [1e-3, 100]; ẑ = clip(h·(norm − μ)/(σ + ε), −1, 1), ε 1e-3;
    target s·(cos(clip(θ_y − m·ẑ, ε, π − ε)) − (m·ẑ + m)); others s·cos θ_j. The buffers
    ``batch_mean`` μ (start 20) and ``batch_std`` σ (start 100) are updated in training mode
    before use: μ ← α·mean(norms) + (1 − α)·μ, σ ← α·std(norms) + (1 − α)·σ, α = ``t_alpha``,
    the std unbiased (as torch.std in the official code), over the global batch — which
    must then hold at least 2 embeddings.
    """

    eps: ClassVar[float] = 1e-3
    #: The gradient treats the feature norms as constants (the paper's stop-gradient), so a
    #: numerical derivative along an embedding's norm differs from the analytic one; the
    #: gradient is exact for `logits_at_norms` with the norms held fixed.
    stops_norm_gradient: ClassVar[bool] = True
    batch_mean: Tensor
    batch_std: Tensor

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        margin: float = 0.4,
        h: float = 0.333,
        scale: float = 64.0,
        t_alpha: float = 0.01,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        check_angular_margin("adaface margin", margin)
        if h < 0 or not 0 < t_alpha <= 1:
            raise ConfigError(f"adaface needs h ≥ 0 and t_alpha in (0, 1], got {h}, {t_alpha}")
        self.margin, self.h, self.t_alpha = float(margin), float(h), float(t_alpha)
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    def cosine_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor) -> Tensor:
        norms = torch.linalg.vector_norm(embeddings.detach(), dim=1, keepdim=True)
        norms = norms.clamp(1e-3, 100)
        if self.training:
            self._update_statistics(norms)
        return self.logits_at_norms(cos, labels, norms)

    def logits_at_norms(self, cos: Tensor, labels: Tensor, norms: Tensor) -> Tensor:
        """The logits from the cosines (B, C) and the clipped feature norms (B, 1), taken as
        constants, with the current μ and σ (no update)."""
        labels = labels.long().view(-1, 1)
        mean, std = _read(self.batch_mean, cos.dtype), _read(self.batch_std, cos.dtype)
        z = (self.h * (norms - mean) / (std + self.eps)).clamp(-1, 1)
        theta = acos_exact(cos.gather(1, labels))
        angle = (theta - self.margin * z).clamp(self.eps, math.pi - self.eps)
        target = torch.cos(angle) - (self.margin * z + self.margin)
        return cos.scatter(1, labels, target) * self.scale

    @torch.no_grad()
    def _update_statistics(self, norms: Tensor) -> None:
        total = all_reduce_sum(torch.stack([norms.sum(), norms.new_tensor(norms.numel())]))
        count = int(total[1])
        if count < 2:
            raise BatchError(
                f"adaface estimates the std of the feature norms in training mode: it needs "
                f"at least 2 embeddings per (global) batch, got {count}"
            )
        mean = total[0] / count  # two passes, as torch.std: no cancellation in Σx² − (Σx)²/n
        std = (all_reduce_sum(((norms - mean) ** 2).sum()) / (count - 1)).sqrt()
        alpha = self.t_alpha
        self.batch_mean.copy_(alpha * mean + (1 - alpha) * self.batch_mean)
        self.batch_std.copy_(alpha * std + (1 - alpha) * self.batch_std)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, m={self.margin}, h={self.h}, "
            f"μ={float(self.batch_mean):.3f}, σ={float(self.batch_std):.3f}"
        )
