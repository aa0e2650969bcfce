"""Pair and episode losses: triplet, contrastive, prototypical, angular prototypical, GE2E and
softmax + angular prototypical (the losses of clovaai's voxceleb_trainer; docs/heads.md).

They are heads like the others, ``loss(embeddings, labels)`` → a scalar mean, built by
`create_head`, but they compare the embeddings of a batch with each other instead of with
class centres. The batch is grouped by label (`group_by_label`): groups in order of first
appearance, each group's images in batch order; groups may differ in size. Every label in the
batch needs ≥ 2 images and the batch ≥ 2 labels — a P×K batch from the ``m_per_class``
sampler with m ≥ 2 — otherwise `BatchError`. The episode losses (proto, angleproto,
softmaxproto) take each group's first image as its query and the mean of the others as its
prototype. Under DDP each rank groups its own batch: every rank's batch must be P×K.

Numerics: computed with autocast off, in float32 or wider (float64 inputs stay float64).
Euclidean distances have a zero gradient where they are exactly 0 (never NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlkit.errors import BatchError, ConfigError
from fmlkit.models.heads.base import (
    HEADS,
    Softmax,
    check_embedding_size,
    compute_dtype,
    full_precision,
)

_FIX = "use the m_per_class sampler with m ≥ 2"


@dataclass(frozen=True)
class Groups:
    """The images of a batch grouped by label; P groups in order of first appearance."""

    index: Tensor  #: (B,) the group of each image, in 0 … P − 1
    first: Tensor  #: (P,) the batch position of each group's first image
    counts: Tensor  #: (P,) the number of images in each group, all ≥ 2
    labels: Tensor  #: (P,) the label of each group

    def same(self) -> Tensor:
        """(B, B) bool: images i and j share a label (i = j included)."""
        return self.index[:, None] == self.index[None, :]


def group_by_label(labels: Tensor, loss: str) -> Groups:
    """Groups the batch's images by label, checking that the loss ``loss`` can use it.

    Raises:
        BatchError: a label with a single image, or fewer than 2 labels in the batch.
    """
    labels = labels.reshape(-1)
    values, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    position = torch.arange(len(labels), device=labels.device)
    first = torch.full_like(values, len(labels), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, position, "amin")
    order = torch.argsort(first)  # sorted label values → order of first appearance
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    groups = Groups(rank[inverse], first[order], counts[order], values[order])
    _check_groups(loss, groups)
    return groups


def _check_groups(loss: str, groups: Groups) -> None:
    counts, labels = groups.counts.tolist(), groups.labels.tolist()
    single = [label for label, n in zip(labels, counts, strict=True) if n < 2]
    if single:
        shown = ", ".join(f"label {label} has 1 image" for label in single[:10])
        more = f" and {len(single) - 10} more labels" if len(single) > 10 else ""
        raise BatchError(
            f"{loss} needs ≥ 2 images of every label in a batch; {shown}{more} "
            f"({len(single)} of {len(labels)} labels); {_FIX}"
        )
    if len(labels) < 2:
        found = f"only label {labels[0]} ({counts[0]} images)" if labels else "an empty batch"
        raise BatchError(
            f"{loss} needs ≥ 2 distinct labels in a batch, found {found}; {_FIX} and ≥ 2 "
            "classes per batch"
        )


def _safe_sqrt(squared: Tensor) -> Tensor:
    """√squared for squared ≥ 0, with gradient 0 (not ∞) where squared is 0."""
    positive = squared > 0
    tiny = torch.finfo(squared.dtype).tiny
    return torch.where(positive, squared.clamp_min(tiny).sqrt(), torch.zeros_like(squared))


def _squared_distances(x: Tensor) -> Tensor:
    """‖x_i − x_j‖² between the rows of ``x``, (B, B), from the Gram matrix, clamped to ≥ 0."""
    norms = x.square().sum(1)
    return (norms[:, None] + norms[None, :] - 2 * x @ x.T).clamp_min(0)


def _check_scale(name: str, init_w: float) -> None:
    if not init_w > 0:
        raise ConfigError(f"{name} init_w scales cosines and must be > 0, got {init_w}")


class GroupLoss(nn.Module):
    """Base of the losses on a batch grouped by label: `grouped` gets the embeddings in
    `compute_dtype` (autocast off) and the `Groups`, and returns the mean loss."""

    name: ClassVar[str]

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if embeddings.ndim != 2 or labels.reshape(-1).shape[0] != embeddings.shape[0]:
            raise BatchError(
                f"{self.name} takes (B, E) embeddings and B labels, got embeddings of shape "
                f"{tuple(embeddings.shape)} and labels of shape {tuple(labels.shape)}"
            )
        groups = group_by_label(labels, self.name)
        with full_precision(embeddings):
            return self.grouped(embeddings.to(compute_dtype(embeddings)), groups)

    def grouped(self, x: Tensor, groups: Groups) -> Tensor:
        raise NotImplementedError


@HEADS.register("triplet")
class TripletLoss(GroupLoss):
    """Triplet loss with batch mining (Hermans et al., 2017, "In Defense of the Triplet Loss
    for Person Re-Identification"; Schroff et al., 2015, "FaceNet: A Unified Embedding for
    Face Recognition and Clustering"): relu(d(a, p) − d(a, n) + margin), d the Euclidean
    distance between L2-normalised embeddings (in [0, 2]).

    ``mining="hard"`` (batch hard): for each anchor its farthest positive and nearest
    negative; the mean over anchors. ``mining="all"`` (batch all): every triplet of an anchor,
    a positive ≠ anchor and a negative; the mean over the triplets whose loss is > 0 (0 when
    none is), so that easy triplets do not dilute the gradient (Hermans et al.'s "BA≠0").
    Batch all holds B³ values.
    """

    name = "triplet"

    def __init__(
        self, embedding_size: int, num_classes: int, *, margin: float = 0.2, mining: str = "hard"
    ) -> None:
        super().__init__()
        check_embedding_size(embedding_size)
        if mining not in ("hard", "all"):
            raise ConfigError(f"triplet mining is 'hard' or 'all', got {mining!r}")
        if not margin >= 0:
            raise ConfigError(f"triplet margin is a distance ≥ 0 (at most 2), got {margin}")
        self.margin, self.mining = float(margin), mining

    def grouped(self, x: Tensor, groups: Groups) -> Tensor:
        x = F.normalize(x, dim=1)
        same = groups.same()
        if self.mining == "all":
            d = _safe_sqrt(_squared_distances(x))
            eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
            valid = (same & ~eye)[:, :, None] & ~same[:, None, :]  # [anchor, positive, negative]
            losses = torch.where(valid, F.relu(d[:, :, None] - d[:, None, :] + self.margin), 0)
            return losses.sum() / (losses > 0).sum().clamp_min(1)
        with torch.no_grad():  # mine on the distance matrix, then measure the pairs exactly
            d = _squared_distances(x)
            eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
            positive = d.masked_fill(~same | eye, -math.inf).argmax(1)
            negative = d.masked_fill(same, math.inf).argmin(1)
        d_ap = torch.linalg.vector_norm(x - x[positive], dim=1)  # gradient 0 where 0
        d_an = torch.linalg.vector_norm(x - x[negative], dim=1)
        return F.relu(d_ap - d_an + self.margin).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}"


@HEADS.register("contrastive")
class ContrastiveLoss(GroupLoss):
    """Contrastive loss (Hadsell et al., 2006, "Dimensionality Reduction by Learning an
    Invariant Mapping"), on the Euclidean distance d between L2-normalised embeddings:
    mean over the positive pairs of d² + mean over the negative pairs of relu(margin − d)²,
    each unordered pair once. Averaging the two kinds separately balances them (a P×K batch
    has about K times more negative than positive pairs); Hadsell's ½ factors are dropped.
    """

    name = "contrastive"

    def __init__(self, embedding_size: int, num_classes: int, *, margin: float = 1.0) -> None:
        super().__init__()
        check_embedding_size(embedding_size)
        if not margin > 0:
            raise ConfigError(f"contrastive margin is a distance > 0 (at most 2), got {margin}")
        self.margin = float(margin)

    def grouped(self, x: Tensor, groups: Groups) -> Tensor:
        d2 = _squared_distances(F.normalize(x, dim=1))
        same = groups.same()
        upper = torch.ones_like(same).triu(1)
        positive, negative = same & upper, ~same & upper
        pull = torch.where(positive, d2, 0).sum() / positive.sum()
        push = torch.where(negative, F.relu(self.margin - _safe_sqrt(d2)).square(), 0)
        return pull + push.sum() / negative.sum()

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


def queries_and_prototypes(x: Tensor, groups: Groups) -> tuple[Tensor, Tensor]:
    """Each group's query (its first image) and prototype (the mean of its other images),
    both (P, E)."""
    sums = x.new_zeros(len(groups.counts), x.shape[1]).index_add(0, groups.index, x)
    queries = x[groups.first]
    others = (groups.counts - 1).to(x.dtype)[:, None]
    return queries, (sums - queries) / others


def _episode_targets(groups: Groups) -> Tensor:
    return torch.arange(len(groups.counts), device=groups.counts.device)


@HEADS.register("proto")
class ProtoLoss(GroupLoss):
    """Prototypical loss (Snell et al., 2017, "Prototypical Networks for Few-shot
    Learning"), one query per group as in voxceleb_trainer: logits −‖q_i − c_j‖² from each
    group's query to every group's prototype (unnormalised embeddings), cross-entropy with
    the query's own group; the mean over the P queries."""

    name = "proto"

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        check_embedding_size(embedding_size)

    def grouped(self, x: Tensor, groups: Groups) -> Tensor:
        q, c = queries_and_prototypes(x, groups)
        squared = q.square().sum(1)[:, None] + c.square().sum(1)[None, :] - 2 * q @ c.T
        return F.cross_entropy(-squared, _episode_targets(groups))


class _ScaledCosine(GroupLoss):
    """Holds the learnable scale ``w`` and bias ``b`` of the logits w·cos + b (w ≥ 1e-6)."""

    def __init__(
        self, embedding_size: int, num_classes: int, *, init_w: float = 10.0, init_b: float = -5.0
    ) -> None:
        super().__init__()
        check_embedding_size(embedding_size)
        _check_scale(self.name, init_w)
        self.w = nn.Parameter(torch.tensor(float(init_w)))
        self.b = nn.Parameter(torch.tensor(float(init_b)))

    def scaled(self, cos: Tensor) -> Tensor:
        """w·cos + b, with w clamped to ≥ 1e-6 (its gradient is 0 while it is below)."""
        return self.w.to(cos.dtype).clamp_min(1e-6) * cos + self.b.to(cos.dtype)

    def extra_repr(self) -> str:
        return f"w={self.w.item():.4g}, b={self.b.item():.4g}"


@HEADS.register("angleproto")
class AngleProtoLoss(_ScaledCosine):
    """Angular prototypical loss (Chung et al., 2020, "In defence of metric learning for
    speaker recognition"): logits w·cos(q_i, c_j) + b from each group's query to every
    group's prototype (the mean of the group's other unnormalised embeddings), w and b
    learnable (w ≥ 1e-6); cross-entropy with the query's own group, the mean over queries."""

    name = "angleproto"

    def grouped(self, x: Tensor, groups: Groups) -> Tensor:
        q, c = queries_and_prototypes(x, groups)
        cos = F.normalize(q, dim=1) @ F.normalize(c, dim=1).T
        return F.cross_entropy(self.scaled(cos), _episode_targets(groups))


@HEADS.register("ge2e")
class GE2ELoss(_ScaledCosine):
    """Generalised end-to-end softmax loss (Wan et al., 2018, "Generalized End-to-End Loss
    for Speaker Verification"): with ê the L2-normalised embeddings and c_k the mean of group
    k's ê, image i of group j has logits w·cos(ê_i, c_k) + b for every group k, its own
    group's centroid taken without it ((Σ_j ê − ê_i)/(n_j − 1)); w and b learnable
    (w ≥ 1e-6); cross-entropy with its own group, the mean over all B images. Cosines are
    not clamped (voxceleb_trainer's clamp to ≥ 1e-6 zeroes every negative one)."""

    name = "ge2e"

    def grouped(self, x: Tensor, groups: Groups) -> Tensor:
        e, g = F.normalize(x, dim=1), groups.index
        n = groups.counts.to(e.dtype)[:, None]
        sums = e.new_zeros(len(n), e.shape[1]).index_add(0, g, e)
        own = (sums[g] - e) / (n[g] - 1)  # own centroid without the image itself
        cos = e @ F.normalize(sums / n, dim=1).T
        cos_own = (e * F.normalize(own, dim=1)).sum(1, keepdim=True)
        return F.cross_entropy(self.scaled(cos.scatter(1, g[:, None], cos_own)), g)


@HEADS.register("softmaxproto")
class SoftmaxProtoLoss(GroupLoss):
    """Softmax + angular prototypical loss (Chung et al., 2020, "In defence of metric
    learning for speaker recognition"): the cross-entropy of a linear classifier with bias
    over ``num_classes`` (the `softmax` head, every image) plus `angleproto` on the batch's
    groups. ``logits`` are the classifier's. Labels must lie in [0, num_classes)."""

    name = "softmaxproto"

    def __init__(
        self, embedding_size: int, num_classes: int, *, init_w: float = 10.0, init_b: float = -5.0
    ) -> None:
        super().__init__()
        self.softmax = Softmax(embedding_size, num_classes)
        self.angleproto = AngleProtoLoss(embedding_size, num_classes, init_w=init_w, init_b=init_b)

    def logits(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.softmax.logits(embeddings, labels)

    def grouped(self, x: Tensor, groups: Groups) -> Tensor:
        labels = groups.labels[groups.index]  # the batch's labels, as given
        return self.softmax(x, labels) + self.angleproto.grouped(x, groups)
