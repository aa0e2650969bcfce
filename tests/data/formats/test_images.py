from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fmlkit.data.formats.images import (
    SUFFIXES,
    decode_image,
    image_suffix,
    peek_image,
    suffix_codes,
)


def _image(seed: int, size: tuple[int, int] = (24, 20)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _encoded(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    data = io.BytesIO()
    image.save(data, format=fmt, **kwargs)
    return data.getvalue()


def _rotated_jpeg() -> bytes:
    """A 30×10 JPEG whose EXIF says: rotate 90° clockwise to view (10×30 upright)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encoded(_image(1, size=(30, 10)), "JPEG", exif=exif)


def test_decode_image_turns_upright_and_rgb() -> None:
    image = _image(1, size=(30, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    data = io.BytesIO()
    image.save(data, format="JPEG", exif=exif)
    decoded = decode_image(data.getvalue())
    assert (decoded.size, decoded.mode) == ((10, 30), "RGB")
    grey = io.BytesIO()
    image.convert("L").save(grey, format="PNG")
    assert decode_image(grey.getvalue()).mode == "RGB"
    with pytest.raises(OSError):
        decode_image(b"not an image")


def test_peek_image_reads_the_header_as_stored() -> None:
    assert peek_image(_encoded(_image(2, size=(17, 9)), "PNG")) == (17, 9, "PNG")
    assert peek_image(_encoded(_image(3).convert("L"), "PNG")) == (24, 20, "PNG")
    # EXIF orientation is not applied: the stored size, unlike decode_image's
    assert peek_image(_rotated_jpeg()) == (30, 10, "JPEG")


@pytest.mark.parametrize("data", [b"", b"not an image", b"\xff\xd8\xff", b"\x89PNG\r\n"])
def test_peek_image_is_none_for_what_pillow_cannot_identify(data: bytes) -> None:
    assert peek_image(data) is None


@pytest.mark.parametrize(
    ("data", "suffix"),
    [
        (_encoded(_image(4), "JPEG"), "jpg"),
        (_encoded(_image(5), "PNG"), "png"),
        (_encoded(_image(6), "BMP"), "bin"),
        (b"\xff\xd8", "jpg"),  # the two signature bytes are enough, decodable or not
        (b"\x89PNG", "png"),
        (b"\x89PN", "bin"),  # too short for PNG's four signature bytes
        (b"\xff", "bin"),
        (b"", "bin"),
        (b"<html>", "bin"),
    ],
)
def test_image_suffix_from_the_signature(data: bytes, suffix: str) -> None:
    assert image_suffix(data) == suffix


def test_suffix_codes_equal_image_suffix_of_each_image() -> None:
    images = [
        _encoded(_image(7), "PNG"),
        b"\xff\xd8",
        b"",
        _encoded(_image(8), "JPEG"),
        b"\x89PN",  # ends short of PNG's signature: bytes past it belong to the next image
        b"G...",
        b"\x89PNG",
        b"\xff",  # the last image, one byte from the end of the buffer
    ]
    values = np.frombuffer(b"".join(images), dtype=np.uint8)
    lengths = np.array([len(i) for i in images], dtype=np.int64)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    codes = suffix_codes(values, starts, lengths)
    assert SUFFIXES[codes].tolist() == [image_suffix(i) for i in images]
    assert SUFFIXES[codes].tolist() == ["png", "jpg", "bin", "jpg", "bin", "bin", "png", "bin"]
