from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fmlkit.data.loading.transforms import RandomResizedCrop, build_transforms
from fmlkit.errors import ConfigError

BACKENDS = ["torchvision", "pil"]
EVERYTHING: dict[str, Any] = {
    "random_resized_crop": (0.5, 1.0),
    "colour_jitter": 0.4,
    "greyscale": 0.3,
    "blur": (0.5, (0.1, 1.5)),
    "low_resolution": (0.5, 8),
}


def _image(width: int = 40, height: int = 30, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _left_bright(size: int = 16) -> Image.Image:
    """An image whose left half is white and right half black: a flip is obvious."""
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[:, : size // 2] = 255
    return Image.fromarray(pixels)


def _flipped(tensor: torch.Tensor) -> bool:
    return bool(tensor[:, :, 0].mean() < tensor[:, :, -1].mean())


def test_build_transforms_resizes_and_normalises_for_evaluation() -> None:
    image = Image.new("RGB", (40, 30), (0, 51, 255))
    out = build_transforms((24, 32), train=False)(image)
    assert out.shape == (3, 24, 32) and out.dtype == torch.float32
    expected = torch.tensor([-1.0, 51 / 255 / 0.5 - 1, 1.0])
    assert torch.allclose(out.mean(dim=(1, 2)), expected, atol=1e-6)
    stats = build_transforms(8, train=False, mean=(0.0, 0.2, 0.5), std=(1.0, 0.5, 0.25))
    pixel = stats(image)[:, 0, 0]
    assert torch.allclose(pixel, torch.tensor([0.0, 0.0, (1 - 0.5) / 0.25]), atol=1e-6)


def test_build_transforms_keeps_an_image_of_the_right_size_and_converts_greyscale() -> None:
    image = _image(16, 16)
    out = build_transforms(16, train=False)(image)
    raw = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
    assert torch.allclose(out, raw / 255 / 0.5 - 1, atol=1e-6)  # not resampled
    assert build_transforms(16, train=False)(image.convert("L")).shape == (3, 16, 16)


def test_build_transforms_evaluation_is_the_same_with_either_backend() -> None:
    image = _image(50, 37)
    outs = [build_transforms(24, train=False, backend=b, **EVERYTHING)(image) for b in BACKENDS]
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_build_transforms_training_is_deterministic_given_torch_seed(backend: str) -> None:
    transform = build_transforms(24, train=True, backend=backend, **EVERYTHING)
    image = _image()
    torch.manual_seed(3)
    first = [transform(image) for _ in range(5)]
    torch.manual_seed(3)
    again = [transform(image) for _ in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])  # random, not fixed
    unpickled = pickle.loads(pickle.dumps(transform))  # for spawned DataLoader workers
    torch.manual_seed(3)
    assert torch.equal(unpickled(image), first[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_build_transforms_flips_only_in_training_and_when_asked(backend: str) -> None:
    image = _left_bright()
    torch.manual_seed(0)
    train = [_flipped(build_transforms(16, train=True, backend=backend)(image)) for _ in range(40)]
    assert 10 < sum(train) < 30
    no_flip = build_transforms(16, train=True, flip=False, backend=backend)
    evaluation = build_transforms(16, train=False, backend=backend)
    assert not any(_flipped(t(image)) for t in [no_flip, evaluation] for _ in range(20))


@pytest.mark.parametrize("backend", BACKENDS)
def test_build_transforms_applies_each_augmentation(backend: str) -> None:
    image = _image(32, 32)

    def run(**options: Any) -> torch.Tensor:
        torch.manual_seed(0)
        transform = build_transforms(32, train=True, flip=False, backend=backend, **options)
        return transform(image)

    plain = run()
    grey = run(greyscale=1.0)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert run(blur=(1.0, 2.0)).std() < 0.5 * plain.std()  # blur smooths noise
    low = run(low_resolution=(1.0, 4))
    assert low.shape == plain.shape and low.std() < 0.8 * plain.std()
    assert not torch.equal(run(colour_jitter=0.5), plain)
    assert not torch.equal(run(random_resized_crop=(0.2, 0.3)), plain)
    assert torch.equal(run(greyscale=0.0, blur=(0.0, 1.0), low_resolution=(0.0, 4)), plain)


def test_random_resized_crop_boxes_lie_inside_the_image_with_the_asked_area() -> None:
    crop = RandomResizedCrop((8, 8), (0.1, 0.6))
    torch.manual_seed(0)
    for width, height in [(40, 30), (30, 40), (100, 10), (9, 9)]:
        for _ in range(50):
            left, top, right, bottom = crop.box(width, height)
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
            if (width, height) == (40, 30):  # the ratio range always fits here
                area = (right - left) * (bottom - top) / (width * height)
                assert 0.08 <= area <= 0.65
    assert crop(_image(100, 10)).size == (8, 8)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": (10, 10, 3)}, "image_size"),
        ({"std": (0.5, 0.0, 0.5)}, "normalisation"),
        ({"mean": (0.5, 0.5)}, "normalisation"),
        ({"random_resized_crop": (0.9, 0.5)}, "random_resized_crop"),
        ({"random_resized_crop": (0.0, 0.5)}, "random_resized_crop"),
        ({"random_resized_crop": (0.5, 1.5)}, "random_resized_crop"),
        ({"colour_jitter": 0}, "colour_jitter"),
        ({"greyscale": 1.5}, "greyscale"),
        ({"blur": (0.5,)}, "blur"),
        ({"blur": (2.0, 1.0)}, "blur probability"),
        ({"blur": (0.5, (2.0, 1.0))}, "blur sigma"),
        ({"low_resolution": (0.5, 0)}, "min_size"),
        ({"low_resolution": (0.5, 2.5)}, "min_size"),
        ({"low_resolution": ("often", 8)}, "low_resolution probability"),
    ],
)
def test_build_transforms_rejects_options_out_of_range(
    options: dict[str, Any], message: str
) -> None:
    options = {"image_size": 16} | options
    with pytest.raises(ConfigError, match=message):
        build_transforms(train=True, **options)


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_colour_jitter_p_decides_how_often_and_crop_ratio_shapes_the_crop(backend: str) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8))

    def run(**options: Any) -> torch.Tensor:
        torch.manual_seed(0)
        transform = build_transforms(32, train=True, flip=False, backend=backend, **options)
        return transform(image)

    plain = run()
    assert torch.equal(run(colour_jitter=0.5, colour_jitter_p=0.0), plain)
    assert not torch.equal(run(colour_jitter=0.5, colour_jitter_p=1.0), plain)
    # a crop with a ratio range far from the default is another crop
    assert not torch.equal(
        run(random_resized_crop=(0.3, 0.5), crop_ratio=(0.3, 0.35)),
        run(random_resized_crop=(0.3, 0.5)),
    )
    with pytest.raises(ConfigError, match="colour_jitter probability"):
        run(colour_jitter=0.5, colour_jitter_p=1.5)
