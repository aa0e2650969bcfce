"""Reading a RecordIO ``.rec`` (docs/formats.md#mxnet-recordio): `RecordReader`, memory-mapped,
with random access by key through the ``.idx``.

The ``.idx`` is text, ``key<TAB>offset`` per line (offset of the record's first magic); it is
parsed at once when it is clean, line by line (errors naming the line) when it is not. Without
it, the reader scans the file and numbers the records 0, 1, 2, … The byte layout of a record
and the parsing of its parts are in `fmlkit.data.formats.recordio`.
"""

from __future__ import annotations

import mmap
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from fmlkit.data.formats.recordio import HeaderBlock, RecordIOError, header_block, read_record
from fmlkit.errors import InputError
from fmlkit.io import Closing


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
