"""InsightFace verification ``.bin`` files (lfw.bin, cfp_fp.bin, agedb_30.bin, …), loaded safely.

A ``.bin`` is a pickle of ``(bins, issame_list)``: ``bins`` holds 2·P encoded images (JPEG/PNG
bytes; items 2k and 2k + 1 are pair k) and ``issame_list`` P booleans. LFW has 6,000 pairs,
CFP-FP 7,000 and AgeDB-30 6,000. Old files were written by Python 2: they load with
``encoding="bytes"``, and images that come back as ``str`` are turned back into bytes through
latin-1.

A pickle can run any code on load, so `load_bin` never calls `pickle.load` as is. Its unpickler
refuses every global except ``_codecs.encode`` (Python 3 writes bytes at protocols 0-2 as
``_codecs.encode(text, "latin1")``), and accepts that one only with a ``str`` and latin-1;
persistent ids are refused too. A refusal raises `UnsafePickleError` before the requested
object is called, so nothing in the file runs. Before unpickling, the opcodes are walked once
with `pickletools.genops`, which builds nothing: it refuses a memo index far beyond anything a
pickler writes (the C unpickler allocates and zeroes a slot per index, so a 14-byte file could
otherwise claim gigabytes) and reports truncated or garbled files with the byte offset.

Only plain lists and tuples of bools or 0/1 ints are accepted for ``issame``; a numpy array
needs numpy's globals and is refused, with a hint to re-save it with ``.tolist()``.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmlkit.errors import FmlkitError, FormatError, InputError
from fmlkit.io import atomic_write_bytes

ALLOWED_GLOBAL = ("_codecs", "encode")  # the only global a plain (bytes, bool) pickle needs
_LATIN1 = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1"})
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_EXPECTED = "an InsightFace verification .bin, a pickle of (images, issame)"


class UnsafePickleError(FormatError):
    """A pickle asked for something other than plain data; nothing in it was executed."""


@dataclass(frozen=True)
class VerificationBin:
    """The contents of a verification ``.bin``.

    Attributes:
        images: 2·P encoded images (JPEG/PNG bytes); ``images[2k]`` and ``images[2k + 1]`` form
            pair k.
        issame: P flags, True when pair k shows one identity.
    """

    images: list[bytes]
    issame: list[bool]

    @property
    def num_pairs(self) -> int:
        """The number of pairs, P."""
        return len(self.issame)

    @property
    def pairs(self) -> list[tuple[bytes, bytes, bool]]:
        """``(first image, second image, issame)`` for each pair, in file order."""
        return [
            (self.images[2 * k], self.images[2 * k + 1], same) for k, same in enumerate(self.issame)
        ]


def load_bin(path: str | os.PathLike[str]) -> VerificationBin:
    """Read a verification ``.bin`` without running anything it contains.

    Args:
        path: the ``.bin`` file (Python 2 or Python 3 pickle, any protocol).

    Raises:
        InputError: ``path`` is missing or unreadable.
        UnsafePickleError: the pickle asks for a global other than ``_codecs.encode`` (or for
            that one with anything but latin-1 text), for a persistent id, or for an absurd memo
            index.
        FormatError: the file is not a pickle, is truncated, or does not hold ``(images,
            issame)`` with two non-empty images per bool/0-1 flag.
    """
    source = Path(path)
    where = str(source)
    data = _read(source)
    _check_opcodes(data, where)
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), where=where).load()
    except FmlkitError:
        raise
    except Exception as exc:  # any other failure of the unpickler is a damaged file
        raise FormatError(
            f"{where}: not a readable pickle ({type(exc).__name__}: {exc}); expected {_EXPECTED}"
        ) from exc
    return _validate(obj, where=where, error=FormatError, text_ok=True)


def write_bin(
    path: str | os.PathLike[str],
    images: Sequence[bytes],
    issame: Sequence[bool],
    *,
    protocol: int = 4,
) -> None:
    """Write a verification ``.bin`` atomically: a plain pickle of ``(images, issame)`` lists.

    Args:
        path: the output file (replaced if it exists).
        images: 2·P encoded images; items 2k and 2k + 1 form pair k.
        issame: P flags (bools, or 0/1 ints, stored as bools).
        protocol: the pickle protocol, 0 to `pickle.HIGHEST_PROTOCOL`; protocols below 3 store
            bytes as ``_codecs.encode`` calls, as Python-3-written InsightFace files do.

    Raises:
        InputError: the counts disagree, an image is empty or not bytes, a flag is not a bool
            or 0/1, or ``protocol`` is out of range.
    """
    if not 0 <= protocol <= pickle.HIGHEST_PROTOCOL:
        raise InputError(f"pickle protocol {protocol}: expected 0 to {pickle.HIGHEST_PROTOCOL}")
    checked = _validate(
        (list(images), list(issame)), where="write_bin", error=InputError, text_ok=False
    )
    data = pickle.dumps((checked.images, checked.issame), protocol=protocol)
    atomic_write_bytes(path, data)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds lists, tuples, bytes, str, bools and numbers, nothing else."""

    def __init__(self, file: io.BytesIO, *, where: str) -> None:
        super().__init__(file, encoding="bytes")
        self._where = where

    def find_class(self, module_name: str, global_name: str, /) -> Any:
        if (module_name, global_name) == ALLOWED_GLOBAL:
            return self._latin1_encode
        hint = ""
        if module_name.split(".")[0] == "numpy":
            hint = (
                " It is a numpy object (an array or numpy scalar); convert it with .tolist() "
                "and save the file again."
            )
        raise UnsafePickleError(
            f"{self._where}: the pickle asks for the global {module_name}.{global_name}, which "
            f"could run code; {_EXPECTED} needs only lists, tuples, bytes, str, bools and "
            f"numbers (plus {'.'.join(ALLOWED_GLOBAL)} for bytes at protocols 0-2). Refused; "
            f"nothing in the file was executed.{hint}"
        )

    def persistent_load(self, pid: Any, /) -> Any:
        raise UnsafePickleError(
            f"{self._where}: the pickle refers to an external object (persistent id "
            f"{reprlib.repr(pid)}); {_EXPECTED} is self-contained. Refused; nothing in the file "
            "was executed."
        )

    def _latin1_encode(self, text: object, encoding: object = "latin1", /) -> bytes:
        """``_codecs.encode`` as protocol-2 bytes use it: latin-1 text to bytes, nothing else."""
        if not isinstance(text, str) or encoding not in _LATIN1:
            raise UnsafePickleError(
                f"{self._where}: the pickle calls {'.'.join(ALLOWED_GLOBAL)} with a "
                f"{type(text).__name__} and encoding {reprlib.repr(encoding)}; only latin-1 "
                "text (how Python 3 pickles bytes at protocols 0-2) is allowed. Refused."
            )
        return text.encode("latin-1")


def _read(source: Path) -> bytes:
    try:
        return source.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{source}: no such file; expected {_EXPECTED}") from None
    except IsADirectoryError:
        raise InputError(f"{source} is a directory; expected {_EXPECTED}") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read it ({exc.strerror})") from exc


def _check_opcodes(data: bytes, where: str) -> None:
    """Walk the opcodes (building nothing); refuse damage and memo indices no pickler writes."""
    if not data:
        raise FormatError(f"{where}: the file is empty; expected {_EXPECTED}")
    try:
        for count, (opcode, arg, offset) in enumerate(pickletools.genops(data)):
            # Picklers number memo entries 0, 1, 2, … so an index never exceeds the opcode count.
            if opcode.name in _MEMO_PUTS and isinstance(arg, int) and arg > count:
                raise UnsafePickleError(
                    f"{where}: {opcode.name} at byte {offset} stores memo index {arg:,} after "
                    f"only {count:,} opcodes; no pickler writes that, and unpickling it would "
                    "allocate memory for every index below it. Refused."
                )
    except FmlkitError:
        raise
    except Exception as exc:  # genops raises ValueError (mostly) on truncated or garbled input
        raise FormatError(f"{where}: not a readable pickle ({exc}); expected {_EXPECTED}") from exc


def _validate(
    obj: object, *, where: str, error: type[FmlkitError], text_ok: bool
) -> VerificationBin:
    """Check ``obj`` is ``(images, issame)`` and return it as a `VerificationBin`.

    Args:
        obj: the unpickled object (or the arguments of `write_bin`).
        where: what to name in messages (the file, or ``write_bin``).
        error: the error class to raise (`FormatError` for files, `InputError` for arguments).
        text_ok: accept ``str`` images (Python 2 files) and turn them into bytes via latin-1.
    """
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise error(f"{where}: found {_describe(obj)}; expected {_EXPECTED}")
    bins, flags = obj
    if not isinstance(bins, (list, tuple)):
        raise error(f"{where}: the images are {_describe(bins)}; expected a list of bytes")
    issame = _flags(flags, where=where, error=error)
    if not issame:
        raise error(f"{where}: the file holds no pairs; expected {_EXPECTED} with P > 0 pairs")
    if len(bins) != 2 * len(issame):
        raise error(
            f"{where}: {len(bins):,} images for {len(issame):,} pairs; expected two images per "
            f"pair ({2 * len(issame):,} images)"
        )
    images = [
        _image(item, index, where=where, error=error, text_ok=text_ok)
        for index, item in enumerate(bins)
    ]
    return VerificationBin(images, issame)


def _flags(flags: object, *, where: str, error: type[FmlkitError]) -> list[bool]:
    if not isinstance(flags, (list, tuple)):
        raise error(
            f"{where}: issame is {_describe(flags)}; expected a list of bools (a numpy array "
            "should be saved as array.tolist())"
        )
    issame = []
    for index, flag in enumerate(flags):
        if not isinstance(flag, bool) and not (type(flag) is int and flag in (0, 1)):
            raise error(
                f"{where}: issame[{index}] is {reprlib.repr(flag)} ({type(flag).__name__}); "
                "expected a bool or 0/1"
            )
        issame.append(bool(flag))
    return issame


def _image(
    item: object, index: int, *, where: str, error: type[FmlkitError], text_ok: bool
) -> bytes:
    if text_ok and isinstance(item, str):
        try:
            item = item.encode("latin-1")
        except UnicodeEncodeError:
            raise error(
                f"{where}: image {index} (pair {index // 2}) is text with characters beyond "
                "latin-1; expected encoded image bytes"
            ) from None
    if isinstance(item, bytearray):
        item = bytes(item)
    if not isinstance(item, bytes):
        raise error(
            f"{where}: image {index} (pair {index // 2}) is {_describe(item)}; expected encoded "
            "image bytes (JPEG/PNG)"
        )
    if not item:
        raise error(f"{where}: image {index} (pair {index // 2}) is empty; expected JPEG/PNG bytes")
    return item


def _describe(obj: object) -> str:
    """``a list of 3 items``, ``an int`` and so on, for messages."""
    name = type(obj).__name__
    article = "an" if name[:1] in "aeiou" else "a"
    if isinstance(obj, (list, tuple, dict)):
        return f"{article} {name} of {len(obj):,} items"
    return f"{article} {name}"
