"""Learning-rate scaling and schedules."""

from __future__ import annotations

import math

import pytest
import torch

from fmlkit.errors import ConfigError
from fmlkit.train.optim import Schedule, create_optimizer, scaled_lr


def test_scaled_lr_is_linear_in_the_global_batch() -> None:
    assert scaled_lr(0.1, 1024) == pytest.approx(0.1)
    assert scaled_lr(0.1, 256) == pytest.approx(0.025)
    assert scaled_lr(0.1, 8 * 512) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("poly", {}, [0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6]),
        ("poly", {"power": 2.0}, [0.25, 0.5, 0.75, 1.0, 1.0, 25 / 36, 16 / 36, 9 / 36]),
        ("cosine", {}, [0.25, 0.5, 0.75, 1.0, 1.0, 0.5 * (1 + math.cos(math.pi / 6))]),
        ("step", {"milestones": [6, 8], "gamma": 0.5}, [0.25, 0.5, 0.75, 1, 1, 1, 0.5, 0.5, 0.25]),
    ],
)
def test_schedule_warms_up_then_decays(name: str, kwargs: dict, expected: list[float]) -> None:
    schedule = Schedule(name, total_steps=10, warmup_steps=4, **kwargs)  # type: ignore[arg-type]
    assert [schedule(s) for s in range(len(expected))] == pytest.approx(expected)


def test_schedule_and_optimizer_errors() -> None:
    with pytest.raises(ConfigError, match="'poly', 'cosine' or 'step'"):
        Schedule("linear", total_steps=10)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="warmup_steps"):
        Schedule("poly", total_steps=10, warmup_steps=11)
    with pytest.raises(ConfigError, match="'sgd' or 'adamw'"):
        create_optimizer([torch.nn.Parameter(torch.zeros(1))], "adam", lr=0.1)  # type: ignore[arg-type]


def test_create_optimizer_skips_frozen_parameters() -> None:
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    live = torch.nn.Parameter(torch.zeros(2))
    optim = create_optimizer([frozen, live], "adamw", lr=1e-3, weight_decay=0.05)
    assert optim.param_groups[0]["params"] == [live]
    assert optim.param_groups[0]["weight_decay"] == 0.05
