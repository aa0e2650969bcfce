from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fmlkit.data.formats.recordio import (
    FIRST,
    FULL,
    LAST,
    MAGIC_BYTES,
    MIDDLE,
    IRHeader,
    RecordIOError,
    RecordWriter,
    encode_record,
    pack,
    unpack,
)
from fmlkit.data.formats.recordio_flavour import detect_flavour
from fmlkit.data.formats.recordio_reader import RecordReader
from fmlkit.errors import InputError

M = MAGIC_BYTES


def _parts(data: bytes) -> list[tuple[int, bytes]]:
    """Decode on-disk bytes into (cflag, data) parts, independently of the reader."""
    parts, pos = [], 0
    while pos < len(data):
        magic, lrecord = struct.unpack_from("<II", data, pos)
        assert magic == 0xCED7230A
        length = lrecord & (2**29 - 1)
        parts.append((lrecord >> 29, data[pos + 8 : pos + 8 + length]))
        assert data[pos + 8 + length : pos + 8 + length + (-length % 4)] == b"\0" * (-length % 4)
        pos += 8 + length + (-length % 4)
    return parts


def _write(path: Path, records: list[tuple[int, bytes]], *, idx: bool = True) -> Path:
    rec = path / "data.rec"
    with RecordWriter(rec, rec.with_suffix(".idx") if idx else None) as writer:
        for key, payload in records:
            writer.write(key, payload)
    return rec


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", [(FULL, b"")]),
        (b"abcde", [(FULL, b"abcde")]),
        (M, [(FIRST, b""), (LAST, b"")]),  # exactly the magic: two empty parts
        (b"abcd" + M + b"xy", [(FIRST, b"abcd"), (LAST, b"xy")]),
        (M + M, [(FIRST, b""), (MIDDLE, b""), (LAST, b"")]),
        (b"wxyz" + M + b"1234" + M, [(FIRST, b"wxyz"), (MIDDLE, b"1234"), (LAST, b"")]),
        (b"a" + M + b"bcd", [(FULL, b"a" + M + b"bcd")]),  # unaligned: not escaped
        (b"ab" + M, [(FULL, b"ab" + M)]),
    ],
)
def test_encode_record_splits_at_aligned_magics_only(
    payload: bytes, expected: list[tuple[int, bytes]]
) -> None:
    encoded = encode_record(payload)
    assert len(encoded) % 4 == 0
    assert _parts(encoded) == expected


@pytest.mark.parametrize("idx", [True, False])
def test_reader_round_trips_tricky_payloads(tmp_path: Path, idx: bool) -> None:
    payloads = [
        b"",
        b"x",
        M,
        M + M,
        b"abcd" + M + b"tail",
        b"a" + M,
        b"abc" + M + M + b"!",
        b"z" * 4097,
    ]
    rec = _write(tmp_path, list(enumerate(payloads)), idx=idx)
    with RecordReader(rec) as reader:
        assert (reader.idx_path is not None) == idx
        assert list(reader) == list(enumerate(payloads))
        assert [reader.read(k) for k in reversed(range(len(payloads)))] == payloads[::-1]


payload_chunks = st.lists(
    st.one_of(st.just(M), st.binary(max_size=9), st.sampled_from([b"\x0a\x23", b"\xd7\xce"])),
    max_size=8,
).map(b"".join)


@given(records=st.lists(payload_chunks, max_size=12), keys_seed=st.integers(0, 2**16))
def test_reader_round_trips_any_payloads_and_keys(records: list[bytes], keys_seed: int) -> None:
    import tempfile

    keys = np.random.default_rng(keys_seed).permutation(10 * len(records) + 1)[: len(records)]
    with tempfile.TemporaryDirectory() as tmp:
        rec = _write(Path(tmp), list(zip(keys.tolist(), records, strict=True)))
        with RecordReader(rec) as reader:
            assert list(reader.keys) == keys.tolist()
            assert [reader.read(k) for k in keys.tolist()] == records
        rec.with_suffix(".idx").unlink()
        with RecordReader(rec) as scanned:  # no index: a scan finds the same records
            assert list(scanned) == list(enumerate(records))


def test_reader_without_idx_numbers_records_in_file_order(tmp_path: Path) -> None:
    rec = _write(tmp_path, [(10, b"a"), (3, M), (7, b"")])
    rec.with_suffix(".idx").unlink()
    with RecordReader(rec) as reader:
        assert list(reader) == [(0, b"a"), (1, M), (2, b"")]
        assert [reader.offset(k) for k in reader.keys] == [0, 12, 28]


def test_pack_unpack_scalar_and_array_labels() -> None:
    header, image = unpack(pack(IRHeader(0, 3.0, id=5), b"JPEG"))
    assert (header, image) == (IRHeader(0, 3.0, 5, 0), b"JPEG")
    header, image = unpack(pack(IRHeader(2, (1.0, 2.5), id=1), b""))
    assert header.labels == (1.0, 2.5) and header.flag == 2 and image == b""
    # float32 on disk: 2**24 + 1 is not representable
    assert unpack(pack(IRHeader(0, float(2**24 + 1))))[0].label == float(2**24)


def test_unpack_rejects_short_payloads() -> None:
    with pytest.raises(RecordIOError, match="shorter than a 24-byte IRHeader"):
        unpack(b"\0" * 10)
    short = struct.pack("<IfQQ", 3, 0.0, 0, 0) + struct.pack("<2f", 1, 2)
    with pytest.raises(RecordIOError, match="header says 3 labels"):
        unpack(short)


def test_pack_rejects_flag_and_label_mismatch() -> None:
    with pytest.raises(InputError):
        pack(IRHeader(2, 1.0))
    with pytest.raises(InputError):
        pack(IRHeader(1, (1.0, 2.0)))


def _insightface_records(n: int, k: int) -> list[tuple[int, bytes]]:
    header = (0, pack(IRHeader(2, (float(n + 1), float(n + 1 + k)))))
    images = [
        (i, pack(IRHeader(0, float((i - 1) % k), id=i), b"img%d" % i)) for i in range(1, n + 1)
    ]
    ids = [(n + 1 + c, pack(IRHeader(2, (float(1 + c), float(2 + c))))) for c in range(k)]
    return [header, *images, *ids]


def test_detect_flavour_a_b_c(tmp_path: Path) -> None:
    for name, records, kind in [
        ("a", _insightface_records(6, 3), "A"),
        ("b", [(5, pack(IRHeader(0, 1.0), b"i")), (9, pack(IRHeader(0, 2.0), b"j"))], "B"),
        ("c", [(0, pack(IRHeader(0, 1.0), b"i")), (1, pack(IRHeader(0, 2.0), b"j"))], "C"),
    ]:
        (tmp_path / name).mkdir()
        with RecordReader(_write(tmp_path / name, records)) as reader:
            flavour = detect_flavour(reader)
        assert flavour.kind == kind
        if kind == "A":
            assert (flavour.header_key, flavour.identity_keys) == (0, (7, 10))
            assert [k for k in range(10) if flavour.is_image(k)] == list(range(1, 7))


def test_wrong_magic_names_file_and_byte_offset(tmp_path: Path) -> None:
    rec = _write(tmp_path, [(0, b"abcd"), (1, b"efgh")])
    data = bytearray(rec.read_bytes())
    data[12:16] = b"JUNK"
    rec.write_bytes(bytes(data))
    with RecordReader(rec) as reader:
        assert reader.read(0) == b"abcd"
        with pytest.raises(RecordIOError, match=rf"{rec}: wrong magic 0x4B4E554A at byte 12"):
            reader.read(1)
    rec.with_suffix(".idx").unlink()
    with pytest.raises(RecordIOError, match="at byte 12"):
        RecordReader(rec)  # the scan that rebuilds the index stops there, loudly


@pytest.mark.parametrize("cut", [1, 4, 9])
def test_truncated_last_record_is_an_error_not_a_short_read(tmp_path: Path, cut: int) -> None:
    rec = _write(tmp_path, [(0, b"abcd"), (1, b"efghijkl")])
    rec.write_bytes(rec.read_bytes()[:-cut])
    with RecordReader(rec) as reader, pytest.raises(RecordIOError, match="truncated"):
        reader.read(1)
    rec.with_suffix(".idx").unlink()
    with pytest.raises(RecordIOError, match="record at byte 12 is truncated"):
        RecordReader(rec)


def test_truncated_split_record_is_an_error(tmp_path: Path) -> None:
    rec = _write(tmp_path, [(0, b"abcd" + M + b"efgh")])
    rec.write_bytes(rec.read_bytes()[:12])  # the first part only
    with RecordReader(rec) as reader, pytest.raises(RecordIOError, match="truncated"):
        reader.read(0)


@pytest.mark.parametrize(
    ("idx_text", "message"),
    [
        ("0\t0\n1\t4000\n", "offset 4000 of key 1 is outside"),
        ("0\t0\n1\t6\n", "not on a 4-byte boundary"),
        ("0\t0\nzero\t12\n", "line 2: expected 'key<TAB>offset'"),
        ("0\t0\n0\t12\n", "key 0 appears twice"),
        ("0\t0\t7\n1\t12\n", "line 1: expected 'key<TAB>offset'"),
        ("0\n1\t0\t12\n", "line 1: expected 'key<TAB>offset'"),  # 1 + 3 fields: 4 in all
        ("0\t0\n99999999999999999999\t12\n", "line 2: key 99999999999999999999 does not fit"),
        ("0\t0\n1\t-4\n", "offset -4 of key 1 is outside"),
    ],
)
def test_bad_index_lines_are_errors_naming_the_line(
    tmp_path: Path, idx_text: str, message: str
) -> None:
    rec = _write(tmp_path, [(0, b"abcd"), (1, b"efgh")])
    rec.with_suffix(".idx").write_text(idx_text)
    with pytest.raises(RecordIOError, match=message):
        RecordReader(rec)


def test_index_tolerates_blank_lines_spaces_and_crlf(tmp_path: Path) -> None:
    rec = _write(tmp_path, [(5, b"abcd"), (2, b"efgh"), (9, b"ij")])
    rec.with_suffix(".idx").write_bytes(b"\n 5 0\r\n\n2\t12  \r\n9\t24\n\n")
    with RecordReader(rec) as reader:
        assert list(reader.keys) == [5, 2, 9]
        assert [reader.read(k) for k in (9, 2, 5)] == [b"ij", b"efgh", b"abcd"]
        assert 2 in reader and 3 not in reader and "2" not in reader and 2**70 not in reader
        assert reader.position(9) == 2
        assert reader.positions(np.array([9, 3, 5, 2, 2**40])).tolist() == [2, -1, 0, 1, -1]


def test_missing_key_is_a_key_error(tmp_path: Path) -> None:
    with RecordReader(_write(tmp_path, [(0, b"a")])) as reader, pytest.raises(KeyError):
        reader.read(5)


def test_index_pointing_into_the_middle_of_a_split_record_is_an_error(tmp_path: Path) -> None:
    rec = _write(tmp_path, [(0, b"abcd" + M + b"efgh")])
    rec.with_suffix(".idx").write_text("0\t12\n")  # the LAST part
    with RecordReader(rec) as reader, pytest.raises(RecordIOError, match="cflag 3 at byte 12"):
        reader.read(0)


def test_writer_interrupted_leaves_no_files(tmp_path: Path) -> None:
    rec = tmp_path / "x.rec"
    with pytest.raises(RuntimeError), RecordWriter(rec, tmp_path / "x.idx") as writer:
        writer.write(0, b"abc")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_a_key_twice(tmp_path: Path) -> None:
    with (
        pytest.raises(InputError, match="key 3 written twice"),
        RecordWriter(tmp_path / "x.rec", tmp_path / "x.idx") as writer,
    ):
        writer.write(3, b"a")
        writer.write(3, b"b")
    assert list(tmp_path.iterdir()) == []


def test_empty_rec_reads_as_no_records(tmp_path: Path) -> None:
    rec = _write(tmp_path, [])
    assert rec.stat().st_size == 0
    with RecordReader(rec) as reader:
        assert len(reader) == 0 and detect_flavour(reader).kind == "C"


def test_missing_rec_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        RecordReader(tmp_path / "none.rec")


@given(
    records=st.lists(
        st.tuples(
            st.integers(0, 3),  # flag: 0 for a scalar label, else this many labels
            st.lists(st.integers(0, 2**20), min_size=3, max_size=3),
            payload_chunks,  # image bytes, which may contain the magic: several parts
        ),
        max_size=10,
    ),
    cut=st.integers(0, 40),
)
def test_header_block_agrees_with_unpack(
    records: list[tuple[int, list[int], bytes]], cut: int
) -> None:
    import tempfile

    from fmlkit.data.formats.recordio import header_block

    payloads = []
    for flag, labels, image in records:
        label = float(labels[0]) if flag == 0 else tuple(float(v) for v in labels[:flag])
        payloads.append(pack(IRHeader(flag, label, 7, 0), image))
    with tempfile.TemporaryDirectory() as tmp:
        rec = _write(Path(tmp), list(enumerate(payloads)))
        if cut and payloads:  # cut the end off the last record: it must not be intact
            data = rec.read_bytes()
            rec.write_bytes(data[: max(len(data) - cut, 0)])
        with RecordReader(rec) as reader:
            heads = reader.headers(np.arange(len(reader)))
            for i, payload in enumerate(payloads):
                offset = reader.offset(i)
                try:
                    whole, _ = reader.read_at(offset)
                except RecordIOError:
                    assert not heads.intact[i]
                    continue
                one_part = len(_parts(encode_record(payload))) == 1
                assert heads.intact[i] == (one_part and offset + 48 <= reader.size), i
                if heads.intact[i]:
                    header, image = unpack(whole)
                    assert heads.flag[i] == header.flag
                    assert heads.label[i] == header.labels[0]
                    if header.flag >= 2:
                        assert heads.second[i] == header.labels[1]
                    start, length = int(heads.image_start[i]), int(heads.image_length[i])
                    assert reader.join_spans([(start, length)]) == image
        assert not header_block(None, 0, np.array([0, 4])).intact.any()
