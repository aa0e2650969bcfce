"""Weights & Biases: one W&B run per training run, continued by ``--resume``.

The run's id is kept in ``output_dir/tracking.json`` once W&B has started it, and a resumed
run passes it back with ``resume="allow"``. Every metrics row is logged at its step under its
grouped tag; the flattened config is the run's config. W&B cannot rewind a run: rows a killed
run had logged past its checkpoint stay, and W&B ignores the resumed run's rows for those
steps (a step must be larger than the last one logged), so its history continues from the
first step past them. ``wandb`` is imported here only, when ``log.wandb`` is enabled.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmlkit.errors import ConfigError
from fmlkit.train.config import TrainConfig
from fmlkit.train.loggers.run_ids import read_run_id, write_run_id
from fmlkit.train.loggers.tags import hyperparameters, metric_tag

TRACKER = "wandb"
WANDB_DIR = "wandb"  # W&B's own folder in ``dir``: output_dir/wandb
_ID_ALPHABET = string.ascii_lowercase + string.digits


class WandbRun:
    """Log the metrics rows of the run in ``out`` to a W&B run (``config.log.wandb``).

    Raises:
        ConfigError: W&B could not start a run (not logged in, no network in online mode, …).
    """

    def __init__(self, config: TrainConfig, out: Path, *, resume_step: int | None) -> None:
        import wandb

        settings = config.log.wandb
        run_id = read_run_id(out, TRACKER) if resume_step is not None else None
        if run_id is None:
            run_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))  # as W&B's own
        try:
            self.run: Any = wandb.init(
                project=settings.project,
                entity=settings.entity,
                name=settings.name or out.resolve().name,
                group=settings.group,
                tags=list(settings.tags),
                mode=settings.mode,
                dir=str(out),
                id=run_id,
                resume="allow",
                job_type="train",
                config=hyperparameters(config),
            )
        except Exception as exc:  # wandb's errors share no base class worth naming
            why = " ".join(str(exc).split())[:300] or type(exc).__name__  # on one line
            raise ConfigError(
                f"log.wandb: W&B could not start run {run_id} of project {settings.project} "
                f"({why}); run `wandb login`, or set log.wandb.mode=offline (sync later with "
                "`wandb sync`), or log.wandb.enabled=false"
            ) from exc
        self.run_id = run_id
        write_run_id(out, TRACKER, run_id)

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log({metric_tag(k): float(v) for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        self.run.finish()

    def abort(self) -> None:
        """End the run as failed (the training raised)."""
        self.run.finish(exit_code=1)
