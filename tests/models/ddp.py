"""Run scenarios on 2 real processes joined by a gloo process group (CPU), the way torchrun
runs a training step, and bring back what each rank saw.

Every rank builds the same data from fixed seeds and takes its half of the global batch; the
tests compare what the ranks computed with one process computing the whole batch.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fmlkit.models.heads import create_head
from fmlkit.models.heads.partial_fc import create_partial_fc

WORLD = 2
BATCH = 12  # global; each rank takes BATCH / WORLD rows


def global_batch(num_classes: int, labels: list[int] | None = None) -> dict[str, torch.Tensor]:
    """The inputs every rank (and the single-process reference) starts from, in float64."""
    gen = torch.Generator().manual_seed(0)
    y = torch.tensor(labels) if labels else torch.randint(0, num_classes, (BATCH,), generator=gen)
    return {
        "x": torch.randn(BATCH, 8, generator=gen, dtype=torch.float64),
        "y": y,
        "weight": torch.randn(num_classes, 6, generator=gen, dtype=torch.float64),
    }


def backbone() -> torch.nn.Linear:
    torch.manual_seed(1)
    return torch.nn.Linear(8, 6).double()


def local_rows(t: torch.Tensor, rank: int) -> torch.Tensor:
    n = BATCH // WORLD
    return t[rank * n : (rank + 1) * n]


def partial_fc_step(rank: int, num_classes: int, sample_rate: float, labels: list[int]) -> dict:
    """One training step: DDP backbone → PartialFC(arcface) over the gathered batch."""
    data = global_batch(num_classes, labels)
    net = torch.nn.parallel.DistributedDataParallel(backbone())
    head = create_partial_fc("arcface", 6, num_classes, sample_rate=sample_rate).double()
    head.load_state_dict({"weight": data["weight"]})
    torch.manual_seed(100)  # the same negatives drawn by `sample` inside forward
    index, _ = head.sample(data["y"])
    torch.manual_seed(100)
    loss = head(net(local_rows(data["x"], rank)), local_rows(data["y"], rank))
    loss.backward()
    return {
        "loss": loss.detach(),
        "index": None if index is None else index + head.class_start,
        "class_start": head.class_start,
        "weight_grad": head.weight.grad,
        "backbone_grads": [p.grad for p in net.module.parameters()],
        "state_weight": head.state_dict()["weight"],
    }


def stateful_step(rank: int, name: str) -> dict:
    """One training-mode forward of a head that keeps running state, on this rank's half."""
    data = global_batch(5)
    torch.manual_seed(2)
    head = create_head(name, 8, 5).double().train()
    loss = head(local_rows(data["x"], rank), local_rows(data["y"], rank))
    return {"loss": loss.detach(), "buffers": dict(head.named_buffers())}


def _worker(rank: int, rendezvous: str, out: str, scenarios: list[tuple[str, tuple]]) -> None:
    torch.set_num_threads(1)
    # gloo on the loopback interface: not on whatever the host name resolves to at that moment
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)
    try:
        results = [SCENARIOS[name](rank, *args) for name, args in scenarios]
        torch.save(results, Path(out) / f"rank{rank}.pt")
        # as fmlkit.train.loop.train: free the DDP objects and their gloo work while the
        # interpreter is whole, and let both ranks finish, before the group goes
        del results
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


SCENARIOS: dict[str, Callable[..., dict]] = {
    "partial_fc": partial_fc_step,
    "stateful": stateful_step,
}


def run_ranks(scenarios: list[tuple[str, tuple]], tmp: Path) -> list[list[dict[str, Any]]]:
    """Each scenario's results, per rank: ``[rank0 results, rank1 results]``."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(str(tmp / "rendezvous"), str(tmp), scenarios), nprocs=WORLD)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
