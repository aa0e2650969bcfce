"""`fmlkit convert` and `fmlkit inspect` against hostile input: damaged or lying Parquet
datasets, RecordIO files whose numbers ask for the impossible, malicious `.bin` pickles, image
folders with odd names and special files, and output paths that would replace what they must
not. Each case refuses with one `Error:` line and leaves nothing complete-looking behind, or
takes the input and says what it passed over.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fmlkit.data.convert.from_rec import rec_to_parquet
from fmlkit.data.formats.insightface_bin import write_bin
from fmlkit.data.formats.parquet_checks import manifest_body
from fmlkit.data.formats.parquet_layout import MANIFEST, MANIFEST_KEY
from fmlkit.data.formats.recordio import (
    LENGTH_MASK,
    MAGIC_BYTES,
    IRHeader,
    RecordWriter,
    encode_record,
    pack,
)
from tests.data.recs import flavour_a_rec, jpeg
from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded, unchanged

LABELS = [0, 0, 1, 1, 2]  # five images, three classes; shards of row groups of 2 rows


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flavour-A .rec (``r/train.rec``) and its Parquet dataset (``ds``, 3 row groups)."""
    root = tmp_path_factory.mktemp("convert")
    (root / "r").mkdir()
    rec = flavour_a_rec(root / "r", LABELS)
    rec_to_parquet(rec, root / "ds", row_group_rows=2, workers=1)
    return root


@pytest.fixture
def ds(base: Path, tmp_path: Path) -> Path:
    """A fresh copy of the base Parquet dataset, for a case to damage."""
    return Path(shutil.copytree(base / "ds", tmp_path / "ds"))


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or ``path`` itself), by relative path, with its bytes."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


# --- Parquet datasets that are damaged, foreign or lie ---------------------------------------


def _manifest(ds: Path) -> dict:
    body = manifest_body(ds / MANIFEST)
    assert isinstance(body, dict)
    return body


def _put_manifest(ds: Path, text: str | bytes) -> None:
    """Make ``text`` the manifest's JSON (the value of its Parquet schema metadata key)."""
    schema = pq.read_schema(ds / MANIFEST)
    value = text.encode() if isinstance(text, str) else text
    pq.write_metadata(schema.with_metadata({**schema.metadata, MANIFEST_KEY.encode(): value}),
                      ds / MANIFEST)  # fmt: skip


def _edit_manifest(ds: Path, edit: Callable[[dict], object]) -> None:
    body = _manifest(ds)
    edit(body)
    _put_manifest(ds, json.dumps(body))


def _shard(ds: Path) -> pa.Table:
    return pq.read_table(ds / "part-00000.parquet")


def _rewrite(ds: Path, table: pa.Table) -> None:
    """Replace the shard with ``table`` and make the manifest agree on its size: the damage is
    then in the rows, where only reading them can find it."""
    shard = ds / "part-00000.parquet"
    pq.write_table(table, shard, row_group_size=2)
    _edit_manifest(ds, lambda m: m["shards"][0].update(bytes=shard.stat().st_size))


def _column(ds: Path, name: str, values: pa.Array) -> None:
    table = _shard(ds)
    _rewrite(ds, table.set_column(table.schema.get_field_index(name), name, values))


def _image_type(ds: Path) -> pa.DataType:
    return _shard(ds).schema.field("image").type


def _set_rows(m: dict, rows: float) -> None:
    m["rows"] = rows
    m["shards"][0]["rows"] = rows


def _truncate(ds: Path, *, tell: bool) -> None:
    shard = ds / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    if tell:  # the manifest agrees: only opening the file finds the damage
        _edit_manifest(ds, lambda m: m["shards"][0].update(bytes=shard.stat().st_size))


DAMAGE: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {
    "no manifest": (lambda d: (d / MANIFEST).unlink(), ("_manifest.parquet",)),
    "manifest not Parquet": (
        lambda d: (d / MANIFEST).write_text('{"rows": 5}'),
        ("_manifest.parquet", "not a readable Parquet manifest"),
    ),
    "manifest without its key": (
        lambda d: pq.write_metadata(pq.read_schema(d / "part-00000.parquet"), d / MANIFEST),
        ("_manifest.parquet", "no fmlkit_manifest metadata"),
    ),
    "manifest not JSON": (lambda d: _put_manifest(d, "{rows: 5"), ("not JSON",)),
    "manifest not UTF-8": (lambda d: _put_manifest(d, b"\xff\xfe{"), ("not JSON",)),
    "manifest nested 100,000 deep": (
        lambda d: _put_manifest(d, "[" * 100_000),
        ("not JSON",),
    ),
    "manifest a list": (lambda d: _put_manifest(d, "[1, 2]"), ("not a JSON object",)),
    "manifest without shards": (
        lambda d: _edit_manifest(d, lambda m: m.pop("shards")),
        ("no shards",),
    ),
    "manifest shards a string": (
        lambda d: _edit_manifest(d, lambda m: m.update(shards="part-00000.parquet")),
        ("not a list of shards",),
    ),
    "manifest rows lie": (
        lambda d: _edit_manifest(d, lambda m: m.update(rows=99)),
        ("rows is 99",),
    ),
    "manifest rows negative": (
        lambda d: _edit_manifest(d, lambda m: _set_rows(m, -5)),
        ("rows is -5", "integer"),
    ),
    "manifest rows 1e308": (
        lambda d: _edit_manifest(d, lambda m: _set_rows(m, 1e308)),
        ("rows is 1e+308", "integer"),
    ),
    "manifest and shard rows lie together": (
        lambda d: _edit_manifest(d, lambda m: _set_rows(m, 99)),
        ("5 rows", "says 99"),
    ),
    "manifest names a missing shard": (
        lambda d: (d / "part-00000.parquet").unlink(),
        ("part-00000.parquet", "missing"),
    ),
    "manifest names a shard outside": (
        lambda d: _edit_manifest(
            d, lambda m: m["shards"][0].update(file="../ds/part-00000.parquet")
        ),
        ("not a .parquet file in the dataset folder",),
    ),
    "shard truncated": (lambda d: _truncate(d, tell=False), ("bytes, the manifest says",)),
    "shard truncated, manifest agrees": (
        lambda d: _truncate(d, tell=True),
        ("part-00000.parquet", "not a readable Parquet file"),
    ),
    "image is a string": (
        lambda d: _column(d, "image", pa.array(["x.jpg"] * 5)),
        ("column image is string",),
    ),
    "no label column": (lambda d: _rewrite(d, _shard(d).drop(["label"])), ("no label column",)),
    "label is a string": (
        lambda d: _column(d, "label", pa.array(["0"] * 5)),
        ("column label is string",),
    ),
    "label -3": (
        lambda d: _column(d, "label", pa.array([0, 0, 1, 1, -3], pa.int64())),
        ("row 4", "label -3", "not a class id"),
    ),
    "label past the classes": (
        lambda d: _column(d, "label", pa.array([0, 0, 1, 1, 10**12], pa.int64())),
        ("label 1000000000000", "3 classes"),
    ),
    "null label": (
        lambda d: _column(d, "label", pa.array([0, None, 1, 1, 2], pa.int64())),
        ("row 1", "label None"),
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_or_lying_parquet_dataset_is_refused_by_convert_and_inspect(
    case: str, ds: Path, tmp_path: Path
) -> None:
    damage, says = DAMAGE[case]
    damage(ds)
    out = tmp_path / "out"
    refused(fmlkit("convert", ds, out / "t.rec"), says=says)
    refused(fmlkit("convert", ds, out / "images", "--to", "folder"), says=says)
    nothing_complete(out / "t.rec", out / "t.idx", out / "property", out / "images")
    refused(fmlkit("inspect", ds), says=says)


NO_IMAGE: dict[str, Callable[[Path], object]] = {
    "null image bytes": lambda d: _column(
        d, "image", pa.array([{"bytes": None, "path": "a.jpg"}] * 5, _image_type(d))
    ),
    "empty image bytes": lambda d: _column(
        d, "image", pa.array([{"bytes": b"", "path": "a.jpg"}] * 5, _image_type(d))
    ),
    "null image": lambda d: _column(d, "image", pa.array([None] * 5, _image_type(d))),
}


@pytest.mark.parametrize("case", list(NO_IMAGE))
def test_a_row_without_image_bytes_is_not_converted_but_inspected(
    case: str, ds: Path, tmp_path: Path
) -> None:
    """Training skips a row without image bytes; a conversion cannot write it and refuses."""
    NO_IMAGE[case](ds)
    out = tmp_path / "out"
    says = ("row 0", "no image bytes")
    refused(fmlkit("convert", ds, out / "t.rec"), says=says)
    refused(fmlkit("convert", ds, out / "images", "--to", "folder"), says=says)
    nothing_complete(out / "t.rec", out / "t.idx", out / "property", out / "images")
    result = fmlkit("inspect", ds)
    succeeded(result)
    assert "undecodable (5) in a sample of 5" in result.stdout


def test_a_label_without_a_class_name_is_refused(ds: Path, tmp_path: Path) -> None:
    """The schema names 3 classes; a manifest that claims 9 lets label 7 past the range check,
    but not past the names."""
    _edit_manifest(ds, lambda m: m.update(classes=9))
    _column(ds, "label", pa.array([0, 0, 1, 1, 7], pa.int64()))
    refused(fmlkit("convert", ds, tmp_path / "f", "--to", "folder"), says=("label 7", "no name"))
    nothing_complete(tmp_path / "f")


def test_a_zero_row_dataset_is_not_converted_but_inspected(ds: Path, tmp_path: Path) -> None:
    _rewrite(ds, _shard(ds).slice(0, 0))
    _edit_manifest(ds, lambda m: _set_rows(m, 0))
    refused(fmlkit("convert", ds, tmp_path / "t.rec"), says=("no rows", "nothing to convert"))
    refused(fmlkit("convert", ds, tmp_path / "f", "--to", "folder"), says="no rows")
    nothing_complete(tmp_path / "t.rec", tmp_path / "t.idx", tmp_path / "f")
    result = fmlkit("inspect", ds)
    succeeded(result)
    assert "rows              0" in result.stdout and "Warning: no rows" in result.stdout


def test_a_wrong_sha256_is_not_verified_on_read(ds: Path, tmp_path: Path) -> None:
    """Documented (docs/formats.md): rows and sizes are checked on every read, sha256 is not
    (it would read every byte once more); a same-size shard with other rows is caught by its
    row count, an intact shard under a wrong digest is read."""
    _edit_manifest(ds, lambda m: m["shards"][0].update(sha256="0" * 64))
    succeeded(fmlkit("convert", ds, tmp_path / "t.rec"))
    assert (tmp_path / "t.rec").is_file()


# --- RecordIO whose bytes or numbers lie -------------------------------------------------------


def _record(label: float | tuple[float, ...], image: bytes = b"") -> bytes:
    flag = len(label) if isinstance(label, tuple) else 0
    return encode_record(pack(IRHeader(flag, label), image))


GOOD = _record(1.0, jpeg(1))
HUGE_PART = MAGIC_BYTES + struct.pack("<I", LENGTH_MASK) + bytes(40)  # 2**29 - 1 bytes, says it

REC_DAMAGE: dict[str, tuple[bytes, str | None, tuple[str, ...]]] = {
    "length 2**29 - 1 in a 48-byte file": (HUGE_PART, None, ("536,870,911 bytes", "past the end")),
    "length 2**29 - 1, indexed": (HUGE_PART, "0\t0\n", ("536,870,911 bytes", "past the end")),
    "length 2**29 - 4 after a good record": (
        GOOD + MAGIC_BYTES + struct.pack("<I", LENGTH_MASK - 3) + bytes(40),
        None,
        ("past the end",),
    ),
    "idx offset past the end": (
        GOOD,
        "0\t0\n1\t4096\n",
        ("x.idx, line 2", "offset 4096", "outside"),
    ),
    "idx offset inside a record": (GOOD + GOOD, "0\t0\n1\t8\n", ("wrong magic", "byte 8")),
    "idx negative offset": (GOOD, "0\t-4\n", ("line 1", "offset -4")),
    "idx garbage line": (GOOD, "0\t0\nhello world\n", ("x.idx, line 2", "key<TAB>offset")),
    "idx binary junk": (GOOD, "\x00\xff\xfe junk junk", ("line 1",)),
    "idx key past 64 bits": (GOOD, "99999999999999999999999\t0\n", ("does not fit in 64 bits",)),
    "idx empty": (GOOD, "", ("no image records", "nothing to convert")),
    "truncated last record": (GOOD + GOOD[:-10], None, ("truncated", "byte 816")),
    "not RecordIO": (b"PK\x03\x04" + bytes(60), None, ("wrong magic", "not RecordIO")),
    "empty file": (b"", None, ("no image records",)),
    "unknown cflag": (MAGIC_BYTES + struct.pack("<I", (5 << 29) | 4) + b"abcd", None, ("cflag 5",)),
    "label 3e9": (_record(3e9, jpeg(1)), None, ("label 3000000000.0", "not a class id")),
    "label NaN": (_record(float("nan"), jpeg(1)), None, ("label nan", "not a class id")),
    "label -3": (_record(-3.0, jpeg(1)), None, ("label -3.0",)),
    "label array flag 2**31": (
        MAGIC_BYTES + struct.pack("<I", 24) + struct.pack("<IfQQ", 2**31, 0.0, 0, 0),
        None,
        ("2147483648 labels",),
    ),
    "zero-length image": (_record(1.0), None, ("zero-length image",)),
    "header identity range [inf, inf)": (
        _record((float("inf"), float("inf"))) + GOOD,
        None,
        ("implausible identity key range", "inf"),
    ),
}


@pytest.mark.parametrize("case", list(REC_DAMAGE))
def test_a_damaged_rec_is_refused_with_memory_bounded_by_the_file(
    case: str, tmp_path: Path
) -> None:
    data, idx, says = REC_DAMAGE[case]
    rec = tmp_path / "x.rec"
    rec.write_bytes(data)
    if idx is not None:
        rec.with_suffix(".idx").write_text(idx)
    tracemalloc.start()
    try:
        result = fmlkit("convert", rec, tmp_path / "ds", "-j", "1")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    refused(result, says=says)
    assert peak < 64 * 2**20, f"{peak:,} bytes allocated for a {len(data)}-byte file"
    nothing_complete(tmp_path / "ds")
    if "no image records" not in says:  # inspect describes an empty file instead
        refused(fmlkit("inspect", rec), says=says)


def test_an_identity_range_of_3e9_keys_costs_no_memory(tmp_path: Path) -> None:
    """A header record claiming identity keys [6, 3e9) is taken (the images' own labels
    count), with a warning; the range is never materialised."""
    rec = tmp_path / "x.rec"
    with RecordWriter(rec, tmp_path / "x.idx") as writer:
        writer.write(0, pack(IRHeader(2, (6.0, 3e9))))
        for key, label in enumerate(LABELS, 1):
            writer.write(key, pack(IRHeader(0, float(label), id=key), jpeg(key)))
    tracemalloc.start()
    try:
        result = fmlkit("convert", rec, tmp_path / "ds", "-j", "1")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    succeeded(result)
    assert peak < 64 * 2**20, f"{peak:,} bytes allocated"
    assert "5 rows, 3 classes" in result.stdout
    assert "Warning: 0 identity records for 3 classes" in result.stdout


def test_an_absurd_property_file_is_ignored(base: Path, tmp_path: Path) -> None:
    """fmlkit never reads `property`: classes come from the images' own headers."""
    shutil.copytree(base / "r", tmp_path / "r")
    (tmp_path / "r" / "property").write_text("99999999999999,1e308,-1\n")
    result = fmlkit("convert", tmp_path / "r" / "train.rec", tmp_path / "ds", "-j", "1")
    succeeded(result)
    assert "5 rows, 3 classes" in result.stdout


# --- InsightFace .bin pickles ------------------------------------------------------------------


class _RunsCode:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class _Evals:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("payload", [_RunsCode, _Evals])
def test_a_code_running_bin_is_refused_and_never_run(
    tmp_path: Path, protocol: int, payload: type
) -> None:
    marker = tmp_path / "PWNED"
    evil = tmp_path / "lfw.bin"
    evil.write_bytes(pickle.dumps(([jpeg(1), jpeg(2)], [payload(marker)]), protocol=protocol))
    refused(fmlkit("convert", evil, tmp_path / "ds"), says=("refused", "nothing in the file"))
    assert not marker.exists(), "the pickle's code ran"
    nothing_complete(tmp_path / "ds")


@pytest.mark.parametrize(
    ("obj", "says"),
    [
        ({"images": [], "issame": []}, ("found a dict",)),
        (([b"x"], [True], [False]), ("found a tuple of 3 items",)),
        (([jpeg(1), jpeg(2), jpeg(3)], [True, False]), ("3 images for 2 pairs",)),
        (([jpeg(1), jpeg(2)], [2]), ("issame[0] is 2",)),
        (([], []), ("no pairs",)),
        (([b"abc", jpeg(2)], [True]), ("image 0 (pair 0)", "not an image")),
    ],
)
def test_a_bin_of_the_wrong_shape_is_refused(tmp_path: Path, obj: object, says: tuple) -> None:
    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps(obj))
    refused(fmlkit("convert", path, tmp_path / "ds"), says=says)
    nothing_complete(tmp_path / "ds")


def test_a_truncated_bin_is_refused(tmp_path: Path) -> None:
    write_bin(tmp_path / "lfw.bin", [jpeg(1), jpeg(2)], [True])
    data = (tmp_path / "lfw.bin").read_bytes()
    (tmp_path / "lfw.bin").write_bytes(data[: len(data) // 2])
    refused(fmlkit("convert", tmp_path / "lfw.bin", tmp_path / "ds"), says="not a readable pickle")
    nothing_complete(tmp_path / "ds")


# --- image folders -----------------------------------------------------------------------------


ODD_NAMES = ["x/new\nline.jpg", "x/t\tab,comma\"quote'.jpg", "007/a.jpg", "7/b.jpg"]


def _odd_folder(tmp_path: Path) -> Path:
    """Readable images under odd names, labels ``007`` and ``7``, one undecodable image, a FIFO,
    a file name that is not UTF-8, and symlinks (a file and a folder) leaving the tree."""
    root = tmp_path / "imgs"
    for n, rel in enumerate(ODD_NAMES):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(jpeg(n))
    (root / "z").mkdir()
    (root / "z" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "y").mkdir()
    Path(os.fsdecode(os.fsencode(root / "y") + b"/bad\xff.jpg")).write_bytes(jpeg(9))
    os.mkfifo(root / "y" / "fifo.jpg")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.jpg").write_bytes(jpeg(99))
    (root / "y" / "link.jpg").symlink_to(tmp_path / "outside" / "secret.jpg")
    (root / "linkdir").symlink_to(tmp_path / "outside")
    return root


def test_an_odd_image_folder_is_refused_for_a_bad_image_without_skip_bad(tmp_path: Path) -> None:
    root = _odd_folder(tmp_path)
    refused(
        fmlkit("convert", root, tmp_path / "ds", "-j", "1"),
        says=("z/broken.jpg", "not_image", "--skip-bad"),
    )
    nothing_complete(tmp_path / "ds")


def test_an_odd_image_folder_converts_with_skip_bad_saying_what_it_passed_over(
    tmp_path: Path,
) -> None:
    root = _odd_folder(tmp_path)
    result = fmlkit("convert", root, tmp_path / "ds", "-j", "1", "--skip-bad")
    succeeded(result)
    out = result.stdout
    assert "4 rows, 3 classes" in out and "key 4 (z/broken.jpg): error:not_image" in out
    assert "Warning: skipped 1 special_file entry: y/fifo.jpg" in out
    assert "Warning: skipped 2 symlink_outside entries: linkdir, y/link.jpg" in out
    assert "Warning: skipped 1 undecodable_name entry: y/bad\\xff.jpg" in out
    table = pq.read_table(tmp_path / "ds").to_pydict()
    assert sorted(table["file_name"]) == sorted(ODD_NAMES)
    names = dict(zip(table["file_name"], table["label_name"], strict=True))
    assert names["007/a.jpg"] == "007" and names["7/b.jpg"] == "7"  # labels stay text
    assert jpeg(99) not in [image["bytes"] for image in table["image"]]
    manifest = _manifest(tmp_path / "ds")
    assert manifest["source"] == {"kind": "folder", "path": str(root.resolve())}
    back = tmp_path / "back"
    succeeded(fmlkit("convert", tmp_path / "ds", back))  # names come back byte for byte
    assert sorted(str(p.relative_to(back)) for p in back.rglob("*.jpg")) == sorted(ODD_NAMES)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda r: None, ("found no image file",)),
        (lambda r: os.mkfifo(r / "a" / "x.jpg"), ("found no image file", "special_file")),
        (lambda r: (r / "a" / "x.jpg").write_bytes(b"junk"), ("no row", "1 bad", "not_image")),
    ],
    ids=["empty", "only a FIFO", "only undecodable images"],
)
def test_a_folder_with_nothing_to_convert_is_refused(
    tmp_path: Path, make: Callable[[Path], object], says: tuple[str, ...]
) -> None:
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    make(root)
    refused(fmlkit("convert", root, tmp_path / "ds", "-j", "1", "--skip-bad"), says=says)
    nothing_complete(tmp_path / "ds")


# --- output paths ------------------------------------------------------------------------------


def _home(path: Path) -> Path:
    """A folder of the user's: files and folders that are not a dataset."""
    (path / "work").mkdir(parents=True)
    (path / ".bashrc").write_text("export A=1\n")
    (path / "work" / "notes.txt").write_text("mine\n")
    return path


OUTPUTS: dict[str, tuple[Callable[[Path], tuple[list[str | Path], Path, Path]], tuple[str, ...]]]
OUTPUTS = {
    # each: (tmp → (arguments after `convert`, cwd, path that must stay unchanged), words)
    "/": (lambda t: ([t / "r" / "train.rec", "/", "--overwrite"], t, t / "r"), ("the output /",)),
    "..": (
        lambda t: ([t / "r" / "train.rec", "..", "--overwrite"], t / "r", t / "r"),
        ("the output ..", "holds the input"),
    ),
    ". (a folder of the user's)": (
        lambda t: ([t / "r" / "train.rec", ".", "--overwrite"], _home(t / "home"), t / "home"),
        ("the output .", "current folder"),
    ),
    ".. (not holding the source)": (
        lambda t: (
            [t / "r" / "train.rec", "..", "--overwrite"],
            _home(t / "home" / "sub").parent / "sub",
            t / "home",
        ),
        ("current folder or holds it",),
    ),
    "the source": (
        lambda t: ([t / "ds", t / "ds", "--to", "folder", "--overwrite"], t, t / "ds"),
        ("is the input",),
    ),
    "inside the source": (
        lambda t: ([t / "ds", t / "ds" / "t.rec", "--overwrite"], t, t / "ds"),
        ("lies inside the input folder",),
    ),
    "holding the source": (
        lambda t: ([t / "r" / "train.rec", t / "r", "--overwrite"], t, t / "r"),
        ("holds the input",),
    ),
    "the .rec's index": (
        lambda t: ([t / "r" / "train.rec", t / "r" / "train.idx", "--overwrite"], t, t / "r"),
        ("is the index",),
    ),
    "--root": (
        lambda t: (
            [t / "info.csv", t / "imgs", "--root", t / "imgs", "--overwrite"],
            t,
            t / "imgs",
        ),
        ("is the image folder (--root)",),
    ),
    "holding --root": (
        lambda t: ([t / "info.csv", t, "--root", t / "imgs", "--overwrite"], t, t / "imgs"),
        ("holds",),
    ),
    "a folder of the user's, --overwrite": (
        lambda t: ([t / "r" / "train.rec", _home(t / "home"), "--overwrite"], t, t / "home"),
        ("not a Parquet dataset", "--overwrite replaces only"),
    ),
    "a folder of the user's, --to folder --overwrite": (
        lambda t: ([t / "ds", _home(t / "home"), "--to", "folder", "--overwrite"], t, t / "home"),
        ("not an image folder",),
    ),
    "a .rec that is not RecordIO, --overwrite": (
        lambda t: ([t / "ds", t / "r" / "notes.rec", "--overwrite"], t, t / "r"),
        ("notes.rec exists and is not a RecordIO file",),
    ),
    "a .rec that is a folder, --overwrite": (
        lambda t: ([t / "ds", t / "home" / "work.rec", "--overwrite"], t, t / "home"),
        ("work.rec exists and is not a RecordIO file",),
    ),
}


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_an_output_that_would_replace_what_it_must_not_is_refused(
    case: str, base: Path, tmp_path: Path
) -> None:
    shutil.copytree(base / "r", tmp_path / "r")
    shutil.copytree(base / "ds", tmp_path / "ds")
    (tmp_path / "r" / "notes.rec").write_text("my notes, not RecordIO\n")
    (tmp_path / "home" / "work.rec").mkdir(parents=True)
    (tmp_path / "home" / "work.rec" / "paper.tex").write_text("mine\n")
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "a" / "1.jpg").write_bytes(jpeg(1))
    (tmp_path / "info.csv").write_text("file_name,label\na/1.jpg,a\n")
    make, says = OUTPUTS[case]
    args, cwd, keep = make(tmp_path)
    before = snapshot(keep)
    refused(fmlkit("convert", *args, cwd=cwd), says=says)
    assert snapshot(keep) == before


# --- --overwrite onto a previous output, then the conversion fails ------------------------------


def _bad_last_label(ds: Path) -> None:
    """Row 4, in the third row group, gets label 7 of 3 classes: found only after the first
    row groups have been written."""
    _column(ds, "label", pa.array([0, 0, 1, 1, 7], pa.int64()))


def test_a_failed_overwrite_leaves_the_previous_folder_output_untouched(
    ds: Path, tmp_path: Path
) -> None:
    out = tmp_path / "images"
    succeeded(fmlkit("convert", ds, out, "--to", "folder"))
    before = snapshot(out)
    _bad_last_label(ds)
    refused(fmlkit("convert", ds, out, "--to", "folder", "--overwrite"), says="label 7")
    assert snapshot(out) == before


def test_a_failed_overwrite_leaves_the_previous_rec_untouched(ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    succeeded(fmlkit("convert", ds, out / "t.rec"))
    before = snapshot(out)
    _bad_last_label(ds)
    refused(fmlkit("convert", ds, out / "t.rec", "--overwrite"), says="label 7")
    assert snapshot(out) == before


def test_a_failed_overwrite_leaves_the_previous_dataset_untouched(
    base: Path, tmp_path: Path
) -> None:
    shutil.copytree(base / "r", tmp_path / "r")
    out = tmp_path / "out"
    succeeded(fmlkit("convert", tmp_path / "r" / "train.rec", out, "-j", "1"))
    before = snapshot(out)
    rec = tmp_path / "r" / "train.rec"
    rec.write_bytes(rec.read_bytes()[:-30])  # the last identity record is cut short
    refused(fmlkit("convert", rec, out, "-j", "1", "--overwrite"), says="truncated")
    assert snapshot(out) == before
    images = _home(tmp_path / "imgs")  # an image folder whose only image is undecodable
    (images / "work" / "x.jpg").write_bytes(b"junk")
    refused(fmlkit("convert", images, out, "-j", "1", "--overwrite"), says="x.jpg")
    assert snapshot(out) == before
    unchanged(images / "work" / "x.jpg", b"junk")
