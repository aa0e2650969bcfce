"""From a `TrainConfig` to the objects a run trains: dataset, sampler, loader, model, head."""

from __future__ import annotations

import logging
from typing import Any

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
from fmlkit.train.config import DataConfig, TrainConfig
from fmlkit.train.distributed import Runtime, barrier

log = logging.getLogger(__name__)


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


def create_model(config: TrainConfig) -> nn.Module:
    from fmlkit.models.backbones import create_backbone

    return create_backbone(
        config.model.backbone,
        embedding_size=config.model.embedding_size,
        image_size=config.data.image_size,
    )


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
