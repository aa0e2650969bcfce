"""A training run killed with SIGKILL at each instant of a checkpoint save resumes with
`--resume` and logs the same losses as a run that never stopped.

The kill is deterministic: ``FMLKIT_FAULT_SAVE=<point>@<step>`` (fmlkit/train/checkpoint.py)
makes the save of that step kill its own process at that point. Every run is tiny (6 steps, a
checkpoint every 2, one kept) and single-threaded: the same thread count for the reference and
the resumed runs (float sums depend on it), and no OpenMP threads fighting over a small, busy
machine, which slows such a run down by tens of seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fmlkit.train.checkpoint import FAULT_ENV, FAULT_POINTS
from tests.train.test_loop import _config_file, _losses, _overrides, write_images

STEPS = ("train.max_steps=6", "checkpoint.every_steps=2", "checkpoint.keep=1")
# the step a run killed at each point of step 4's save resumes from: the newest complete
# checkpoint, step 4's once its file is renamed into place, even before last.pt names it
RESUMED_FROM = {
    "tmp-written": 2,
    "step-renamed": 4,
    "last-tmp": 4,
    "last-linked": 4,
    "pruned": 4,
}
CASES = [(point, 4, RESUMED_FROM[point]) for point in FAULT_POINTS]
CASES.append(("step-renamed", 2, 2))  # the first save: no last.pt at all yet


def _fmlkit(*args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m fmlkit -v ARGS`` on one thread, with the fault hook set to ``fault``."""
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    env["OMP_NUM_THREADS"] = "1"
    if fault is not None:
        env[FAULT_ENV] = fault
    command = [sys.executable, "-m", "fmlkit", "-v", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def reference(images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    """The losses of the same run, never interrupted: step → loss as metrics.csv writes it."""
    folder = tmp_path_factory.mktemp("whole")
    out = folder / "run"
    done = _fmlkit("train", "--config", _config_file(folder), *_overrides(images, out, *STEPS))
    assert done.returncode == 0, done.stderr[-3000:]
    losses = _losses(out)
    assert sorted(losses) == list(range(1, 7))
    return losses


@pytest.mark.slow
@pytest.mark.parametrize(("point", "step", "resumed_from"), CASES)
def test_a_run_killed_at_any_point_of_a_save_resumes_with_the_same_losses(
    point: str,
    step: int,
    resumed_from: int,
    images: Path,
    reference: dict[int, str],
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    args = ["train", "--config", _config_file(tmp_path), *_overrides(images, out, *STEPS)]
    killed = _fmlkit(*args, fault=f"{point}@{step}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert max(_losses(out)) == step  # the step's row is logged before its save
    resumed = _fmlkit(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {resumed_from}\n" in resumed.stderr  # "resumed from … at step N"
    assert resumed.stdout.startswith("trained 6 steps in ")  # the report's summary()
    newest = out / "checkpoints" / "step_00000006.pt"
    assert resumed.stdout.endswith(f"checkpoint {newest}, metrics {out / 'metrics.csv'}\n")
    assert _losses(out) == reference
