"""Running state of the adaptive heads under DDP: on 2 gloo processes, each with half of the
batch, the state after a training step is the same on both ranks and equals the state one
process reaches on the whole batch."""

from __future__ import annotations

import pytest
import torch

from fmlkit.models.heads import create_head
from tests.models import ddp

STATEFUL = ["curricularface", "adacos", "adaface", "subcenter_arcface"]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[list[dict]]:
    return ddp.run_ranks(
        [("stateful", (name,)) for name in STATEFUL], tmp_path_factory.mktemp("ddp")
    )


@pytest.mark.parametrize("name", STATEFUL)
def test_head_state_is_that_of_the_global_batch_on_every_rank(
    ranks: list[list[dict]], name: str
) -> None:
    data = ddp.global_batch(5)
    torch.manual_seed(2)
    head = create_head(name, 8, 5).double().train()
    initial = {k: v.clone() for k, v in head.named_buffers()}
    loss = head(data["x"], data["y"])
    expected = dict(head.named_buffers())
    assert expected and any(not torch.equal(initial[k], v) for k, v in expected.items())
    case = STATEFUL.index(name)
    for r in range(ddp.WORLD):
        got = ranks[r][case]["buffers"]
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, msg=f"{name}.{key} on rank {r}")
    # each rank's logits use the global state, so the mean of the two half-batch losses is the
    # whole batch's loss
    mean = sum(ranks[r][case]["loss"] for r in range(ddp.WORLD)) / ddp.WORLD
    torch.testing.assert_close(mean, loss.detach())
