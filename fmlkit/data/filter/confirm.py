"""Confirmation of pHash duplicate candidates on the pixels (and on embeddings when given).

A 64-bit pHash is a cheap candidate generator, not a verdict: on Fashion-MNIST (28 px garments)
pairs 10 bits apart are visibly different garments. A candidate pair is confirmed when the
Pearson correlation of the two images' normalised thumbnails (``THUMB_SIDE``² grey pixels,
zero mean, unit norm) is at least ``pixel_threshold`` and, with an embeddings table, the cosine
of the two embeddings is at least ``embedding_threshold``. Only the candidates' images are read
(once each, from the dataset folder; a name leading outside it, absolute or through ``..``,
counts as unreadable); a pair whose image cannot be read, or that has no embedding when
embeddings are given, is not confirmed (and counted).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np
from PIL import Image, ImageOps

from fmlkit.data.formats.embeddings import EmbeddingTable

THUMB_SIDE = 16  # thumbnail side in pixels: 256 values, enough to tell two garments apart
# Calibrated in bench/bench_filter_real.py (docs/benchmarks.md): 149 of 150 planted near
# duplicates (re-encoded, resized, brighter) correlate ≥ 0.995 with their source; of the 5.4 M
# Fashion-MNIST pairs within 10 pHash bits, 291 do. The CLI repeats the value.
DEFAULT_PIXEL_THRESHOLD = 0.995
# Cosine of two `fmlkit embed` vectors of one picture: a conservative guess (not calibrated
# here), well above the 0.3–0.6 the seeds treat as "same identity" (docs/filter.md).
DEFAULT_EMBEDDING_THRESHOLD = 0.9
_READ_CHUNK = 2048  # images read per task (a worker process's share at a time)
_BATCH = 4096  # pairs gathered at once (2 × 4 MB of rows at 256 floats)
_BLOCK_ROWS = 512  # distinct first rows per block of pairs
# A block is one matrix product when its rectangle has at most this many cells per pair: a
# gathered pair moves 2 KB, a product cell costs 256 multiply-adds at matmul speed.
_DENSE_RATIO = 64


@dataclass(frozen=True)
class Confirmation:
    """Similarities of candidate pairs and which are confirmed (arrays over the pairs).

    ``pixel`` and ``embedding`` are NaN where not computed (an unreadable image, no
    embedding, or no embeddings given).
    """

    pixel: np.ndarray
    embedding: np.ndarray
    confirmed: np.ndarray
    unreadable: np.ndarray  # an image of the pair could not be read
    no_embedding: np.ndarray  # embeddings given, but an image of the pair has none


@dataclass
class Confirmer:
    """Confirms candidate pairs given by file name; thumbnails are read once and cached.

    Attributes:
        root: the dataset folder the file names are relative to.
        pixel_threshold: least thumbnail correlation of a duplicate, in [-1, 1].
        embeddings: optional `fmlkit embed` table (by file name).
        embedding_threshold: least embedding cosine of a duplicate, with ``embeddings``.
    """

    root: Path
    pixel_threshold: float = DEFAULT_PIXEL_THRESHOLD
    embeddings: EmbeddingTable | None = None
    embedding_threshold: float = DEFAULT_EMBEDDING_THRESHOLD
    _thumbs: dict[str, np.ndarray | None] = field(default_factory=dict, repr=False)

    def __call__(self, names: Sequence[str], i: np.ndarray, j: np.ndarray) -> Confirmation:
        """Confirm the pairs ``(names[i[k]], names[j[k]])``."""
        rows, inverse = np.unique(np.concatenate([i, j]), return_inverse=True)
        wanted = [str(names[r]) for r in rows]
        self._read([n for n in dict.fromkeys(wanted) if n not in self._thumbs])
        thumbs = [self._thumbs[n] for n in wanted]
        readable = np.array([t is not None for t in thumbs], bool)
        matrix = np.zeros((len(rows), THUMB_SIDE * THUMB_SIDE), np.float32)
        if readable.any():
            matrix[readable] = _normalised(np.stack([t for t in thumbs if t is not None]))
        ia, ib = inverse[: len(i)], inverse[len(i) :]
        ok = readable[ia] & readable[ib]
        pixel = np.full(len(ia), np.nan, np.float32)
        pixel[ok] = _row_dots(matrix, ia[ok], ib[ok])
        confirmed = ok & (pixel >= self.pixel_threshold)
        embedding = np.full(len(ia), np.nan, np.float32)
        no_embedding = np.zeros(len(ia), bool)
        if self.embeddings is not None:
            index = self.embeddings.index
            at = np.array([index.get(n, -1) for n in wanted], np.int64)
            ea, eb = at[ia], at[ib]
            no_embedding = (ea < 0) | (eb < 0)
            has = ~no_embedding
            unit = _unit_rows(self.embeddings.vectors)
            embedding[has] = _row_dots(unit, ea[has], eb[has])
            confirmed &= has & (embedding >= self.embedding_threshold)
        return Confirmation(pixel, embedding, confirmed, ~ok, no_embedding)

    def _read(self, names: list[str]) -> None:
        """Thumbnails of ``names``: in worker processes for many (every usable CPU), in
        this one for a few; a progress bar counts the chunks."""
        from fmlkit.parallel import run_tasks

        chunks = [
            (self.root, names[k : k + _READ_CHUNK]) for k in range(0, len(names), _READ_CHUNK)
        ]
        workers = None if len(names) >= 2 * _READ_CHUNK else 1
        done = run_tasks(_read_thumbnails, chunks, workers, desc="dedup: reading candidates",
                         unit="chunk")  # fmt: skip
        for chunk, thumbs in zip(chunks, done, strict=True):
            self._thumbs.update(zip(chunk[1], thumbs, strict=True))


def _read_thumbnails(task: tuple[Path, list[str]]) -> list[np.ndarray | None]:
    """The thumbnails of the files ``names`` under ``root`` (None for one that cannot be read
    or decoded: "unreadable")."""
    root, names = task
    out: list[np.ndarray | None] = []
    for name in names:
        parts = PurePath(name).parts
        if not parts or PurePath(name).is_absolute() or ".." in parts:
            out.append(None)  # never read outside the dataset folder (as the report)
            continue
        try:
            out.append(thumbnail((root / name).read_bytes()))
        except Exception:  # any file that cannot be read or decoded is "unreadable"
            out.append(None)
    return out


def thumbnail(data: bytes) -> np.ndarray:
    """The ``THUMB_SIDE``² grey values (uint8, upright by EXIF, box-filtered) of encoded
    image bytes. Raises whatever PIL raises on bad data."""
    with Image.open(io.BytesIO(data)) as image:
        # a large JPEG decodes at a reduced scale, still ≥ 8× the thumbnail (a closer draft
        # blurs two copies of different sizes differently)
        image.draft("L", (8 * THUMB_SIDE, 8 * THUMB_SIDE))
        image.load()
        if "exif" in image.info:  # upright, as decode_image sees it (PNG: an eXIf chunk)
            image = ImageOps.exif_transpose(image)
        grey = image if image.mode == "L" else image.convert("L")
        small = grey.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
    return np.asarray(small, np.uint8).reshape(-1)


def _normalised(thumbs: np.ndarray) -> np.ndarray:
    """Rows at zero mean and unit norm (their dot product is the Pearson correlation); a flat
    row becomes all zeros, correlating 0 with everything."""
    values = thumbs.astype(np.float32)
    values -= values.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(values, axis=1, keepdims=True)
    return np.where(norm > 1e-3, values / np.maximum(norm, 1e-3), 0).astype(np.float32)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norm > 0, norm, 1)).astype(np.float32)


def _row_dots(matrix: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``matrix[i[k]] · matrix[j[k]]`` for every k.

    Pairs are taken by blocks of ``_BLOCK_ROWS`` distinct ``i``; a block whose pairs fill
    much of its (rows of i) × (rows of j) rectangle is one matrix product, read at the pairs
    (clustered hashes give thousands of pairs per row), a sparse one row gathers into reused
    buffers. Both give the same dot products up to float rounding.
    """
    out = np.empty(len(i), np.float32)
    order = np.argsort(i, kind="stable")
    si, sj = i[order], j[order]
    firsts = np.flatnonzero(np.concatenate(([True], si[1:] != si[:-1]))) if len(si) else si
    edges = np.concatenate((firsts[::_BLOCK_ROWS], [len(si)]))
    for s, e in itertools.pairwise(edges):
        bi, bj = si[s:e], sj[s:e]
        ui, pi = np.unique(bi, return_inverse=True)
        uj, pj = np.unique(bj, return_inverse=True)
        if len(ui) * len(uj) <= _DENSE_RATIO * (e - s):
            out[order[s:e]] = (matrix[ui] @ matrix[uj].T)[pi, pj]
        else:
            out[order[s:e]] = _gathered_dots(matrix, bi, bj)
    return out


def _gathered_dots(matrix: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``matrix[i[k]] · matrix[j[k]]`` in cache-sized batches into reused buffers."""
    out = np.empty(len(i), np.float32)
    width = matrix.shape[1]
    a = np.empty((min(_BATCH, len(i)), width), matrix.dtype)
    b = np.empty_like(a)
    for s in range(0, len(i), _BATCH):
        e = min(s + _BATCH, len(i))
        np.take(matrix, i[s:e], axis=0, out=a[: e - s])
        np.take(matrix, j[s:e], axis=0, out=b[: e - s])
        np.einsum("ij,ij->i", a[: e - s], b[: e - s], out=out[s:e])
    return out
