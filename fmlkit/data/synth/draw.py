"""How `fmlkit synth` draws its files: clean images, each kept beyond the pHash near-duplicate
distance of every other clean image (within its identity as it is drawn, `render_identity`;
then across identities, `separate_identities`), near-duplicates of a source (`near_duplicate`)
and broken files (`broken_file`).

Every image draws from its own generator, seeded by the run's seed, a stream and its indices
(`seeded_rng`), so the output is a pure function of the arguments whatever the worker count.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from fmlkit.data.formats.hashing import DEFAULT_NEAR_DUPLICATE_BITS, hamming, hex_to_int, phash_hex
from fmlkit.data.synth.faces import Identity, create_identity, render_face

CLEAN = "clean"  # the truth kind of an image drawn by `render_identity` (unless placed)
NOT_IMAGE = b"<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n"
MAX_REDRAWS = 25  # attempts per clean image to stay > DEFAULT_NEAR_DUPLICATE_BITS from its siblings
TINY_SIDE = (12, 28)  # px, below the 32 px minimum that filters drop
# Streams of the seed sequence, so identities, images, defects and the plan never share draws.
IDENTITY_STREAM, IMAGE_STREAM, EXTRA_STREAM, PLAN_STREAM, SEPARATE_STREAM = 1, 2, 3, 4, 5
NOISE_STREAM = 6  # the label-noise plan (`fmlkit.data.synth.label_noise`)
_PAIR_CHUNK = 1024


@dataclass(frozen=True)
class IdentityJob:
    """One identity's clean images to draw: what a worker process gets."""

    root: Path
    seed: int
    index: int
    label: str
    names: tuple[str, ...]  # file name of each image, in its folder
    greyscale: frozenset[int]
    size: int
    # each image's folder, truth kind and source; empty: all in ``label``, kind clean (label
    # noise files some of an identity's images elsewhere: `fmlkit.data.synth.label_noise`)
    placed: tuple[tuple[str, str, str], ...] = ()

    def place(self, j: int) -> tuple[str, str, str]:
        """Folder, truth kind and source of image ``j``."""
        return self.placed[j] if self.placed else (self.label, CLEAN, "")


@dataclass
class IdentityResult:
    """What `render_identity` wrote: truth rows, and the pHash of each file as written."""

    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    hashes: list[int] = field(default_factory=list)  # pHash of each row's file, as written
    redraws: int = 0
    unseparated: int = 0


def seeded_rng(*key: int) -> np.random.Generator:
    """A generator seeded by ``key``: the seed, a stream (`IMAGE_STREAM`, …) and indices."""
    return np.random.default_rng(list(key))


def _encode(img: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "PNG":
        img.save(buf, "PNG", optimize=False, compress_level=6)
    else:
        img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _phash_of(data: bytes) -> int:
    """pHash of encoded bytes, as a reader of the file will compute it."""
    opener = JpegImageFile if data[:2] == b"\xff\xd8" else Image.open  # skip format probing
    with opener(io.BytesIO(data)) as img:
        return hex_to_int(phash_hex(img))


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``. A short write (a full disk, a file-size limit) is
    followed by another, which raises the OSError that says why."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _draw_clean(
    ident: Identity, rng: np.random.Generator, name: str, grey: bool, size: int
) -> tuple[bytes, int]:
    """Encoded bytes of one fresh clean image, and their pHash."""
    img = render_face(ident, rng, size)
    if grey:
        img = img.convert("L")
    fmt = "PNG" if name.lower().endswith(".png") else "JPEG"
    data = _encode(img, fmt, quality=int(rng.integers(75, 96)))
    return data, _phash_of(data)


def _far_from(h: int, others: Iterable[int]) -> bool:
    return all(hamming(h, other) > DEFAULT_NEAR_DUPLICATE_BITS for other in others)


def render_identity(job: IdentityJob) -> IdentityResult:
    """Write one identity's images; each stays > the near-duplicate distance from the rest."""
    ident = create_identity(seeded_rng(job.seed, IDENTITY_STREAM, job.index))
    for folder in dict.fromkeys(job.place(j)[0] for j in range(len(job.names))):
        (job.root / folder).mkdir(exist_ok=True)  # jobs may share a folder (label noise)
    result = IdentityResult()
    # drawn in sequence: redraws included, still pure
    rng = seeded_rng(job.seed, IMAGE_STREAM, job.index)
    for j, name in enumerate(job.names):
        for _ in range(MAX_REDRAWS):
            data, h = _draw_clean(ident, rng, name, j in job.greyscale, job.size)
            if _far_from(h, result.hashes):
                break
            result.redraws += 1
        else:
            result.unseparated += 1
        result.hashes.append(h)
        folder, kind, source = job.place(j)
        write_new(job.root / folder / name, data)
        result.rows.append((f"{folder}/{name}", folder, kind, source))
    return result


def _far_from_all_but(h: int, hashes: np.ndarray, k: int) -> bool:
    """Whether ``h`` is beyond the near-duplicate distance of every hash except ``hashes[k]``."""
    distance = np.bitwise_count(hashes ^ np.uint64(h))
    distance[k] = 64
    return bool(distance.min() > DEFAULT_NEAR_DUPLICATE_BITS)


def _close_pairs(hashes: np.ndarray, owner: np.ndarray) -> list[tuple[int, int]]:
    """Index pairs (i < j) of different owners whose hashes are within the near-duplicate
    distance: all pairs, vectorised in chunks."""
    pairs = []
    for start in range(0, len(hashes), _PAIR_CHUNK):
        block = hashes[start : start + _PAIR_CHUNK, None]
        close = np.bitwise_count(block ^ hashes[None, :]) <= DEFAULT_NEAR_DUPLICATE_BITS
        close &= owner[start : start + _PAIR_CHUNK, None] != owner[None, :]
        rows, cols = np.nonzero(close)
        pairs += [
            (start + r, c)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
            if start + r < c
        ]
    return pairs


def separate_identities(jobs: list[IdentityJob], results: list[IdentityResult]) -> int:
    """Redraw clean images within the near-duplicate distance of another identity's image, so
    that no clean pair anywhere is a pHash near-duplicate. Returns the number still unseparated.
    """
    flat = [(i, j) for i, r in enumerate(results) for j in range(len(r.hashes))]
    hashes = np.array([results[i].hashes[j] for i, j in flat], dtype=np.uint64)
    owner = np.array([i for i, _ in flat])
    unseparated = 0
    for _, k in _close_pairs(hashes, owner):
        i, j = flat[k]
        job, result = jobs[i], results[i]
        if _far_from_all_but(int(hashes[k]), hashes, k):
            continue  # an earlier redraw already moved it
        ident = create_identity(seeded_rng(job.seed, IDENTITY_STREAM, job.index))
        rng = seeded_rng(job.seed, SEPARATE_STREAM, job.index, j)
        for _ in range(MAX_REDRAWS):
            data, h = _draw_clean(ident, rng, job.names[j], j in job.greyscale, job.size)
            result.redraws += 1
            if _far_from_all_but(h, hashes, k):
                break
        else:
            unseparated += 1
        hashes[k] = h
        result.hashes[j] = h
        (job.root / job.place(j)[0] / job.names[j]).write_bytes(data)
    return unseparated


def near_duplicate(source: bytes, rng: np.random.Generator) -> bytes:
    """Re-encode at another quality, resized a few % and slightly brighter; stay within the
    near-duplicate distance of the source (milder changes are tried until one does)."""
    src_hash = _phash_of(source)
    with Image.open(io.BytesIO(source)) as src:
        src.load()
        base = src.convert("L") if src.mode == "L" else src.convert("RGB")
    data = b""
    for strength in (1.0, 0.5, 0.25, 0.0):
        factor = 1.0 + strength * rng.choice([-1, 1]) * rng.uniform(0.02, 0.06)
        side = (max(8, round(base.width * factor)), max(8, round(base.height * factor)))
        img = base.resize(side, Image.Resampling.BILINEAR) if side != base.size else base
        gain = 1.0 + strength * rng.uniform(0.03, 0.08)
        img = img.point([min(255, round(v * gain)) for v in range(256)] * len(img.getbands()))
        data = _encode(img, "JPEG", quality=int(rng.integers(55, 75)))
        if hamming(_phash_of(data), src_hash) <= DEFAULT_NEAR_DUPLICATE_BITS:
            return data
    return data  # pragma: no cover - re-encoding alone moves a 64-bit pHash by a few bits at most


def broken_file(kind: str, seed: int, k: int, identity: int, size: int) -> bytes:
    """Bytes of a tiny, truncated, empty or non-image file (a fresh rendering, not a copy)."""
    if kind == "empty":
        return b""
    if kind == "not_image":
        return NOT_IMAGE
    rng = seeded_rng(seed, EXTRA_STREAM, k)
    img = render_face(create_identity(seeded_rng(seed, IDENTITY_STREAM, identity)), rng, size)
    if kind == "tiny":
        side = int(rng.integers(TINY_SIDE[0], TINY_SIDE[1] + 1))
        return _encode(img.resize((side, side), Image.Resampling.BILINEAR), "JPEG", 90)
    data = _encode(img, "JPEG", 90)
    return data[: int(len(data) * rng.uniform(0.35, 0.7))]  # corrupt: truncated JPEG
