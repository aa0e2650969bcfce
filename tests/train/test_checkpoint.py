"""Checkpoints: atomic, `last.pt` always complete, pruned, read with weights_only=True, the
RNG states restore the exact random streams, and a resume finds the newest complete checkpoint
whatever instant of a save a kill came at."""

from __future__ import annotations

import logging
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from fmlkit.errors import InputError
from fmlkit.train.checkpoint import (
    FAULT_ENV,
    FAULT_POINTS,
    checkpoint_dir,
    load_checkpoint,
    resumable_checkpoint,
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


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_resume_skips_a_truncated_newest_step_file_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for step in (1, 2):
        save_checkpoint(tmp_path, step, _state(step))
    newest = checkpoint_dir(tmp_path) / "step_00000002.pt"
    with newest.open("r+b") as f:  # last.pt is the same file: truncated too
        f.truncate(newest.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="fmlkit.train.checkpoint"):
        path, state = resumable_checkpoint(tmp_path, required=("model", "optimizer"))
    assert (path.name, state["step"]) == ("step_00000001.pt", 1)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert f"{newest} is not a readable fmlkit checkpoint" in caplog.text
    assert "trying an older one" in caplog.text


def test_resume_falls_back_from_an_unreadable_last_pt_to_the_newest_step_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for step in (1, 2):
        save_checkpoint(tmp_path, step, _state(step))
    last = checkpoint_dir(tmp_path) / "last.pt"
    last.unlink()  # not written through: it is a hard link to step 2
    last.write_bytes(b"PK\x03\x04 not a whole zip")
    with caplog.at_level(logging.WARNING, logger="fmlkit.train.checkpoint"):
        path, state = resumable_checkpoint(tmp_path)
    assert (path.name, state["step"]) == ("step_00000002.pt", 2)
    assert f"{last} is not a readable fmlkit checkpoint" in caplog.text


def test_resume_takes_a_step_file_that_last_pt_does_not_name_yet(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, _state(1))
    folder = checkpoint_dir(tmp_path)
    (folder / "last.pt").unlink()  # a kill between the step file's rename and the link
    assert resumable_checkpoint(tmp_path)[0] == folder / "step_00000001.pt"
    save_checkpoint(tmp_path, 2, _state(2))
    os.link(folder / "step_00000001.pt", folder / "last.pt.new")
    (folder / "last.pt.new").replace(folder / "last.pt")  # last.pt names step 1 again
    assert resumable_checkpoint(tmp_path)[1]["step"] == 2


def test_a_copied_last_pt_is_read_for_its_step(tmp_path: Path) -> None:
    for step in (1, 2):
        save_checkpoint(tmp_path, step, _state(step), keep=1)
    folder = checkpoint_dir(tmp_path)
    (folder / "step_00000002.pt").unlink()  # last.pt stands alone, as after a cp -r
    assert (folder / "last.pt").stat().st_nlink == 1
    path, state = resumable_checkpoint(tmp_path)
    assert (path.name, state["step"]) == ("last.pt", 2)


def test_nothing_to_resume_says_what_was_found_and_skipped(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nothing to resume: .* holds no checkpoint"):
        resumable_checkpoint(tmp_path)
    save_checkpoint(tmp_path, 1, {"step": 1})  # readable, but no training state
    (checkpoint_dir(tmp_path) / "step_00000002.pt").write_bytes(b"")
    with pytest.raises(InputError) as caught:
        resumable_checkpoint(tmp_path, required=("model",))
    message = str(caught.value)
    assert message.startswith("nothing to resume: no usable checkpoint in ")
    assert "step_00000002.pt is not a readable fmlkit checkpoint" in message
    assert "step_00000001.pt lacks model" in message
    assert "another output_dir" in message


def test_pruning_keeps_the_saved_step_and_leaves_newer_unreadable_ones(tmp_path: Path) -> None:
    for step in (10, 20):
        save_checkpoint(tmp_path, step, {"step": step}, keep=1)
    folder = checkpoint_dir(tmp_path)
    (folder / "step_00000030.pt").write_bytes(b"truncated")  # a run resumed from step 20
    save_checkpoint(tmp_path, 25, {"step": 25}, keep=1)
    assert _names(folder) == ["last.pt", "step_00000025.pt", "step_00000030.pt"]
    assert resumable_checkpoint(tmp_path)[1]["step"] == 25
    save_checkpoint(tmp_path, 30, {"step": 30}, keep=2)  # replaces the unreadable one
    assert _names(folder) == ["last.pt", "step_00000025.pt", "step_00000030.pt"]
    assert load_checkpoint(folder / "last.pt")["step"] == 30


class _Killed(BaseException):
    pass


# what a kill at each point of step 4's save (keep=1, after step 2's) leaves on disk: the
# visible files, the step last.pt names, whether a hidden temporary file is left, and the
# step a resume continues from
AFTER_KILL = {
    "tmp-written": (["last.pt", "step_00000002.pt"], 2, True, 2),
    "step-renamed": (["last.pt", "step_00000002.pt", "step_00000004.pt"], 2, False, 4),
    "last-tmp": (["last.pt", "step_00000002.pt", "step_00000004.pt"], 2, True, 4),
    "last-linked": (["last.pt", "step_00000002.pt", "step_00000004.pt"], 4, False, 4),
    "pruned": (["last.pt", "step_00000004.pt"], 4, False, 4),
}


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_the_fault_hook_kills_the_save_at_its_point(
    point: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, snapshot = tmp_path / "run", tmp_path / "snapshot"

    def kill(pid: int, sig: int) -> None:  # what SIGKILL would leave, hard links kept
        assert (pid, sig) == (os.getpid(), signal.SIGKILL)
        checkpoint_dir(snapshot).mkdir(parents=True)
        for p in checkpoint_dir(run).iterdir():
            os.link(p, checkpoint_dir(snapshot) / p.name)
        raise _Killed

    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setenv(FAULT_ENV, f"{point}@4")
    save_checkpoint(run, 2, {"step": 2}, keep=1)  # another step's save: untouched
    assert _names(checkpoint_dir(run)) == ["last.pt", "step_00000002.pt"]
    with pytest.raises(_Killed):
        save_checkpoint(run, 4, {"step": 4}, keep=1)
    names, last_step, hidden, resumed = AFTER_KILL[point]
    folder = checkpoint_dir(snapshot)
    assert [n for n in _names(folder) if not n.startswith(".")] == names
    assert any(n.startswith(".") for n in _names(folder)) == hidden
    assert load_checkpoint(folder / "last.pt")["step"] == last_step
    assert resumable_checkpoint(snapshot)[1]["step"] == resumed


def test_a_malformed_fault_hook_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("renamed@4", "pruned", "pruned@four"):
        monkeypatch.setenv(FAULT_ENV, value)
        with pytest.raises(ValueError, match=FAULT_ENV):
            save_checkpoint(tmp_path, 4, {"step": 4})
    assert not checkpoint_dir(tmp_path).exists()
