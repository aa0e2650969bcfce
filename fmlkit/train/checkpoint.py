"""Training checkpoints: written atomically, loaded with ``weights_only=True``.

``output_dir/checkpoints/step_<step>.pt`` holds everything a run needs to continue exactly
(model, head, optimizer, scheduler, scaler, epoch and position in it, sampler and RNG states,
the resolved config); ``last.pt`` is always the newest complete one. A process killed while
saving leaves at most a hidden temporary file: ``last.pt`` still names the previous step.

Checkpoints hold only tensors and plain Python values (dicts, lists, numbers, strings), so
``torch.load(weights_only=True)`` reads them without unpickling arbitrary objects.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlkit.errors import InputError
from fmlkit.io import atomic_path

LAST = "last.pt"
_STEP = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_dir(output_dir: str | os.PathLike[str]) -> Path:
    return Path(output_dir) / "checkpoints"


def save_checkpoint(
    output_dir: str | os.PathLike[str], step: int, state: Mapping[str, Any], *, keep: int = 0
) -> Path:
    """Write ``state`` as ``step_<step>.pt``, then point ``last.pt`` at it (both atomic), then
    delete all but the ``keep`` newest step files (0 keeps them all; ``last.pt`` always stays).

    Returns:
        The path of the step checkpoint.
    """
    folder = checkpoint_dir(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.pt"
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save(dict(state), f)
        f.flush()
        os.fsync(f.fileno())
    with atomic_path(folder / LAST) as tmp:
        os.link(path, tmp)  # a second name for the same complete file
    if keep > 0:
        for old in step_checkpoints(output_dir)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def step_checkpoints(output_dir: str | os.PathLike[str]) -> list[Path]:
    """The step checkpoints in ``output_dir``, oldest first."""
    folder = checkpoint_dir(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m[1]), p) for p in folder.iterdir() if (m := _STEP.match(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint's state, read with ``weights_only=True`` onto the CPU.

    Raises:
        InputError: the file is missing or is not a readable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise InputError(f"{path} is not a readable fmlkit checkpoint: {exc}") from exc
    if not isinstance(state, dict):
        raise InputError(f"{path} is not an fmlkit checkpoint (found a {type(state).__name__})")
    return state


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's (CPU and CUDA) random states as checkpoint-safe values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": [kind, torch.from_numpy(np.asarray(keys)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `rng_state` saved."""
    random.setstate(_to_tuples(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
