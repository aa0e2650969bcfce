"""MXNet RecordIO (.rec + .idx), read and written exactly, without mxnet.

The byte layout (dmlc-core's ``recordio.h``; docs/formats.md): each part is the magic
``0xCED7230A``, a little-endian uint32 ``lrecord`` (``cflag = lrecord >> 29``, ``length =
lrecord & (2**29 - 1)``), ``length`` data bytes and zero padding to a 4-byte boundary. A payload
holding the magic at a 4-byte-aligned offset is split there: the writer drops those 4 bytes and
starts a new part (cflag 1 first, 2 middle, 3 last; 0 for a whole record), and the reader puts
them back. Readers that skip this silently truncate such records.

The ``.idx`` is text, ``key<TAB>offset`` per line (offset of the record's first magic). Without
it, `RecordReader` scans the file and numbers the records 0, 1, 2, …

Image records start with an IRHeader (``<IfQQ``: flag, label float32, id, id2); flag = k > 0
means k float32 labels follow (the scalar label is then 0 and ignored), then the encoded image.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmlkit.errors import FormatError, InputError
from fmlkit.io import Closing, StagedOutput, commit, temp_sibling

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


class RecordReader(Closing):
    """Memory-mapped reader of a .rec, with random access by key through the .idx.

    The index is held as two int64 arrays (keys, offsets): 16 bytes a record, so an index of
    millions of records costs tens of MB, not a dict of Python ints.

    Args:
        rec: the .rec file.
        idx: its index; default: the .idx beside ``rec`` if there is one. Without an index the
            file is scanned once and records are keyed 0, 1, 2, … in file order.

    Raises:
        InputError: ``rec`` is missing.
        RecordIOError: the index is malformed or points outside the file.
    """

    def __init__(
        self, rec: str | os.PathLike[str], idx: str | os.PathLike[str] | None = None
    ) -> None:
        self.path = Path(rec)
        if not self.path.is_file():
            raise InputError(f"record file {self.path} does not exist")
        if idx is None and self.path.with_suffix(".idx").is_file():
            idx = self.path.with_suffix(".idx")
        self.idx_path = None if idx is None else Path(idx)
        self._open()
        self._set_index(*(self._read_index() if self.idx_path else self._scan()))

    @classmethod
    def from_index(
        cls, rec: str | os.PathLike[str], keys: np.ndarray, offsets: np.ndarray
    ) -> RecordReader:
        """A reader of ``rec`` over the given part of its index (keys and their offsets, as
        read by another reader: not checked again). Worker processes use it for their share."""
        reader = cls.__new__(cls)
        reader.path, reader.idx_path = Path(rec), None
        reader._open()
        reader._set_index(keys, offsets)
        return reader

    def _open(self) -> None:
        self.size = self.path.stat().st_size
        with self.path.open("rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else None

    def _set_index(self, keys: np.ndarray, offsets: np.ndarray) -> None:
        keys, offsets = keys.view(), offsets.view()
        keys.flags.writeable = offsets.flags.writeable = False
        self.key_array, self.offset_array = keys, offsets
        increasing = bool(len(keys) < 2 or (keys[1:] > keys[:-1]).all())
        self._order = None if increasing else np.argsort(keys, kind="stable")
        self._sorted_keys = keys if increasing else keys[self._order]

    @property
    def keys(self) -> Sequence[int]:
        """The record keys, in the order of the index (or of the file, without one)."""
        return _IntView(self.key_array)

    def _read_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised parse of the ``key<TAB>offset`` lines; anything unusual is re-read line
        by line by `_read_index_lines`, whose errors name the line."""
        assert self.idx_path is not None
        data = self.idx_path.read_bytes()
        fields = _fields_if_two_a_line(data)
        if fields is not None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # numpy warns, not raises, on junk
                    tokens = np.fromstring(data, dtype=np.int64, sep=" ")  # text mode
            except (ValueError, DeprecationWarning):
                tokens = None
            if tokens is not None and len(tokens) == fields:
                keys, offsets = tokens[0::2], tokens[1::2]
                fits = (np.abs(tokens) < 2**63 - 1).all()  # numpy saturates on overflow
                in_file = (offsets >= 0) & (offsets < self.size) & (offsets % 4 == 0)
                if fits and in_file.all() and _distinct(keys):
                    return keys, offsets
        return self._read_index_lines(data)

    def _read_index_lines(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        keys: list[int] = []
        offsets: list[int] = []
        seen: set[int] = set()
        text = data.decode("utf-8", errors="replace")
        for line_no, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            where = f"{self.idx_path}, line {line_no}"
            try:
                if len(fields) != 2:
                    raise ValueError
                key, offset = int(fields[0]), int(fields[1])
            except ValueError:
                raise RecordIOError(
                    f"{where}: expected 'key<TAB>offset', found {line.rstrip()!r}"
                ) from None
            if not 0 <= offset < self.size or offset % 4:
                raise RecordIOError(
                    f"{where}: offset {offset} of key {key} is outside {self.path} "
                    f"({self.size:,} bytes) or not on a 4-byte boundary"
                )
            if not -(2**63) <= key < 2**63:
                raise RecordIOError(f"{where}: key {key} does not fit in 64 bits")
            if key in seen:
                raise RecordIOError(f"{where}: key {key} appears twice")
            seen.add(key)
            keys.append(key)
            offsets.append(offset)
        return np.array(keys, dtype=np.int64), np.array(offsets, dtype=np.int64)

    def _scan(self) -> tuple[np.ndarray, np.ndarray]:
        offsets = self.scan()
        return np.arange(len(offsets), dtype=np.int64), np.array(offsets, dtype=np.int64)

    def scan(self) -> list[int]:
        """Walk the file record by record: the offset of every record (rebuilds a lost .idx,
        whose keys are then 0, 1, 2, …)."""
        offsets: list[int] = []
        pos = 0
        while pos < self.size:
            _, end = self.read_at(pos)
            offsets.append(pos)
            pos = end
        return offsets

    def read_at(self, offset: int) -> tuple[bytes, int]:
        """The record whose first part starts at ``offset``, and the offset after it.

        Raises:
            RecordIOError: a wrong magic, a bad part sequence, or a record running past the
                end of the file (message names the file and the byte offset).
        """
        return read_record(self._map, offset, self.size, self.path)

    def position(self, key: int) -> int:
        """Where ``key`` is in the index (its row in `key_array`/`offset_array`).

        Raises:
            KeyError: no such key.
        """
        at = int(np.searchsorted(self._sorted_keys, key))
        if at == len(self._sorted_keys) or self._sorted_keys[at] != key:
            raise KeyError(key)
        return at if self._order is None else int(self._order[at])

    def positions(self, keys: np.ndarray) -> np.ndarray:
        """`position` of each of ``keys`` at once; -1 for a key not in the index."""
        keys = np.asarray(keys, dtype=np.int64)
        at = np.searchsorted(self._sorted_keys, keys)
        found = at < len(self._sorted_keys)
        found[found] = self._sorted_keys[at[found]] == keys[found]
        if self._order is not None:
            at = self._order[np.minimum(at, len(self._order) - 1)] if len(self._order) else at
        return np.where(found, at, -1)

    def headers(self, positions: np.ndarray) -> HeaderBlock:
        """The IRHeaders of the records at index ``positions``, parsed all at once from the map
        (see `HeaderBlock`); records it cannot vouch for are marked not ``intact``."""
        return header_block(self._map, self.size, self.offset_array[positions])

    def join_spans(self, spans: Sequence[tuple[int, int]]) -> bytes:
        """The bytes of ``spans`` of the file, concatenated with a single copy."""
        assert self._map is not None, "reader is closed or the file is empty"
        with memoryview(self._map) as view:
            return b"".join([view[start : start + length] for start, length in spans])

    def read(self, key: int) -> bytes:
        """The payload of the record with ``key``.

        Raises:
            KeyError: no such key in the index.
        """
        return self.read_at(self.offset(key))[0]

    def offset(self, key: int) -> int:
        """Byte offset of ``key``'s record."""
        return int(self.offset_array[self.position(key)])

    def __len__(self) -> int:
        return len(self.key_array)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, int | np.integer):
            return False
        try:
            self.position(int(key))
        except (KeyError, OverflowError):
            return False
        return True

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        """(key, payload) for every indexed record, in key order of the index file."""
        for key, offset in zip(self.keys, _IntView(self.offset_array), strict=True):
            yield key, self.read_at(offset)[0]

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


class _IntView(Sequence[int]):
    """A read-only int64 array seen as a sequence of Python ints (no list of them is built)."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def __len__(self) -> int:
        return len(self._array)

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        if isinstance(i, slice):
            return self._array[i].tolist()
        return int(self._array[i])

    def __iter__(self) -> Iterator[int]:
        for start in range(0, len(self._array), 65536):
            yield from self._array[start : start + 65536].tolist()


def _distinct(keys: np.ndarray) -> bool:
    """No key appears twice (cheap for the usual increasing keys)."""
    if (keys[1:] > keys[:-1]).all():
        return True
    ordered = np.sort(keys)
    return not (ordered[1:] == ordered[:-1]).any()


def _fields_if_two_a_line(data: bytes) -> int | None:
    """The number of whitespace-separated fields in ``data`` when every non-blank line holds
    exactly two; None otherwise."""
    text = np.frombuffer(data, dtype=np.uint8)
    newline = text == 10
    space = newline | (text == 32) | ((text >= 9) & (text <= 13))
    starts = ~space
    starts[1:] &= space[:-1]  # first byte of each field
    per_line = np.bincount(np.cumsum(newline)[starts])
    return int(starts.sum()) if ((per_line == 0) | (per_line == 2)).all() else None


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
