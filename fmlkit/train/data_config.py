"""The ``data`` section of the training configuration (`fmlkit.train.config`): where the images
come from, the size they are resized to, how they are decoded and normalised, and the training
augmentations (``data.augment``), each a typed `Section` checked when the config is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Literal

from fmlkit.schema import Section, bounded

# Bounds no real run comes near, so that a typo cannot ask for terabytes or a fork bomb: the
# in-house nets size their last layer by image_size² × embedding_size (image_size=100000 asks
# for 80 GB before the first step).
MAX_IMAGE_SIZE = 1024  # pixels a side (face models train at 112 to 224; ViTs up to 448)


def _ordered(key: str, pair: tuple[float, float]) -> Iterable[tuple[str, str]]:
    if pair[0] > pair[1]:
        yield key, f"expected [low, high] with low ≤ high, found {list(pair)}"


@dataclass(frozen=True, kw_only=True)
class NormalisationConfig(Section):
    """Pixels become (x/255 − mean)/std per RGB channel; the default maps [0, 255] to [−1, 1]."""

    mean: tuple[float, float, float] = bounded((0.5, 0.5, 0.5), ge=0, le=1)
    std: tuple[float, float, float] = bounded((0.5, 0.5, 0.5), gt=0)


@dataclass(frozen=True, kw_only=True)
class FlipConfig(Section):
    """Horizontal flip with probability 1/2 (on by default)."""

    enabled: bool = True


@dataclass(frozen=True, kw_only=True)
class CropConfig(Section):
    """Random resized crop: a crop of ``scale`` × the area and ``ratio`` aspect, resized back."""

    enabled: bool = False
    scale: tuple[float, float] = bounded((0.8, 1.0), gt=0, le=1)
    ratio: tuple[float, float] = bounded((0.75, 4 / 3), gt=0)

    def problems(self) -> Iterable[tuple[str, str]]:
        yield from _ordered("scale", self.scale)
        yield from _ordered("ratio", self.ratio)


@dataclass(frozen=True, kw_only=True)
class ColourJitterConfig(Section):
    """With probability ``p``: brightness, contrast and saturation each scaled by a factor
    drawn from [1 − strength, 1 + strength]."""

    enabled: bool = False
    p: float = bounded(0.5, ge=0, le=1)
    strength: float = bounded(0.2, ge=0, le=1)


@dataclass(frozen=True, kw_only=True)
class GreyscaleConfig(Section):
    """With probability ``p``: the image turned grey (kept as three channels)."""

    enabled: bool = False
    p: float = bounded(0.1, ge=0, le=1)


@dataclass(frozen=True, kw_only=True)
class BlurConfig(Section):
    """With probability ``p``: a Gaussian blur with σ (pixels) drawn from ``sigma``."""

    enabled: bool = False
    p: float = bounded(0.1, ge=0, le=1)
    sigma: tuple[float, float] = bounded((0.1, 2.0), gt=0)

    def problems(self) -> Iterable[tuple[str, str]]:
        yield from _ordered("sigma", self.sigma)


@dataclass(frozen=True, kw_only=True)
class LowResolutionConfig(Section):
    """With probability ``p``: the image shrunk to a side (pixels) drawn from
    [min_size, image_size) and resized back up, as in low-quality probes."""

    enabled: bool = False
    p: float = bounded(0.1, ge=0, le=1)
    min_size: int = bounded(16, ge=4)


@dataclass(frozen=True, kw_only=True)
class AugmentConfig(Section):
    """Training augmentations, each opt-in except the flip; applied in this order."""

    flip: FlipConfig = field(default_factory=FlipConfig)
    random_resized_crop: CropConfig = field(default_factory=CropConfig)
    colour_jitter: ColourJitterConfig = field(default_factory=ColourJitterConfig)
    greyscale: GreyscaleConfig = field(default_factory=GreyscaleConfig)
    blur: BlurConfig = field(default_factory=BlurConfig)
    low_resolution: LowResolutionConfig = field(default_factory=LowResolutionConfig)


@dataclass(frozen=True, kw_only=True)
class DataConfig(Section):
    """Where the images come from and how they are prepared.

    Attributes:
        dataset_info: a dataset_info CSV/Parquet (`fmlkit prepare`); needs ``root``.
        root: the folder that the dataset_info ``file_name`` column is relative to.
        parquet: a dataset folder written by `fmlkit convert` (instead of the two above).
        folds: keep only rows whose ``fold`` is listed; None keeps every row.
        split: keep only rows with this ``split`` value (e.g. ``train``); None keeps every row.
        image_size: the square side, in pixels, that images are resized to.
        decode: where images are decoded. ``pil``: by PIL in the DataLoader workers, which
            also augment them. ``device``: workers only read the encoded bytes; the main
            process decodes each batch's JPEGs with ``torchvision.io.decode_jpeg`` on the
            training device (nvJPEG, batched, when training on CUDA; the CPU on a CPU run),
            other formats with PIL, then resizes, flips and normalises on the device
            (`fmlkit.data.loading.gpu_decode`). Needs torchvision. Only the flip has a device
            version: ``device`` with any other augmentation enabled is refused.
    """

    dataset_info: str | None = None
    root: str | None = None
    parquet: str | None = None
    folds: tuple[int, ...] | None = bounded(None, ge=-1)
    split: str | None = None
    image_size: int = bounded(112, ge=16, le=MAX_IMAGE_SIZE)
    decode: Literal["pil", "device"] = "pil"
    normalisation: NormalisationConfig = field(default_factory=NormalisationConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def problems(self) -> Iterable[tuple[str, str]]:
        low = self.augment.low_resolution
        if low.enabled and low.min_size >= self.image_size:
            yield (
                "augment.low_resolution.min_size",
                f"expected < data.image_size ({self.image_size}), found {low.min_size}",
            )
        if self.decode == "device":
            augment = self.augment
            names = [f.name for f in fields(augment) if f.name != "flip"]
            enabled = [f"data.augment.{n}" for n in names if getattr(augment, n).enabled]
            if enabled:
                yield (
                    "decode",
                    f"expected pil with {', '.join(enabled)} enabled (only the flip has a "
                    f"device version), found device; set data.decode=pil or disable "
                    f"{', '.join(enabled)}",
                )
