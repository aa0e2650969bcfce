"""From a `TrainConfig` to every part of a run: `build_run` gives the `TrainParts` the loop
(`fmlkit.train.loop`) steps through.

The parts are built in one fixed order, because building them draws random numbers (the
model's and the head's initial weights): the global RNGs are seeded from ``config.seed``, then
come the dataset, sampler, loader, decoder, model, head, optimizer, schedule, gradient scaler,
the forward wrappers (DDP under torchrun, ``torch.compile``) and rank 0's validation. The same
config therefore gives the same initial weights, and a resumed run (which restores every RNG
state from its checkpoint afterwards) the same random numbers, as an uninterrupted one.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from fmlkit.data.loading.arrow_cache import ensure_arrow_cache
from fmlkit.data.loading.datasets import (
    ImageDataset,
    ImageFolderDataset,
    ParquetImageDataset,
    collate_items,
)
from fmlkit.data.loading.gpu_decode import DeviceDecoder, EncodedDataset, collate_encoded
from fmlkit.data.loading.samplers import MPerClassSampler, ResumableSampler, ShuffleSampler
from fmlkit.data.loading.transforms import ImageTransform, build_transforms
from fmlkit.errors import ConfigError, InputError
from fmlkit.train.config import TrainConfig
from fmlkit.train.data_config import DataConfig
from fmlkit.train.distributed import Runtime, barrier
from fmlkit.train.optim import Schedule, create_optimizer, create_scheduler, scaled_lr
from fmlkit.train.validation import PairValidation

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TrainParts:
    """Everything a run trains with, as `build_run` made it from the config.

    Attributes:
        dataset, sampler, loader: the training images, their order, their batches.
        decoder: with ``data.decode=device``, turns the loader's encoded batches into images
            on the run's device; None when the loader's workers decode.
        steps_per_epoch, total_steps: optimizer steps in an epoch and in the whole run.
        model, head: the backbone and the training head, on the run's device; their state is
            what checkpoints hold.
        optimizer, scheduler, scaler: over the model's and the head's parameters.
        forward_model, forward_head: what the forward pass calls: the model and the head, or
            their DDP wrappers under torchrun, the model compiled with ``train.compile``.
        validation: rank 0's verification on ``val.pairs``; None elsewhere or without a list.
    """

    dataset: ImageDataset
    sampler: ResumableSampler
    loader: DataLoader[Any]
    decoder: DeviceDecoder | None
    steps_per_epoch: int
    total_steps: int
    model: nn.Module
    head: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    forward_model: nn.Module
    forward_head: nn.Module
    validation: PairValidation | None


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_run(config: TrainConfig, runtime: Runtime, *, init_weights: bool = True) -> TrainParts:
    """Every part of a run, in the order the module docstring gives (the global RNGs seeded
    first, from ``config.seed``). With ``init_weights`` (a new run, not a resumed one) the
    model starts from ``model.init`` when that is set (`create_model`).

    Raises:
        ConfigError, InputError: a config or input that cannot be trained on (e.g. fewer
            images than one step needs, or an unusable ``val.pairs``).
    """
    seed_everything(config.seed)
    dataset = create_dataset(config, runtime)
    sampler = create_sampler(config, dataset, runtime)
    loader = create_loader(config, dataset, sampler, runtime)
    decoder = create_decoder(config, runtime)  # None: the workers decode
    steps_per_epoch = count_steps(config, dataset, sampler)
    total_steps = config.train.total_steps(steps_per_epoch)
    model = create_model(config, init_weights=init_weights).to(runtime.device)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    head = create_training_head(config, dataset.num_classes, runtime).to(runtime.device)
    optimizer = create_run_optimizer(config, [model, head], runtime)
    scheduler = create_scheduler(optimizer, create_schedule(config, total_steps))
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=config.train.precision == "fp16")
    forward_model, forward_head = wrap_for_forward(config, model, head, runtime)
    return TrainParts(
        dataset=dataset,
        sampler=sampler,
        loader=loader,
        decoder=decoder,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        model=model,
        head=head,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        forward_model=forward_model,
        forward_head=forward_head,
        validation=create_validation(config, runtime),
    )


def create_transform(data: DataConfig, *, train: bool) -> ImageTransform:
    """The image transform the ``data`` section describes (augmentations only in training)."""
    aug = data.augment
    return build_transforms(
        data.image_size,
        train=train,
        mean=data.normalisation.mean,
        std=data.normalisation.std,
        flip=aug.flip.enabled,
        random_resized_crop=aug.random_resized_crop.scale
        if aug.random_resized_crop.enabled
        else None,
        crop_ratio=aug.random_resized_crop.ratio,
        colour_jitter=aug.colour_jitter.strength if aug.colour_jitter.enabled else None,
        colour_jitter_p=aug.colour_jitter.p,
        greyscale=aug.greyscale.p if aug.greyscale.enabled else None,
        blur=(aug.blur.p, aug.blur.sigma) if aug.blur.enabled else None,
        low_resolution=(aug.low_resolution.p, aug.low_resolution.min_size)
        if aug.low_resolution.enabled
        else None,
    )


def create_dataset(config: TrainConfig, runtime: Runtime) -> ImageDataset:
    """The training images: a Parquet dataset, or a dataset_info table over its root; each
    item's augmentation seeded from (seed, epoch, index). Under torchrun, a Parquet dataset's
    Arrow cache is built by local rank 0 of each node while the other ranks wait, instead of by
    every rank at once."""
    data = config.data
    transform = create_transform(data, train=True)
    if data.parquet is not None:
        if runtime.distributed:
            if runtime.local_rank == 0:
                ensure_arrow_cache(data.parquet)
            barrier(runtime)
        return ParquetImageDataset(
            data.parquet, transform=transform, folds=data.folds, split=data.split, seed=config.seed
        )
    assert data.dataset_info is not None and data.root is not None  # validate_for_training
    return ImageFolderDataset(
        data.dataset_info,
        data.root,
        transform=transform,
        folds=data.folds,
        split=data.split,
        seed=config.seed,
    )


def create_sampler(
    config: TrainConfig, dataset: ImageDataset, runtime: Runtime
) -> ResumableSampler:
    loop = config.train
    if loop.sampler == "m_per_class":
        return MPerClassSampler(
            dataset.labels,
            loop.m_per_class,
            loop.batch_size,
            seed=config.seed,
            rank=runtime.rank,
            world_size=runtime.world_size,
        )
    return ShuffleSampler(
        len(dataset), seed=config.seed, rank=runtime.rank, world_size=runtime.world_size
    )


def create_loader(
    config: TrainConfig, dataset: ImageDataset, sampler: ResumableSampler, runtime: Runtime
) -> DataLoader[Any]:
    """Batches of ``train.batch_size`` in the sampler's order, decoded by ``num_workers``
    processes (with ``data.decode=device`` only read: encoded batches for `create_decoder`'s
    decoder); a generator of its own, so that starting an iterator does not draw from the
    global RNG (a resumed run then draws the same random numbers as an uninterrupted one)."""
    workers = config.train.num_workers
    encoded = config.data.decode == "device"
    return DataLoader(
        EncodedDataset(dataset) if encoded else dataset,
        batch_size=config.train.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        collate_fn=collate_encoded if encoded else collate_items,
        pin_memory=runtime.device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        generator=torch.Generator().manual_seed(config.seed),
    )


def create_decoder(config: TrainConfig, runtime: Runtime) -> DeviceDecoder | None:
    """With ``data.decode=device``, the decoder that turns the loader's encoded batches into
    image batches on the run's device (logged once); None with ``pil``."""
    data = config.data
    if data.decode != "device":
        return None
    device = runtime.device
    decoder = DeviceDecoder(
        device,
        image_size=data.image_size,
        mean=data.normalisation.mean,
        std=data.normalisation.std,
        flip=data.augment.flip.enabled,
    )
    if runtime.is_main:
        how = "nvJPEG" if device.type == "cuda" else "the CPU, in the main process"
        log.info("data.decode=device: JPEGs are decoded by torchvision.io on %s (%s)", device, how)
    return decoder


def create_model(config: TrainConfig, *, init_weights: bool = False) -> nn.Module:
    """The configured backbone on the CPU; with ``init_weights`` and ``model.init`` set, its
    weights loaded from that file (`fmlkit.train.weights.init_backbone`), which draws no
    random numbers.

    Raises:
        ConfigError: an unknown backbone or a bad size.
        InputError: a ``model.init`` file that cannot be read or does not fit.
    """
    from fmlkit.models.backbones import create_backbone

    model = create_backbone(
        config.model.backbone,
        embedding_size=config.model.embedding_size,
        image_size=config.data.image_size,
    )
    if init_weights and config.model.init is not None:
        from fmlkit.train.weights import init_backbone

        init_backbone(model, config.model.init, strict=config.model.init_strict)
    return model


def create_training_head(config: TrainConfig, num_classes: int, runtime: Runtime) -> nn.Module:
    """The configured head; with ``head.partial_fc.sample_rate`` its PartialFC, sharded over
    the run's processes."""
    head = config.head
    if head.partial_fc.sample_rate is not None:
        from fmlkit.models.heads.partial_fc import create_partial_fc

        return create_partial_fc(
            head.name,
            config.model.embedding_size,
            num_classes,
            sample_rate=head.partial_fc.sample_rate,
            **head.args,
        )
    from fmlkit.models.heads import create_head

    return create_head(head.name, config.model.embedding_size, num_classes, **head.args)


def count_steps(config: TrainConfig, dataset: ImageDataset, sampler: ResumableSampler) -> int:
    """Optimizer steps per epoch: the sampler's full batches per process, ``train.grad_accum``
    to a step.

    Raises:
        ConfigError: ``train.batch_size`` 1 (batch norm cannot train on one image; a batch
            left with one image by skipped ones is not trained on either).
        InputError: too few images for one step.
    """
    loop = config.train
    if loop.batch_size < 2:
        raise ConfigError(
            f"train.batch_size is {loop.batch_size}: training needs at least 2 images a batch "
            "(batch norm cannot train on one); set train.batch_size=2 or more"
        )
    batches = len(sampler) // loop.batch_size
    if batches < loop.grad_accum:
        raise InputError(
            f"{len(dataset)} images give {batches} batches of {loop.batch_size} per "
            f"process, fewer than one step (grad_accum {loop.grad_accum}); lower the batch"
        )
    return batches // loop.grad_accum


def create_run_optimizer(
    config: TrainConfig, modules: list[nn.Module], runtime: Runtime
) -> torch.optim.Optimizer:
    """The configured optimizer over the parameters of ``modules``, its learning rate scaled
    to the global batch (batch_size × grad_accum × world_size)."""
    loop = config.train
    global_batch = loop.batch_size * loop.grad_accum * runtime.world_size
    return create_optimizer(
        [p for module in modules for p in module.parameters()],
        config.optim.name,
        lr=scaled_lr(config.optim.lr, global_batch),
        momentum=config.optim.momentum,
        weight_decay=config.optim.weight_decay,
    )


def create_schedule(config: TrainConfig, total_steps: int) -> Schedule:
    """The ``schedule`` section's learning-rate factor over ``total_steps``."""
    s = config.schedule
    return Schedule(
        s.name,
        total_steps=total_steps,
        warmup_steps=s.warmup_steps,
        power=s.power,
        milestones=s.milestones,
        gamma=s.gamma,
    )


def wrap_for_forward(
    config: TrainConfig, model: nn.Module, head: nn.Module, runtime: Runtime
) -> tuple[nn.Module, nn.Module]:
    """The modules the forward pass calls: under torchrun the model in DDP, and the head
    too unless it is a PartialFC (which shards itself); with ``train.compile`` the model
    compiled."""
    forward_model, forward_head = model, head
    if runtime.distributed:
        ids = [runtime.device] if runtime.device.type == "cuda" else None
        forward_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if not hasattr(head, "sample"):  # PartialFC shards itself; others replicate
            forward_head = nn.parallel.DistributedDataParallel(
                head, device_ids=ids, **_no_buffer_sync()
            )
    if config.train.compile:
        forward_model = torch.compile(forward_model)  # type: ignore[assignment]
    return forward_model, forward_head


def _no_buffer_sync() -> dict[str, Any]:
    """DDP's keyword that leaves a head's buffers (running statistics some heads keep per
    rank) unsynced at each forward: ``forward_sync_buffers`` from torch 2.13, which
    deprecates ``broadcast_buffers`` with a warning on every rank; the old name before."""
    import inspect

    parameters = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    key = "forward_sync_buffers" if "forward_sync_buffers" in parameters else "broadcast_buffers"
    return {key: False}


def create_validation(config: TrainConfig, runtime: Runtime) -> PairValidation | None:
    """Rank 0's verification on ``val.pairs`` (images from ``val.root``, transformed as for
    evaluation); None on other ranks or without a pair list.

    Raises:
        InputError, FormatError: an unusable pair list (see `PairValidation`).
    """
    if not runtime.is_main or config.val.pairs is None:
        return None
    return PairValidation(
        config.val.pairs,
        config.val.root or ".",
        create_transform(config.data, train=False),
        config.train.batch_size,
    )
