"""Checkpoints: atomic, `last.pt` always complete, pruned, read with weights_only=True, and the
RNG states restore the exact random streams."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from fmlkit.errors import InputError
from fmlkit.train.checkpoint import (
    checkpoint_dir,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    step_checkpoints,
)
from fmlkit.train.optim import Schedule, create_optimizer, create_scheduler


def _state(step: int) -> dict:
    model = torch.nn.Linear(3, 2)
    optim = create_optimizer(model.parameters(), "sgd", lr=0.1)
    scheduler = create_scheduler(optim, Schedule("poly", total_steps=10, warmup_steps=2))
    model(torch.randn(4, 3)).sum().backward()
    optim.step()
    scheduler.step()
    return {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optim.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "config": {"train": {"batch_size": 4, "lr": 0.1}, "head": {"args": {}}},
    }


def test_save_checkpoint_keeps_the_newest_and_points_last_at_it(tmp_path: Path) -> None:
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, _state(step), keep=2)
    names = [p.name for p in step_checkpoints(tmp_path)]
    assert names == ["step_00000020.pt", "step_00000030.pt"]
    assert load_checkpoint(checkpoint_dir(tmp_path) / "last.pt")["step"] == 30
    assert not [p for p in checkpoint_dir(tmp_path).iterdir() if p.name.startswith(".")]


def test_checkpoints_load_with_weights_only_and_restore_optimizer_and_schedule(
    tmp_path: Path,
) -> None:
    state = _state(5)
    save_checkpoint(tmp_path, 5, state)
    loaded = load_checkpoint(checkpoint_dir(tmp_path) / "last.pt")
    model = torch.nn.Linear(3, 2)
    model.load_state_dict(loaded["model"])
    optim = create_optimizer(model.parameters(), "sgd", lr=0.1)
    scheduler = create_scheduler(optim, Schedule("poly", total_steps=10, warmup_steps=2))
    optim.load_state_dict(loaded["optimizer"])  # after the scheduler, which sets the lr
    scheduler.load_state_dict(loaded["scheduler"])
    assert scheduler.last_epoch == 1 and optim.param_groups[0]["lr"] == pytest.approx(0.1)
    assert loaded["config"] == state["config"]


def test_rng_state_restores_every_stream(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(tmp_path, 1, {"rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(2))
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    set_rng_state(load_checkpoint(checkpoint_dir(tmp_path) / "last.pt")["rng"])
    got = (random.random(), np.random.rand(), torch.rand(2))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


def test_a_save_that_fails_leaves_last_pointing_at_the_previous_step(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"step": 1})
    with pytest.raises(Exception, match=r"(?i)pickle|serial|can.t"):
        save_checkpoint(tmp_path, 2, {"step": 2, "bad": lambda: 0})
    assert load_checkpoint(checkpoint_dir(tmp_path) / "last.pt")["step"] == 1
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step_00000001.pt"]
    assert not [p for p in checkpoint_dir(tmp_path).iterdir() if p.name.startswith(".")]


def test_load_checkpoint_refuses_arbitrary_pickles(tmp_path: Path) -> None:
    import pickle

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"x": Path("/etc/passwd")}))
    with pytest.raises(InputError, match="not a readable fmlkit checkpoint"):
        load_checkpoint(evil)
    with pytest.raises(InputError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
