"""The training configuration: a typed schema, YAML loading with dotted overrides, saving.

A config is one YAML mapping with the sections ``data``, ``model``, ``head``, ``optim``,
``schedule``, ``train``, ``val``, ``checkpoint``, ``log`` and the keys ``output_dir`` and
``seed``. Every key has a default, so an empty file is a valid config; the dataset itself
comes from overrides (``data.parquet=DIR`` or ``data.dataset_info=CSV data.root=DIR``), which
`validate_for_training` asks for. `load_config` reads a file, applies ``key=value``
overrides and checks everything before anything runs: types, ranges, choices and unknown
keys, all reported in one `ConfigError`. `save_config` writes the resolved config so that
`load_config` gives it back.

This module holds every section but ``data``, which is `fmlkit.train.data_config`'s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fmlkit.errors import ConfigError, InputError
from fmlkit.io import atomic_write_text
from fmlkit.schema import (
    Section,
    apply_override,
    bounded,
    dump_yaml,
    from_dict,
    parse_yaml,
    raise_problems,
    to_dict,
)
from fmlkit.train.data_config import DataConfig

# Bounds no real run comes near, so that a typo cannot ask for terabytes or a fork bomb: the
# in-house nets size their last layer by image_size² × embedding_size (image_size=100000 asks
# for 80 GB before the first step). data.image_size's bound is in `fmlkit.train.data_config`.
MAX_EMBEDDING_SIZE = 8192  # (512 is usual)
MAX_WORKERS = 256  # DataLoader workers per process
MAX_THREADS = 1024  # torch intra-op threads per process


_BACKBONE = re.compile(r"(timm:)?[A-Za-z0-9][\w.\-/]*")


@dataclass(frozen=True, kw_only=True)
class ModelConfig(Section):
    """The embedding network: ``backbone`` is ``timm:<model>`` (any timm model, built with
    pretrained=False) or an in-house net (iresnet18/34/50/100, mobilefacenet); the name is
    checked against the backbone registry when the model is built.

    ``init`` starts the backbone from a weights file instead of random weights: an
    arcface_torch ``backbone.pth`` (a bare state dict; r18/r34/r50/r100 are iresnet18/…/100,
    mbf is mobilefacenet) or a fmlkit checkpoint's backbone; the head starts fresh. With
    ``init_strict`` every tensor must fit (an error names each key that does not); without,
    those that fit are loaded and the rest, logged, start fresh (e.g. another embedding_size).
    A resumed run takes its weights from its checkpoint, not from ``init``.
    """

    backbone: str = "iresnet50"
    embedding_size: int = bounded(512, ge=1, le=MAX_EMBEDDING_SIZE)
    init: str | None = None
    init_strict: bool = True

    def problems(self) -> Iterable[tuple[str, str]]:
        if not _BACKBONE.fullmatch(self.backbone):
            yield "backbone", f"expected timm:<model> or a backbone name, found {self.backbone!r}"
        if self.init is not None and not self.init.strip():
            yield "init", "expected a weights file, found an empty string"


@dataclass(frozen=True, kw_only=True)
class PartialFCConfig(Section):
    """PartialFC: each step scores the batch against its classes' rows plus random others,
    ``sample_rate`` × the classes in all; None trains the plain head."""

    sample_rate: float | None = bounded(None, gt=0, le=1)


@dataclass(frozen=True, kw_only=True)
class HeadConfig(Section):
    """The margin head or metric loss: ``name`` from the head registry, ``args`` its keywords
    (free-form here but for finite numbers, checked by the head when it is built, e.g.
    ``{margin: 0.5, scale: 64}``)."""

    name: str = "arcface"
    args: dict[str, Any] = field(default_factory=dict)
    partial_fc: PartialFCConfig = field(default_factory=PartialFCConfig)

    def problems(self) -> Iterable[tuple[str, str]]:
        for name, value in self.args.items():  # as for every float of the schema
            if isinstance(value, float) and not math.isfinite(value):
                yield f"args.{name}", f"expected a finite number, found float {value!r}"


@dataclass(frozen=True, kw_only=True)
class OptimConfig(Section):
    """The optimiser. ``lr`` is the learning rate per 1024 images of global batch, scaled
    linearly: the rate used is lr × global_batch / 1024 (`fmlkit.train.optim.scaled_lr`),
    where global_batch = train.batch_size × processes × train.grad_accum. ``momentum`` is
    SGD's (AdamW keeps its default betas); ``weight_decay`` is decoupled for AdamW, L2 for
    SGD."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = bounded(0.1, gt=0)
    momentum: float = bounded(0.9, ge=0, lt=1)
    weight_decay: float = bounded(5e-4, ge=0)


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig(Section):
    """The learning-rate schedule over optimiser steps: a linear warmup from 0 over
    ``warmup_steps``, then ``poly`` (lr × (1 − t)^power, t the fraction of the remaining steps
    done), ``cosine`` (to 0) or ``step`` (× gamma at each of ``milestones``, in steps)."""

    name: Literal["poly", "cosine", "step"] = "poly"
    warmup_steps: int = bounded(0, ge=0)
    power: float = bounded(1.0, gt=0)
    milestones: tuple[int, ...] = bounded((), ge=1)
    gamma: float = bounded(0.1, gt=0, le=1)

    def problems(self) -> Iterable[tuple[str, str]]:
        if self.name == "step" and not self.milestones:
            yield "milestones", "expected at least one step for schedule.name=step, found none"
        if list(self.milestones) != sorted(set(self.milestones)):
            yield "milestones", f"expected increasing steps, found {list(self.milestones)}"


@dataclass(frozen=True, kw_only=True)
class LoopConfig(Section):
    """The ``train`` section: how the loop runs. A step is one optimiser update (``grad_accum``
    batches). The run lasts ``max_steps`` steps when that is set, else ``epochs`` epochs
    (`total_steps`).

    Attributes:
        batch_size: images per process per forward pass.
        grad_clip: the largest global gradient norm (clipped above it); None = no clipping.
        precision: fp32, or autocast to bf16, or to fp16 with loss scaling.
        sampler: ``random`` order, or ``m_per_class`` (batches of ``m_per_class`` images of
            each class, for pair losses).
        log_every: steps between metric rows.
        max_nonfinite: consecutive non-finite losses (each step skipped) before the run stops.
        threads: torch's intra-op threads in each training process; None (auto) takes the
            CPUs this process may use, shared among torchrun's local processes, less
            ``num_workers`` (each loader worker runs one thread), at least 1
            (`fmlkit.parallel.auto_threads`). torch's own default, a thread per core, slows
            a step down when the loader workers need those cores too.
    """

    batch_size: int = bounded(128, ge=1)
    epochs: int | None = bounded(20, ge=1)
    max_steps: int | None = bounded(None, ge=1)
    grad_accum: int = bounded(1, ge=1)
    grad_clip: float | None = bounded(5.0, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    compile: bool = False
    num_workers: int = bounded(2, ge=0, le=MAX_WORKERS)
    sampler: Literal["random", "m_per_class"] = "random"
    m_per_class: int = bounded(4, ge=2)
    log_every: int = bounded(10, ge=1)
    max_nonfinite: int = bounded(20, ge=1)
    threads: int | None = bounded(None, ge=1, le=MAX_THREADS)

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimiser steps in the run: ``max_steps`` if set, else epochs × ``steps_per_epoch``."""
        if self.max_steps is not None:
            return self.max_steps
        assert self.epochs is not None  # checked by `problems`
        return self.epochs * steps_per_epoch

    def problems(self) -> Iterable[tuple[str, str]]:
        if self.epochs is None and self.max_steps is None:
            yield "epochs", "expected train.epochs or train.max_steps, found neither"
        if self.sampler == "m_per_class" and self.batch_size % self.m_per_class:
            yield (
                "batch_size",
                f"expected a multiple of train.m_per_class ({self.m_per_class}) with the "
                f"m_per_class sampler, found {self.batch_size}",
            )


@dataclass(frozen=True, kw_only=True)
class ValConfig(Section):
    """Verification during training: the ``pairs`` file (images under ``root``) is evaluated
    every ``every_steps`` steps; no validation when ``pairs`` is None."""

    pairs: str | None = None
    root: str | None = None
    every_steps: int = bounded(1000, ge=1)


@dataclass(frozen=True, kw_only=True)
class CheckpointConfig(Section):
    """A checkpoint every ``every_steps`` steps; the newest ``keep`` are kept (``last.pt``, the
    newest complete one, always)."""

    every_steps: int = bounded(1000, ge=1)
    keep: int = bounded(3, ge=1)


@dataclass(frozen=True, kw_only=True)
class WandbConfig(Section):
    """Weights & Biases (``pip install wandb``): one W&B run per fmlkit run, its id kept in
    ``output_dir/tracking.json`` so that ``--resume`` continues the same run. ``name``
    defaults to the output folder's name; ``mode`` null leaves it to W&B (``WANDB_MODE``, else
    online). Its local files go to ``output_dir/wandb``."""

    enabled: bool = False
    project: str = "fmlkit"
    entity: str | None = None
    name: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    mode: Literal["online", "offline"] | None = None

    def problems(self) -> Iterable[tuple[str, str]]:
        if not self.project.strip():
            yield "project", "expected a W&B project name, found an empty string"


@dataclass(frozen=True, kw_only=True)
class MlflowConfig(Section):
    """MLflow (``pip install mlflow-skinny`` or ``mlflow``): one MLflow run per fmlkit run in
    ``experiment``, its id kept in ``output_dir/tracking.json`` so that ``--resume`` continues
    it. ``tracking_uri`` null means ``MLFLOW_TRACKING_URI`` when set, else a file store in
    ``output_dir/mlruns``; ``run_name`` defaults to the output folder's name."""

    enabled: bool = False
    tracking_uri: str | None = None
    experiment: str = "fmlkit"
    run_name: str | None = None

    def problems(self) -> Iterable[tuple[str, str]]:
        if not self.experiment.strip():
            yield "experiment", "expected an MLflow experiment name, found an empty string"
        if self.tracking_uri is not None and not self.tracking_uri.strip():
            yield "tracking_uri", "expected a URI or a folder, found an empty string"


@dataclass(frozen=True, kw_only=True)
class LogConfig(Section):
    """Where rank 0 logs the metrics rows besides ``metrics.csv`` (always written):
    TensorBoard (on by default), W&B and MLflow (off; each imported only when enabled).
    ``log.wandb: true`` is short for ``log.wandb: {enabled: true}`` (as for MLflow)."""

    tensorboard: bool = True
    wandb: WandbConfig = field(default_factory=WandbConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Section):
    """A whole training run; ``output_dir`` receives config.yaml, metrics and checkpoints."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    val: ValConfig = field(default_factory=ValConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    output_dir: str = "runs/train"
    seed: int = bounded(0, ge=0)

    def problems(self) -> Iterable[tuple[str, str]]:
        steps, warmup = self.train.max_steps, self.schedule.warmup_steps
        if steps is not None and warmup >= steps:
            yield "schedule.warmup_steps", f"expected < train.max_steps ({steps}), found {warmup}"
        if not self.output_dir:
            yield "output_dir", "expected a folder, found an empty string"


def config_from_dict(data: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
    """The `TrainConfig` for plain data (as read from YAML); missing keys take defaults.

    Raises:
        ConfigError: unknown keys (with the closest valid key), wrong types, values out of
            range or not among the choices: every problem at once, each named by its key path.
    """
    return from_dict(TrainConfig, data, source=source)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """``config`` as plain dicts, lists and scalars (tuples become lists), ready for YAML."""
    result = to_dict(config)
    assert isinstance(result, dict)
    return result


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (None: all defaults), apply dotted ``key=value`` overrides in order
    (e.g. ``train.batch_size=64``, ``head.args.margin=0.4``, ``data.folds=[0,1,2]``; values
    read with YAML's rules), and check the result (see `config_from_dict`).

    Raises:
        InputError: ``path`` does not exist.
        ConfigError: invalid YAML, a malformed override, or any invalid key or value.
    """
    data: Any = {}
    source = "config"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"config file {path} does not exist; check the path") from None
        data = parse_yaml(text, where=source)
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of sections, found {data!r:.60}")
    for override in overrides:
        apply_override(data, override)
    if overrides:
        source += " with overrides " + " ".join(overrides)
    return from_dict(TrainConfig, data, source=source)


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write ``config`` as YAML to ``path`` atomically; `load_config` reads back an equal one."""
    atomic_write_text(path, dump_yaml(config_to_dict(config)))


def validate_for_training(config: TrainConfig) -> None:
    """Check what a config file may leave to the command line: exactly one data source
    (``data.parquet``, or ``data.dataset_info`` with ``data.root``), and ``val.root`` only
    with ``val.pairs``. Paths are not opened here.

    Raises:
        ConfigError: every problem found, each with its fix.
    """
    data, errors = config.data, []
    folders = data.dataset_info is not None or data.root is not None
    if data.parquet is not None and folders:
        errors.append(
            "data: expected one data source, found both data.parquet and "
            "data.dataset_info/data.root; drop one of them"
        )
    elif data.parquet is None and not folders:
        errors.append(
            "data: no data source; set data.parquet=DIR (from fmlkit convert) or "
            "data.dataset_info=CSV data.root=DIR"
        )
    elif data.parquet is None and (data.dataset_info is None or data.root is None):
        missing = "data.root" if data.root is None else "data.dataset_info"
        errors.append(f"{missing}: needed with the other of data.dataset_info/data.root; set it")
    if config.val.root is not None and config.val.pairs is None:
        errors.append("val.root: set without val.pairs, so nothing would be validated")
    raise_problems(errors, source="config")
