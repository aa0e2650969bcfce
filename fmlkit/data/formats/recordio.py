"""MXNet RecordIO (.rec + .idx), read and written exactly, without mxnet.

The byte layout (dmlc-core's ``recordio.h``; docs/formats.md): each part is the magic
``0xCED7230A``, a little-endian uint32 ``lrecord`` (``cflag = lrecord >> 29``, ``length =
lrecord & (2**29 - 1)``), ``length`` data bytes and zero padding to a 4-byte boundary. A payload
holding the magic at a 4-byte-aligned offset is split there: the writer drops those 4 bytes and
starts a new part (cflag 1 first, 2 middle, 3 last; 0 for a whole record), and the reader puts
them back. Readers that skip this silently truncate such records.

The ``.idx`` is text, ``key<TAB>offset`` per line (offset of the record's first magic). Without
it, `fmlkit.data.formats.recordio_reader.RecordReader` scans the file and numbers the records
0, 1, 2, …

Image records start with an IRHeader (``<IfQQ``: flag, label float32, id, id2); flag = k > 0
means k float32 labels follow (the scalar label is then 0 and ignored), then the encoded image.

Here: the layout both ways (`encode_record`, `read_record`, `header_block` for many headers at
once), the IRHeader (`pack`, `unpack`) and `RecordWriter`. Reading a file by key is
`recordio_reader`; InsightFace's flavours of a .rec are `recordio_flavour`.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmlkit.errors import FormatError, InputError
from fmlkit.io import StagedOutput, commit, temp_sibling

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_MASK = (1 << 29) - 1
MAX_PART = LENGTH_MASK  # bytes of data one part can hold
_PART = struct.Struct("<II")  # magic, lrecord
IR_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2
FULL, FIRST, MIDDLE, LAST = 0, 1, 2, 3  # cflag values


class RecordIOError(FormatError):
    """A .rec or .idx that does not follow the format; the message names file and offset."""


@dataclass(frozen=True)
class IRHeader:
    """The header of an image record.

    Attributes:
        flag: 0 for a scalar ``label``; k > 0 when ``label`` is k floats.
        label: the class (float32 on disk), or a tuple of k floats.
        id: record id (InsightFace: the record key); id2: a second id, usually 0.
    """

    flag: int
    label: float | tuple[float, ...]
    id: int = 0
    id2: int = 0

    @property
    def labels(self) -> tuple[float, ...]:
        """The label(s) as a tuple (one element for a scalar label)."""
        return self.label if isinstance(self.label, tuple) else (self.label,)


def pack(header: IRHeader, image: bytes = b"") -> bytes:
    """An image record's payload: the header, its label array if any, then ``image``."""
    if isinstance(header.label, tuple):
        if header.flag != len(header.label):
            raise InputError(f"flag {header.flag} but {len(header.label)} labels")
        head = IR_HEADER.pack(len(header.label), 0.0, header.id, header.id2)
        return head + struct.pack(f"<{len(header.label)}f", *header.label) + image
    if header.flag != 0:
        raise InputError(f"flag {header.flag} needs a tuple of {header.flag} labels")
    return IR_HEADER.pack(0, header.label, header.id, header.id2) + image


def unpack(payload: bytes | memoryview, *, where: str = "record") -> tuple[IRHeader, bytes]:
    """Split an image record's payload into its IRHeader and image bytes.

    Raises:
        RecordIOError: the payload is shorter than its header says (``where`` names it).
    """
    if len(payload) < IR_HEADER.size:
        raise RecordIOError(f"{where}: {len(payload)} bytes, shorter than a 24-byte IRHeader")
    flag, label, id_, id2 = IR_HEADER.unpack_from(payload)
    end = IR_HEADER.size + 4 * flag
    if flag > 0:
        if len(payload) < end:
            raise RecordIOError(
                f"{where}: header says {flag} labels ({4 * flag} bytes), the record has "
                f"{len(payload) - IR_HEADER.size} bytes after the header"
            )
        labels = struct.unpack_from(f"<{flag}f", payload, IR_HEADER.size)
        return IRHeader(flag, tuple(labels), id_, id2), bytes(payload[end:])
    return IRHeader(0, label, id_, id2), bytes(payload[IR_HEADER.size :])


def encode_record(payload: bytes) -> bytes:
    """The on-disk bytes of one record: parts split at aligned magics, each padded."""
    cuts = []
    start = 0
    while (hit := payload.find(MAGIC_BYTES, start)) >= 0:
        if hit % 4 == 0:
            cuts.append(hit)
            start = hit + 4
        else:
            start = hit + 1
    if not cuts:
        return _part(FULL, payload)
    pieces, begin = [], 0
    for n, cut in enumerate(cuts):
        pieces.append(_part(FIRST if n == 0 else MIDDLE, payload[begin:cut]))
        begin = cut + 4
    pieces.append(_part(LAST, payload[begin:]))
    return b"".join(pieces)


def _part(cflag: int, data: bytes) -> bytes:
    if len(data) > MAX_PART:
        raise InputError(f"a record part of {len(data):,} bytes exceeds RecordIO's 2**29 - 1")
    return _PART.pack(MAGIC, (cflag << 29) | len(data)) + data + b"\0" * (-len(data) % 4)


class RecordWriter(StagedOutput):
    """Write records to ``rec`` and their ``key<TAB>offset`` lines to ``idx``.

    Both files are written under temporary names and renamed by `close` (a writer that is
    interrupted, or left by an exception, leaves neither under its final name).
    """

    def __init__(self, rec: str | os.PathLike[str], idx: str | os.PathLike[str] | None) -> None:
        self.rec_path, self.idx_path = Path(rec), None if idx is None else Path(idx)
        self.rec_path.parent.mkdir(parents=True, exist_ok=True)
        self._rec_tmp = temp_sibling(self.rec_path)
        self._rec = self._rec_tmp.open("wb")
        self._idx_tmp = None
        self._idx = None
        if self.idx_path is not None:
            self._idx_tmp = temp_sibling(self.idx_path)
            self._idx = self._idx_tmp.open("w", encoding="ascii", newline="\n")
        self.offset = 0
        self._keys: set[int] = set()

    def write(self, key: int, payload: bytes) -> int:
        """Append one record under integer ``key``; returns its byte offset."""
        if key in self._keys:
            raise InputError(f"key {key} written twice to {self.rec_path}")
        self._keys.add(key)
        data = encode_record(payload)
        offset = self.offset
        self._rec.write(data)
        if self._idx is not None:
            self._idx.write(f"{key}\t{offset}\n")
        self.offset += len(data)
        return offset

    def close(self) -> None:
        """Flush, then move both files to their final names."""
        if self._rec.closed:
            return
        self._rec.close()
        if self._idx is not None and self._idx_tmp is not None and self.idx_path is not None:
            self._idx.close()
            commit(self._idx_tmp, self.idx_path)
        commit(self._rec_tmp, self.rec_path)

    @property
    def output_path(self) -> Path:
        return self.rec_path

    def abort(self) -> None:
        """Close and delete the temporary files (closing fails again after a failed write)."""
        for f, tmp in ((self._rec, self._rec_tmp), (self._idx, self._idx_tmp)):
            if f is not None and tmp is not None:
                with contextlib.suppress(OSError):
                    f.close()
                tmp.unlink(missing_ok=True)


def read_record(buffer: mmap.mmap | None, offset: int, size: int, path: Path) -> tuple[bytes, int]:
    """The record whose first part starts at ``offset`` of ``buffer`` (``size`` bytes, from
    ``path``), its parts joined, and the offset after it; see `RecordReader.read_at`."""
    pieces: list[bytes] = []
    pos, expect_more = offset, False
    while True:
        if pos + 8 > size or buffer is None:
            raise RecordIOError(
                f"{path}: record at byte {offset} is truncated: the file ends at "
                f"byte {size:,}, inside the part header at byte {pos:,}"
            )
        magic, lrecord = _PART.unpack_from(buffer, pos)
        if magic != MAGIC:
            raise RecordIOError(
                f"{path}: wrong magic 0x{magic:08X} at byte {pos:,} (expected "
                f"0x{MAGIC:08X}); the file is damaged or not RecordIO"
            )
        cflag, length = lrecord >> 29, lrecord & LENGTH_MASK
        if pos + 8 + length > size:
            raise RecordIOError(
                f"{path}: record at byte {offset:,} is truncated: a part of "
                f"{length:,} bytes at byte {pos:,} runs past the end ({size:,} bytes)"
            )
        if cflag not in (FULL, FIRST, MIDDLE, LAST) or (cflag in (FULL, FIRST)) == expect_more:
            raise RecordIOError(
                f"{path}: part with cflag {cflag} at byte {pos:,} breaks the record "
                f"that starts at byte {offset:,}"
            )
        pieces.append(buffer[pos + 8 : pos + 8 + length])
        pos += 8 + length + (-length % 4)
        if cflag in (FULL, LAST):
            return MAGIC_BYTES.join(pieces), pos
        expect_more = True


@dataclass(frozen=True)
class HeaderBlock:
    """IRHeaders of many records, parsed at once (`header_block`); arrays of equal length.

    Attributes:
        intact: the record is one part (cflag 0) with the right magic, inside the file, long
            enough for its IRHeader and label array. Only these rows of the other arrays mean
            anything; read the rest with `RecordReader.read` (they may be records in several
            parts, which are fine, or damaged ones).
        flag: the IRHeader flag (number of float32 labels; 0 for a scalar label).
        label: the scalar label, or the first of the label array (float32 as float64).
        second: the second label of an array (NaN when flag < 2).
        image_start, image_length: where the bytes after the header and labels are.
    """

    intact: np.ndarray
    flag: np.ndarray
    label: np.ndarray
    second: np.ndarray
    image_start: np.ndarray
    image_length: np.ndarray


def header_block(buffer: mmap.mmap | None, size: int, offsets: np.ndarray) -> HeaderBlock:
    """The `HeaderBlock` of the records at ``offsets`` (4-byte aligned) of ``buffer``."""
    offsets = np.asarray(offsets, dtype=np.int64)
    n = len(offsets)
    if buffer is None or size < 8 + IR_HEADER.size + 8:
        words = np.zeros(16, dtype="<u4")
        fits = np.zeros(n, dtype=bool)
    else:
        words = np.frombuffer(buffer, dtype="<u4", count=size // 4)
        # the part header, the IRHeader and two labels: 48 bytes from the offset
        fits = (offsets >= 0) & (offsets % 4 == 0) & (offsets + 48 <= size)
    at = np.where(fits, offsets // 4, 0)
    magic, lrecord, flag = words[at], words[at + 1], words[at + 2].astype(np.int64)
    length = (lrecord & LENGTH_MASK).astype(np.int64)
    header_end = IR_HEADER.size + 4 * flag
    intact = (
        fits
        & (magic == MAGIC)
        & (lrecord >> 29 == FULL)
        & (offsets + 8 + length <= size)
        & (header_end <= length)
    )
    scalar = words[at + 3].view("<f4")
    first, second = words[at + 8].view("<f4"), words[at + 9].view("<f4")
    label = np.where(flag > 0, first, scalar).astype(np.float64)
    return HeaderBlock(
        intact=intact,
        flag=flag,
        label=label,
        second=np.where(flag > 1, second, np.nan).astype(np.float64),
        image_start=offsets + 8 + header_end,
        image_length=length - header_end,
    )
