"""The training loop: `train(config)` runs a whole training, or resumes one exactly.

`fmlkit.train.build.build_run` makes every part of the run (data, model, head, optimizer,
schedule, scaler, DDP and compile wrappers, validation); this module only loops over them:
steps, logging callbacks, validation calls, checkpoints saved and loaded.

One step = ``train.grad_accum`` batches of ``train.batch_size`` images per process, forward
under autocast (``train.precision``), backward, gradient clipping, one optimizer and scheduler
step. Rank 0 alone logs (metrics.csv, the trackers of the config's ``log`` section, the
progress bar, the caller's callbacks) and saves checkpoints.

**Exact resume.** A checkpoint holds the model, head, optimizer, scheduler, scaler, step, epoch,
the sampler's position in the epoch and every RNG state. Images are augmented from (seed,
epoch, index) and the DataLoader draws its worker seeds from a generator of its own, so a run
resumed from step S sees the same batches and draws the same random numbers from step S + 1
on as one that never stopped: on CPU in fp32 it logs the same losses.

**Bad steps.** An image that cannot be decoded is dropped from its batch and counted. A step
whose loss is not finite (on any process) is skipped — no update — and reported; after
``train.max_nonfinite`` such steps in a row the run stops with `TrainingError`. So does a run
that could decode no image at all by the end of its first epoch (or by its last step, if that
comes first): it would only train on nothing.

**The output folder.** A new run starts in an ``output_dir`` that does not exist or is empty:
one holding anything (a run, or files of the user's own) is refused, never overwritten
(`fmlkit.train.outputs`, which also checks that a checkpoint to resume from is of this run).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from fmlkit.errors import FmlkitError, InputError
from fmlkit.models.collectives import all_reduce_sum
from fmlkit.parallel import torch_threads
from fmlkit.train import build
from fmlkit.train.callbacks import (
    Callback,
    close_callbacks,
    create_callbacks,
    require_trackers,
)
from fmlkit.train.checkpoint import (
    describe_error,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fmlkit.train.config import TrainConfig, config_to_dict, save_config, validate_for_training
from fmlkit.train.distributed import Runtime, barrier, setup_runtime, teardown_runtime
from fmlkit.train.outputs import check_output

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingError(FmlkitError):
    """Training cannot go on (e.g. the loss stayed NaN or infinite)."""


@dataclass(frozen=True)
class TrainReport:
    """What a run did: where, how far, and what it skipped.

    Every process of a torchrun launch gets one; ``is_main`` marks rank 0's, the one that
    wrote the metrics and the checkpoints (``checkpoint`` is None on the other ranks).
    """

    output_dir: Path
    steps: int
    epochs_started: int
    last_loss: float
    skipped_images: int  # over every process
    nonfinite_steps: int
    seconds: float
    checkpoint: Path | None
    is_main: bool  # rank 0's report: the one the command line shows

    def summary(self) -> str:
        """Two lines: steps, time, last loss, what was skipped; the checkpoint and metrics."""
        return (
            f"trained {self.steps} steps in {self.seconds:.0f} s; last loss "
            f"{self.last_loss:.4g}; {self.skipped_images} images skipped, "
            f"{self.nonfinite_steps} non-finite steps skipped\n"
            f"      checkpoint {self.checkpoint}, metrics {self.output_dir / 'metrics.csv'}"
        )


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    device: str | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainReport:
    """Train the configured model (in every process of a torchrun launch).

    Args:
        config: a validated training config.
        resume: continue from the newest complete checkpoint of ``output_dir/checkpoints``
            (``last.pt`` or a newer step file; unreadable ones are skipped with a warning).
        device: ``cpu``, ``cuda``, ``cuda:1`` …; default this rank's GPU if any, else the CPU.
        callbacks: your own `Callback` objects, called on rank 0 after fmlkit's loggers: each
            gets every metrics row (``on_log(step, metrics)``, as metrics.csv records it) and
            ``close()`` once at the end.

    Returns:
        This process's report; under torchrun only rank 0's has ``is_main`` (the one to show).

    Raises:
        ConfigError, InputError: a config or input that cannot be trained on, an
            ``output_dir`` that is not empty (when not resuming), a checkpoint to resume
            from that was trained with another model, head, image size or optimizer, or a
            tracker (``log.wandb``, ``log.mlflow``) not installed or unable to start a run.
        TrainingError: the loss was not finite for ``train.max_nonfinite`` steps in a row,
            not one image could be decoded (see the module's "Bad steps"), or the model or a
            batch does not fit in memory.
    """
    validate_for_training(config)
    require_trackers(config.log)  # a missing wandb or mlflow, before any work
    runtime = setup_runtime(device)
    threads = torch_threads(
        config.train.threads,
        loader_workers=config.train.num_workers,
        processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        what="train.threads",
    )
    try:
        with threads:
            run = _Run(config, runtime, resume=resume, callbacks=callbacks)
            report = run.run()
            # Free the model, its DDP reducer and their pending gloo work now, while the
            # interpreter is whole (held in reference cycles they would go at its
            # finalization, after the group is destroyed: a SIGABRT there), then let every
            # rank finish its collectives before the group goes.
            del run
            gc.collect()
            barrier(runtime)
            return report
    except (MemoryError, RuntimeError) as exc:  # torch's OutOfMemoryError is a RuntimeError
        text = str(exc)
        memory = ("out of memory", "can't allocate memory", "Cannot allocate memory")
        if not isinstance(exc, MemoryError) and not any(m in text for m in memory):
            raise
        raise TrainingError(
            f"out of memory ({text.strip().splitlines()[0] if text.strip() else 'MemoryError'})"
            "; lower train.batch_size, data.image_size or model.embedding_size, or use a "
            "smaller model.backbone"
        ) from exc
    finally:
        teardown_runtime(runtime)


class _Run:
    def __init__(
        self,
        config: TrainConfig,
        runtime: Runtime,
        *,
        resume: bool,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.config, self.runtime = config, runtime
        self.out = Path(config.output_dir)
        found = check_output(self.out, resume, config_to_dict(config))  # before the build
        barrier(runtime)  # every rank checked the folder before rank 0 writes to it
        self.parts = build.build_run(config, runtime, init_weights=found is None)
        self.step, self.epoch, self.skipped, self.nonfinite, self.nonfinite_run = 0, 0, 0, 0, 0
        self.decoded, self.decoded_anywhere = 0, False  # images decoded by this process, by any
        if found is not None:
            self._load(*found)
        self.callbacks: list[Callback] = []
        if runtime.is_main:  # the trackers first: one that cannot start leaves out as it was
            self.callbacks = create_callbacks(
                config,
                self.out,
                resume_step=self.step if resume else None,
                total_steps=self.parts.total_steps,
                step=self.step,
                user=callbacks,
            )
            try:
                save_config(config, self.out / "config.yaml")
            except BaseException:  # e.g. a full disk: the trackers' runs end as failed
                close_callbacks(self.callbacks, failed=True)
                raise

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> TrainReport:
        """The whole run; the callbacks are closed at the end, however it ends."""
        try:
            report = self._train()
        except BaseException:
            close_callbacks(self.callbacks, failed=True)
            raise
        close_callbacks(self.callbacks, failed=False)
        return report

    def _train(self) -> TrainReport:
        started, last_loss, path = time.monotonic(), math.nan, None
        window: list[float] = []
        images, tick = 0, time.monotonic()
        loop, parts = self.config.train, self.parts
        while self.step < parts.total_steps:
            parts.sampler.set_epoch(self.epoch)
            parts.dataset.set_epoch(self.epoch)
            taken = 0
            for batches in _chunks(iter(parts.loader), loop.grad_accum):
                taken += len(batches)
                loss, count = self._step(batches)
                self.step += 1
                images += count * self.runtime.world_size
                if math.isfinite(loss):
                    window.append(loss)
                    last_loss = loss
                last = self.step == parts.total_steps
                if last:
                    self._check_decoded()
                validate = self.step % self.config.val.every_steps == 0 or last
                extra = self._validate() if validate else {}
                if self.step % loop.log_every == 0 or last or extra:
                    now = time.monotonic()
                    self._log(window, images / max(now - tick, 1e-9), extra)
                    window, images, tick = [], 0, time.monotonic()
                if self.step % self.config.checkpoint.every_steps == 0 or last:
                    path = self._save(consumed=taken * loop.batch_size)
                if last:
                    break
            else:
                if taken:  # not a run resumed at an epoch's end
                    self._check_decoded()
                self.epoch += 1
        skipped = self._skipped_everywhere()
        return TrainReport(
            self.out,
            self.step,
            self.epoch + 1,
            last_loss,
            skipped,
            self.nonfinite,
            time.monotonic() - started,
            path,
            self.runtime.is_main,
        )

    def _step(self, batches: list[dict[str, Any]]) -> tuple[float, int]:
        """One optimizer step over ``batches``: the mean loss (NaN when skipped), images used."""
        loop, device, parts = self.config.train, self.runtime.device, self.parts
        dtype = DTYPES[loop.precision]
        total, count, finite = 0.0, 0, True
        parts.optimizer.zero_grad(set_to_none=True)
        for i, loaded in enumerate(batches):
            batch = loaded if parts.decoder is None else parts.decoder(loaded)
            self.skipped += len(batch["skipped"])
            for item in batch["skipped"]:  # every rank names its own
                where = f"rank {self.runtime.rank}: " if self.runtime.distributed else ""
                log.warning("%sskipped %s: %s", where, item.file_name, item.reason)
            images = batch["image"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            self.decoded += len(images)
            if loop.channels_last and len(images):
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                loss = self._loss(images, labels)
            value = float(loss.detach())  # the step's one host sync per batch
            finite = finite and _all_finite(value, self.runtime)
            if not finite:
                break
            last = i == len(batches) - 1
            with self._no_sync(not last):
                parts.scaler.scale(loss / len(batches)).backward()
            total += value
            count += len(images)
        if not finite:
            return self._skip_step()
        self.nonfinite_run = 0
        if loop.grad_clip is not None:
            parts.scaler.unscale_(parts.optimizer)
            params = [p for g in parts.optimizer.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, loop.grad_clip)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        parts.scheduler.step()
        return total / len(batches), count

    def _loss(self, images: Tensor, labels: Tensor) -> Tensor:
        parts = self.parts
        if len(images) < 2:  # all skipped, or all but one (batch norm cannot train on one
            # image: it would raise): a zero loss on every parameter keeps DDP in step
            params = [*parts.model.parameters(), *parts.head.parameters()]
            return sum((p.sum() * 0 for p in params), torch.zeros((), device=images.device))
        loss: Tensor = parts.forward_head(parts.forward_model(images), labels)
        return loss

    def _no_sync(self, skip: bool) -> Any:
        if skip and isinstance(self.parts.forward_model, nn.parallel.DistributedDataParallel):
            return self.parts.forward_model.no_sync()
        return contextlib.nullcontext()

    def _skip_step(self) -> tuple[float, int]:
        self.parts.optimizer.zero_grad(set_to_none=True)
        self.parts.scheduler.step()
        self.nonfinite += 1
        self.nonfinite_run += 1
        if self.runtime.is_main:
            log.warning("step %d: the loss is not finite; the step is skipped", self.step + 1)
        if self.nonfinite_run >= self.config.train.max_nonfinite:
            raise TrainingError(
                f"the loss was not finite for {self.nonfinite_run} steps in a row (up to step "
                f"{self.step + 1}); lower optim.lr, use train.precision=bf16 rather than fp16, "
                "set train.grad_clip, or check the data"
            )
        return math.nan, 0

    def _check_decoded(self) -> None:
        """Stop a run in which no process has decoded a single image yet (at an epoch's end
        and at the last step: every rank calls it at the same points)."""
        if self.decoded_anywhere:
            return
        count = torch.tensor([self.decoded], dtype=torch.int64, device=self.runtime.device)
        self.decoded_anywhere = int(all_reduce_sum(count).item()) > 0
        if not self.decoded_anywhere:
            skipped = self._skipped_everywhere()
            raise TrainingError(
                f"not one image could be decoded up to step {self.step} ({skipped} skipped, "
                "each named in a warning): the run would train on nothing; check the data "
                "(fmlkit prepare marks unreadable files, fmlkit filter drops them)"
            )

    def _skipped_everywhere(self) -> int:
        """Images skipped so far by every rank (each rank counts and logs its own)."""
        count = torch.tensor([self.skipped], dtype=torch.int64, device=self.runtime.device)
        return int(all_reduce_sum(count).item())

    def _validate(self) -> dict[str, float]:
        """Rank 0 scores the pair list (if any) while the others wait at a barrier."""
        metrics = {}
        if self.parts.validation is not None:
            metrics = self.parts.validation(self.parts.model, self.runtime.device)
        barrier(self.runtime)
        return metrics

    def _log(self, window: list[float], img_per_s: float, extra: dict[str, float]) -> None:
        loss = sum(window) / len(window) if window else math.nan
        metrics = {
            **extra,
            "epoch": self.epoch,
            "loss": loss,
            "lr": self.parts.optimizer.param_groups[0]["lr"],
            "img_per_s": img_per_s,
        }
        for callback in self.callbacks:
            callback.on_log(self.step, metrics)

    # -- checkpoints ------------------------------------------------------------------------

    def _save(self, *, consumed: int) -> Path | None:
        parts = self.parts
        head_state = parts.head.state_dict()  # PartialFC gathers its rows: every rank calls it
        skipped = self._skipped_everywhere()  # a collective too
        if not self.runtime.is_main:
            return None
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "sampler": parts.sampler.state_dict(consumed=consumed),
            "model": parts.model.state_dict(),
            "head": head_state,
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(),
            "scaler": parts.scaler.state_dict(),
            "rng": rng_state(),
            "skipped_images": skipped,
            "nonfinite_steps": self.nonfinite,
            "config": config_to_dict(self.config),
        }
        return save_checkpoint(self.out, self.step, state, keep=self.config.checkpoint.keep)

    def _load(self, path: Path, state: dict[str, Any]) -> None:
        try:
            self._restore(state)
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
            raise InputError(
                f"cannot resume from {path}: its saved state does not fit this run "
                f"({describe_error(exc).rstrip('.')}); the data (its classes) or the model "
                "changed since it was saved: resume with what it was trained on, or start a "
                "new run in another output_dir"
            ) from exc
        log.info("resumed from %s at step %d", path, self.step)

    def _restore(self, state: dict[str, Any]) -> None:
        parts = self.parts
        parts.model.load_state_dict(state["model"])
        parts.head.load_state_dict(state["head"])
        parts.optimizer.load_state_dict(state["optimizer"])
        # the schedule comes from the config (a resumed run may train for longer), its
        # position from the checkpoint
        parts.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None]})
        parts.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        parts.sampler.load_state_dict(state["sampler"])  # an epoch's end: its loop ends at once
        # the checkpoint holds the count over every rank: carried on by rank 0 alone
        self.skipped = int(state["skipped_images"]) if self.runtime.is_main else 0
        self.nonfinite = int(state["nonfinite_steps"])
        set_rng_state(state["rng"])


def _chunks(batches: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Groups of ``size`` consecutive batches (an incomplete last group is dropped)."""
    group: list[dict[str, Any]] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []


def _all_finite(loss: float, runtime: Runtime) -> bool:
    """Whether the loss is finite on every process (all skip the step together)."""
    finite = math.isfinite(loss)
    if runtime.distributed:
        flag = torch.tensor([int(finite)], dtype=torch.int32, device=runtime.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        finite = bool(flag.item())
    return finite
