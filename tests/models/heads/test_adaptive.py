"""Adaptive heads against their papers' formulas computed naively per sample (state updates
included), on the angle grid of test_heads with norms from 4e-4 to 138; exact gradients with
the state held; state in state_dict; MagFace's regulariser; AdaCos's scale; low precision."""

from __future__ import annotations

import copy
import math
import statistics

import pytest
import torch
import torch.nn.functional as F

from fmlkit.errors import BatchError, ConfigError
from fmlkit.models.heads import arc_target, create_head, shifted_cos
from tests.models.heads.test_base import CENTRES, _grid

# One norm per grid sample, not ordered like the angles: 1.5 … 137.8, and one 4e-4 (below
# AdaFace's 1e-3 clip); MagFace's clip [10, 110] is crossed on both sides.
NORMS = [4e-4 if i == 5 else 1.5 + 2.9 * ((7 * i) % 48) for i in range(48)]
STATE = {"curricularface": ["t"], "adacos": ["s"], "adaface": ["batch_mean", "batch_std"]}


def _inputs(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[float]]:
    x, labels, w, degrees = _grid(torch.float64)
    x = x / 3.7 * torch.tensor(NORMS, dtype=torch.float64)[:, None]
    return x.to(dtype), labels, w, degrees


def _arc(cos: float, theta: float, m: float) -> float:
    return math.cos(theta + m) if theta + m <= math.pi else cos - m * math.sin(m)


def _oracle(name: str, kw: dict, labels: list[int], state: dict, training: bool, tol: float):
    """Per sample and class with `math`: the logits, a mask of those away from a jump of the
    formula (within ``tol`` degrees or cosine units), the state after the step, and what the
    loss adds to CE."""
    degrees = [i * 7.5 for i in range(48)]
    cos = [[math.cos(math.radians(d - c)) for c in CENTRES] for d in degrees]
    cos_y = [row[y] for row, y in zip(cos, labels, strict=True)]
    theta_y = [math.acos(c) for c in cos_y]
    state, extra = dict(state), 0.0
    if name == "curricularface" and training:
        state["t"] = 0.01 * statistics.fmean(cos_y) + 0.99 * state["t"]
    if name == "adacos" and training and kw.get("dynamic", True):
        s = state["s"]
        b_avg = statistics.fmean(
            sum(math.exp(s * c) for j, c in enumerate(row) if j != y)
            for row, y in zip(cos, labels, strict=True)
        )
        median = sorted(theta_y)[(len(theta_y) - 1) // 2]
        state["s"] = math.log(b_avg) / math.cos(min(math.pi / 4, median))
    norms = [min(max(n, 1e-3), 100.0) for n in NORMS]
    if name == "adaface" and training:
        a = kw.get("t_alpha", 0.01)
        state["batch_mean"] = a * statistics.fmean(norms) + (1 - a) * state["batch_mean"]
        state["batch_std"] = a * statistics.stdev(norms) + (1 - a) * state["batch_std"]
    rows, keep = [], []
    for i, (row, y) in enumerate(zip(cos, labels, strict=True)):
        theta, m = theta_y[i], kw.get("margin", 0.5)
        target, boundary, jump = row[y], 2.0, -1.0  # no hard negatives, no jump unless set
        if name == "curricularface":
            s = kw.get("scale", 64.0)
            target, boundary, jump = _arc(row[y], theta, m), math.cos(theta + m), math.pi - m
        elif name == "sv_softmax":
            s, m, t = kw.get("scale", 32.0), kw.get("margin", 0.35), kw.get("t", 0.2)
            if kw.get("margin_type", "cos") == "cos":
                target = boundary = row[y] - m
            else:
                target, boundary, jump = _arc(row[y], theta, m), math.cos(theta + m), math.pi - m
        elif name == "adacos":
            s = state["s"]
        elif name == "magface":
            s, lo, up = kw.get("scale", 64.0), kw.get("lower_norm", 10.0), kw.get("upper_norm", 110)
            a = min(max(NORMS[i], lo), up)
            lm, um = kw.get("lower_margin", 0.45), kw.get("upper_margin", 0.8)
            m = lm + (um - lm) * (a - lo) / (up - lo)
            target, jump = _arc(row[y], theta, m), math.pi - m
            extra += kw.get("lambda_g", 35.0) * (a / up**2 + 1 / a) / len(labels)
        elif name == "adaface":
            s, m, h = kw.get("scale", 64.0), kw.get("margin", 0.4), kw.get("h", 0.333)
            z = h * (norms[i] - state["batch_mean"]) / (state["batch_std"] + 1e-3)
            z = min(max(z, -1.0), 1.0)
            angle = min(max(theta - m * z, 1e-3), math.pi - 1e-3)
            target = math.cos(angle) - (m * z + m)
        out, ok = [], []
        for j, c in enumerate(row):
            if j == y:
                out.append(s * target)
                ok.append(abs(math.degrees(theta - jump)) > tol)
            elif c > boundary:  # a hard / support negative
                t = state["t"] if name == "curricularface" else None
                out.append(s * c * (t + c) if t is not None else s * ((kw["t"] + 1) * c + kw["t"]))
                ok.append(c - boundary > math.radians(tol))
            else:
                out.append(s * c)
                ok.append(boundary - c > math.radians(tol))
        rows.append(out)
        keep.append(ok)
    return torch.tensor(rows, dtype=torch.float64), torch.tensor(keep), state, extra


CASES = [
    ("curricularface", {}, {"t": 0.0}),
    ("curricularface", {"margin": 0.3, "scale": 30.0}, {"t": 0.4}),
    ("sv_softmax", {"t": 0.2}, {}),
    ("sv_softmax", {"margin_type": "arc", "margin": 0.5, "t": 0.3, "scale": 64.0}, {}),
    ("adacos", {}, {"s": 3.0}),
    ("adacos", {"dynamic": False}, {"s": 2.5}),
    ("magface", {}, {}),
    ("magface", {"lower_norm": 5.0, "upper_norm": 60.0, "lambda_g": 10.0, "scale": 32.0}, {}),
    ("adaface", {}, {"batch_mean": 20.0, "batch_std": 100.0}),
    ("adaface", {"margin": 0.5, "h": 0.5, "t_alpha": 0.2}, {"batch_mean": 40.0, "batch_std": 15.0}),
]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(("name", "kwargs", "state"), CASES)
@pytest.mark.parametrize(
    ("dtype", "rtol"),
    [(torch.float64, 1e-7), (torch.float32, 1e-5), (torch.bfloat16, 1e-2), (torch.float16, 1e-2)],
)
def test_adaptive_heads_match_the_formula_on_an_angle_grid(
    name: str, kwargs: dict, state: dict, training: bool, dtype: torch.dtype, rtol: float
) -> None:
    x, labels, w, _ = _inputs(dtype)
    head = create_head(name, 2, 3, **kwargs).train(training)
    head = head.to(torch.float64 if dtype == torch.float64 else torch.float32)
    with torch.no_grad():
        head.weight.copy_(w)
        for key, value in state.items():
            getattr(head, key).fill_(value)
    saved = copy.deepcopy(head.state_dict())
    low = dtype in (torch.bfloat16, torch.float16)
    expected, keep, after, extra = _oracle(
        name, kwargs, labels.tolist(), state, training, tol=1.0 if low else 0.01
    )
    logits = head.logits(x, labels)
    assert logits.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert keep.float().mean() > 0.9
    # bf16/fp16 round the embeddings themselves: compare on the scale of the logits
    close = {"rtol": rtol, "atol": rtol * 64}
    torch.testing.assert_close(logits.double()[keep], expected[keep], **close)
    for key, value in after.items():  # updated in training mode only
        torch.testing.assert_close(float(getattr(head, key)), value, **close)
    rows = keep.all(1)
    loss = F.cross_entropy(logits[rows], labels[rows]).double()
    torch.testing.assert_close(loss, F.cross_entropy(expected[rows], labels[rows]), **close)
    head.load_state_dict(saved)  # the forward makes the same update from the same state
    loss = head(x, labels).double()
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels).double() + extra, **close)


def _batch(name: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A float64 batch; norms spread over MagFace's [10, 110] and AdaFace's range."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    x = x * torch.linspace(5, 60, 6, dtype=torch.float64)[:, None]
    return x, torch.tensor([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("name", ["curricularface", "sv_softmax", "adacos", "magface", "adaface"])
def test_adaptive_heads_training_gradient_is_exact_with_the_state_held(name: str) -> None:
    """Training mode updates the state, detached, then uses it: the gradient is that of the
    loss with the updated state held constant (gradcheck of the eval-mode function at that
    state). gradcheck of the training-mode function itself cannot pass, since its numerical
    derivative sees the state move with the inputs."""
    torch.manual_seed(0)
    head = create_head(name, 4, 3).double().train()
    x, labels = _batch(name)
    x.requires_grad_()
    params = list(head.parameters())
    before = copy.deepcopy(dict(head.named_buffers()))
    grads = torch.autograd.grad(head(x, labels), [x, *params])
    after = copy.deepcopy(dict(head.named_buffers()))
    for key in STATE.get(name, []):
        assert not torch.equal(before[key], after[key])  # the state moved
    head.eval()  # at the updated state, which eval mode does not change
    if name == "adaface":  # the norms are held too (the paper's stop-gradient)
        norms = x.detach().norm(dim=1, keepdim=True).clamp(1e-3, 100)

        def loss(e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            cos = F.normalize(e, dim=1) @ F.normalize(w, dim=1).T
            return F.cross_entropy(head.logits_at_norms(cos, labels, norms), labels)
    else:

        def loss(e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(head, {"weight": w}, (e, labels))

    assert torch.autograd.gradcheck(loss, (x, *params))
    held = torch.autograd.grad(loss(x, *params), [x, *params])
    for got, want in zip(grads, held, strict=True):
        torch.testing.assert_close(got, want)
    for key, value in after.items():
        assert torch.equal(value, getattr(head, key))  # and stayed, in eval mode


@pytest.mark.parametrize("name", sorted(STATE))
def test_adaptive_head_state_round_trips_through_state_dict(name: str) -> None:
    torch.manual_seed(0)
    head = create_head(name, 8, 5).train()
    batches = [(torch.randn(10, 8) * 10, torch.randint(0, 5, (10,))) for _ in range(6)]
    for x, y in batches[:3]:
        head(x, y)
    saved = head.state_dict()
    assert set(STATE[name]) <= set(saved)
    restored = create_head(name, 8, 5).train()
    fresh = copy.deepcopy(restored)
    restored.load_state_dict(saved)
    fresh.load_state_dict({"weight": saved["weight"]}, strict=False)  # weights, no state
    for x, y in batches[3:]:
        loss = head(x, y)
        assert torch.equal(loss, restored(x, y))
        assert not torch.equal(loss, fresh(x, y))
    for key in STATE[name]:
        assert torch.equal(getattr(head, key), getattr(restored, key))


@pytest.mark.parametrize("name", sorted(STATE))
def test_adaptive_head_state_moves_in_training_mode_only(name: str) -> None:
    torch.manual_seed(0)
    head = create_head(name, 8, 5).eval()
    x, y = torch.randn(10, 8) * 10, torch.randint(0, 5, (10,))
    before = copy.deepcopy(head.state_dict())
    first = head(x, y)
    assert torch.equal(head(x, y), first)  # eval: deterministic, nothing updated
    for key in STATE[name]:
        assert torch.equal(before[key], getattr(head, key))
    head.train()(x, y)
    for key in STATE[name]:
        assert not torch.equal(before[key], getattr(head, key))


@pytest.mark.parametrize(
    ("name", "kwargs"), [("curricularface", {}), ("sv_softmax", {"margin_type": "arc"})]
)
def test_hard_negatives_are_those_above_cos_theta_plus_m_before_the_fallback(
    name: str, kwargs: dict
) -> None:
    """θ_y = θ_j = 175° (past π − m): cos θ_j is below cos(θ_y + m) = cos 203.6°, so j is easy,
    though above the fallback target cos θ_y − m·sin m."""
    head = create_head(name, 2, 3, **kwargs).double().eval()
    rad = torch.tensor([0.0, 10.0, 90.0, 185.0], dtype=torch.float64) * math.pi / 180
    with torch.no_grad():
        head.weight.copy_(torch.stack([rad[:3].cos(), rad[:3].sin()], dim=1))
    x = torch.stack([rad[3:].cos(), rad[3:].sin()], dim=1)
    logits = head.logits(x, torch.tensor([0]))[0] / head.scale
    m = head.margin
    assert math.cos(math.radians(175)) - m * math.sin(m) < math.cos(math.radians(175))
    assert math.cos(math.radians(175)) < math.cos(math.radians(175) + m)
    assert logits[1].item() == pytest.approx(math.cos(math.radians(175)), rel=1e-12)


@pytest.mark.parametrize("name", sorted(STATE))
def test_adaptive_heads_take_two_training_forwards_before_backward(name: str) -> None:
    """Gradient accumulation: the second forward updates the state in place; the first
    forward's graph must not hold the buffer itself."""
    torch.manual_seed(0)
    head = create_head(name, 8, 5).train()
    x = torch.randn(20, 8) * 10
    y = torch.randint(0, 5, (20,))
    (head(x[:10], y[:10]) + head(x[10:], y[10:])).backward()
    assert torch.isfinite(head.weight.grad).all()


def test_magface_loss_adds_the_norm_regulariser() -> None:
    """forward − CE(logits) is λ_g·mean(g(a)), and it shows in the gradient along each
    embedding's own direction: λ_g·g'(a)/B = λ_g·(1/u² − 1/a²)/B inside [l, u], 0 outside."""
    torch.manual_seed(0)
    x = F.normalize(torch.randn(6, 4, dtype=torch.float64), dim=1)
    x = x * torch.tensor([3.0, 12.0, 30.0, 60.0, 105.0, 150.0], dtype=torch.float64)[:, None]
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    head = create_head("magface", 4, 3).double()
    plain = copy.deepcopy(head)
    plain.lambda_g = 0.0
    a = x.norm(dim=1).clamp(10, 110)
    reg = 35.0 * (a / 110**2 + 1 / a).mean()
    torch.testing.assert_close(
        head(x, labels) - F.cross_entropy(head.logits(x, labels), labels), reg
    )
    torch.testing.assert_close(plain(x, labels), F.cross_entropy(plain.logits(x, labels), labels))
    radial = []
    for h in (head, plain):
        e = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(h(e, labels), e)
        radial.append((grad * F.normalize(x, dim=1)).sum(1))
    inside = (x.norm(dim=1) > 10) & (x.norm(dim=1) < 110)
    expected = torch.where(inside, 35.0 * (1 / 110**2 - 1 / a**2) / len(x), 0.0)
    torch.testing.assert_close(radial[0] - radial[1], expected)
    assert inside.any() and (expected[inside].abs() > 1e-5).all()


def test_magface_quality_is_the_unclipped_feature_norm() -> None:
    head = create_head("magface", 4, 3)
    x = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 120.0, 50.0]]).half()
    assert torch.equal(head.quality(x), torch.tensor([5.0, 130.0]))


def test_adacos_scale_starts_fixed_adapts_in_training_and_settles() -> None:
    """s̃ starts at √2·ln(C − 1); the fixed variant keeps it; the dynamic one moves in training
    mode, stays in eval mode, and repeated updates on one batch settle on the fixed point
    s̃ = ln B_avg(s̃) / cos(min(π/4, θ_med))."""
    torch.manual_seed(0)
    x, y = torch.randn(40, 8, dtype=torch.float64), torch.arange(40) % 10
    fixed = create_head("adacos", 8, 10, dynamic=False).double()
    head = create_head("adacos", 8, 10).double()
    assert float(head.s) == float(fixed.s) == pytest.approx(math.sqrt(2) * math.log(9))
    fixed(x, y)
    assert float(fixed.s) == pytest.approx(math.sqrt(2) * math.log(9))
    head.eval()(x, y)
    assert float(head.s) == pytest.approx(math.sqrt(2) * math.log(9))
    head.train()
    scales = []
    for _ in range(300):
        head(x, y)
        scales.append(float(head.s))
    assert scales[0] != pytest.approx(math.sqrt(2) * math.log(9))
    assert abs(scales[-1] - scales[-2]) < 1e-9 and 0 < scales[-1] < 100
    cos = F.normalize(x, dim=1) @ F.normalize(head.weight.detach(), dim=1).T
    negatives = torch.where(F.one_hot(y, 10).bool(), 0.0, (scales[-1] * cos).exp())
    median = cos.gather(1, y[:, None]).clamp(-1, 1).acos().median()
    fixed_point = negatives.sum(1).mean().log() / torch.cos(median.clamp(max=math.pi / 4))
    assert float(fixed_point) == pytest.approx(scales[-1])


def test_adacos_uses_the_lower_median_of_close_target_angles() -> None:
    """Embeddings near their centres (θ_med < π/4), an even batch: the lower middle angle."""
    torch.manual_seed(0)
    head = create_head("adacos", 4, 3).double().train()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    x = F.normalize(head.weight.detach(), dim=1)[y] + 0.3 * torch.randn(6, 4, dtype=torch.float64)
    s = float(head.s)
    cos = (F.normalize(x, dim=1) @ F.normalize(head.weight.detach(), dim=1).T).tolist()
    theta = sorted(math.acos(row[t]) for row, t in zip(cos, y.tolist(), strict=True))
    assert theta[2] < theta[3] < math.pi / 4
    b_avg = statistics.fmean(
        sum(math.exp(s * c) for j, c in enumerate(row) if j != t)
        for row, t in zip(cos, y.tolist(), strict=True)
    )
    head(x, y)
    assert float(head.s) == pytest.approx(math.log(b_avg) / math.cos(theta[2]), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_adacos_stays_finite_with_many_classes_in_low_precision(dtype: torch.dtype) -> None:
    """10,000 classes, and s̃ large enough that exp(s̃·cos θ) overflows float32."""
    torch.manual_seed(0)
    head = create_head("adacos", 16, 10_000).train()
    x, y = torch.randn(32, 16).to(dtype), torch.randint(0, 10_000, (32,))
    for s in (float(head.s), 150.0):
        head.s.fill_(s)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = head(x, y)
        assert torch.isfinite(loss) and torch.isfinite(head.s) and float(head.s) > 0
        loss.backward()
        assert torch.isfinite(head.weight.grad).all()


def test_arc_target_matches_arcface_and_takes_per_sample_margins() -> None:
    cos = torch.linspace(-1, 1, 201, dtype=torch.float64)[:, None]
    arcface = create_head("arcface", 2, 3, margin=0.3).double()
    assert torch.equal(arc_target(cos, 0.3), arcface.target(cos))
    margins = torch.linspace(0.1, 0.9, 201, dtype=torch.float64)[:, None]
    per_sample = torch.cat([arc_target(c, float(m)) for c, m in zip(cos, margins, strict=True)])
    torch.testing.assert_close(arc_target(cos, margins), per_sample[:, None], rtol=0, atol=1e-15)
    theta = cos.acos()
    torch.testing.assert_close(shifted_cos(cos, margins), torch.cos(theta + margins))


def test_adaface_needs_two_norms_to_estimate_their_std_in_training() -> None:
    head = create_head("adaface", 4, 3)
    x, y = torch.randn(1, 4), torch.tensor([2])
    assert torch.isfinite(head.eval()(x, y))
    with pytest.raises(BatchError, match="at least 2 embeddings"):
        head.train()(x, y)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("adacos", {}, "num_classes ≥ 3"),
        ("sv_softmax", {"margin_type": "angle"}, "'cos' or 'arc'"),
        ("magface", {"lower_norm": 110.0, "upper_norm": 10.0}, "lower_norm < upper_norm"),
        ("adaface", {"t_alpha": 0.0}, "t_alpha in"),
        ("curricularface", {"margin": 28.6}, "in radians"),
    ],
)
def test_adaptive_heads_refuse_invalid_settings(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_head(name, 4, 2 if name == "adacos" else 3, **kwargs)
