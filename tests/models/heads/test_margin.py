"""combined, sphereface and subcenter_arcface against their papers' formulas computed naively per
sample on the angle grid of test_heads, plus each head's own behaviour (equivalences, SphereFace's
annealing state, the sub-centre counts and outliers)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F

from fmlkit.errors import ConfigError
from fmlkit.models.heads import create_head
from tests.models.heads.test_base import CENTRES, _grid

DTYPES = [
    (torch.float64, 1e-7),
    (torch.float32, 1e-5),
    (torch.bfloat16, 1e-2),
    (torch.float16, 1e-2),
]
Target = Callable[[int, float, float], float]  # (sample, θ_y, cos θ_y) -> target cosine


def oracle(
    degrees: list[float],
    labels: torch.Tensor,
    target: Target,
    *,
    scale: Callable[[int], float] | float = 64.0,
    centres: Sequence[Sequence[float]] = tuple((c,) for c in CENTRES),
    jumps: Callable[[int], list[float]] = lambda i: [],
    tolerance: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits one sample and one class at a time: cos θ_j = max over class j's (sub-)centre
    angles, the target class replaced by ``target``, all times ``scale`` (or scale(i)); and a
    mask that leaves out targets within ``tolerance`` degrees of a jump of the formula."""
    rows, mask = [], []
    for i, (deg, y) in enumerate(zip(degrees, labels.tolist(), strict=True)):
        s = scale(i) if callable(scale) else scale
        row, keep = [], []
        for j, subs in enumerate(centres):
            cos = max(math.cos(math.radians(deg - c)) for c in subs)
            theta = math.acos(max(-1.0, min(1.0, cos)))
            row.append(s * (target(i, theta, cos) if j == y else cos))
            near = any(abs(math.degrees(theta) - jump) < tolerance for jump in jumps(i))
            keep.append(not (j == y and near))
        rows.append(row)
        mask.append(keep)
    return torch.tensor(rows, dtype=torch.float64), torch.tensor(mask)


def assert_matches(
    head: torch.nn.Module,
    dtype: torch.dtype,
    rtol: float,
    expected: Callable[[float], tuple[torch.Tensor, torch.Tensor]],
    grid: tuple | None = None,
) -> None:
    """The head's logits and loss on the grid equal the oracle's (``expected(tolerance)``)."""
    x, labels, w, _ = grid or _grid(dtype)
    head = head.to(torch.float64 if dtype == torch.float64 else None)
    with torch.no_grad():
        head.weight.copy_(w)
    logits = head.logits(x, labels)
    assert logits.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    low = dtype in (torch.bfloat16, torch.float16)
    want, keep = expected(1.0 if low else 0.01)
    torch.testing.assert_close(logits.double()[keep], want[keep], rtol=rtol, atol=rtol * 64)
    rows = keep.all(1)
    loss = F.cross_entropy(logits[rows], labels[rows]).double()
    torch.testing.assert_close(
        loss, F.cross_entropy(want[rows], labels[rows]), rtol=rtol, atol=rtol * 64
    )


# --- combined ---------------------------------------------------------------------------------


def combined_target(m1: float, m2: float, m3: float) -> Target:
    def target(i: int, theta: float, cos: float) -> float:
        theta_t = (math.pi - m2) / m1
        if theta_t < math.pi and theta > theta_t:
            tangent = math.cos(theta_t) - (math.pi - theta_t) * math.sin(theta_t)
            return cos - math.cos(theta_t) + min(tangent, -1.0) - m3
        return math.cos(m1 * theta + m2) - m3

    return target


COMBINED = [
    {},
    {"m1": 1.0, "m2": 0.5, "m3": 0.0},
    {"m1": 1.0, "m2": 0.0, "m3": 0.35, "scale": 30.0},
    {"m1": 2.0, "m2": 0.1, "m3": 0.1},
    {"m1": 0.9, "m2": 0.4, "m3": 0.1},
    {"m1": 0.5, "m2": 0.2, "m3": 0.0},  # θ_t > π: no fallback
    {"m1": 4.0, "m2": 0.0, "m3": 0.0},
]


@pytest.mark.parametrize("kwargs", COMBINED)
@pytest.mark.parametrize(("dtype", "rtol"), DTYPES)
def test_combined_matches_the_formula_on_an_angle_grid(
    kwargs: dict, dtype: torch.dtype, rtol: float
) -> None:
    m = {"m1": 1.0, "m2": 0.3, "m3": 0.2, **kwargs}
    theta_t = math.degrees((math.pi - m["m2"]) / m["m1"])
    _, labels, _, degrees = _grid(dtype)
    assert_matches(
        create_head("combined", 2, 3, **kwargs),
        dtype,
        rtol,
        lambda tol: oracle(
            degrees,
            labels,
            combined_target(m["m1"], m["m2"], m["m3"]),
            scale=kwargs.get("scale", 64.0),
            jumps=lambda i: [theta_t],
            tolerance=tol,
        ),
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "combined"),
    [
        ("arcface", {"margin": 0.5}, {"m1": 1.0, "m2": 0.5, "m3": 0.0}),
        ("arcface", {"margin": 0.3, "scale": 30.0}, {"m1": 1, "m2": 0.3, "m3": 0, "scale": 30.0}),
        ("cosface", {"margin": 0.35}, {"m1": 1.0, "m2": 0.0, "m3": 0.35}),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_combined_equals_arcface_and_cosface_exactly(
    name: str, kwargs: dict, combined: dict, dtype: torch.dtype
) -> None:
    x, labels, w, _ = _grid(dtype)
    heads = [create_head(name, 2, 3, **kwargs), create_head("combined", 2, 3, **combined)]
    for head in heads:
        head.to(torch.float64 if dtype == torch.float64 else None)
        with torch.no_grad():
            head.weight.copy_(w)
    a, b = (h.logits(x, labels) for h in heads)
    assert torch.equal(a, b)
    assert torch.equal(heads[0](x, labels), heads[1](x, labels))


@pytest.mark.parametrize(
    ("m1", "m2", "m3"),
    [(1.0, 0.3, 0.2), (2.0, 0.1, 0.1), (3.8, 0.0, 0.0), (4.0, 0.0, 0.0), (10, 0, 0)],
)
def test_combined_target_decreases_in_the_angle(m1: float, m2: float, m3: float) -> None:
    """Past θ_t = (π − m2)/m1 the fallback starts below −1 − m3 (the tangent of cos at θ_t when
    θ_t ≥ 0.81 rad, else continuous), so the target decreases over the whole range."""
    head = create_head("combined", 2, 3, m1=m1, m2=m2, m3=m3).double()
    theta = torch.linspace(0, math.pi, 20001, dtype=torch.float64)
    target = head.target(theta.cos())
    assert (target.diff() < 0).all()


def test_combined_refuses_margins_out_of_range() -> None:
    for bad in ({"m1": 0.0}, {"m2": -0.1}, {"m2": math.pi}, {"m3": -0.2}):
        with pytest.raises(ConfigError, match="m1 > 0, 0 ≤ m2 < π"):
            create_head("combined", 8, 4, **bad)


# --- sphereface -------------------------------------------------------------------------------


def sphere_lambda(iteration: int, base: float = 1000, gamma: float = 1e-4, power: float = 2,
                  minimum: float = 5) -> float:  # fmt: skip
    return max(minimum, base * (1 + gamma * iteration) ** -power)


def sphere_target(m: int, lam: float) -> Target:
    def target(i: int, theta: float, cos: float) -> float:
        k = min(m - 1, math.floor(m * theta / math.pi))
        psi = (-1) ** k * math.cos(m * theta) - 2 * k
        return (lam * cos + psi) / (1 + lam)

    return target


SPHERE = [
    ({}, 0),
    ({}, 1000),
    ({}, 100_000),
    ({}, 1_000_000),  # λ reached lambda_min
    ({"margin": 3}, 50_000),
    ({"margin": 2, "lambda_min": 0.0}, 10**9),  # λ ≈ 1e-7: ψ alone
    ({"margin": 1}, 0),
    ({"lambda_base": 10.0, "lambda_gamma": 0.1, "lambda_power": 1.0, "lambda_min": 0.5}, 30),
]


@pytest.mark.parametrize(("kwargs", "iteration"), SPHERE)
@pytest.mark.parametrize(("dtype", "rtol"), DTYPES)
def test_sphereface_matches_the_formula_on_an_angle_grid(
    kwargs: dict, iteration: int, dtype: torch.dtype, rtol: float
) -> None:
    keys = {"lambda_base": "base", "lambda_gamma": "gamma", "lambda_power": "power"}
    lam = sphere_lambda(
        iteration,
        **{keys.get(k, "minimum"): v for k, v in kwargs.items() if k.startswith("lambda")},
    )
    head = create_head("sphereface", 2, 3, **kwargs)
    head.iteration.fill_(iteration)
    assert head.lambda_.item() == pytest.approx(lam, rel=1e-12)
    _, labels, _, degrees = _grid(dtype)
    target = sphere_target(kwargs.get("margin", 4), lam)
    assert_matches(head, dtype, rtol, lambda tol: oracle(degrees, labels, target, scale=3.7))


def test_sphereface_lambda_anneals_to_its_minimum() -> None:
    head = create_head("sphereface", 8, 4)
    assert head.lambda_.item() == 1000.0
    head.iteration.fill_(10_000)
    assert head.lambda_.item() == pytest.approx(250.0)
    head.iteration.fill_(10**6)
    assert head.lambda_.item() == 5.0


def test_sphereface_counts_training_forwards_only_after_using_lambda() -> None:
    torch.manual_seed(0)
    x, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    head = create_head("sphereface", 8, 4, lambda_gamma=1.0, lambda_min=0.0).eval()
    head.iteration.fill_(2)  # λ = 1000/9; 1000/16 at iteration 3
    expected = head(x, labels)  # eval: no count
    head.logits(x, labels)
    assert int(head.iteration) == 2
    head.train()
    head.logits(x, labels)  # logits alone is no training step
    assert int(head.iteration) == 2
    torch.testing.assert_close(head(x, labels), expected)
    assert int(head.iteration) == 3
    assert not torch.allclose(head(x, labels), expected)
    assert int(head.iteration) == 4
    state = head.state_dict()
    assert int(state["iteration"]) == 4
    fresh = create_head("sphereface", 8, 4)
    fresh.load_state_dict(state)
    assert int(fresh.iteration) == 4 and fresh.iteration.dtype == torch.int64


def test_sphereface_logits_scale_with_the_embedding_norm_and_take_no_scale() -> None:
    torch.manual_seed(0)
    x, labels = torch.randn(5, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0])
    head = create_head("sphereface", 8, 4).double()
    torch.testing.assert_close(head.logits(2.5 * x, labels), 2.5 * head.logits(x, labels))
    with pytest.raises(ConfigError, match="takes no 'scale'"):
        create_head("sphereface", 8, 4, scale=64.0)


def test_sphereface_psi_is_continuous_and_decreasing() -> None:
    head = create_head("sphereface", 2, 3, margin=4).double()
    theta = torch.linspace(0, math.pi, 40001, dtype=torch.float64)
    psi = head.psi(theta.cos())
    assert (psi.diff() < 0).all()
    assert psi.diff().abs().max() < 1e-3  # no step where k changes
    torch.testing.assert_close(psi[[0, -1]], torch.tensor([1.0, -7.0], dtype=torch.float64))
    for m in (3, 4):  # at θ = π, dψ/dcos θ = m² > 0: k is m − 1 there, not m
        head = create_head("sphereface", 2, 3, margin=m).double()
        cos = torch.tensor([-1.0], dtype=torch.float64, requires_grad=True)
        head.psi(cos).backward()
        assert cos.grad is not None and cos.grad.item() == pytest.approx(m * m)


def test_sphereface_refuses_a_margin_that_is_not_a_positive_integer() -> None:
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="integer ≥ 1"):
            create_head("sphereface", 8, 4, margin=bad)
    with pytest.raises(ConfigError, match="must be ≥ 0"):
        create_head("sphereface", 8, 4, lambda_min=-1.0)


# --- sub-centre ArcFace -----------------------------------------------------------------------

OFFSETS = [0.0, 40.0, -100.0]  # sub-centre angles relative to each class centre (degrees)


def subcenter_weight(norms: Sequence[float] = (0.5, 2.0, 9.0)) -> torch.Tensor:
    """(3 classes, 3 sub-centres, 2): class j's sub-centres at CENTRES[j] + OFFSETS."""
    angles = torch.tensor([[c + o for o in OFFSETS] for c in CENTRES], dtype=torch.float64)
    rad = angles * math.pi / 180
    scale = torch.tensor(norms, dtype=torch.float64)[:, None, None]
    return scale * torch.stack([rad.cos(), rad.sin()], dim=2)


def arcface_target(m: float) -> Target:
    def target(i: int, theta: float, cos: float) -> float:
        return math.cos(theta + m) if theta + m <= math.pi else cos - m * math.sin(m)

    return target


@pytest.mark.parametrize("kwargs", [{}, {"margin": 0.3, "scale": 30.0}])
@pytest.mark.parametrize(("dtype", "rtol"), DTYPES)
def test_subcenter_arcface_matches_the_formula_on_an_angle_grid(
    kwargs: dict, dtype: torch.dtype, rtol: float
) -> None:
    x, labels, _, degrees = _grid(dtype)
    m = kwargs.get("margin", 0.5)
    centres = [[c + o for o in OFFSETS] for c in CENTRES]
    assert_matches(
        create_head("subcenter_arcface", 2, 3, **kwargs),
        dtype,
        rtol,
        lambda tol: oracle(
            degrees,
            labels,
            arcface_target(m),
            scale=kwargs.get("scale", 64.0),
            centres=centres,
            jumps=lambda i: [180 - math.degrees(m)],
            tolerance=tol,
        ),
        grid=(x, labels, subcenter_weight(), degrees),
    )


def _subcenter_head() -> torch.nn.Module:
    head = create_head("subcenter_arcface", 2, 3).double()
    with torch.no_grad():
        head.weight.copy_(subcenter_weight())
    return head


def _at(degrees: list[float]) -> torch.Tensor:
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return 3.0 * torch.stack([rad.cos(), rad.sin()], dim=1)


def test_subcenter_arcface_counts_the_nearest_sub_centre_in_training_mode_only() -> None:
    head = _subcenter_head()
    # class 0 centres 0°, 40°, −100°; class 1: 70°, 110°, −30°; class 2: 200°, 240°, 100°
    x = _at([5.0, 35.0, 30.0, -95.0, 75.0, 105.0])
    labels = torch.tensor([0, 0, 0, 0, 1, 2])
    sub = [[c + o for o in OFFSETS] for c in CENTRES]
    nearest = [[max(math.cos(math.radians(d - a)) for a in angles) for angles in sub]
               for d in [5.0, 35.0, 30.0, -95.0, 75.0, 105.0]]  # fmt: skip
    torch.testing.assert_close(head.cosines(x), torch.tensor(nearest, dtype=torch.float64))
    head.eval()(x, labels)
    head.train().logits(x, labels)
    assert not head.sub_center_counts.any()
    head.train()(x, labels)
    expected = torch.tensor([[1, 2, 1], [1, 0, 0], [0, 0, 1]])
    assert torch.equal(head.sub_center_counts, expected)
    head(x, labels)
    assert torch.equal(head.sub_center_counts, 2 * expected)
    assert head.sub_center_counts.dtype == torch.int64
    assert torch.equal(head.state_dict()["sub_center_counts"], 2 * expected)


def test_subcenter_arcface_dominant_centres_follow_the_counts() -> None:
    head = _subcenter_head()
    w = F.normalize(head.weight.detach(), dim=2)
    torch.testing.assert_close(head.dominant_centers(), w[:, 0])  # before any training
    head.sub_center_counts.copy_(torch.tensor([[1, 5, 2], [3, 3, 3], [0, 4, 4]]))
    torch.testing.assert_close(head.dominant_centers(), w[[0, 1, 2], [1, 0, 1]])  # ties: lowest


def test_subcenter_arcface_outliers_are_beyond_the_angle_in_degrees() -> None:
    head = _subcenter_head()
    head.sub_center_counts.copy_(torch.tensor([[0, 9, 1], [5, 0, 0], [0, 0, 2]]))
    # dominant: class 0 at 40°, class 1 at 70°, class 2 at 100°
    x = _at([40 + 74, 40 - 76, 70 + 10, 70 + 80, 100 - 170, 100 + 75.5])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    expected = torch.tensor([False, True, False, True, True, True])
    assert torch.equal(head.outliers(x, labels), expected)
    assert torch.equal(head.outliers(x, labels, angle=80.5), torch.tensor([0, 0, 0, 0, 1, 0]) > 0)
    assert not head.outliers(x.float().requires_grad_(), labels).requires_grad
    with pytest.raises(ConfigError, match="degrees"):
        head.outliers(x, labels, angle=200.0)


def test_subcenter_arcface_weight_has_a_sub_centre_axis() -> None:
    head = create_head("subcenter_arcface", 8, 5, sub_centers=4)
    assert head.weight.shape == (5, 4, 8) and head.sub_center_counts.shape == (5, 4)
    assert not head.supports_partial_fc
    with pytest.raises(ConfigError, match="sub_centers"):
        create_head("subcenter_arcface", 8, 5, sub_centers=0)


# --- all three --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("combined", {}), ("combined", {"m1": 2.0}), ("sphereface", {}), ("subcenter_arcface", {})],
)
def test_margin_heads_have_finite_gradients_at_zero_and_pi(name: str, kwargs: dict) -> None:
    head = create_head(name, 2, 2, **kwargs).double()
    with torch.no_grad():
        head.weight.view(2, -1, 2)[:] = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]).view(2, 1, 2)
    x = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    x.requires_grad_()
    loss = head(x, torch.tensor([0, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert torch.isfinite(head.weight.grad).all()
