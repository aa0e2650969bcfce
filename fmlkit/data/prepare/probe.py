"""Read one image file once: bytes → md5 → one decode → size, mode, format and hashes.

This runs in `fmlkit prepare`'s worker processes. It never raises for a bad file: what goes
wrong becomes a short reason in `Probe.error` (see `fmlkit.columns.ERROR_REASONS`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from collections.abc import Sequence
from typing import IO, NamedTuple

from fmlkit.data.formats.hashing import PHASH, check_fast_phash, compute_hashes

log = logging.getLogger(__name__)

# Files up to this size are read into memory in one go; larger ones are hashed in blocks and
# decoded from the file (a second read, but only for files far bigger than any training image).
READ_WHOLE_BYTES = 64 << 20
_BLOCK = 1 << 20

# Leading bytes of the formats Pillow decodes for us: a file that starts like an image but cannot
# be identified is corrupt; anything else is not an image at all.
_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"RIFF",  # WebP (RIFF....WEBP)
)


class Probe(NamedTuple):
    """What one file holds. Sizes are pixels after EXIF orientation; None when unreadable."""

    width: int | None
    height: int | None
    mode: str
    format: str
    file_size: int
    mtime_ns: int
    md5: str
    hashes: tuple[str, ...]
    error: str


def warm_up(hash_names: Sequence[str] = ()) -> None:
    """Import the decoders and hash libraries now (before a pool forks, or in a fresh worker)."""
    import PIL.Image
    import PIL.ImageOps

    PIL.Image.init()  # register every format plugin once, not on the first odd file
    if PHASH in hash_names and not check_fast_phash():
        log.warning("the fast pHash path differs from imagehash here; using imagehash")
    if hash_names:
        compute_hashes(PIL.Image.new("L", (32, 32)), hash_names)


def probe_files(
    root: str, files: Sequence[tuple[str, int, int]], hash_names: Sequence[str]
) -> list[Probe]:
    """Probe ``files`` given as (path relative to ``root``, size, mtime_ns) from the directory walk.

    The walk's size and mtime are used only for a file that cannot be opened; otherwise they
    come from the open file, so a row always describes the bytes that were read.
    """
    with warnings.catch_warnings():
        # Pillow warns about odd but readable files (palette transparency, large images, bad
        # EXIF); the outcome is in the row, one warning per file would drown the log.
        warnings.simplefilter("ignore")
        return [
            probe_file(os.path.join(root, rel), hash_names, size=size, mtime_ns=mtime)
            for rel, size, mtime in files
        ]


def probe_file(path: str, hash_names: Sequence[str], *, size: int = 0, mtime_ns: int = 0) -> Probe:
    """Read ``path`` once and describe it; never raises for a bad file.

    Args:
        path: the file.
        hash_names: hash columns to compute (see `fmlkit.data.formats.hashing.IMAGEHASH_FUNCTIONS`).
        size: file size in bytes to report if the file cannot be opened.
        mtime_ns: modification time to report if the file cannot be opened.
    """
    no_hashes = ("",) * len(hash_names)
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            size, mtime_ns = st.st_size, st.st_mtime_ns
            if size <= READ_WHOLE_BYTES:
                whole = f.read()
                md5, size, data = hashlib.md5(whole).hexdigest(), len(whole), whole
            else:
                md5, data = _md5_blocks(f), None
    except OSError as e:
        log.debug("%s: cannot read: %s", path, e)
        return Probe(None, None, "", "", size, mtime_ns, "", no_hashes, "unreadable")
    if size == 0:
        return Probe(None, None, "", "", size, mtime_ns, md5, no_hashes, "empty")
    source: str | IO[bytes] = io.BytesIO(data) if data is not None else path
    width, height, mode, fmt, hashes, error = _decode(source, path, hash_names)
    return Probe(width, height, mode, fmt, size, mtime_ns, md5, hashes or no_hashes, error)


def _md5_blocks(f: IO[bytes]) -> str:
    digest = hashlib.md5()
    while block := f.read(_BLOCK):
        digest.update(block)
    return digest.hexdigest()


def _decode(
    source: str | IO[bytes], path: str, hash_names: Sequence[str]
) -> tuple[int | None, int | None, str, str, tuple[str, ...], str]:
    """One decode: (width, height, mode, format, hashes, error) with sizes after EXIF rotation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        img = Image.open(source)
    except Image.DecompressionBombError:
        return None, None, "", "", (), "decompression_bomb"
    except UnidentifiedImageError:
        return None, None, "", "", (), "corrupt" if _looks_like_image(source) else "not_image"
    except Exception as e:  # a damaged header can raise nearly anything inside a plugin
        log.debug("%s: cannot open: %r", path, e)
        return None, None, "", "", (), "corrupt"
    with img:
        mode, fmt = img.mode, img.format or ""
        try:
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # what training sees
            hashes = tuple(compute_hashes(img, hash_names))
        except Image.DecompressionBombError:
            return None, None, mode, fmt, (), "decompression_bomb"
        except OSError as e:
            log.debug("%s: cannot decode: %s", path, e)
            error = "truncated" if "truncated" in str(e) else "corrupt"
            return None, None, mode, fmt, (), error
        except Exception as e:
            log.debug("%s: cannot decode: %r", path, e)
            return None, None, mode, fmt, (), "corrupt"
        return img.width, img.height, mode, fmt, hashes, ""


def _looks_like_image(source: str | IO[bytes]) -> bool:
    if isinstance(source, str):
        with open(source, "rb") as f:
            head = f.read(16)
    else:
        source.seek(0)
        head = source.read(16)
    return head.startswith(_IMAGE_MAGIC)
