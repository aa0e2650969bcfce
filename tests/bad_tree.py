"""A dataset tree with every kind of bad or odd input `fmlkit prepare` must survive.

`build_bad_tree` writes it and returns what a scan must find: one `Expect` per row, and the
entries that must be skipped, by reason.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Expect:
    """What the row of one file must say ("" error: readable)."""

    error: str = ""
    mode: str = "RGB"
    format: str = "JPEG"
    size: tuple[int, int] | None = (64, 48)  # width, height after EXIF rotation


@dataclass(frozen=True)
class BadTree:
    root: Path
    outside: Path  # a folder beside the root that links point to
    rows: dict[str, Expect]  # file_name → expectation
    skipped: dict[str, set[str]]  # reason → relative paths
    notices: dict[str, set[str]]
    unreadable: str | None  # file_name of the chmod-000 file (its row depends on the user)


def _photo(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A smooth random picture, so hashes of different images differ."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims ``width`` × ``height`` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )


def build_bad_tree(base: Path) -> BadTree:
    """Write the tree under ``base/bad`` (links to ``base/outside``)."""
    root = base / "bad"
    outside = base / "outside"
    outside.mkdir(parents=True)
    _photo(99).save(outside / "secret.jpg")
    rows: dict[str, Expect] = {}
    skipped: dict[str, set[str]] = {}
    notices: dict[str, set[str]] = {}

    def put(rel: str, data: bytes, expect: Expect | None = None) -> Path:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if expect is not None:
            rows[rel] = expect
        return path

    def skip(reason: str, rel: str) -> None:
        skipped.setdefault(reason, set()).add(rel)

    jpeg = _encode(_photo(1), "JPEG", quality=90)
    # readable images, some unusual
    put("alice/ok.jpg", jpeg, Expect())
    put("alice/sub/deeper.png", _encode(_photo(2), "PNG"), Expect(format="PNG"))
    put("alice/x.jpg/inner.jpg", _encode(_photo(3), "JPEG"), Expect())  # folder named x.jpg
    notices["folder_named_like_image"] = {"alice/x.jpg/"}
    cmyk = _encode(_photo(4).convert("CMYK"), "JPEG")
    put("bob/cmyk.jpg", cmyk, Expect(mode="CMYK"))
    grey16 = Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 21)
    put("bob/gray16.png", _encode(grey16, "PNG"), Expect(mode="I;16", format="PNG"))
    palette = _photo(5).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    put("bob/palette.png", _encode(palette, "PNG", transparency=0), Expect("", "P", "PNG"))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    rotated = _encode(_photo(6, (40, 20)), "JPEG", exif=exif.tobytes())
    put("bob/rotated.jpg", rotated, Expect(size=(20, 40)))
    put("bob/IMG_0001.JPEG", _encode(_photo(7), "JPEG"), Expect())  # upper-case extension
    put("bob/png_named.jpg", _encode(_photo(8), "PNG"), Expect(format="PNG"))
    put("bob/photo.webp", _encode(_photo(9), "WEBP"), Expect(format="WEBP"))
    put("bob/photo.bmp", _encode(_photo(10), "BMP"), Expect(format="BMP"))
    put("bob/photo.tiff", _encode(_photo(11), "TIFF"), Expect(format="TIFF"))
    put('bob/a,b "c".jpg', _encode(_photo(12), "JPEG"), Expect())  # CSV quoting
    put("bob/new\nline.jpg", _encode(_photo(13), "JPEG"), Expect())
    put("Zoë Saldaña/ünïcödé name.jpg", _encode(_photo(14), "JPEG"), Expect())
    put("Zoë Saldaña/with space.jpg", _encode(_photo(15), "JPEG"), Expect())
    put("NA/1e10.jpg", _encode(_photo(16), "JPEG"), Expect())  # text pandas likes to parse
    # broken files: listed with a reason
    put("alice/truncated.jpg", jpeg[: len(jpeg) // 2], Expect("truncated", "RGB", "JPEG", None))
    put("alice/empty.jpg", b"", Expect("empty", "", "", None))
    put("alice/text.jpg", b"hello, I am not a picture\n", Expect("not_image", "", "", None))
    put("alice/header_only.jpg", jpeg[:20], Expect("corrupt", "", "", None))
    put("alice/bomb.png", bomb_png(), Expect("decompression_bomb", "", "", None))
    put("stray.jpg", jpeg, Expect("no_label", "", "", None))  # directly under the root
    unreadable = "dave/unreadable.jpg"
    put(unreadable, jpeg).chmod(0)
    # entries that are not rows
    put("README.md", b"# my dataset\n")
    skip("not_image_extension", "README.md")
    put("bob/notes.txt", b"notes\n")
    put("bob/noext", jpeg)
    skip("not_image_extension", "bob/notes.txt")
    skip("not_image_extension", "bob/noext")
    put("bob/.DS_Store", b"\0\0")
    put("bob/.hidden.jpg", jpeg)
    put(".cache/thumb.jpg", jpeg)
    skipped["hidden"] = {"bob/.DS_Store", "bob/.hidden.jpg", ".cache/"}
    os.mkfifo(root / "bob" / "fifo.jpg")  # opening it would block forever
    skip("special_file", "bob/fifo.jpg")
    links = {
        "alice/loop": ("..", "symlink_loop"),  # → the root: a loop
        "alice/self": (".", "symlink_loop"),
        "bob/dangling.jpg": ("nowhere.jpg", "broken_symlink"),
        "bob/outside.jpg": ("../../outside/secret.jpg", "symlink_outside"),
        "bob/outside_dir": ("../../outside", "symlink_outside"),
        "bob/ping.jpg": ("pong.jpg", "symlink_loop"),  # two links pointing at each other
        "bob/pong.jpg": ("ping.jpg", "symlink_loop"),
    }
    for rel, (target, reason) in links.items():
        (root / rel).symlink_to(target)
        skip(reason, rel + "/" if reason == "symlink_loop" and "." in target[:1] else rel)
    (root / "bob" / "alias.jpg").symlink_to("../alice/ok.jpg")  # inside the root: followed
    rows["bob/alias.jpg"] = Expect()
    (root / "bob" / "linked_sub").symlink_to("../alice/sub")
    rows["bob/linked_sub/deeper.png"] = Expect(format="PNG")
    bad_name = os.fsencode(root / "bob") + b"/caf\xe9.jpg"  # Latin-1, not UTF-8
    fd = os.open(bad_name, os.O_WRONLY | os.O_CREAT, 0o644)  # bytes path: no Path for it
    os.write(fd, jpeg)
    os.close(fd)
    skip("undecodable_name", "bob/caf\\xe9.jpg")
    return BadTree(root, outside, rows, skipped, notices, unreadable)
