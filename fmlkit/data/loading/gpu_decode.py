"""Decode a training batch's JPEGs on the training device (``data.decode: device``).

With ``data.decode: pil`` (the default) DataLoader workers decode each image with PIL and
transform it (`fmlkit.data.loading.datasets`). With ``data.decode: device`` the work is split:

- **Workers** (`EncodedDataset`, `collate_encoded`) only read the encoded bytes: a batch is the
  bytes of its images end to end in one uint8 tensor (one shared-memory buffer per batch, not
  one per image) with each image's length, label, dataset index, file name and augmentation
  seed (from (seed, epoch, index), as the PIL path seeds its transform).
- **The main process** (`DeviceDecoder`) decodes the batch with ``torchvision.io.decode_jpeg``
  on the training device — a list of JPEGs in one call, nvJPEG's batched decoder on CUDA,
  libjpeg-turbo on a CPU — in RGB (greyscale JPEGs become three channels), upright by their
  EXIF orientation. Images that are not JPEG, or that this decoder refuses, are decoded by PIL
  on the CPU and moved to the device; an image neither can decode is dropped from the batch
  and listed in ``batch["skipped"]``, exactly as the PIL path does. Then, on the device: resize
  to ``image_size`` (bilinear, antialiased, rounded to whole pixel values like PIL's; one
  batched call per distinct input size, none when the size is already right), horizontal flip
  of the items whose seed draws it, and normalisation, as batched tensor operations.

The flip is drawn from the item's seed exactly as the PIL path's transform draws it (the first
number of torch's generator seeded with it), so both paths flip the same items, a run is
reproducible, and a resumed run flips as an uninterrupted one. On a CPU the two paths give
equal pixels for images already at ``image_size`` (the same libjpeg-turbo decode) and differ
by at most one pixel level (1/255 before normalisation) where an image is resized.

Only the flip has a device version: `fmlkit.train.data_config.DataConfig` refuses
``decode: device`` with any other augmentation enabled.
"""

from __future__ import annotations

import importlib
import io
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from fmlkit.data.formats.images import decode_image
from fmlkit.data.loading.datasets import Batch, ImageDataset, Skipped
from fmlkit.data.loading.transforms import MEAN, STD
from fmlkit.errors import ConfigError

JPEG_MAGIC = b"\xff\xd8\xff"
_DEPRECATED = "The image decoding and encoding capabilities of TorchVision"


class EncodedItem(TypedDict):
    data: np.ndarray  # uint8, the encoded image
    label: int  # class id 0..C−1
    index: int  # position in the dataset
    seed: int  # the item's augmentation seed (0 ≤ seed < 2**63)
    file_name: str


class EncodedBatch(TypedDict):
    data: Tensor  # uint8: the batch's encoded images end to end
    lengths: Tensor  # int64 B: bytes of each image
    label: Tensor  # int64 B
    index: Tensor  # int64 B
    seed: Tensor  # int64 B
    file_name: list[str]
    skipped: list[Skipped]  # items whose bytes could not be read


class EncodedDataset(Dataset[Any]):
    """The items of ``dataset`` as encoded bytes, for decoding in the main process.

    An item is an `EncodedItem`, or a `Skipped` when its bytes cannot be read. Its seed is
    ``dataset.item_seed(index)`` (so set the epoch on ``dataset``), or, when the dataset has no
    seed, a number drawn from the worker's torch RNG.
    """

    def __init__(self, dataset: ImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> EncodedItem | Skipped:
        dataset = self.dataset
        if not 0 <= index < len(dataset):
            raise IndexError(f"index {index} is outside the dataset's {len(dataset)} items")
        file_name = dataset.file_names[index]
        try:
            data = np.frombuffer(dataset.read(index), dtype=np.uint8)
        except Exception as e:  # a missing file, an empty Parquet row…: skip the item
            return Skipped(index, file_name, f"{type(e).__name__}: {e}")
        seed = dataset.item_seed(index)
        if seed is None:
            seed = int(torch.randint(0, 2**63 - 1, ()))
        label = int(dataset.labels[index])
        return {"data": data, "label": label, "index": index, "seed": seed, "file_name": file_name}


def collate_encoded(items: Sequence[EncodedItem | Skipped]) -> EncodedBatch:
    """An `EncodedBatch` of the items; `Skipped` ones are left out and listed in ``skipped``."""
    kept = [item for item in items if not isinstance(item, Skipped)]
    chunks = [item["data"] for item in kept]
    return {
        "data": torch.from_numpy(np.concatenate(chunks) if chunks else np.empty(0, np.uint8)),
        "lengths": torch.tensor([len(c) for c in chunks], dtype=torch.int64),
        "label": torch.tensor([item["label"] for item in kept], dtype=torch.int64),
        "index": torch.tensor([item["index"] for item in kept], dtype=torch.int64),
        "seed": torch.tensor([item["seed"] for item in kept], dtype=torch.int64),
        "file_name": [item["file_name"] for item in kept],
        "skipped": [item for item in items if isinstance(item, Skipped)],
    }


def flip_draws(seeds: Tensor, *, p: float = 0.5) -> Tensor:
    """Which items the flip mirrors (bool per seed): the first number of torch's CPU generator
    seeded with the item's seed is below ``p``, as in the PIL path's transform."""
    flags = []
    for seed in seeds.tolist():
        generator = torch.Generator().manual_seed(seed)
        flags.append(float(torch.rand(1, generator=generator)) < p)
    return torch.tensor(flags, dtype=torch.bool)


class DeviceDecoder:
    """Decodes, resizes, flips and normalises encoded batches on ``device`` (module docstring).

    Args:
        device: where images are decoded and the batch is built (``cuda``: nvJPEG).
        image_size: the square side, in pixels, of the output images.
        mean, std: per-channel normalisation of pixels scaled to [0, 1], as in the PIL path.
        flip: mirror the items whose seed draws it (probability 1/2).

    Raises:
        ConfigError: torchvision is missing, or cannot decode a JPEG on ``device``.
    """

    def __init__(
        self,
        device: str | torch.device,
        *,
        image_size: int = 112,
        mean: Sequence[float] = MEAN,
        std: Sequence[float] = STD,
        flip: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.image_size, self.flip = image_size, flip
        scale = [1 / (255 * s) for s in std]
        shift = [m / s for m, s in zip(mean, std, strict=True)]
        self._scale = torch.tensor(scale, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self._shift = torch.tensor(shift, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self._io = _torchvision_io(self.device)

    def __call__(self, batch: Mapping[str, Any]) -> Batch:
        """The `Batch` of an `EncodedBatch`: images B×3×S×S float32 on the device; labels and
        indices stay on the CPU; undecodable items are dropped and added to ``skipped``."""
        lengths = batch["lengths"].tolist()
        data = torch.split(batch["data"], lengths) if lengths else ()
        results = self.decode(data)
        keep = [i for i, r in enumerate(results) if isinstance(r, Tensor)]
        skipped = list(batch["skipped"])
        for i, result in enumerate(results):
            if isinstance(result, str):
                skipped.append(Skipped(int(batch["index"][i]), batch["file_name"][i], result))
        images = [r for r in results if isinstance(r, Tensor)]
        rows = torch.tensor(keep, dtype=torch.int64)
        return {
            "image": self.transform(images, batch["seed"][rows]),
            "label": batch["label"][rows],
            "index": batch["index"][rows],
            "skipped": skipped,
        }

    def decode(self, data: Sequence[Tensor]) -> list[Tensor | str]:
        """Each encoded image (a 1-D uint8 CPU tensor) as uint8 3×H×W on the device, or the
        reason it cannot be decoded. JPEGs go to torchvision in one call (on CUDA, those with
        EXIF are decoded on the CPU, where torchvision applies the orientation), the rest to
        PIL; when the batched call fails, each image is tried alone."""
        results: list[Tensor | str | None] = [None] * len(data)
        cuda = self.device.type == "cuda"
        batched = [i for i, d in enumerate(data) if _is_jpeg(d) and not (cuda and _has_exif(d))]
        if batched:
            try:
                decoded = self._decode_jpegs([data[i] for i in batched], self.device)
            except (RuntimeError, ValueError):  # one bad image fails the call: one by one
                decoded = []
            for i, image in zip(batched, decoded, strict=False):
                results[i] = image
        return [self._decode_one(d) if r is None else r for d, r in zip(data, results, strict=True)]

    def transform(self, images: Sequence[Tensor], seeds: Tensor) -> Tensor:
        """Decoded uint8 3×H×W images (on the device) → float32 B×3×S×S: resized (batched per
        input size), flipped by ``seeds`` (int64 B, one per image) and normalised."""
        size = self.image_size
        out = torch.empty(len(images), 3, size, size, device=self.device)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(tuple(image.shape), []).append(i)
        for shape, members in groups.items():
            group = torch.stack([images[i] for i in members]).float()
            if shape[1:] != (size, size):
                group = F.interpolate(
                    group, size=(size, size), mode="bilinear", antialias=True, align_corners=False
                )
                group = group.round_().clamp_(0, 255)  # whole pixel values, as PIL's resize
            out[torch.tensor(members, device=self.device)] = group
        if self.flip and len(images):
            mask = flip_draws(seeds).to(self.device).view(-1, 1, 1, 1)
            out = torch.where(mask, out.flip(-1), out)
        return out.mul_(self._scale).sub_(self._shift)

    def _decode_jpegs(self, data: list[Tensor], device: torch.device) -> list[Tensor]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _DEPRECATED, DeprecationWarning)
            decoded: list[Tensor] = self._io.decode_jpeg(
                data,
                mode=self._io.ImageReadMode.RGB,
                device=device,
                apply_exif_orientation=device.type == "cpu",  # implemented on the CPU only
            )
        return decoded

    def _decode_one(self, data: Tensor) -> Tensor | str:
        """One image: torchvision if a JPEG (on the CPU when it has EXIF), else or on failure
        PIL on the CPU; the reason PIL gives when neither can."""
        if _is_jpeg(data):
            cpu = self.device.type == "cuda" and _has_exif(data)
            try:
                image = self._decode_jpegs([data], torch.device("cpu") if cpu else self.device)
                return image[0].to(self.device)
            except (RuntimeError, ValueError):
                pass  # PIL may still read it
        try:
            pixels = np.array(decode_image(data.numpy().tobytes()))
        except Exception as e:  # any failure of PIL's decoders, as in the PIL path
            return f"{type(e).__name__}: {e}"
        return torch.from_numpy(pixels).permute(2, 0, 1).to(self.device)


def _is_jpeg(data: Tensor) -> bool:
    return len(data) >= 3 and data[:3].numpy().tobytes() == JPEG_MAGIC


def _has_exif(jpeg: Tensor) -> bool:
    """Whether a JPEG has an EXIF segment (APP1 ``Exif``) among the segments before its
    image data."""
    data, pos = jpeg.numpy().data, 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE):  # APPn and COM come first
            return False
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            return True
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return False


def _torchvision_io(device: torch.device) -> Any:
    """``torchvision.io``, checked by decoding a tiny JPEG on ``device``. Imported by name:
    torchvision is optional and ships no type information."""
    fix = "install torchvision (the build matching torch) or set data.decode=pil"
    try:
        tvio = importlib.import_module("torchvision.io")
    except ImportError as e:
        raise ConfigError(f"data.decode=device needs torchvision, which does not import "
                          f"({e}); {fix}") from None  # fmt: skip
    sample = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 100, 50)).save(sample, "JPEG")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _DEPRECATED, DeprecationWarning)
            data = torch.frombuffer(bytearray(sample.getvalue()), dtype=torch.uint8)
            tvio.decode_jpeg([data], mode=tvio.ImageReadMode.RGB, device=device)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"data.decode=device: torchvision cannot decode a JPEG on {device} "
                          f"({e}); {fix}") from None  # fmt: skip
    return tvio
