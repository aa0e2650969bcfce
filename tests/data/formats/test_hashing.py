from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image

from fmlkit.columns import AHASH, DHASH, PHASH, WHASH
from fmlkit.data.formats.hashing import (
    bits_to_hex,
    check_fast_phash,
    compute_hashes,
    hamming,
    hex_to_int,
    parse_hash_names,
    phash_bits,
    phash_hex,
)
from fmlkit.errors import InputError


def test_phash_hex_is_imagehash_string() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        img = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
        value = phash_hex(img)
        assert value == str(imagehash.phash(img))
        assert len(value) == 16


def test_hamming_matches_imagehash_difference() -> None:
    rng = np.random.default_rng(1)
    a, b = (Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)) for _ in range(2))
    ha, hb = imagehash.phash(a), imagehash.phash(b)
    assert hamming(hex_to_int(str(ha)), hex_to_int(str(hb))) == ha - hb
    assert hamming(0, 0xFF) == 8


def _images(seed: int, count: int) -> list[Image.Image]:
    """Random images of varied sizes, modes and smoothness."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        h, w = (int(v) for v in rng.integers(9, 300, 2))
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if k % 3 == 1:
            arr = np.sort(arr, axis=k % 2)  # smooth gradients: DCT values close to the median
        if k % 3 == 2:
            arr = np.full_like(arr, int(rng.integers(0, 256)))  # flat: every coefficient ties
        img = Image.fromarray(arr)
        out.append(img.convert(("RGB", "L", "P", "CMYK")[k % 4]))
    return out


def test_fast_phash_is_imagehash_bit_for_bit() -> None:
    assert check_fast_phash()
    for img in _images(2, 300):
        assert np.array_equal(phash_bits(img.convert("L")), imagehash.phash(img).hash)


def test_compute_hashes_equal_imagehash_strings_for_every_hash() -> None:
    check_fast_phash()
    functions = {
        PHASH: imagehash.phash,
        DHASH: imagehash.dhash,
        AHASH: imagehash.average_hash,
        WHASH: imagehash.whash,
    }
    for img in _images(3, 60):
        got = compute_hashes(img, list(functions))
        assert got == [str(fn(img)) for fn in functions.values()]


def test_bits_to_hex_is_imagehash_string_for_any_size() -> None:
    rng = np.random.default_rng(4)
    for shape in [(8, 8), (16, 16), (3, 5), (1, 1)]:
        bits = rng.integers(0, 2, shape).astype(bool)
        assert bits_to_hex(bits) == str(imagehash.ImageHash(bits))


def test_parse_hash_names_orders_and_rejects_unknown() -> None:
    assert parse_hash_names(["whash", " PHASH", "dhash", "phash"]) == (PHASH, DHASH, WHASH)
    assert parse_hash_names([]) == ()
    with pytest.raises(InputError, match="unknown hash md6; choose from phash"):
        parse_hash_names(["phash", "md6"])
