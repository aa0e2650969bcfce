"""PartialFC: a margin head whose class centres are sharded across the ranks of a process group.

An et al., 2022, "Killing Two Birds with One Stone: Efficient and Robust Training of Face
Recognition CNNs by Partial FC" (CVPR); first as An et al., 2021, "Partial FC: Training 10
Million Identities on a Single Machine".

Each of the W ranks holds a contiguous block of about C/W rows of the class-centre matrix. A
step gathers the embeddings and labels of every rank, and each rank computes the logits of the
whole global batch against its own block only: against every row (``sample_rate`` 1.0), or
against the batch's positive classes plus random negatives, ``sample_rate``·C/W rows in all (all
positives are always kept, even past that count). The softmax cross-entropy is computed across
ranks without gathering the logits: a max, a sum of exponentials and the target logit are
all-reduced. Every rank gets the same loss, the mean over the global batch.

Gradients: the class-centre block gets the exact gradient of that loss; the embeddings get it
multiplied by W, so that DDP's averaging of the backbone's gradients over the W ranks leaves the
exact gradient of the global loss (insightface's arcface_torch does the same). Wrap only the
backbone in DDP, never this module: its parameters differ from rank to rank.

Without a process group (or with one rank) it is the plain head, optionally class-sampled.
``state_dict`` holds the whole (C, E) matrix as ``weight`` (gathered from every rank: call it on
every rank), the same key and shape as the unsharded head, so a checkpoint resumes on any number
of ranks and loads into ``create_head(name, …)`` too; ``load_state_dict`` keeps this rank's rows.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlkit.errors import BatchError, ConfigError
from fmlkit.models import collectives
from fmlkit.models.heads.base import (
    HEADS,
    CosineHead,
    compute_dtype,
    create_head,
    full_precision,
    list_heads,
)


def shard_range(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """The first class and the number of classes held by ``rank``: contiguous blocks, the
    first ``num_classes % world_size`` ranks one row larger."""
    base, extra = divmod(num_classes, world_size)
    return base * rank + min(rank, extra), base + (rank < extra)


class PartialFC(nn.Module):
    """A class-sharded, class-sampled margin head (module docstring)."""

    def __init__(
        self,
        head: str,
        embedding_size: int,
        num_classes: int,
        *,
        sample_rate: float = 1.0,
        group: collectives.Group = None,
        **head_kwargs: object,
    ) -> None:
        super().__init__()
        if not 0 < sample_rate <= 1:
            raise ConfigError(f"sample_rate must be in (0, 1], got {sample_rate}")
        # two classes: the margin's own centres are dropped below; its formula is all it keeps
        margin = create_head(head, embedding_size, 2, **head_kwargs)
        if not getattr(margin, "supports_partial_fc", False):
            usable = [n for n in list_heads() if _supports(n)]
            raise ConfigError(
                f"PartialFC needs a head that maps each row of cosines to logits on its own; "
                f"{head!r} does not. Usable: {', '.join(usable)}"
            )
        world, rank = collectives.world_size(group), collectives.rank(group)
        if num_classes < world:
            raise ConfigError(
                f"PartialFC needs num_classes ≥ world size {world}, got {num_classes}"
            )
        assert isinstance(margin, CosineHead)
        del margin.weight  # the margin keeps only its formula; the rows live here
        self.margin = margin
        self.group, self.sample_rate = group, float(sample_rate)
        self.num_classes, self.embedding_size = num_classes, embedding_size
        self.class_start, self.num_local = shard_range(num_classes, world, rank)
        self.weight = nn.Parameter(torch.empty(self.num_local, embedding_size))
        nn.init.normal_(self.weight, std=0.01)
        self._register_load_state_dict_pre_hook(self._keep_local_rows)

    def sample(self, labels: Tensor) -> tuple[Tensor | None, Tensor]:
        """The local rows this step uses (sorted; None for all of them), and ``labels`` (the
        global batch's) as positions among those rows, −1 where the class is on another rank.
        Draws the random negatives from torch's global RNG."""
        local = labels - self.class_start
        here = (local >= 0) & (local < self.num_local)
        count = max(1, int(self.sample_rate * self.num_local))
        if count >= self.num_local:
            return None, torch.where(here, local, -1)
        positive = torch.unique(local[here])
        if len(positive) >= count:
            index = positive
        else:
            score = torch.rand(self.num_local, device=labels.device)
            score[positive] = 2.0  # positives first, then random negatives
            index = torch.topk(score, count).indices.sort().values
        position = torch.searchsorted(index, local.clamp(0, self.num_local - 1))
        return index, torch.where(here, position, -1)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The mean loss over the global batch (identical on every rank)."""
        labels = collectives.all_gather_rows(labels.long(), self.group)
        bad = (labels < 0) | (labels >= self.num_classes)
        if bad.any():
            raise BatchError(
                f"labels must be in [0, {self.num_classes}), found {labels[bad][:5].tolist()}"
            )
        index, local_labels = self.sample(labels)
        weight = self.weight if index is None else self.weight[index]
        with full_precision(embeddings):
            dtype = compute_dtype(embeddings)
            gathered = collectives.all_gather_rows_with_grad(embeddings, self.group).to(dtype)
            if collectives.is_distributed(self.group):
                gathered = _Scale.apply(gathered, float(collectives.world_size(self.group)))
            cos = F.linear(F.normalize(gathered, dim=1), F.normalize(weight.to(dtype), dim=1))
            logits = self.margin.cosine_logits(cos, local_labels, gathered)
            loss: Tensor = _ShardedCrossEntropy.apply(logits, local_labels, self.group)
            return loss

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        full = collectives.all_gather_rows(self.weight, self.group)
        destination[prefix + "weight"] = full if keep_vars else full.detach()

    def _keep_local_rows(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        key = prefix + "weight"
        if key in state_dict:
            full = state_dict[key]
            if tuple(full.shape) != (self.num_classes, self.embedding_size):
                raise ConfigError(
                    f"checkpoint class centres have shape {tuple(full.shape)}, this head needs "
                    f"({self.num_classes}, {self.embedding_size})"
                )
            state_dict[key] = full[self.class_start : self.class_start + self.num_local]

    def extra_repr(self) -> str:
        return (
            f"classes={self.class_start}..{self.class_start + self.num_local} of "
            f"{self.num_classes}, sample_rate={self.sample_rate}"
        )


def _supports(name: str) -> bool:
    return bool(getattr(HEADS.get(name), "supports_partial_fc", False))


class _Scale(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``factor``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.factor, None


class _ShardedCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy of logits whose columns are split across ranks.

    ``labels`` give the target's column on this rank, −1 where it is on another. The backward
    needs no communication: ∂loss/∂logit = (softmax − one-hot) / B, with the softmax's
    normaliser summed over every rank in the forward.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, labels: Tensor, group: collectives.Group) -> Tensor:
        batch = logits.shape[0]
        top = collectives.all_reduce_max(logits.max(dim=1, keepdim=True).values, group)
        exp = (logits - top).exp()
        total = collectives.all_reduce_sum(exp.sum(dim=1, keepdim=True), group)
        here = labels >= 0
        rows = here.nonzero().squeeze(1)
        target = torch.zeros(batch, dtype=logits.dtype, device=logits.device)
        target[rows] = logits[rows, labels[rows]] - top[rows, 0] - total[rows, 0].log()
        log_prob = collectives.all_reduce_sum(target, group)
        ctx.save_for_backward(exp / total, labels)
        return -log_prob.mean()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        prob, labels = ctx.saved_tensors
        rows = (labels >= 0).nonzero().squeeze(1)
        grad_logits = prob.clone()
        grad_logits[rows, labels[rows]] -= 1
        return grad_logits * (grad / prob.shape[0]), None, None


def create_partial_fc(
    name: str,
    embedding_size: int,
    num_classes: int,
    *,
    sample_rate: float = 1.0,
    group: collectives.Group = None,
    **kwargs: object,
) -> PartialFC:
    """`PartialFC` around the head registered as ``name`` (normface, cosface, arcface,
    combined), with its keywords ``kwargs``."""
    return PartialFC(
        name, embedding_size, num_classes, sample_rate=sample_rate, group=group, **kwargs
    )
