"""Encoded image bytes <-> pixels: decoding as training and evaluation see images, a header
peek that decodes no pixels, and a file suffix from the bytes' signature."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps


def decode_image(data: bytes | memoryview) -> Image.Image:
    """Decode image bytes with PIL: upright by its EXIF orientation (as `fmlkit prepare`
    measures it), in RGB. Raises whatever PIL raises on bad data."""
    image = Image.open(io.BytesIO(data))
    image.load()
    if image.format != "JPEG" or "exif" in image.info:  # a JPEG without EXIF is upright
        ImageOps.exif_transpose(image, in_place=True)
    return image if image.mode == "RGB" else image.convert("RGB")


def peek_image(data: bytes) -> tuple[int, int, str] | None:
    """(width, height, format) from the header of encoded image bytes, decoding no pixels and
    ignoring EXIF orientation; None when Pillow cannot identify them."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height, img.format or ""
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


SUFFIXES = np.array(["bin", "jpg", "png"], dtype=object)


def image_suffix(image: bytes) -> str:
    """A file suffix for encoded image bytes, from their signature."""
    head = np.frombuffer(image[:4].ljust(4, b"\0"), dtype=np.uint8)
    return str(SUFFIXES[suffix_codes(head, np.zeros(1, np.int64), np.array([len(image)]))[0]])


def suffix_codes(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`image_suffix` of many images at once: indices into `SUFFIXES`, for images at
    ``starts`` (``lengths`` bytes) of the uint8 array ``values``."""

    def byte(i: int) -> np.ndarray:
        return np.where(lengths > i, values[np.minimum(starts + i, len(values) - 1)], -1)

    first, second = byte(0), byte(1)
    jpg = (first == 0xFF) & (second == 0xD8)
    png = (first == 0x89) & (second == ord("P")) & (byte(2) == ord("N")) & (byte(3) == ord("G"))
    return np.where(jpg, 1, np.where(png, 2, 0))
