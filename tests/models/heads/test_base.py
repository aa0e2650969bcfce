"""Heads against the published formulas, computed naively per sample (pytorch-metric-learning's
way): a grid of angles with non-unit norms, several dtypes, gradcheck, and a training sanity
check."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from fmlkit.errors import ConfigError
from fmlkit.models.heads import CosineHead, create_head, list_heads
from fmlkit.registry import Registry

CENTRES = [0.0, 70.0, 200.0]  # class centre angles (degrees) in 2-D


def _grid(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[float]]:
    """Embeddings every 7.5° around the circle (norm 3.7) against 3 centres (norms 0.5, 2, 9):
    target angles cover 0°…180°, both exactly and in between."""
    degrees = [i * 7.5 for i in range(48)]
    labels = torch.arange(len(degrees)) % len(CENTRES)
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    x = 3.7 * torch.stack([rad.cos(), rad.sin()], dim=1)
    c = torch.tensor(CENTRES, dtype=torch.float64) * math.pi / 180
    w = torch.tensor([0.5, 2.0, 9.0], dtype=torch.float64)[:, None] * torch.stack(
        [c.cos(), c.sin()], dim=1
    )
    return x.to(dtype), labels, w, degrees


def _oracle(
    name: str, kwargs: dict, degrees: list[float], labels: torch.Tensor, tolerance: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's logits from the paper's formula, one sample and one class at a time, and a
    mask of the logits to compare: not those within ``tolerance`` degrees of a jump of the
    formula (arcface's fallback at π − m, easy margin's at 90°), where rounding the inputs
    may land on either side."""
    rows, mask = [], []
    for deg, y in zip(degrees, labels.tolist(), strict=True):
        row, keep = [], []
        for j, centre in enumerate(CENTRES):
            cos = math.cos(math.radians(deg - centre))
            theta = math.acos(max(-1.0, min(1.0, cos)))
            s = kwargs.get("scale", 64.0)
            value = s * cos
            if j == y and name == "cosface":
                value = s * (cos - kwargs.get("margin", 0.35))
            if j == y and name == "arcface":
                m = kwargs.get("margin", 0.5)
                if kwargs.get("easy_margin"):
                    value = s * (math.cos(theta + m) if cos > 0 else cos)
                elif theta + m <= math.pi:
                    value = s * math.cos(theta + m)
                else:
                    value = s * (cos - m * math.sin(m))
            row.append(value)
            jump = 90.0 if kwargs.get("easy_margin") else 180 - math.degrees(m_of(name, kwargs))
            keep.append(
                not (j == y and name == "arcface" and abs(math.degrees(theta) - jump) < tolerance)
            )
        rows.append(row)
        mask.append(keep)
    return torch.tensor(rows, dtype=torch.float64), torch.tensor(mask)


def m_of(name: str, kwargs: dict) -> float:
    return kwargs.get("margin", 0.5)


CASES = [
    ("normface", {}),
    ("normface", {"scale": 30.0}),
    ("cosface", {}),
    ("cosface", {"margin": 0.4, "scale": 32.0}),
    ("arcface", {}),
    ("arcface", {"margin": 0.3}),
    ("arcface", {"easy_margin": True}),
]


@pytest.mark.parametrize(("name", "kwargs"), CASES)
@pytest.mark.parametrize(
    ("dtype", "rtol"),
    [(torch.float64, 1e-7), (torch.float32, 1e-5), (torch.bfloat16, 1e-2), (torch.float16, 1e-2)],
)
def test_cosine_heads_match_the_formula_on_an_angle_grid(
    name: str, kwargs: dict, dtype: torch.dtype, rtol: float
) -> None:
    x, labels, w, degrees = _grid(dtype)
    head = create_head(name, 2, 3, **kwargs).to(torch.float64 if dtype == torch.float64 else None)
    with torch.no_grad():
        head.weight.copy_(w)
    logits = head.logits(x, labels)
    assert logits.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    low = dtype in (torch.bfloat16, torch.float16)
    expected, keep = _oracle(name, kwargs, degrees, labels, tolerance=1.0 if low else 0.01)
    # bf16/fp16 round the embeddings themselves: compare on the scale of the logits
    torch.testing.assert_close(logits.double()[keep], expected[keep], rtol=rtol, atol=rtol * 64)
    rows = keep.all(1)
    loss = F.cross_entropy(logits[rows], labels[rows]).double()
    torch.testing.assert_close(
        loss, F.cross_entropy(expected[rows], labels[rows]), rtol=rtol, atol=rtol * 64
    )
    torch.testing.assert_close(head(x, labels), F.cross_entropy(logits, labels))


def test_softmax_is_a_linear_layer_with_bias() -> None:
    head = create_head("softmax", 4, 3)
    x, labels = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    head = head.double()
    with torch.no_grad():
        head.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    expected = x @ head.weight.T + head.bias
    torch.testing.assert_close(head.logits(x, labels), expected)
    torch.testing.assert_close(head(x, labels), F.cross_entropy(expected, labels))


def _batch(classes: int = 5, per_class: int = 3, size: int = 8, seed: int = 0):
    """A P×K batch (every label has ``per_class`` images), as the pair losses need."""
    torch.manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return torch.randn(len(labels), size), labels


@pytest.mark.parametrize("name", list_heads())
def test_every_head_loss_stays_float32_under_autocast(name: str) -> None:
    x, labels = _batch()
    head = create_head(name, 8, 5).eval()  # eval: no state update between the two calls
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(x.bfloat16(), labels)
        logits = head.logits(x.bfloat16(), labels) if hasattr(head, "logits") else None
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, head(x.bfloat16().float(), labels))
    if logits is not None:
        assert logits.dtype == torch.float32
        torch.testing.assert_close(logits, head.logits(x.bfloat16().float(), labels))


@pytest.mark.parametrize("name", list_heads())
def test_every_head_has_exact_gradients(name: str) -> None:
    """gradcheck in float64, in eval mode (state frozen, random margins at their mean), with
    respect to the embeddings and every parameter of the head."""
    x, labels = _batch(classes=3, per_class=2, size=4)
    head = create_head(name, 4, 3).double().eval()
    x = x.double().requires_grad_()
    params = [p for p in head.parameters() if p.requires_grad]

    norms = x.detach().norm(dim=1, keepdim=True)

    def radial(e: torch.Tensor) -> torch.Tensor:
        """AdaFace detaches the norms by design: check it along the sphere, norms held."""
        if getattr(head, "stops_norm_gradient", False):
            return e * (norms / e.norm(dim=1, keepdim=True))
        return e

    def loss(e: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        named = {n: p for (n, _), p in zip(head.named_parameters(), ps, strict=True)}
        return torch.func.functional_call(head, named, (radial(e), labels))

    assert torch.autograd.gradcheck(loss, (x, *params))
    if hasattr(head, "logits"):
        assert torch.autograd.gradcheck(lambda e: head.logits(radial(e), labels), (x,))


# Heads that need a smaller step than 0.05: proto's logits are unnormalised squared
# distances (it diverges at 0.05); normface, without a margin, needs more than 300 steps there.
LEARNING_RATES = {"proto": 0.003, "normface": 0.02}
CORNERS = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=4)))[:10] * 3


@pytest.mark.parametrize("name", list_heads())
def test_every_head_separates_gaussian_classes(name: str) -> None:
    """10 Gaussian classes in 16-D whose means differ in 4 hidden coordinates only, the other
    12 being noise (σ 3): with a random linear embedding to 8-D and the head as initialised,
    fewer than 50 % of fresh samples are classified right; trained with the head from its
    defaults on 300 P×K batches (10 labels × 4), at least 85 % must be."""
    torch.manual_seed(0)
    hidden = torch.randperm(16)
    means, sigma = torch.zeros(10, 16), torch.full((16,), 3.0)
    means[:, hidden[:4]], sigma[hidden[:4]] = CORNERS, 1.0
    labels = torch.arange(10).repeat_interleave(40)
    data = means[labels] + torch.randn(len(labels), 16) * sigma
    net = torch.nn.Linear(16, 8)
    head = create_head(name, 8, 10)

    def accuracy() -> float:
        """On fresh samples: the class whose centre has the largest cosine (classification
        heads), the largest logit (softmax classifiers), or the nearest mean embedding of
        the training samples (pair losses)."""
        with torch.no_grad():
            test = net(means[labels] + torch.randn(len(labels), 16) * sigma)
            if isinstance(head, CosineHead):
                scores = head.cosines(test)
            elif hasattr(head, "logits"):
                scores = head.logits(test)
            else:
                emb = net(data)
                centres = F.normalize(torch.stack([emb[labels == c].mean(0) for c in range(10)]))
                scores = F.normalize(test) @ centres.T
            return (scores.argmax(1) == labels).float().mean().item()

    assert accuracy() < 0.5
    params = [*net.parameters(), *head.parameters()]
    optim = torch.optim.SGD(params, lr=LEARNING_RATES.get(name, 0.05), momentum=0.9)
    for _ in range(300):
        batch = (torch.rand(10, 40).argsort(1)[:, :4] + torch.arange(10)[:, None] * 40).flatten()
        optim.zero_grad()
        head(net(data[batch]), labels[batch]).backward()
        optim.step()
    assert accuracy() >= 0.85


@pytest.mark.parametrize("name", list_heads())
def test_every_registered_head_builds_from_its_defaults(name: str) -> None:
    head = create_head(name, 8, 4)
    x, labels = _batch(classes=4, per_class=2)
    loss = head(x, labels)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert type(head).__doc__ and "(" in type(head).__doc__  # names its paper


def test_unknown_head_or_keyword_is_an_error_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown head 'arcfase'.*Did you mean 'arcface'"):
        create_head("arcfase", 8, 4)
    with pytest.raises(ConfigError, match=r"takes no 'm'; valid keywords: margin, scale, easy"):
        create_head("arcface", 8, 4, m=0.5)
    with pytest.raises(ConfigError, match="in radians"):
        create_head("arcface", 8, 4, margin=28.6)
    with pytest.raises(ConfigError, match="num_classes ≥ 2"):
        create_head("cosface", 8, 1)


def test_registry_refuses_a_name_twice() -> None:
    registry: Registry = Registry("thing")
    registry.register("a")(int)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(float)
    assert "a" in registry and registry.get("a") is int
