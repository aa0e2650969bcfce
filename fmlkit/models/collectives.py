"""The few collectives the heads need, each a no-op in a single process.

Heads call these with the default process group unless given one. Without an initialised
process group (one CPU or GPU, no torchrun) every function returns its input unchanged, so a
head runs the same code in both settings. Every rank must make the same calls in the same
order, as with any collective.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

Group = Any  # torch.distributed.ProcessGroup, or None for the default group


def is_distributed(group: Group = None) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def world_size(group: Group = None) -> int:
    return dist.get_world_size(group) if is_distributed(group) else 1


def rank(group: Group = None) -> int:
    return dist.get_rank(group) if is_distributed(group) else 0


def all_reduce_sum(tensor: Tensor, group: Group = None) -> Tensor:
    """Σ over ranks of ``tensor`` (a new tensor, no gradient)."""
    out = tensor.detach().clone()
    if is_distributed(group):
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out


def all_reduce_max(tensor: Tensor, group: Group = None) -> Tensor:
    """Element-wise maximum over ranks (a new tensor, no gradient)."""
    out = tensor.detach().clone()
    if is_distributed(group):
        dist.all_reduce(out, op=dist.ReduceOp.MAX, group=group)
    return out


def all_gather_rows(tensor: Tensor, group: Group = None) -> Tensor:
    """The rows of ``tensor`` from every rank, in rank order (no gradient). Ranks may hold
    different numbers of rows."""
    if not is_distributed(group):
        return tensor.detach()
    return _gather(tensor.detach(), group)[0]


def _gather(tensor: Tensor, group: Group) -> tuple[Tensor, list[int]]:
    n = world_size(group)
    sizes = torch.tensor([tensor.shape[0]], device=tensor.device)
    all_sizes = [torch.empty_like(sizes) for _ in range(n)]
    dist.all_gather(all_sizes, sizes, group=group)
    counts = [int(s) for s in all_sizes]
    padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(n)]
    dist.all_gather(parts, padded.contiguous(), group=group)
    return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)]), counts


class _AllGatherRows(torch.autograd.Function):
    """all_gather_rows whose backward sums every rank's gradient of the gathered rows and
    returns this rank's slice: the exact gradient of a loss that every rank computes on the
    gathered batch (each rank contributing the terms of its own shard)."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, group: Group) -> Tensor:
        gathered, counts = _gather(tensor, group)
        ctx.group, ctx.start = group, sum(counts[: rank(group)])
        ctx.count = tensor.shape[0]
        return gathered

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad[ctx.start : ctx.start + ctx.count], None


def all_gather_rows_with_grad(tensor: Tensor, group: Group = None) -> Tensor:
    """`all_gather_rows`, differentiable (see `_AllGatherRows`)."""
    if not is_distributed(group):
        return tensor
    out: Tensor = _AllGatherRows.apply(tensor, group)
    return out
