"""Pair and episode losses against naive oracles: one anchor, pair, query or image at a time in
Python floats (float64), on batches whose groups differ in size and are not contiguous."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch

from fmlkit.errors import BatchError, ConfigError
from fmlkit.models.heads import create_head
from fmlkit.models.heads.pair_losses import _safe_sqrt, group_by_label

NAMES = ["triplet", "contrastive", "proto", "angleproto", "ge2e", "softmaxproto"]
# 5 labels with 4, 3, 2, 2, 2 images, interleaved
LABELS = [3, 7, 3, 1, 7, 7, 1, 3, 9, 9, 3, 0, 0]
CLASSES = 10
Vector = list[float]


def _batch(dtype: torch.dtype = torch.float64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(LABELS), 5, dtype=torch.float64, generator=generator)
    x = x * torch.linspace(0.3, 4.0, len(LABELS), dtype=torch.float64)[:, None]  # norms vary
    return x.to(dtype), torch.tensor(LABELS)


# --- the oracle: plain Python -------------------------------------------------------------


def _dot(a: Vector, b: Vector) -> float:
    return math.fsum(u * v for u, v in zip(a, b, strict=True))


def _unit(a: Vector) -> Vector:
    n = math.sqrt(_dot(a, a))
    return [u / n for u in a] if n > 0 else [0.0] * len(a)


def _dist(a: Vector, b: Vector) -> float:
    return math.sqrt(math.fsum((u - v) ** 2 for u, v in zip(a, b, strict=True)))


def _cos(a: Vector, b: Vector) -> float:
    return _dot(_unit(a), _unit(b))


def _mean(vectors: list[Vector]) -> Vector:
    return [math.fsum(column) / len(vectors) for column in zip(*vectors, strict=True)]


def _cross_entropy(logits: Vector, target: int) -> float:
    top = max(logits)
    return top + math.log(math.fsum(math.exp(v - top) for v in logits)) - logits[target]


def _members(labels: list[int]) -> list[list[int]]:
    """Batch positions of each label, labels in order of first appearance."""
    return [[i for i, y in enumerate(labels) if y == label] for label in dict.fromkeys(labels)]


def _triplet(
    x: list[Vector], labels: list[int], margin: float = 0.2, mining: str = "hard"
) -> float:
    e = [_unit(v) for v in x]
    b = range(len(e))
    if mining == "hard":
        total = 0.0
        for a in b:
            d_ap = max(_dist(e[a], e[p]) for p in b if p != a and labels[p] == labels[a])
            d_an = min(_dist(e[a], e[n]) for n in b if labels[n] != labels[a])
            total += max(0.0, d_ap - d_an + margin)
        return total / len(e)
    losses = [
        max(0.0, _dist(e[a], e[p]) - _dist(e[a], e[n]) + margin)
        for a, p, n in itertools.product(b, b, b)
        if p != a and labels[p] == labels[a] and labels[n] != labels[a]
    ]
    active = [v for v in losses if v > 0]
    return math.fsum(active) / len(active) if active else 0.0


def _contrastive(x: list[Vector], labels: list[int], margin: float = 1.0) -> float:
    e = [_unit(v) for v in x]
    pull, push = [], []
    for i, j in itertools.combinations(range(len(e)), 2):
        d = _dist(e[i], e[j])
        if labels[i] == labels[j]:
            pull.append(d * d)
        else:
            push.append(max(0.0, margin - d) ** 2)
    return math.fsum(pull) / len(pull) + math.fsum(push) / len(push)


def _episode(x: list[Vector], labels: list[int], score: Callable[[Vector, Vector], float]) -> float:
    groups = _members(labels)
    queries = [x[m[0]] for m in groups]
    prototypes = [_mean([x[i] for i in m[1:]]) for m in groups]
    return math.fsum(
        _cross_entropy([score(q, c) for c in prototypes], i) for i, q in enumerate(queries)
    ) / len(groups)


def _proto(x: list[Vector], labels: list[int]) -> float:
    return _episode(x, labels, lambda q, c: -(_dist(q, c) ** 2))


def _angleproto(x: list[Vector], labels: list[int], w: float = 10.0, b: float = -5.0) -> float:
    return _episode(x, labels, lambda q, c: w * _cos(q, c) + b)


def _ge2e(x: list[Vector], labels: list[int], w: float = 10.0, b: float = -5.0) -> float:
    e = [_unit(v) for v in x]
    groups = _members(labels)
    total = 0.0
    for j, members in enumerate(groups):
        for i in members:
            logits = []
            for k, others in enumerate(groups):
                kept = [e[m] for m in others if not (k == j and m == i)]
                logits.append(w * _cos(e[i], _mean(kept)) + b)
            total += _cross_entropy(logits, j)
    return total / len(e)


def _softmax(x: list[Vector], labels: list[int], weight: list[Vector], bias: Vector) -> float:
    return math.fsum(
        _cross_entropy([_dot(v, w) + c for w, c in zip(weight, bias, strict=True)], y)
        for v, y in zip(x, labels, strict=True)
    ) / len(x)


def _oracle(name: str, kwargs: dict, head: torch.nn.Module, x: torch.Tensor) -> float:
    rows, labels = x.double().tolist(), LABELS
    w, b = kwargs.get("init_w", 10.0), kwargs.get("init_b", -5.0)
    if name == "triplet":
        return _triplet(rows, labels, **kwargs)
    if name == "contrastive":
        return _contrastive(rows, labels, **kwargs)
    if name == "proto":
        return _proto(rows, labels)
    if name == "angleproto":
        return _angleproto(rows, labels, w, b)
    if name == "ge2e":
        return _ge2e(rows, labels, w, b)
    weight, bias = head.softmax.weight.double().tolist(), head.softmax.bias.double().tolist()
    return _softmax(rows, labels, weight, bias) + _angleproto(rows, labels, w, b)


CASES = [
    ("triplet", {}),
    ("triplet", {"margin": 0.5}),
    ("triplet", {"mining": "all"}),
    ("triplet", {"mining": "all", "margin": 0.05}),
    ("contrastive", {}),
    ("contrastive", {"margin": 0.6}),
    ("proto", {}),
    ("angleproto", {}),
    ("angleproto", {"init_w": 3.5, "init_b": 1.25}),
    ("ge2e", {}),
    ("ge2e", {"init_w": 3.5, "init_b": 1.25}),
    ("softmaxproto", {}),
    ("softmaxproto", {"init_w": 3.5}),
]


@pytest.mark.parametrize(("name", "kwargs"), CASES)
@pytest.mark.parametrize(
    ("dtype", "rtol"),
    [(torch.float64, 1e-7), (torch.float32, 1e-5), (torch.bfloat16, 1e-2), (torch.float16, 1e-2)],
)
def test_pair_losses_match_the_naive_formula(
    name: str, kwargs: dict, dtype: torch.dtype, rtol: float
) -> None:
    """bf16/fp16 embeddings (a float32 head, as under autocast) give a float32 loss."""
    x, labels = _batch(dtype)
    head = create_head(name, 5, CLASSES, **kwargs)
    if name == "softmaxproto":
        with torch.no_grad():  # a classifier far from its init, so that its term matters
            head.softmax.weight.normal_(generator=torch.Generator().manual_seed(1))
            head.softmax.bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(2))
    low = dtype in (torch.bfloat16, torch.float16)
    head = head.to(torch.float32 if low else dtype)
    loss = head(x, labels)
    assert loss.ndim == 0 and loss.dtype == (torch.float32 if low else dtype)
    expected = _oracle(name, kwargs, head, x)
    assert expected > 0.01  # not a degenerate case
    torch.testing.assert_close(
        loss.double(), torch.tensor(expected, dtype=torch.float64), rtol=rtol, atol=0
    )


def test_triplet_batch_all_averages_only_the_active_triplets() -> None:
    x, labels = _batch()
    loss = create_head("triplet", 5, CLASSES, mining="all", margin=0.05)(x, labels).item()
    e = [_unit(v) for v in x.tolist()]
    b = range(len(e))
    terms = [
        max(0.0, _dist(e[a], e[p]) - _dist(e[a], e[n]) + 0.05)
        for a, p, n in itertools.product(b, b, b)
        if p != a and LABELS[p] == LABELS[a] and LABELS[n] != LABELS[a]
    ]
    active = [t for t in terms if t > 0]
    assert 0 < len(active) < 0.6 * len(terms)  # many triplets are easy here
    assert loss == pytest.approx(sum(active) / len(active), rel=1e-9)
    assert loss > 1.5 * sum(terms) / len(terms)  # not the mean over every triplet
    far = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]])
    assert create_head("triplet", 2, 2, mining="all")(far, torch.tensor([0, 0, 1, 1])) == 0


def _circle(degrees: list[float], norms: list[float]) -> torch.Tensor:
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.tensor(norms, dtype=torch.float64)[:, None] * torch.stack(
        [rad.cos(), rad.sin()], dim=1
    )


def test_triplet_batch_hard_picks_the_farthest_positive_and_the_nearest_negative() -> None:
    """Hand-built on the unit circle (chord d = 2·sin(Δ/2)), shuffled, with varied norms."""
    degrees = [60.0, 0.0, 200.0, 100.0, 10.0, 210.0, 50.0]
    labels = torch.tensor([1, 0, 2, 1, 0, 2, 0])
    x = _circle(degrees, [0.5, 3.0, 1.0, 7.0, 0.2, 2.0, 1.5])
    picked = {  # anchor: (hardest positive, hardest negative), worked out by hand
        60.0: (100.0, 50.0),
        0.0: (50.0, 60.0),
        200.0: (210.0, 100.0),
        100.0: (60.0, 50.0),
        10.0: (50.0, 60.0),
        210.0: (200.0, 100.0),
        50.0: (0.0, 60.0),
    }

    def chord(a: float, b: float) -> float:
        return 2 * math.sin(math.radians(abs(a - b)) / 2)

    terms = [max(0.0, chord(a, p) - chord(a, n) + 0.2) for a, (p, n) in picked.items()]
    assert terms[2] == 0 and terms[5] == 0 and min(terms[:2]) > 0  # easy and hard anchors
    head = create_head("triplet", 2, 3)
    torch.testing.assert_close(head(x, labels), torch.tensor(sum(terms) / 7, dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
def test_pair_losses_refuse_a_label_with_one_image(name: str) -> None:
    head = create_head(name, 4, CLASSES)
    x = torch.randn(7, 4)
    with pytest.raises(BatchError, match=rf"^{name} needs ≥ 2 images of every label") as error:
        head(x, torch.tensor([0, 0, 5, 2, 2, 8, 2]))
    message = str(error.value)
    assert "label 5 has 1 image, label 8 has 1 image (2 of 4 labels)" in message
    assert "use the m_per_class sampler with m ≥ 2" in message


@pytest.mark.parametrize("name", NAMES)
def test_pair_losses_refuse_a_batch_of_one_label(name: str) -> None:
    head = create_head(name, 4, CLASSES)
    with pytest.raises(BatchError, match=rf"^{name} needs ≥ 2 distinct labels.*only label 4 \(3 "):
        head(torch.randn(3, 4), torch.tensor([4, 4, 4]))
    with pytest.raises(BatchError, match="takes \\(B, E\\) embeddings and B labels"):
        head(torch.randn(4, 4), torch.tensor([0, 0, 1, 1, 1]))


def test_group_by_label_orders_groups_by_first_appearance() -> None:
    groups = group_by_label(torch.tensor(LABELS), "test")
    assert groups.labels.tolist() == [3, 7, 1, 9, 0]
    assert groups.counts.tolist() == [4, 3, 2, 2, 2]
    assert groups.first.tolist() == [0, 1, 3, 8, 11]
    assert groups.index.tolist() == [0, 1, 0, 2, 1, 1, 2, 0, 3, 3, 0, 4, 4]


def _loss_fn(
    head: torch.nn.Module, labels: torch.Tensor
) -> tuple[Callable[..., torch.Tensor], list[torch.nn.Parameter]]:
    names = [n for n, p in head.named_parameters() if p.requires_grad]

    def loss(e: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(head, dict(zip(names, ps, strict=True)), (e, labels))

    return loss, [p for p in head.parameters() if p.requires_grad]


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_pair_losses_have_exact_gradients_on_unequal_groups(name: str, kwargs: dict) -> None:
    x, labels = _batch()
    head = create_head(name, 5, CLASSES, **kwargs).double()
    loss, params = _loss_fn(head, labels)
    assert torch.autograd.gradcheck(loss, (x.requires_grad_(), *params))


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_pair_losses_are_finite_at_zero_distance(name: str, kwargs: dict) -> None:
    """Duplicated, opposite and all-zero embeddings: finite loss and gradients, no NaN."""
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    duplicated = torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 2], [0, 1], [0, -1], [3, 3]])
    for x in (duplicated, torch.zeros(7, 2)):
        head = create_head(name, 2, CLASSES, **kwargs)
        x = x.clone().requires_grad_()
        loss = head(x, labels)
        loss.backward()
        assert torch.isfinite(loss) and x.grad is not None and torch.isfinite(x.grad).all()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())


def test_safe_sqrt_has_a_zero_gradient_at_zero() -> None:
    squared = torch.tensor([0.0, 0.25, 0.0, 4.0], dtype=torch.float64, requires_grad=True)
    root = _safe_sqrt(squared)
    root.sum().backward()
    assert root.tolist() == [0, 0.5, 0, 2] and squared.grad is not None
    assert squared.grad.tolist() == [0, 1, 0, 0.25]


def test_triplet_hard_gradient_at_zero_distance_is_zero_not_nan() -> None:
    x = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]], requires_grad=True)
    loss = create_head("triplet", 2, 2)(x, torch.tensor([0, 0, 1, 1]))
    loss.backward()  # d_ap = 0, d_an = √2
    assert loss.item() == 0 and x.grad is not None and (x.grad == 0).all()


@pytest.mark.parametrize("name", ["angleproto", "ge2e", "softmaxproto"])
def test_scale_and_bias_are_learnable_and_saved(name: str) -> None:
    head = create_head(name, 5, CLASSES, init_w=4.0, init_b=-2.0)
    prefix = "angleproto." if name == "softmaxproto" else ""
    state = head.state_dict()
    assert state[f"{prefix}w"].item() == 4.0 and state[f"{prefix}b"].item() == -2.0
    scaled = head.angleproto if name == "softmaxproto" else head
    assert scaled.w.requires_grad and scaled.b.requires_grad
    x, labels = _batch(torch.float32)
    head(x, labels).backward()
    assert scaled.w.grad is not None and scaled.w.grad.abs() > 1e-4
    # b shifts every logit of a row alike: the softmax cancels it (as in voxceleb_trainer)
    assert scaled.b.grad is not None and scaled.b.grad.abs() < 1e-6
    with torch.no_grad():
        scaled.w.fill_(-3.0)  # clamped to 1e-6 in the forward
    low = head(x, labels)
    with torch.no_grad():
        scaled.w.fill_(1e-6)
    torch.testing.assert_close(low, head(x, labels))


def test_pair_losses_validate_their_options() -> None:
    with pytest.raises(ConfigError, match="'hard' or 'all', got 'semi'"):
        create_head("triplet", 4, 2, mining="semi")
    with pytest.raises(ConfigError, match="margin"):
        create_head("triplet", 4, 2, margin=-0.1)
    with pytest.raises(ConfigError, match="margin"):
        create_head("contrastive", 4, 2, margin=0.0)
    with pytest.raises(ConfigError, match=r"init_w .* > 0"):
        create_head("ge2e", 4, 2, init_w=0.0)
    with pytest.raises(ConfigError, match="takes no 'margin'; valid keywords: init_w, init_b"):
        create_head("angleproto", 4, 2, margin=0.1)
