"""``data.decode: device``: the main-process batch decoder, checked on the CPU against the PIL
path (same pixels, same flips, same skipped images), and whole training runs through it."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fmlkit.data.convert.from_images import table_to_parquet
from fmlkit.data.loading.datasets import (
    ImageDataset,
    ImageFolderDataset,
    ParquetImageDataset,
    collate_items,
)
from fmlkit.data.loading.gpu_decode import (
    DeviceDecoder,
    EncodedDataset,
    _has_exif,
    collate_encoded,
    flip_draws,
)
from fmlkit.data.loading.transforms import build_transforms
from fmlkit.train.checkpoint import LAST, checkpoint_dir
from fmlkit.train.config import load_config
from fmlkit.train.loop import train

SIZE = 32
LEVEL = 1 / 127.5  # one pixel level after the default normalisation ((x/255 − 0.5)/0.5)
EXIF_ROTATE_90 = 6  # EXIF orientation: rotate 90° clockwise to display


def _pixels(seed: int, height: int, width: int, channels: int = 3) -> np.ndarray:
    """Smooth colour gradients plus noise: a left-right asymmetric, JPEG-friendly image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (height + width)], -1)
    noisy = base + rng.normal(0, 20, (height, width, 3))
    pixels = np.clip(noisy, 0, 255).astype(np.uint8)
    return pixels[..., 0] if channels == 1 else pixels


def _jpeg(pixels: np.ndarray, **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90, **options)
    return out.getvalue()


def _rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = EXIF_ROTATE_90
    return _jpeg(_pixels(4, 24, 40), exif=exif.tobytes())


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images of every kind the decoder meets, listed in info.csv (one per label)."""
    root = tmp_path_factory.mktemp("mixed")
    files = {
        "same_size.jpg": _jpeg(_pixels(1, SIZE, SIZE)),  # no resize: equal pixels
        "larger.jpg": _jpeg(_pixels(2, 40, 50)),  # resized
        "grey.jpg": _jpeg(_pixels(3, 36, 36, channels=1)),  # one channel → three
        "rotated.jpg": _rotated_jpeg(),  # upright by its EXIF orientation
        "truncated.jpg": _jpeg(_pixels(5, SIZE, SIZE))[:300],  # a broken JPEG: skipped
        "junk.jpg": b"not an image at all",  # skipped
        "progressive.jpg": _jpeg(_pixels(6, SIZE, SIZE), progressive=True),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    Image.fromarray(_pixels(7, 40, 40)).save(root / "picture.png")  # not a JPEG: PIL
    names = [*files, "picture.png", "missing.jpg"]  # the last is not on disk: skipped
    rows = ["file_name,label", *(f"{name},{k}" for k, name in enumerate(names))]
    (root / "info.csv").write_text("\n".join(rows) + "\n")
    return root


def _dataset(root: Path, *, epoch: int = 0) -> ImageFolderDataset:
    transform = build_transforms(SIZE, train=True, flip=True)
    dataset = ImageFolderDataset(root / "info.csv", root, transform=transform, seed=5)
    dataset.set_epoch(epoch)
    return dataset


def _both_paths(dataset: ImageDataset) -> tuple[dict, dict]:
    """The batch of every item of ``dataset``, by the PIL path and by the device path."""
    order = range(len(dataset))
    pil = collate_items([dataset[i] for i in order])
    encoded = EncodedDataset(dataset)
    device = DeviceDecoder("cpu", image_size=SIZE)(collate_encoded([encoded[i] for i in order]))
    return dict(pil), dict(device)


@pytest.mark.parametrize("epoch", [0, 1])
def test_device_decoder_batch_equals_the_pil_path(mixed: Path, epoch: int) -> None:
    pil, device = _both_paths(_dataset(mixed, epoch=epoch))
    assert device["image"].shape == pil["image"].shape == (6, 3, SIZE, SIZE)
    assert device["image"].dtype == torch.float32
    assert device["index"].tolist() == pil["index"].tolist()
    assert device["label"].tolist() == pil["label"].tolist()
    difference = (device["image"] - pil["image"]).abs().amax(dim=(1, 2, 3))
    names = [_dataset(mixed).file_names[i] for i in pil["index"]]
    resized = {"larger.jpg", "grey.jpg", "rotated.jpg", "picture.png"}
    for name, diff in zip(names, difference.tolist(), strict=True):
        # the same libjpeg-turbo decode; resizing rounds to within one pixel level of PIL's
        assert diff <= (LEVEL + 1e-6 if name in resized else 0), name
    pixels = device["image"] * 127.5 + 127.5  # resized to whole pixel values, as by PIL
    assert torch.allclose(pixels, pixels.round(), atol=1e-3)


def test_device_decoder_skips_what_the_pil_path_skips(mixed: Path) -> None:
    pil, device = _both_paths(_dataset(mixed))
    assert _skipped(device) == _skipped(pil)  # index, file name and PIL's reason
    names = {item.file_name for item in device["skipped"]}
    assert names == {"truncated.jpg", "junk.jpg", "missing.jpg"}


def test_device_decoder_reads_parquet_datasets_as_the_pil_path(mixed: Path, tmp_path: Path) -> None:
    table_to_parquet(mixed / "info.csv", tmp_path / "ds", root=mixed, skip_bad=True)
    transform = build_transforms(SIZE, train=True, flip=True)
    dataset = ParquetImageDataset(tmp_path / "ds", transform=transform, seed=5, cache_dir=tmp_path)
    pil, device = _both_paths(dataset)  # the bytes are slices of the Arrow cache's memory map
    assert len(device["image"]) == 6 and torch.equal(device["index"], pil["index"])
    assert float((device["image"] - pil["image"]).abs().max()) <= LEVEL + 1e-6
    assert _skipped(device) == _skipped(pil) and len(device["skipped"]) == 2


def test_has_exif_finds_the_exif_segment(mixed: Path) -> None:
    assert _has_exif(_read(mixed / "rotated.jpg"))
    assert not _has_exif(_read(mixed / "same_size.jpg"))  # JFIF (APP0) only
    assert not _has_exif(_read(mixed / "truncated.jpg")[:5])


def _read(path: Path) -> torch.Tensor:
    return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)


def _skipped(batch: dict) -> list[tuple[int, str, str]]:
    """The skipped items in index order, object addresses taken out of the reasons."""
    items = sorted(batch["skipped"], key=lambda item: item.index)
    return [(s.index, s.file_name, re.sub(r" at 0x[0-9a-f]+", "", s.reason)) for s in items]


def test_device_decoder_falls_back_to_pil_for_other_formats(mixed: Path) -> None:
    (image,) = DeviceDecoder("cpu", image_size=SIZE).decode([_read(mixed / "picture.png")])
    assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8
    expected = np.asarray(Image.open(mixed / "picture.png").convert("RGB")).transpose(2, 0, 1)
    assert torch.equal(image, torch.from_numpy(expected.copy()))


def test_device_decoder_makes_greyscale_three_channels(mixed: Path) -> None:
    (image,) = DeviceDecoder("cpu").decode([_read(mixed / "grey.jpg")])
    assert isinstance(image, torch.Tensor) and image.shape == (3, 36, 36)
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])


def test_device_decoder_decodes_the_rest_when_one_jpeg_fails(mixed: Path) -> None:
    names = ["same_size.jpg", "truncated.jpg", "larger.jpg", "rotated.jpg"]
    results = DeviceDecoder("cpu").decode([_read(mixed / name) for name in names])
    assert results[1] == "OSError: Truncated File Read"  # PIL's reason, as in the PIL path
    shapes = [tuple(r.shape) for r in results if isinstance(r, torch.Tensor)]
    assert shapes == [(3, SIZE, SIZE), (3, 40, 50), (3, 40, 24)]  # rotated upright


def test_flip_draws_follow_the_item_seeds() -> None:
    seeds = torch.arange(40, dtype=torch.int64) * 7919 + 2**40
    expected = []
    for seed in seeds.tolist():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            expected.append(float(torch.rand(1)) < 0.5)  # the PIL path's draw
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    flips = flip_draws(seeds)
    assert flips.tolist() == expected and 0 < sum(expected) < len(expected)
    image = torch.from_numpy(_pixels(8, SIZE, SIZE).transpose(2, 0, 1).copy())
    out = DeviceDecoder("cpu", image_size=SIZE).transform([image] * len(seeds), seeds)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    plain = DeviceDecoder("cpu", image_size=SIZE, flip=False).transform([image], seeds[:1])[0]
    for flipped, item in zip(expected, out, strict=True):
        assert torch.equal(item, plain.flip(-1) if flipped else plain)


def test_collate_encoded_packs_bytes_and_keeps_skipped(mixed: Path) -> None:
    encoded = EncodedDataset(_dataset(mixed))
    items = [encoded[i] for i in (0, 8, 1)]  # 8 is missing.jpg
    batch = collate_encoded(items)
    sizes = [(mixed / n).stat().st_size for n in ("same_size.jpg", "larger.jpg")]
    assert batch["lengths"].tolist() == sizes and batch["data"].dtype == torch.uint8
    assert batch["data"].numel() == sum(sizes) and batch["index"].tolist() == [0, 1]
    assert batch["seed"].tolist() == [encoded.dataset.item_seed(i) for i in (0, 1)]
    assert [s.file_name for s in batch["skipped"]] == ["missing.jpg"]
    empty = DeviceDecoder("cpu", image_size=SIZE)(collate_encoded([items[1]]))
    assert empty["image"].shape == (0, 3, SIZE, SIZE) and len(empty["skipped"]) == 1


@pytest.mark.gpu
def test_device_decoder_on_cuda_agrees_with_the_cpu(mixed: Path) -> None:
    dataset = EncodedDataset(_dataset(mixed))
    batch = collate_encoded([dataset[i] for i in range(len(dataset))])
    cpu = DeviceDecoder("cpu", image_size=SIZE)(batch)
    cuda = DeviceDecoder("cuda", image_size=SIZE)(batch)
    assert cuda["image"].device.type == "cuda"
    assert _skipped(cuda) == _skipped(cpu) and torch.equal(cuda["index"], cpu["index"])
    difference = (cuda["image"].cpu() - cpu["image"]).abs()
    # nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's by a few levels (loose
    # bounds: a wrong orientation, channel order or flip is off by far more)
    assert float(difference.mean()) <= 2 * LEVEL and float(difference.max()) <= 24 * LEVEL


# -- whole runs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes of 8 coloured, noisy 32×32 JPEGs and one broken JPEG, in info.csv."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    rows = ["file_name,label"]
    for c in range(4):
        colour = np.array([(c * 70) % 256, (c * 130 + 40) % 256, (c * 200 + 90) % 256])
        (root / f"id{c}").mkdir()
        for i in range(8):
            pixels = np.clip(colour + rng.normal(0, 40, (SIZE, SIZE, 3)), 0, 255)
            (root / f"id{c}" / f"{i}.jpg").write_bytes(_jpeg(pixels.astype(np.uint8)))
            rows.append(f"id{c}/{i}.jpg,id{c}")
    (root / "id0" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    rows.append("id0/broken.jpg,id0")
    (root / "info.csv").write_text("\n".join(rows) + "\n")
    return root


def _overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.dataset_info={root / 'info.csv'}",
        f"data.root={root}",
        f"data.image_size={SIZE}",
        "model.backbone=mobilefacenet",
        "model.embedding_size=32",
        "head.name=cosface",
        "head.args={margin: 0.2, scale: 16.0}",
        "optim.lr=0.8",
        "schedule.name=cosine",
        "train.batch_size=8",
        "train.max_steps=16",
        "train.num_workers=0",
        "train.threads=1",  # not auto (CPUs less workers): equal losses need equal threads
        "train.log_every=1",
        "checkpoint.every_steps=8",
        f"output_dir={out}",
        "seed=3",
        *extra,
    ]


def _losses(out: Path) -> dict[int, str]:
    with (out / "metrics.csv").open(newline="") as f:
        return {int(row["step"]): row["loss"] for row in csv.DictReader(f)}


def test_train_with_device_decode_learns_as_the_pil_path_does(jpegs: Path, tmp_path: Path) -> None:
    encoded = ("data.decode=device", "train.num_workers=2")  # workers send encoded batches
    device = train(load_config(None, _overrides(jpegs, tmp_path / "d", *encoded)))
    assert device.steps == 16 and device.skipped_images >= 1  # the broken JPEG, not fatal
    losses = _losses(tmp_path / "d")
    values = [float(losses[s]) for s in range(1, 17)]
    assert np.mean(values[-4:]) < 0.5 * np.mean(values[:4])
    # images at the training size: the same pixels, flips and skips as the PIL path, so the
    # same losses (workers or not: the seeds are per item)
    pil = train(load_config(None, _overrides(jpegs, tmp_path / "p")))
    assert pil.skipped_images == device.skipped_images
    assert _losses(tmp_path / "p") == losses
    _resume_from_step_8(tmp_path / "d", tmp_path / "r", jpegs, losses)


def _resume_from_step_8(run: Path, copy: Path, jpegs: Path, losses: dict[int, str]) -> None:
    """A copy of the finished run set back to its step-8 checkpoint resumes to the same
    losses for steps 9–16 (the same seeded flips after the resume, here without workers)."""
    shutil.copytree(run, copy)
    folder = checkpoint_dir(copy)
    (folder / "step_00000016.pt").unlink()
    (folder / LAST).unlink()
    os.link(folder / "step_00000008.pt", folder / LAST)
    config = load_config(None, _overrides(jpegs, copy, "data.decode=device"))
    assert train(config, resume=True).steps == 16
    assert _losses(copy) == losses
