"""Perceptual hashes: imagehash's exact strings, as 64-bit integers, and Hamming distances.

The hex form is exactly imagehash's ``str(imagehash.phash(img))`` (16 hex characters for the
default 8×8 hash), so values written by fmlkit compare equal to imagehash's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from fmlkit.columns import AHASH, DHASH, HASH_COLUMNS, PHASH, WHASH
from fmlkit.errors import InputError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# Two images whose 64-bit pHashes differ in at most this many bits are near-duplicates by default.
DEFAULT_NEAR_DUPLICATE_BITS = 10

# Hash column → the imagehash function that computes it (default 8×8 hashes).
IMAGEHASH_FUNCTIONS = {
    PHASH: "phash",
    DHASH: "dhash",
    AHASH: "average_hash",
    WHASH: "whash",
}


def phash_hex(img: Image.Image) -> str:
    """The 64-bit DCT perceptual hash of ``img`` as 16 hex characters (imagehash's string)."""
    import imagehash

    return str(imagehash.phash(img))


def parse_hash_names(names: Iterable[str]) -> tuple[str, ...]:
    """Check hash names (any of phash, dhash, ahash, whash) and return them in column order.

    Raises:
        InputError: for a name that is not a known hash.
    """
    wanted = {n.strip().lower() for n in names if n.strip()}
    unknown = sorted(wanted - set(HASH_COLUMNS))
    if unknown:
        raise InputError(
            f"unknown hash {', '.join(unknown)}; choose from {', '.join(HASH_COLUMNS)}"
        )
    return tuple(h for h in HASH_COLUMNS if h in wanted)


def compute_hashes(img: Image.Image, names: Sequence[str]) -> list[str]:
    """The requested hashes of ``img`` as imagehash's hex strings, in the order of ``names``.

    Every imagehash function starts with ``image.convert("L")``; converting once and passing the
    greyscale image gives bit-identical results. pHash, the one every scan computes, runs
    imagehash's own steps without its per-call overheads (`phash_bits`); `check_fast_phash`
    proves it equal to imagehash on the installed versions, else imagehash is called.
    """
    if not names:
        return []
    import imagehash

    grey = img.convert("L")
    out = []
    for name in names:
        if name == PHASH and _FAST_PHASH_OK:
            bits = phash_bits(grey)
        else:
            bits = getattr(imagehash, IMAGEHASH_FUNCTIONS[name])(grey).hash
        out.append(bits_to_hex(bits))
    return out


def phash_bits(grey: Image.Image) -> np.ndarray:
    """imagehash.phash's 8×8 bit array for a greyscale image, computed with its exact steps.

    Resize to 32×32 with Lanczos, 2-D DCT-II (scipy.fftpack, unnormalised), keep the 8×8
    lowest frequencies, compare with their median.
    """
    import numpy as np
    import scipy.fftpack
    from PIL import Image

    small = grey.resize((32, 32), Image.Resampling.LANCZOS)
    pixels = np.asarray(small)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:8, :8]
    ordered = np.sort(low, axis=None)
    median = (ordered[31] + ordered[32]) / 2  # what np.median does for 64 values
    return low > median


def bits_to_hex(bits: np.ndarray) -> str:
    """imagehash's hex string of a bit array (``str(ImageHash(bits))``), row-major, MSB first."""
    import numpy as np

    flat = bits.ravel()
    if flat.size % 8:
        from imagehash import ImageHash

        return str(ImageHash(bits))
    return np.packbits(flat).tobytes().hex()


def check_fast_phash() -> bool:
    """Whether `phash_bits` equals imagehash.phash here, on random greyscale images.

    Checked once per process (a forked worker inherits the answer) and remembered in the
    switch `compute_hashes` reads. Random images of varied sizes exercise the resize, the DCT
    and the median; any difference turns the fast path off.
    """
    global _FAST_PHASH_OK
    if _FAST_PHASH_OK is None:
        _FAST_PHASH_OK = _fast_phash_matches(samples=16, seed=0)
    return _FAST_PHASH_OK


def _fast_phash_matches(samples: int, seed: int) -> bool:
    import imagehash
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    ok = True
    for k in range(samples):
        size = (int(rng.integers(8, 200)), int(rng.integers(8, 200)))
        arr = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
        if k % 2:  # smooth images too: their DCT coefficients sit close to the median
            arr = np.sort(arr, axis=1)
        grey = Image.fromarray(arr, "L")
        ok = ok and bool(np.array_equal(phash_bits(grey), imagehash.phash(grey).hash))
    return ok


_FAST_PHASH_OK: bool | None = None  # None: not checked yet (imagehash is used)


def hex_to_int(value: str) -> int:
    """Parse a hash's hex string into an integer."""
    return int(value, 16)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes given as integers."""
    return (a ^ b).bit_count()
