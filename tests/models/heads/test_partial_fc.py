"""PartialFC against the unsharded head: in one process, and on 2 gloo processes with a DDP
backbone (loss, backbone gradients and each rank's class-centre gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fmlkit.errors import BatchError, ConfigError
from fmlkit.models.heads import create_head
from fmlkit.models.heads.partial_fc import create_partial_fc, shard_range
from tests.models import ddp

# labels of the global batch (12 rows): rank 0's six rows, then rank 1's
SPREAD = [3, 150, 3, 77, 190, 101, 5, 150, 60, 199, 0, 120]  # in both halves of 200 classes
MANY = [0, 3, 5, 7, 9, 11, 20, 22, 25, 27, 33, 39]  # 6 positives per shard of 20


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[list[dict]]:
    return ddp.run_ranks(
        [
            ("partial_fc", (10, 1.0, [])),
            ("partial_fc", (200, 0.1, SPREAD)),  # 10 rows a shard: positives + negatives
            ("partial_fc", (40, 0.1, MANY)),  # 2 rows a shard: more positives than that
        ],
        tmp_path_factory.mktemp("ddp"),
    )


def _reference(num_classes: int, labels: list[int], classes: torch.Tensor | None) -> dict:
    """The unsharded arcface head on the whole batch, over ``classes`` (all when None)."""
    data = ddp.global_batch(num_classes, labels)
    net = ddp.backbone()
    weight, y = data["weight"], data["y"]
    if classes is not None:
        weight, y = weight[classes], torch.searchsorted(classes, y)
    head = create_head("arcface", 6, len(weight)).double()
    head.load_state_dict({"weight": weight})
    loss = head(net(data["x"]), y)
    loss.backward()
    return {
        "loss": loss.detach(),
        "backbone_grads": [p.grad for p in net.parameters()],
        "weight_grad": head.weight.grad,
    }


@pytest.mark.parametrize("case", [0, 1, 2])
def test_partial_fc_on_two_processes_equals_the_unsharded_head(
    ranks: list[list[dict]], case: int
) -> None:
    num_classes, labels = [(10, []), (200, SPREAD), (40, MANY)][case]
    per_rank = [ranks[r][case] for r in range(ddp.WORLD)]
    sampled = None if per_rank[0]["index"] is None else torch.cat([r["index"] for r in per_rank])
    expected = _reference(num_classes, labels, sampled)
    full = ddp.global_batch(num_classes, labels)["weight"]
    for r, got in enumerate(per_rank):
        torch.testing.assert_close(got["loss"], expected["loss"])
        for g, e in zip(got["backbone_grads"], expected["backbone_grads"], strict=True):
            torch.testing.assert_close(g, e)  # after DDP's averaging over the 2 ranks
        start, count = shard_range(num_classes, ddp.WORLD, r)
        assert got["class_start"] == start and got["weight_grad"].shape == (count, 6)
        torch.testing.assert_close(got["state_weight"], full)  # gathered for checkpoints
        rows = torch.arange(start, start + count)
        if sampled is None:
            torch.testing.assert_close(got["weight_grad"], expected["weight_grad"][rows])
        else:  # sampled rows get the reference's gradient, the others none
            mine = got["index"]
            where = torch.searchsorted(sampled, mine)
            torch.testing.assert_close(
                got["weight_grad"][mine - start], expected["weight_grad"][where]
            )
            unused = torch.ones(count, dtype=torch.bool)
            unused[mine - start] = False
            assert not got["weight_grad"][unused].any()


@pytest.mark.parametrize(("case", "rows"), [(1, 10), (2, 6)])
def test_partial_fc_sampling_keeps_every_positive_class(
    ranks: list[list[dict]], case: int, rows: int
) -> None:
    """200 classes at rate 0.1: 10 rows a shard, the batch's positives among them; 40 classes:
    2 rows a shard, but each shard has 6 positives, and all are kept."""
    labels = [SPREAD, MANY][case - 1]
    sampled = torch.cat([ranks[r][case]["index"] for r in range(ddp.WORLD)])
    assert set(labels) <= set(sampled.tolist())
    for r in range(ddp.WORLD):
        assert len(ranks[r][case]["index"]) == rows
    assert len(set(sampled.tolist())) == len(sampled)


def test_partial_fc_in_one_process_is_the_plain_head_and_shares_its_checkpoint() -> None:
    torch.manual_seed(0)
    plain = create_head("cosface", 6, 9, margin=0.4).double()
    partial = create_partial_fc("cosface", 6, 9, margin=0.4).double()
    partial.load_state_dict(plain.state_dict())
    x, y = torch.randn(7, 6, dtype=torch.float64, requires_grad=True), torch.randint(0, 9, (7,))
    torch.testing.assert_close(partial(x, y), plain(x, y))
    assert torch.autograd.gradcheck(
        lambda e, w: torch.func.functional_call(partial, {"weight": w}, (e, y)), (x, partial.weight)
    )
    back = create_head("cosface", 6, 9, margin=0.4).double()
    back.load_state_dict(partial.state_dict())
    torch.testing.assert_close(back.weight, plain.weight)


def test_partial_fc_in_one_process_with_sampling_is_the_head_on_the_sampled_classes() -> None:
    torch.manual_seed(0)
    partial = create_partial_fc("combined", 6, 50, sample_rate=0.2).double()
    x, y = torch.randn(5, 6, dtype=torch.float64), torch.tensor([4, 4, 17, 30, 49])
    torch.manual_seed(3)
    index, local = partial.sample(y)
    torch.manual_seed(3)
    loss = partial(x, y)
    assert index is not None and len(index) == 10 and set(y.tolist()) <= set(index.tolist())
    plain = create_head("combined", 6, 10).double()
    plain.load_state_dict({"weight": partial.weight[index].detach()})
    torch.testing.assert_close(loss, plain(x, local))
    torch.testing.assert_close(index[local], y)


def test_shard_range_covers_every_class_once() -> None:
    for classes in (2, 7, 10, 101):
        for world in range(1, min(classes, 8) + 1):
            blocks = [shard_range(classes, world, r) for r in range(world)]
            assert blocks[0][0] == 0 and sum(n for _, n in blocks) == classes
            assert all(s + n == blocks[i + 1][0] for i, (s, n) in enumerate(blocks[:-1]))
            assert max(n for _, n in blocks) - min(n for _, n in blocks) <= 1


def test_partial_fc_errors() -> None:
    with pytest.raises(ConfigError, match=r"Usable: .*arcface.*combined.*cosface.*normface"):
        create_partial_fc("softmax", 6, 10)
    with pytest.raises(ConfigError, match="sample_rate"):
        create_partial_fc("arcface", 6, 10, sample_rate=0.0)
    with pytest.raises(ConfigError, match="takes no 'm'"):
        create_partial_fc("arcface", 6, 10, m=0.5)
    partial = create_partial_fc("arcface", 6, 10)
    with pytest.raises(ConfigError, match=r"shape \(12, 6\)"):
        partial.load_state_dict({"weight": torch.zeros(12, 6)})
    with pytest.raises(BatchError, match=r"\[0, 10\), found \[10\]"):
        partial(torch.randn(2, 6), torch.tensor([1, 10]))
    assert F.normalize(partial.weight).isfinite().all()
