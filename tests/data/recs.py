"""Small RecordIO files for tests, written with fmlkit's own writer."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from fmlkit.data.formats.recordio import MAGIC_BYTES, IRHeader, RecordWriter, pack


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG")
    return out.getvalue()


def flavour_a_rec(path: Path, labels: list[int], *, identities: bool = True) -> Path:
    """An InsightFace-style .rec: header record 0, images 1..N, identity records after."""
    n, k = len(labels), max(labels) + 1
    rec = path / "train.rec"
    with RecordWriter(rec, path / "train.idx") as writer:
        writer.write(0, pack(IRHeader(2, (float(n + 1), float(n + 1 + k)))))
        for key, label in enumerate(labels, 1):
            image = jpeg(key) + (MAGIC_BYTES if key % 2 else b"")  # some hold the magic
            writer.write(key, pack(IRHeader(0, float(label), id=key), image))
        if identities:
            for c in range(k):
                keys = [i for i, lab in enumerate(labels, 1) if lab == c]
                writer.write(n + 1 + c, pack(IRHeader(2, (float(keys[0]), float(keys[-1] + 1)))))
    return rec
