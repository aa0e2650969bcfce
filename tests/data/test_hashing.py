from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

from fmlkit.data.hashing import hamming, hex_to_int, phash_hex


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
