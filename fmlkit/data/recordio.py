"""MXNet RecordIO (.rec + .idx), read and written exactly, without mxnet.

The byte layout (dmlc-core ``recordio.h``; REFERENCE §1): each part is the magic
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

import mmap
import os
import struct
from collections.abc import Iterator, KeysView, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

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

    def abort(self) -> None:
        """Close and delete the temporary files."""
        for f, tmp in ((self._rec, self._rec_tmp), (self._idx, self._idx_tmp)):
            if f is not None and tmp is not None:
                f.close()
                tmp.unlink(missing_ok=True)


class RecordReader:
    """Memory-mapped reader of a .rec, with random access by key through the .idx.

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
        self.size = self.path.stat().st_size
        with self.path.open("rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else None
        self._offsets = self._read_index() if self.idx_path else self.scan()

    @property
    def keys(self) -> KeysView[int]:
        """The record keys, in the order of the index (or of the file, without one)."""
        return self._offsets.keys()

    def _read_index(self) -> dict[int, int]:
        assert self.idx_path is not None
        offsets: dict[int, int] = {}
        with self.idx_path.open(encoding="utf-8", errors="replace") as f:
            for line_no, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                where = f"{self.idx_path}, line {line_no}"
                try:
                    key, offset = int(fields[0]), int(fields[1])
                except (ValueError, IndexError):
                    raise RecordIOError(
                        f"{where}: expected 'key<TAB>offset', found {line.rstrip()!r}"
                    ) from None
                if not 0 <= offset < self.size or offset % 4:
                    raise RecordIOError(
                        f"{where}: offset {offset} of key {key} is outside {self.path} "
                        f"({self.size:,} bytes) or not on a 4-byte boundary"
                    )
                if key in offsets:
                    raise RecordIOError(f"{where}: key {key} appears twice")
                offsets[key] = offset
        return offsets

    def scan(self) -> dict[int, int]:
        """Walk the file record by record: offsets keyed 0, 1, 2, … (rebuilds a lost .idx)."""
        offsets: dict[int, int] = {}
        pos = 0
        while pos < self.size:
            _, end = self.read_at(pos)
            offsets[len(offsets)] = pos
            pos = end
        return offsets

    def read_at(self, offset: int) -> tuple[bytes, int]:
        """The record whose first part starts at ``offset``, and the offset after it.

        Raises:
            RecordIOError: a wrong magic, a bad part sequence, or a record running past the
                end of the file (message names the file and the byte offset).
        """
        pieces: list[bytes] = []
        pos, expect_more = offset, False
        while True:
            if pos + 8 > self.size or self._map is None:
                raise RecordIOError(
                    f"{self.path}: record at byte {offset} is truncated: the file ends at "
                    f"byte {self.size:,}, inside the part header at byte {pos:,}"
                )
            magic, lrecord = _PART.unpack_from(self._map, pos)
            if magic != MAGIC:
                raise RecordIOError(
                    f"{self.path}: wrong magic 0x{magic:08X} at byte {pos:,} (expected "
                    f"0x{MAGIC:08X}); the file is damaged or not RecordIO"
                )
            cflag, length = lrecord >> 29, lrecord & LENGTH_MASK
            if pos + 8 + length > self.size:
                raise RecordIOError(
                    f"{self.path}: record at byte {offset:,} is truncated: a part of "
                    f"{length:,} bytes at byte {pos:,} runs past the end ({self.size:,} bytes)"
                )
            if cflag not in (FULL, FIRST, MIDDLE, LAST) or (cflag in (FULL, FIRST)) == expect_more:
                raise RecordIOError(
                    f"{self.path}: part with cflag {cflag} at byte {pos:,} breaks the record "
                    f"that starts at byte {offset:,}"
                )
            pieces.append(self._map[pos + 8 : pos + 8 + length])
            pos += 8 + length + (-length % 4)
            if cflag in (FULL, LAST):
                return MAGIC_BYTES.join(pieces), pos
            expect_more = True

    def head(self, key: int, size: int) -> tuple[bytes, int | None]:
        """The first ``size`` bytes of ``key``'s payload (fewer if it is shorter), and the
        payload's length when the record is one part. Reads only those bytes when it can:
        a cheap pass over the IRHeaders of a large file.
        """
        offset = self._offsets[key]
        if self._map is not None and offset + 8 <= self.size:
            magic, lrecord = _PART.unpack_from(self._map, offset)
            length = lrecord & LENGTH_MASK
            if magic == MAGIC and lrecord >> 29 == FULL and offset + 8 + length <= self.size:
                return self._map[offset + 8 : offset + 8 + min(size, length)], length
        return self.read_at(offset)[0][:size], None

    def image_span(self, key: int) -> tuple[int, int] | None:
        """(start, length) in the file of the image bytes of ``key``'s image record, when the
        record is one intact part; None otherwise (read it with `read` and `unpack`)."""
        offset = self._offsets[key]
        if self._map is None or offset + 8 + IR_HEADER.size > self.size:
            return None
        magic, lrecord = _PART.unpack_from(self._map, offset)
        length = lrecord & LENGTH_MASK
        if magic != MAGIC or lrecord >> 29 != FULL or offset + 8 + length > self.size:
            return None
        flag = IR_HEADER.unpack_from(self._map, offset + 8)[0]
        start, end = offset + 8 + IR_HEADER.size + 4 * flag, offset + 8 + length
        return (start, end - start) if start <= end else None

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
        return self.read_at(self._offsets[key])[0]

    def offset(self, key: int) -> int:
        """Byte offset of ``key``'s record."""
        return self._offsets[key]

    def __len__(self) -> int:
        return len(self._offsets)

    def __contains__(self, key: object) -> bool:
        return key in self._offsets

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        """(key, payload) for every indexed record, in key order of the index file."""
        for key, offset in self._offsets.items():
            yield key, self.read_at(offset)[0]

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class Flavour:
    """Which InsightFace layout a .rec has (REFERENCE §1).

    Attributes:
        kind: ``A`` (face2rec2: a header record, images, identity records), ``B`` (im2rec,
            keys from a .lst) or ``C`` (keys 0..N-1, no header).
        header_key: A: the header record's key (not an image).
        identity_keys: A: the identity records' key range [start, end) (not images).
    """

    kind: str
    header_key: int | None = None
    identity_keys: tuple[int, int] | None = None

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
        start, end = int(header.labels[0]), int(header.labels[1])
        if not 0 < start <= end:
            raise RecordIOError(
                f"{reader.path}: header record {first} gives an implausible identity key range "
                f"[{start}, {end})"
            )
        return Flavour("A", header_key=first, identity_keys=(start, end))
    sequential = header.flag == 0 and all(k == i for i, k in enumerate(reader.keys))
    return Flavour("C" if sequential else "B")
