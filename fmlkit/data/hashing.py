"""Perceptual hashes as 64-bit integers, and Hamming distances between them.

The hex form is exactly ``str(imagehash.phash(img))`` (16 hex characters for the default 8×8
hash), so values written by fmlkit compare equal to imagehash's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

# Two images whose 64-bit pHashes differ in at most this many bits are near-duplicates by default.
DEFAULT_NEAR_DUPLICATE_BITS = 10


def phash_hex(img: Image.Image) -> str:
    """The 64-bit DCT perceptual hash of ``img`` as 16 hex characters (imagehash's string)."""
    import imagehash

    return str(imagehash.phash(img))


def hex_to_int(value: str) -> int:
    """Parse a hash's hex string into an integer."""
    return int(value, 16)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes given as integers."""
    return (a ^ b).bit_count()
