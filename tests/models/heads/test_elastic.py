"""elasticface_arc and elasticface_cos against the per-sample formula with the margins the global
RNG draws (reseeded and drawn again here), the ElasticFace+ ranking, and eval-mode determinism."""

from __future__ import annotations

import math

import pytest
import torch

from fmlkit.errors import ConfigError
from fmlkit.models.heads import create_head
from tests.models.heads.test_base import _grid
from tests.models.heads.test_margin import DTYPES, Target, assert_matches, oracle

MEANS = {"elasticface_arc": 0.5, "elasticface_cos": 0.35}


def elastic_target(name: str, margins: list[float]) -> Target:
    def target(i: int, theta: float, cos: float) -> float:
        m = margins[i]
        if name == "elasticface_cos":
            return cos - m
        return math.cos(theta + m) if theta + m <= math.pi else cos - m * math.sin(m)

    return target


def ranked(margins: list[float], cos_y: list[float]) -> list[float]:
    """ElasticFace+: the smallest margin to the highest cos θ_y, the largest to the lowest."""
    order = sorted(range(len(cos_y)), key=lambda i: -cos_y[i])
    out = [0.0] * len(margins)
    for rank, m in zip(order, sorted(margins), strict=True):
        out[rank] = m
    return out


def _target_cosines(head: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """cos θ_y as the head computes it: the key it ranks by (the grid has ties, which rounding
    in bf16/fp16 would otherwise order differently)."""
    with torch.no_grad():
        return head.cosines(x).gather(1, labels[:, None]).flatten()


@pytest.mark.parametrize("name", sorted(MEANS))
@pytest.mark.parametrize("plus", [False, True])
@pytest.mark.parametrize(("dtype", "rtol"), DTYPES)
def test_elasticface_matches_the_formula_with_the_drawn_margins(
    name: str, plus: bool, dtype: torch.dtype, rtol: float
) -> None:
    x, labels, w, degrees = _grid(dtype)
    head = create_head(name, 2, 3, std=0.1, plus=plus).train()
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    torch.manual_seed(7)
    margins = torch.normal(MEANS[name], 0.1, size=(len(labels), 1), dtype=compute).flatten()
    drawn = margins.tolist()
    if plus:
        with torch.no_grad():
            head.to(compute).weight.copy_(w)
        drawn = ranked(drawn, _target_cosines(head, x, labels).tolist())

    def expected(tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
        arc = name == "elasticface_arc"
        return oracle(
            degrees,
            labels,
            elastic_target(name, drawn),
            jumps=lambda i: [180 - math.degrees(drawn[i])] if arc else [],
            tolerance=tolerance,
        )

    torch.manual_seed(7)
    assert_matches(head, dtype, rtol, expected)


def test_elasticface_plus_gives_the_largest_margin_to_the_farthest_sample() -> None:
    """The cos head's margins read back from its logits: sorted opposite to cos θ_y, and the
    same values as the plain head draws from the same seed."""
    x, labels, w, _ = _grid(torch.float64)
    logits = {}
    for plus in (False, True):
        head = create_head("elasticface_cos", 2, 3, std=0.2, scale=1.0, plus=plus).double()
        with torch.no_grad():
            head.weight.copy_(w)
        torch.manual_seed(3)
        logits[plus] = head.train().logits(x, labels)
        cos_y = _target_cosines(head, x, labels)
    margins = {p: cos_y - v.gather(1, labels[:, None]).flatten() for p, v in logits.items()}
    torch.testing.assert_close(margins[True].sort().values, margins[False].sort().values)
    assert not torch.equal(margins[True], margins[False])
    nearer = cos_y[:, None] > cos_y[None, :]
    smaller = margins[True][:, None] <= margins[True][None, :] + 1e-12
    assert (smaller | ~nearer).all()


@pytest.mark.parametrize("name", sorted(MEANS))
def test_elasticface_eval_mode_is_the_fixed_margin_head(name: str) -> None:
    x, labels, w, _ = _grid(torch.float32)
    fixed = "arcface" if name == "elasticface_arc" else "cosface"
    heads = [create_head(name, 2, 3, plus=True), create_head(fixed, 2, 3)]
    for head in heads:
        with torch.no_grad():
            head.weight.copy_(w)
    elastic = heads[0].eval()
    first = elastic.logits(x, labels)
    assert torch.equal(first, elastic.logits(x, labels))
    assert torch.equal(first, heads[1].logits(x, labels))
    elastic.train()
    assert not torch.equal(elastic.logits(x, labels), elastic.logits(x, labels))


@pytest.mark.parametrize("name", sorted(MEANS))
@pytest.mark.parametrize("plus", [False, True])
def test_elasticface_gradients_are_exact_in_training_mode(name: str, plus: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    head = create_head(name, 4, 3, plus=plus).double().train()
    weight = head.weight.detach().clone().requires_grad_()

    def loss(e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(11)  # the same margins at every evaluation
        return torch.func.functional_call(head, {"weight": w}, (e, labels))

    assert torch.autograd.gradcheck(loss, (x, weight))


def test_elasticface_refuses_negative_margins() -> None:
    with pytest.raises(ConfigError, match="≥ 0"):
        create_head("elasticface_cos", 8, 4, std=-0.1)
    with pytest.raises(ConfigError, match="radians"):
        create_head("elasticface_arc", 8, 4, margin=28.6)
