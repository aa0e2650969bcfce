from __future__ import annotations

import codecs
import io
import os
import pickle
import pickletools
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmlkit.data.formats.insightface_bin import (
    UnsafePickleError,
    VerificationBin,
    load_bin,
    write_bin,
)
from fmlkit.errors import FmlkitError, FormatError, InputError


def _encoded(seed: int, fmt: str) -> bytes:
    """A small real image (8x8 RGB) encoded as PNG or JPEG."""
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


IMAGES = [_encoded(seed, "PNG" if seed % 2 else "JPEG") for seed in range(6)]
ISSAME = [True, False, True]


def _globals(data: bytes) -> set[str]:
    """The ``module.name`` globals a pickle asks for (GLOBAL and STACK_GLOBAL opcodes)."""
    found, strings = set(), []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL":
            found.add(".".join(strings[-2:]))
        elif isinstance(arg, str):
            strings.append(arg)
    return found


def _dump(path: Path, obj: object, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def _dump_raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class _Hostile:
    """Pickles as a call to ``func(*args)``, which ``pickle.loads`` would run."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_write_bin_round_trips_every_protocol(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "lfw.bin"
    write_bin(path, IMAGES, ISSAME, protocol=protocol)
    loaded = load_bin(path)
    assert loaded == VerificationBin(IMAGES, ISSAME)
    assert all(type(image) is bytes for image in loaded.images)
    assert loaded.num_pairs == 3
    assert loaded.pairs[1] == (IMAGES[2], IMAGES[3], False)
    assert pickle.loads(path.read_bytes()) == (IMAGES, ISSAME)  # a plain pickle, as documented


def test_load_bin_accepts_protocol2_codecs_encode(tmp_path: Path) -> None:
    path = tmp_path / "agedb_30.bin"
    write_bin(path, IMAGES, ISSAME, protocol=2)
    assert _globals(path.read_bytes()) == {"_codecs.encode"}
    assert load_bin(path).images == IMAGES


def test_load_bin_turns_text_images_into_bytes(tmp_path: Path) -> None:
    text = [image.decode("latin-1") for image in IMAGES]
    path = _dump(tmp_path / "old.bin", (text, ISSAME), protocol=2)
    loaded = load_bin(path)
    assert loaded.images == IMAGES
    assert all(type(image) is bytes for image in loaded.images)


def test_load_bin_reads_python2_binstring_pickle(tmp_path: Path) -> None:
    # What Python 2's cPickle writes at protocol 2 for (list of str, list of bool): str items
    # as SHORT_BINSTRING/BINSTRING, no globals. Flags as NEWTRUE/NEWFALSE and protocol-0 INT.
    def binstring(data: bytes) -> bytes:
        if len(data) < 256:
            return b"U" + bytes([len(data)]) + data
        return b"T" + struct.pack("<i", len(data)) + data

    data = (
        b"\x80\x02]q\x00(" + b"".join(binstring(image) for image in IMAGES) + b"e"
        b"]q\x01(\x88I00\nI01\ne\x86q\x02."
    )
    loaded = load_bin(_dump_raw(tmp_path / "py2.bin", data))
    assert loaded.images == IMAGES
    assert loaded.issame == [True, False, True]


def test_load_bin_turns_int_flags_into_bools(tmp_path: Path) -> None:
    loaded = load_bin(_dump(tmp_path / "a.bin", (IMAGES, (1, 0, 1))))
    assert loaded.issame == [True, False, True]
    assert all(type(flag) is bool for flag in loaded.issame)


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_load_bin_refuses_os_system(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    data = pickle.dumps((IMAGES, _Hostile(os.system, f"touch {marker}")), protocol=protocol)
    path = _dump_raw(tmp_path / "evil.bin", data)
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system") as caught:
        load_bin(path)
    assert "nothing in the file was executed" in str(caught.value)
    assert not marker.exists()
    pickle.loads(data)  # the pickle really is hostile: plain pickle runs the command
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_load_bin_refuses_builtins_eval(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    path = _dump(tmp_path / "evil.bin", _Hostile(eval, code), protocol=protocol)
    with pytest.raises(UnsafePickleError, match=r"(builtins|__builtin__)\.eval"):
        load_bin(path)
    assert not marker.exists()


def test_load_bin_refuses_numpy_array(tmp_path: Path) -> None:
    path = _dump(tmp_path / "cfp_fp.bin", (IMAGES, np.array(ISSAME)))
    with pytest.raises(UnsafePickleError, match=r"numpy\._?core\.multiarray\._reconstruct") as e:
        load_bin(path)
    assert ".tolist()" in str(e.value)


def test_load_bin_refuses_numpy_bools_in_a_list(tmp_path: Path) -> None:
    path = _dump(tmp_path / "cfp_fp.bin", (IMAGES, [np.bool_(flag) for flag in ISSAME]))
    with pytest.raises(UnsafePickleError, match=r"numpy\."):
        load_bin(path)


def test_load_bin_refuses_codecs_encode_with_another_codec(tmp_path: Path) -> None:
    path = _dump(tmp_path / "a.bin", _Hostile(codecs.encode, "payload", "rot13"), protocol=2)
    assert _globals(path.read_bytes()) == {"_codecs.encode"}
    with pytest.raises(UnsafePickleError, match="rot13"):
        load_bin(path)


def test_load_bin_refuses_persistent_ids(tmp_path: Path) -> None:
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> str | None:
            return "external" if obj is ISSAME else None

    out = io.BytesIO()
    Pickler(out, protocol=4).dump((IMAGES, ISSAME))
    with pytest.raises(UnsafePickleError, match="persistent id 'external'"):
        load_bin(_dump_raw(tmp_path / "a.bin", out.getvalue()))


def test_load_bin_refuses_huge_memo_index(tmp_path: Path) -> None:
    # 13 bytes asking the C unpickler to allocate (and zero) 2**22 memo slots; 2**32 would OOM.
    data = b"\x80\x04Nr" + struct.pack("<I", 2**22) + b"."
    with pytest.raises(UnsafePickleError, match=r"memo index 4,194,304"):
        load_bin(_dump_raw(tmp_path / "a.bin", data))


def test_load_bin_rejects_count_mismatch(tmp_path: Path) -> None:
    path = _dump(tmp_path / "a.bin", (IMAGES[:5], ISSAME))
    with pytest.raises(FormatError, match="5 images for 3 pairs") as caught:
        load_bin(path)
    assert "6 images" in str(caught.value)


def test_load_bin_rejects_empty_image(tmp_path: Path) -> None:
    images = [*IMAGES[:3], b"", *IMAGES[4:]]
    with pytest.raises(FormatError, match=r"image 3 \(pair 1\) is empty"):
        load_bin(_dump(tmp_path / "a.bin", (images, ISSAME)))


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([IMAGES, ISSAME, "extra"], "a list of 3 items"),
        ((IMAGES, [True, 2, False]), r"issame\[1\] is 2"),
        ((IMAGES, [True, 1.0, False]), r"issame\[1\] is 1\.0"),
        ((IMAGES, "yes"), "issame is a str"),
        (([], []), "no pairs"),
        (([*IMAGES[:5], 7], ISSAME), r"image 5 \(pair 2\) is an int"),
        (([*IMAGES[:5], "\u0100"], ISSAME), r"image 5 \(pair 2\) is text with characters beyond"),
    ],
)
def test_load_bin_rejects_wrong_structure(tmp_path: Path, obj: object, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        load_bin(_dump(tmp_path / "a.bin", obj))


@pytest.mark.parametrize("protocol", [2, 4])
def test_load_bin_rejects_truncated_file(tmp_path: Path, protocol: int) -> None:
    write_bin(tmp_path / "full.bin", IMAGES, ISSAME, protocol=protocol)
    data = (tmp_path / "full.bin").read_bytes()
    path = _dump_raw(tmp_path / "half.bin", data[: len(data) // 2])
    with pytest.raises(FormatError, match="not a readable pickle"):
        load_bin(path)


def test_load_bin_rejects_every_prefix(tmp_path: Path) -> None:
    data = pickle.dumps(([b"a", b"b", b"c", b"d"], [True, False]), protocol=2)
    path = tmp_path / "cut.bin"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(FormatError):
            load_bin(path)


@pytest.mark.parametrize(
    "data",
    [b"", b"not a pickle at all\n", IMAGES[0], IMAGES[1], b"\x80\x09]."],
    ids=["empty", "text", "jpeg", "png", "unknown-protocol"],
)
def test_load_bin_rejects_non_pickles(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(FormatError):
        load_bin(_dump_raw(tmp_path / "a.bin", data))


def test_load_bin_rejects_corrupted_bytes(tmp_path: Path) -> None:
    # Every single-byte change either loads cleanly or raises an FmlkitError, never another type.
    data = pickle.dumps(([b"a", b"b", b"c", b"d"], [True, False]), protocol=4)
    path = tmp_path / "flip.bin"
    refused = 0
    for offset in range(len(data)):
        for value in (0x00, 0x7F, 0xFF, data[offset] ^ 0x01):
            path.write_bytes(data[:offset] + bytes([value]) + data[offset + 1 :])
            try:
                load_bin(path)
            except FmlkitError:
                refused += 1
    assert refused > 0


def test_load_bin_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_bin(tmp_path / "lfw.bin")
    with pytest.raises(InputError, match="is a directory"):
        load_bin(tmp_path)


def test_write_bin_refuses_bad_arguments(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    with pytest.raises(InputError, match="5 images for 3 pairs"):
        write_bin(path, IMAGES[:5], ISSAME)
    with pytest.raises(InputError, match=r"image 0 \(pair 0\) is a str"):
        write_bin(path, ["lfw/a.jpg", *IMAGES[1:]], ISSAME)  # type: ignore[list-item]
    with pytest.raises(InputError, match="protocol 9"):
        write_bin(path, IMAGES, ISSAME, protocol=9)
    assert not path.exists()
