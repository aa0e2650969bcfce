"""Optimizers and learning-rate schedules (closed sets: plain dicts, no registry).

The configured learning rate is per 1024 images of global batch and scales linearly
(Goyal et al., 2017): lr × global_batch / 1024, global_batch = batch_size × grad_accum ×
world_size. SGD with lr 0.1, momentum 0.9 and weight decay 5e-4 is arcface_torch's recipe.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from torch import nn

from fmlkit.errors import ConfigError

REFERENCE_BATCH = 1024


def scaled_lr(lr: float, global_batch: int) -> float:
    """The learning rate for ``global_batch`` images a step, given ``lr`` per 1024."""
    return lr * global_batch / REFERENCE_BATCH


def create_optimizer(
    params: Iterable[nn.Parameter],
    name: Literal["sgd", "adamw"],
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> torch.optim.Optimizer:
    """SGD (with ``momentum``) or AdamW; weight decay on every parameter, as arcface_torch."""
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"optim.name is 'sgd' or 'adamw', got {name!r}")


class Schedule:
    """The factor applied to the base learning rate at each step: a linear warmup from 0 over
    ``warmup_steps``, then ``poly`` (1 − progress)^power to 0, ``cosine`` to 0, or ``step``
    (× gamma at each milestone step). Its attributes are plain values, so ``LambdaLR``'s
    ``state_dict`` (which keeps them) loads with ``weights_only=True``.
    """

    def __init__(
        self,
        name: Literal["poly", "cosine", "step"],
        *,
        total_steps: int,
        warmup_steps: int = 0,
        power: float = 1.0,
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
    ) -> None:
        if name not in ("poly", "cosine", "step"):
            raise ConfigError(f"schedule.name is 'poly', 'cosine' or 'step', got {name!r}")
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ConfigError(
                f"the schedule needs 0 ≤ warmup_steps ≤ total steps ≥ 1, got {warmup_steps} "
                f"and {total_steps}"
            )
        self.name, self.total_steps, self.warmup_steps = name, total_steps, warmup_steps
        self.power, self.milestones, self.gamma = power, sorted(milestones), gamma

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.name == "step":
            return float(self.gamma ** sum(step >= m for m in self.milestones))
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.name == "poly":
            return float((1 - progress) ** self.power)
        return 0.5 * (1 + math.cos(math.pi * progress))


def create_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
