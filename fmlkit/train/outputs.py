"""A run's output folder, checked before anything is built: a new run starts only in an
absent or empty ``output_dir`` (one holding a run, or files of the user's own, is refused, never
overwritten); a resumed run needs a complete checkpoint there, of the same run
(`check_output`). The checkpoints themselves are `fmlkit.train.checkpoint`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmlkit.errors import InputError
from fmlkit.io import check_not_in_store
from fmlkit.train.checkpoint import (
    LAST,
    check_same_run,
    checkpoint_dir,
    resumable_checkpoint,
    step_checkpoints,
)

#: what the loop reads from a checkpoint to resume (`fmlkit.train.loop` saves these and the
#: config)
RESUME_KEYS = (
    "step",
    "epoch",
    "sampler",
    "model",
    "head",
    "optimizer",
    "scheduler",
    "scaler",
    "rng",
    "skipped_images",
    "nonfinite_steps",
)


def check_output(
    out: Path, resume: bool, config: Mapping[str, Any]
) -> tuple[Path, dict[str, Any]] | None:
    """Resuming: the checkpoint to resume from and its state. Starting: None, once it is
    sure ``out`` holds no run (a ``last.pt`` or a step file: a run killed before its first
    ``last.pt`` link is still a run) and nothing else: it must not exist or be empty.

    The checkpoint must come from the same run as ``config`` (the resolved config, as plain
    data): same backbone, embedding size, image size, head and optimizer.

    Raises:
        InputError: nothing to resume, a run to overwrite, or a folder that is not empty.
        ConfigError: a checkpoint trained with another model, head, image size or optimizer.
    """
    check_not_in_store(out, what="output_dir")  # a pipeline's run: never resumed or written
    if resume:
        resumable = resumable_checkpoint(out, required=RESUME_KEYS)
        check_same_run(*resumable, config)
        return resumable
    held = [checkpoint_dir(out) / LAST, *reversed(step_checkpoints(out))]
    found = next((p for p in held if p.is_file()), None)
    if found is not None:
        raise InputError(
            f"{out} already holds a run (checkpoints/{found.name}); pass --resume to continue "
            "it, or choose another output_dir"
        )
    if out.exists() and not out.is_dir():
        raise InputError(f"output_dir {out} is a file, not a folder; choose another output_dir")
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if names:
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        raise InputError(
            f"output_dir {out} is not empty (it holds {shown}) and holds no run to resume; a "
            "new run needs an absent or empty folder, so that it overwrites nothing: choose "
            "another output_dir"
        )
    return None
