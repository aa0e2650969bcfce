"""Which InsightFace layout a ``.rec`` has (docs/formats.md#insightfaces-rec-flavours): `Flavour`
and `detect_flavour`, which tells flavour A's header and identity records from the images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmlkit.data.formats.recordio import RecordIOError, unpack
from fmlkit.data.formats.recordio_reader import RecordReader


@dataclass(frozen=True)
class Flavour:
    """Which InsightFace layout a .rec has (docs/formats.md#insightfaces-rec-flavours).

    Attributes:
        kind: ``A`` (face2rec2: a header record, images, identity records), ``B`` (im2rec,
            keys from a .lst) or ``C`` (keys 0..N-1, no header).
        header_key: A: the header record's key (not an image).
        identity_keys: A: the identity records' key range [start, end) (not images).
    """

    kind: str
    header_key: int | None = None
    identity_keys: tuple[int, int] | None = None

    def image_mask(self, keys: np.ndarray) -> np.ndarray:
        """`is_image` for each of ``keys``."""
        mask = np.ones(len(keys), dtype=bool)
        if self.header_key is not None:
            mask &= keys != self.header_key
        if self.identity_keys is not None:
            mask &= (keys < self.identity_keys[0]) | (keys >= self.identity_keys[1])
        return mask

    def is_image(self, key: int) -> bool:
        """False for flavour A's header and identity records."""
        if key == self.header_key:
            return False
        return self.identity_keys is None or not (
            self.identity_keys[0] <= key < self.identity_keys[1]
        )


def detect_flavour(reader: RecordReader) -> Flavour:
    """A when the first record has flag > 0 and no image (its labels: the identity key range
    [N+1, N+1+K)); C when the keys are 0..N-1 and the first label is a scalar; else B."""
    if not len(reader):
        return Flavour("C")
    first = next(iter(reader.keys))
    header, image = unpack(reader.read(first), where=f"{reader.path}, key {first}")
    if header.flag > 0 and not image:
        if len(header.labels) < 2:
            raise RecordIOError(
                f"{reader.path}: header record {first} has flag {header.flag} and no image, but "
                f"only {len(header.labels)} label; expected [first identity key, end key)"
            )
        low, high = header.labels[:2]
        start, end = (int(low), int(high)) if np.isfinite([low, high]).all() else (0, 0)
        if not 0 < start <= end:
            raise RecordIOError(
                f"{reader.path}: header record {first} gives an implausible identity key range "
                f"[{low:g}, {high:g})"
            )
        return Flavour("A", header_key=first, identity_keys=(start, end))
    keys = reader.key_array
    sequential = header.flag == 0 and bool((keys == np.arange(len(keys))).all())
    return Flavour("C" if sequential else "B")
