"""Training checkpoints: written atomically, loaded with ``weights_only=True``.

``output_dir/checkpoints/step_<step>.pt`` holds everything a run needs to continue exactly
(model, head, optimizer, scheduler, scaler, epoch and position in it, sampler and RNG states,
the resolved config); after a save, ``last.pt`` (a hard link) names the newest one. A save
writes the step file under a temporary name and renames it, then links ``last.pt`` the same
way, then prunes: a process killed at any instant leaves complete checkpoints and at most a
hidden temporary file. `resumable_checkpoint` picks the newest complete, readable one, which
may be a step file newer than ``last.pt`` (killed between the rename and the link).

Checkpoints hold only tensors and plain Python values (dicts, lists, numbers, strings), so
``torch.load(weights_only=True)`` reads them without unpickling arbitrary objects.

Test hook: ``FMLKIT_FAULT_SAVE=<point>@<step>`` makes `save_checkpoint` SIGKILL its own process
at that point of the save of that step, to test what a kill leaves: ``tmp-written`` (the step
file written under its temporary name), ``step-renamed`` (the step file in place, ``last.pt``
not yet linked), ``last-tmp`` (``last.pt``'s temporary link made), ``last-linked`` (``last.pt``
renamed, no pruning yet), ``pruned`` (the save done). Unset, it does nothing.
"""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlkit.errors import InputError
from fmlkit.io import atomic_path

log = logging.getLogger(__name__)

LAST = "last.pt"
_STEP = re.compile(r"^step_(\d+)\.pt$")
FAULT_ENV = "FMLKIT_FAULT_SAVE"
FAULT_POINTS = ("tmp-written", "step-renamed", "last-tmp", "last-linked", "pruned")


def checkpoint_dir(output_dir: str | os.PathLike[str]) -> Path:
    return Path(output_dir) / "checkpoints"


def save_checkpoint(
    output_dir: str | os.PathLike[str], step: int, state: Mapping[str, Any], *, keep: int = 0
) -> Path:
    """Write ``state`` as ``step_<step>.pt``, then point ``last.pt`` at it (both atomic), then
    prune the older step files to keep ``keep`` in all, this one included (0 keeps them all).

    Pruning never deletes this step's file (the one ``last.pt`` names), nor step files
    numbered above ``step`` (unreadable ones a resumed run went past; this run will replace
    them when it gets there).

    Returns:
        The path of the step checkpoint.
    """
    fault = _fault_point(step)
    folder = checkpoint_dir(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.pt"
    with atomic_path(path) as tmp:
        with tmp.open("wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        _reached("tmp-written", fault)
    _reached("step-renamed", fault)
    with atomic_path(folder / LAST) as tmp:
        os.link(path, tmp)  # a second name for the same complete file
        _reached("last-tmp", fault)
    _reached("last-linked", fault)
    if keep > 0:
        older = [p for n, p in _numbered(output_dir) if n < step]
        for old in older[: max(len(older) - (keep - 1), 0)]:
            old.unlink(missing_ok=True)
    _reached("pruned", fault)
    return path


def step_checkpoints(output_dir: str | os.PathLike[str]) -> list[Path]:
    """The step checkpoints in ``output_dir``, oldest first."""
    return [p for _, p in _numbered(output_dir)]


def _numbered(output_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """(step, path) of each step checkpoint, oldest first."""
    folder = checkpoint_dir(output_dir)
    if not folder.is_dir():
        return []
    return sorted((int(m[1]), p) for p in folder.iterdir() if (m := _STEP.match(p.name)))


def resumable_checkpoint(
    output_dir: str | os.PathLike[str], *, required: Collection[str] = ()
) -> tuple[Path, dict[str, Any]]:
    """The newest complete, readable checkpoint of ``output_dir`` and its state.

    The candidates are ``last.pt`` and the step files, newest step first. Each is loaded as
    `load_checkpoint` does and must hold ``step`` and every key of ``required``; one that does
    not (truncated, unreadable, incomplete) is skipped with a logged warning naming it and why,
    and the next older one is tried. ``last.pt`` is normally a hard link to a step file and is
    then tried as that file; a separate ``last.pt`` (e.g. in a copied folder) is read first to
    learn its step.

    Raises:
        InputError: no candidate is usable; says what was found and why each was skipped.
    """
    folder = checkpoint_dir(output_dir)
    need = {"step", *required}
    skipped: list[str] = []
    candidates: list[tuple[int, Path, dict[str, Any] | None]] = [
        (n, p, None) for n, p in _numbered(output_dir)
    ]
    last = folder / LAST
    if last.is_file() and not any(p.samefile(last) for _, p, _ in candidates):
        state = _usable(last, need, skipped)
        if state is not None:
            candidates.append((int(state["step"]), last, state))
    for _, path, loaded in sorted(candidates, key=lambda c: c[0], reverse=True):
        state = loaded if loaded is not None else _usable(path, need, skipped)
        if state is not None:
            return path, state
    if not skipped:
        raise InputError(
            f"nothing to resume: {folder} holds no checkpoint ({LAST} or step_<N>.pt); "
            "run without --resume to start"
        )
    raise InputError(
        f"nothing to resume: no usable checkpoint in {folder}; skipped {'; '.join(skipped)}. "
        f"Start a new run in another output_dir, or delete {folder}"
    )


def _usable(path: Path, need: set[str], skipped: list[str]) -> dict[str, Any] | None:
    """``path``'s state if it loads and holds every key of ``need``; else log, note, None."""
    try:
        state = load_checkpoint(path)
    except InputError as exc:
        reason = str(exc)
    else:
        missing = sorted(need - state.keys())
        if not missing:
            return state
        reason = f"{path} lacks {', '.join(missing)} (not a training checkpoint)"
    log.warning("skipping a checkpoint: %s; trying an older one", reason)
    skipped.append(reason)
    return None


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint's state, read with ``weights_only=True`` onto the CPU.

    Raises:
        InputError: the file is missing or is not a readable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is not a readable fmlkit checkpoint: the file is empty")
    try:
        with warnings.catch_warnings():  # e.g. torch's note on a pickle protocol it did not write
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise InputError(
            f"{path} is not a readable fmlkit checkpoint: {describe_error(exc)}"
        ) from exc
    if not isinstance(state, dict):
        raise InputError(f"{path} is not an fmlkit checkpoint (found a {type(state).__name__})")
    return state


def describe_error(error: Exception, *, limit: int = 240) -> str:
    """A torch error (``torch.load``, ``load_state_dict``) as one line of at most ``limit``
    characters: its first two lines. A pickle asking for Python objects (code it could run)
    is named as such: torch's own text would suggest loading it with weights_only=False."""
    text = str(error)
    unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)|unsupported GLOBAL ([\w.]+)", text)
    if unsafe:
        name = next(g for g in unsafe.groups() if g)
        return (
            f"it asks for the Python object {name}, and only tensors and plain values are "
            "loaded (a pickle of other objects can run code); nothing in it was run"
        )
    if "Weights only load failed" in text:
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        return (
            f"it is a pickle that holds more than tensors and plain values "
            f"({detail[1].strip() if detail else 'refused by torch.load(weights_only=True)'}), "
            "and only those are loaded (other objects can run code); nothing in it was run"
        )
    if "PytorchStreamReader" in text:  # a cut or damaged zip: torch's first sentence is enough
        return text.split(". ", 1)[0] + " (the file is truncated or damaged)"
    lines = [line.strip() for line in text.splitlines() if line.strip()][:2]
    line = " ".join(lines) or type(error).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


#: the config keys a resumed run must share with its checkpoint: they shape the saved weights
#: and optimizer state (other keys may change on resume, e.g. ``train.max_steps``)
RESUME_SAME = (
    "data.image_size",
    "model.backbone",
    "model.embedding_size",
    "head.name",
    "head.partial_fc.sample_rate",
    "optim.name",
)


def check_same_run(path: Path, state: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Refuse to resume from the checkpoint ``path`` (its ``state``) a run whose config
    (``current``, plain data) sets any of `RESUME_SAME` otherwise, naming each difference.

    Raises:
        InputError: e.g. "it was trained with model.backbone mobilefacenet, the config says
            iresnet18".
    """
    saved = state.get("config")
    if not isinstance(saved, Mapping):
        raise InputError(f"cannot resume from {path}: it holds no config (not a training "
                         "checkpoint of fmlkit)")  # fmt: skip
    differences = [
        f"{key} {_dotted(saved, key)}, the config says {_dotted(current, key)}"
        for key in RESUME_SAME
        if _dotted(saved, key) != _dotted(current, key)
    ]
    if differences:
        raise InputError(
            f"cannot resume from {path}: it was trained with {'; '.join(differences)}. "
            "Resume with the checkpoint's settings, or start a new run in another output_dir"
        )


def _dotted(data: Any, key: str) -> Any:
    for part in key.split("."):
        data = data.get(part) if isinstance(data, Mapping) else None
    return data


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


def _fault_point(step: int) -> str | None:
    """The point at which the test hook ``FMLKIT_FAULT_SAVE`` kills the save of ``step``."""
    value = os.environ.get(FAULT_ENV)
    if not value:
        return None
    point, _, at = value.partition("@")
    if point not in FAULT_POINTS or not at.isdigit():
        raise ValueError(
            f"{FAULT_ENV}={value!r}: expected <point>@<step> with <point> one of "
            f"{', '.join(FAULT_POINTS)}"
        )
    return point if int(at) == step else None


def _reached(point: str, fault: str | None) -> None:
    if point == fault:
        os.kill(os.getpid(), signal.SIGKILL)
