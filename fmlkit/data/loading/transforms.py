"""Image transforms for training and evaluation: a PIL image in, a normalised tensor out.

`build_transforms` returns an `ImageTransform`: a list of steps on PIL images, then one
conversion to a float32 C×H×W tensor, ``(x / 255 − mean) / std`` per channel. In order:

1. resize to ``image_size`` (bilinear, antialiased) when the image has another size, or, in
   training with ``random_resized_crop``, a random crop of the given area range resized to it;
2. training only, each opt-in except the flip: horizontal flip (p 0.5), colour jitter,
   greyscale, Gaussian blur, low resolution (shrink to a random size, then enlarge back).

The random steps come from ``torchvision.transforms.v2`` when torchvision imports, else from the
PIL implementations below (``backend="pil"`` forces them); resize, low resolution and the
tensor conversion are fmlkit's own in both, so evaluation gives the same pixels either way.
Every random draw uses torch's global RNG: the same ``torch.manual_seed`` gives the same output
(a DataLoader seeds each worker; `fmlkit.data.loading.datasets` can seed each item).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from fmlkit.errors import ConfigError

Step = Callable[[Image.Image], Image.Image]
Backend = Literal["auto", "torchvision", "pil"]
MEAN = (0.5, 0.5, 0.5)  # (x / 255 − 0.5) / 0.5: docs/train.md, data.normalisation
STD = (0.5, 0.5, 0.5)
RATIO = (3 / 4, 4 / 3)  # default aspect-ratio range of random_resized_crop (torchvision's)
BILINEAR = Image.Resampling.BILINEAR


class ImageTransform:
    """PIL image → float32 tensor C×H×W: ``steps`` in order, then ``(x / 255 − mean) / std``.

    Picklable (DataLoader workers may be spawned): steps are plain objects, no lambdas.
    """

    def __init__(
        self, steps: Sequence[Step], *, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        self.steps = list(steps)
        self.mean, self.std = tuple(map(float, mean)), tuple(map(float, std))
        self._scale = np.array([1 / (255 * s) for s in self.std], np.float32).reshape(3, 1, 1)
        shift = [m / s for m, s in zip(self.mean, self.std, strict=True)]
        self._shift = np.array(shift, np.float32).reshape(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            image = image.convert("RGB")
        for step in self.steps:
            image = step(image)
        # numpy, not torch: one thread whatever torch's setting (no thread start per image)
        pixels = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1), dtype=np.float32)
        pixels *= self._scale
        pixels -= self._shift
        return torch.from_numpy(pixels)

    def __repr__(self) -> str:
        steps = "".join(f"\n  {step!r}," for step in self.steps)
        return f"ImageTransform([{steps}\n], mean={self.mean}, std={self.std})"


class Resize:
    """Resize to (height, width), bilinear with antialiasing; an image of that size is kept."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> Image.Image:
        height, width = self.size
        return image if image.size == (width, height) else image.resize((width, height), BILINEAR)

    def __repr__(self) -> str:
        return f"Resize(size={self.size})"


class RandomLowResolution:
    """With probability ``p``: shrink so the longer side is a random length from ``min_size``
    to the current length (bilinear), then enlarge back to the input size."""

    def __init__(self, p: float, min_size: int) -> None:
        self.p, self.min_size = p, min_size

    def __call__(self, image: Image.Image) -> Image.Image:
        if float(torch.rand(())) >= self.p:
            return image
        width, height = image.size
        longest = max(width, height)
        side = int(torch.randint(min(self.min_size, longest), longest + 1, ()))
        small = (max(1, round(width * side / longest)), max(1, round(height * side / longest)))
        return image.resize(small, BILINEAR).resize((width, height), BILINEAR)

    def __repr__(self) -> str:
        return f"RandomLowResolution(p={self.p}, min_size={self.min_size})"


class RandomFlip:
    """PIL fallback: mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        if float(torch.rand(())) < self.p:
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def __repr__(self) -> str:
        return f"RandomFlip(p={self.p})"


class RandomResizedCrop:
    """PIL fallback of torchvision's RandomResizedCrop: a crop of ``scale`` × the area and an
    aspect ratio in ``ratio`` (log-uniform; 10 tries, then the largest centred crop that
    fits the ratio range), resized to (height, width)."""

    def __init__(
        self,
        size: tuple[int, int],
        scale: tuple[float, float],
        ratio: tuple[float, float] = RATIO,
    ) -> None:
        self.size, self.scale, self.ratio = size, scale, ratio

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """A random crop (left, top, right, bottom) of a ``width`` × ``height`` image."""
        area = width * height
        low, high = self.ratio
        log_ratio = (math.log(low), math.log(high))
        for _ in range(10):
            target = area * float(torch.empty(()).uniform_(*self.scale))
            aspect = math.exp(float(torch.empty(()).uniform_(*log_ratio)))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                return left, top, left + w, top + h
        aspect = width / height
        if aspect < low:
            w, h = width, round(width / low)
        elif aspect > high:
            w, h = round(height * high), height
        else:
            w, h = width, height
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, image: Image.Image) -> Image.Image:
        height, width = self.size
        return image.resize((width, height), BILINEAR, box=self.box(*image.size))

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class ColourJitter:
    """PIL fallback: brightness, contrast and saturation each scaled by a factor drawn from
    [max(0, 1 − strength), 1 + strength], in a random order."""

    ENHANCERS = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)

    def __init__(self, strength: float, p: float = 1.0) -> None:
        self.strength, self.p = strength, p

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.p < 1 and float(torch.rand(())) >= self.p:
            return image
        low, high = max(0.0, 1 - self.strength), 1 + self.strength
        for i in torch.randperm(3).tolist():
            factor = float(torch.empty(()).uniform_(low, high))
            image = self.ENHANCERS[i](image).enhance(factor)
        return image

    def __repr__(self) -> str:
        return f"ColourJitter(strength={self.strength}, p={self.p})"


class RandomGreyscale:
    """PIL fallback: with probability ``p``, grey in all three channels."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        if float(torch.rand(())) < self.p:
            return image.convert("L").convert("RGB")
        return image

    def __repr__(self) -> str:
        return f"RandomGreyscale(p={self.p})"


class RandomBlur:
    """PIL fallback: with probability ``p``, a Gaussian blur of σ drawn from ``sigma`` (pixels)."""

    def __init__(self, p: float, sigma: tuple[float, float]) -> None:
        self.p, self.sigma = p, sigma

    def __call__(self, image: Image.Image) -> Image.Image:
        if float(torch.rand(())) >= self.p:
            return image
        sigma = float(torch.empty(()).uniform_(*self.sigma))
        return image.filter(ImageFilter.GaussianBlur(radius=sigma))

    def __repr__(self) -> str:
        return f"RandomBlur(p={self.p}, sigma={self.sigma})"


def build_transforms(
    image_size: int | Sequence[int] = 112,
    *,
    train: bool,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    flip: bool = True,
    random_resized_crop: Sequence[float] | None = None,
    crop_ratio: Sequence[float] = RATIO,
    colour_jitter: float | None = None,
    colour_jitter_p: float = 1.0,
    greyscale: float | None = None,
    blur: Sequence[Any] | None = None,
    low_resolution: Sequence[float] | None = None,
    backend: Backend = "auto",
) -> ImageTransform:
    """The transform of a training or evaluation image (see the module docstring).

    Args:
        image_size: output side in pixels, or (height, width).
        train: apply the random augmentations; evaluation only resizes.
        mean, std: per-channel normalisation of pixels scaled to [0, 1].
        flip: horizontal flip with probability 0.5 (training only).
        random_resized_crop: (min, max) fraction of the image area to crop, e.g. (0.8, 1.0).
        crop_ratio: (min, max) aspect ratio (width / height) of that crop.
        colour_jitter: strength s > 0: brightness, contrast and saturation factors in
            [1 − s, 1 + s].
        colour_jitter_p: the probability that an image is jittered (1: every image).
        greyscale: probability of turning an image grey.
        blur: (p, sigma): probability, and σ in pixels, fixed or a (min, max) range.
        low_resolution: (p, min_size): probability, and the smallest side in pixels to shrink to.
        backend: ``torchvision`` (v2 transforms), ``pil``, or ``auto`` (torchvision if it
            imports).

    Raises:
        ConfigError: an option out of range (the message names it).
    """
    size = _size(image_size)
    _check_stats(mean, std)
    v2 = _torchvision_v2(backend)
    steps: list[Step] = []
    if train and random_resized_crop is not None:
        scale = _range("random_resized_crop", random_resized_crop, 0.0, 1.0, open_low=True)
        ratio = _range("crop_ratio", crop_ratio, 0.0, math.inf, open_low=True)
        steps.append(
            v2.RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True)
            if v2
            else RandomResizedCrop(size, scale, ratio)
        )
    else:
        steps.append(Resize(size))
    if train:
        jitter = None if colour_jitter is None else (colour_jitter, colour_jitter_p)
        steps += _augmentations(v2, flip, jitter, greyscale, blur, low_resolution)
    return ImageTransform(steps, mean=mean, std=std)


def _augmentations(
    v2: Any,
    flip: bool,
    colour_jitter: tuple[float, float] | None,
    greyscale: float | None,
    blur: Sequence[Any] | None,
    low_resolution: Sequence[float] | None,
) -> list[Step]:
    steps: list[Step] = []
    if flip:
        steps.append(v2.RandomHorizontalFlip(0.5) if v2 else RandomFlip(0.5))
    if colour_jitter is not None:
        s = _number("colour_jitter", colour_jitter[0], 0.0, math.inf, open_low=True)
        p = _number("colour_jitter probability", colour_jitter[1], 0.0, 1.0)
        if not v2:
            steps.append(ColourJitter(s, p))
        elif p < 1:  # RandomApply draws a number: only where it decides something
            steps.append(v2.RandomApply([v2.ColorJitter(s, s, s)], p=p))
        else:
            steps.append(v2.ColorJitter(s, s, s))
    if greyscale is not None:
        p = _number("greyscale", greyscale, 0.0, 1.0)
        steps.append(v2.RandomGrayscale(p) if v2 else RandomGreyscale(p))
    if blur is not None:
        p, sigma = _pair("blur", blur)
        p = _number("blur probability", p, 0.0, 1.0)
        lo, hi = _range("blur sigma", sigma, 0.0, math.inf, open_low=True)
        if v2:
            kernel = 2 * math.ceil(3 * hi) + 1
            steps.append(v2.RandomApply([v2.GaussianBlur(kernel, (lo, hi))], p=p))
        else:
            steps.append(RandomBlur(p, (lo, hi)))
    if low_resolution is not None:
        p, min_size = _pair("low_resolution", low_resolution)
        p = _number("low_resolution probability", p, 0.0, 1.0)
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
            raise ConfigError(
                f"low_resolution min_size: expected an integer ≥ 1, found {min_size!r}"
            )
        steps.append(RandomLowResolution(p, min_size))
    return steps


def _torchvision_v2(backend: Backend) -> Any:
    """``torchvision.transforms.v2``, or None for the PIL steps. Imported by name: torchvision
    is optional and ships no type information."""
    if backend == "pil":
        return None
    try:
        return importlib.import_module("torchvision.transforms.v2")
    except ImportError:
        if backend == "torchvision":
            raise
        return None


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    sides = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(sides) != 2 or not all(isinstance(s, int) and s >= 1 for s in sides):
        raise ConfigError(
            f"image_size: expected a side ≥ 1 in pixels or (height, width), found {image_size!r}"
        )
    return sides[0], sides[1]


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError(
            f"normalisation: expected 3 means and 3 positive stds (one per RGB channel), found "
            f"mean={list(mean)}, std={list(std)}"
        )


def _pair(name: str, value: Sequence[Any]) -> tuple[Any, Any]:
    if isinstance(value, str) or len(value) != 2:
        raise ConfigError(f"{name}: expected a pair of values, found {value!r}")
    return value[0], value[1]


def _number(name: str, value: Any, low: float, high: float, *, open_low: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (low < value if open_low else low <= value) or value > high:
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise ConfigError(f"{name}: expected a number in {interval}, found {value!r}")
    return float(value)


def _range(
    name: str, value: Any, low: float, high: float, *, open_low: bool = False
) -> tuple[float, float]:
    """A (min, max) range within [low, high] (``open_low``: above low); a number is (v, v)."""
    lo, hi = (value, value) if isinstance(value, (int, float)) else _pair(name, value)
    lo, hi = (_number(name, v, low, high, open_low=open_low) for v in (lo, hi))
    if lo > hi:
        raise ConfigError(f"{name}: expected (min, max) with min ≤ max, found {value!r}")
    return lo, hi
