"""fmlkit's RecordIO against real MXNet 1.9.1, run in its own interpreter.

MXNet is never a dependency: it needs numpy < 1.24. `make mxnet-env` builds the environment
(bench/.mxnet-venv); FMLKIT_MXNET_PYTHON may point at another interpreter that imports mxnet.
Without one these tests are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fmlkit.data.formats.recordio import (
    MAGIC_BYTES,
    IRHeader,
    RecordWriter,
    pack,
    unpack,
)
from fmlkit.data.formats.recordio_reader import RecordReader

M = MAGIC_BYTES
MXNET_PYTHON = Path(
    os.environ.get(
        "FMLKIT_MXNET_PYTHON",
        Path(__file__).parents[3] / "bench" / ".mxnet-venv" / "bin" / "python",
    )
)
pytestmark = pytest.mark.skipif(
    not MXNET_PYTHON.exists(), reason=f"no MXNet interpreter at {MXNET_PYTHON} (make mxnet-env)"
)

# (key, flag, label(s), id, image bytes): magics aligned, unaligned, alone; label arrays
RECORDS = [
    (0, 2, [7.0, 10.0], 0, b""),
    (1, 0, 3.0, 1, b"\xff\xd8" + b"x" * 22 + M + b"tail"),  # magic at payload offset 24+24
    (2, 0, 1.0, 2, M),
    (3, 0, 0.0, 3, b"a" + M + b"bc"),
    (4, 3, [1.0, 2.5, -4.0], 4, M + M + b"end"),
    (5, 0, 16777217.0, 5, b""),  # float32: stored as 2**24
    (6, 0, 2.0, 6, b"\0" * 1001),
]

MXNET_SCRIPT = r"""
import json, sys
import mxnet as mx
from mxnet import recordio
mode, rec, idx = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "write":
    records = json.loads(sys.argv[4])
    writer = recordio.MXIndexedRecordIO(idx, rec, "w")
    for key, flag, label, id_, image in records:
        header = recordio.IRHeader(flag, label, id_, 0)
        writer.write_idx(key, recordio.pack(header, bytes.fromhex(image)))
    writer.close()
else:
    reader = recordio.MXIndexedRecordIO(idx, rec, "r")
    out = []
    for key in reader.keys:
        header, image = recordio.unpack(reader.read_idx(key))
        label = header.label.tolist() if hasattr(header.label, "tolist") else float(header.label)
        out.append([int(key), int(header.flag), label, int(header.id), image.hex()])
    print(json.dumps(out))
"""


def _mxnet(*args: str) -> str:
    out = subprocess.run(
        [str(MXNET_PYTHON), "-c", MXNET_SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _fmlkit_write(rec: Path) -> None:
    with RecordWriter(rec, rec.with_suffix(".idx")) as writer:
        for key, flag, label, id_, image in RECORDS:
            labels = tuple(label) if isinstance(label, list) else label
            writer.write(key, pack(IRHeader(flag, labels, id_), image))


def _expected() -> list[list[object]]:
    rows: list[list[object]] = []
    for key, flag, label, id_, image in RECORDS:
        value = [float(v) for v in label] if isinstance(label, list) else label
        if value == 16777217.0:
            value = 16777216.0
        rows.append([key, flag, value, id_, image.hex()])
    return rows


def test_mxnet_reads_what_fmlkit_writes(tmp_path: Path) -> None:
    rec = tmp_path / "ours.rec"
    _fmlkit_write(rec)
    assert json.loads(_mxnet("read", str(rec), str(rec.with_suffix(".idx")))) == _expected()


def test_fmlkit_writes_the_same_bytes_as_mxnet(tmp_path: Path) -> None:
    theirs, ours = tmp_path / "theirs.rec", tmp_path / "ours.rec"
    records = [[k, f, lab, i, img.hex()] for k, f, lab, i, img in RECORDS]
    _mxnet("write", str(theirs), str(theirs.with_suffix(".idx")), json.dumps(records))
    _fmlkit_write(ours)
    assert ours.read_bytes() == theirs.read_bytes()
    assert ours.with_suffix(".idx").read_text() == theirs.with_suffix(".idx").read_text()


def test_fmlkit_reads_what_mxnet_writes(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.rec"
    records = [[k, f, lab, i, img.hex()] for k, f, lab, i, img in RECORDS]
    _mxnet("write", str(theirs), str(theirs.with_suffix(".idx")), json.dumps(records))
    with RecordReader(theirs) as reader:
        got = []
        for key, payload in reader:
            header, image = unpack(payload)
            label = list(header.label) if isinstance(header.label, tuple) else header.label
            got.append([key, header.flag, label, header.id, image.hex()])
    assert got == _expected()
