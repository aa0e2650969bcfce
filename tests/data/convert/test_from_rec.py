from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fmlkit.columns import FILE_NAME, FOLD, LABEL
from fmlkit.data.convert.dispatch import infer_conversion
from fmlkit.data.convert.from_images import bin_to_parquet, table_to_parquet
from fmlkit.data.convert.from_parquet import parquet_to_folder, parquet_to_rec
from fmlkit.data.convert.from_rec import rec_to_parquet
from fmlkit.data.convert.rec_scan import ShardPlanner
from fmlkit.data.formats.insightface_bin import write_bin
from fmlkit.data.formats.pair_lists import read_csv_pairs
from fmlkit.data.formats.parquet import MANIFEST, iter_batches, read_manifest
from fmlkit.data.formats.recordio import (
    MAGIC_BYTES,
    IRHeader,
    RecordIOError,
    RecordWriter,
    pack,
    unpack,
)
from fmlkit.data.formats.recordio_reader import RecordReader
from fmlkit.data.formats.table import read_table
from fmlkit.data.split.folds import split_dataset
from fmlkit.errors import InputError
from fmlkit.io import FAULT_ENV
from tests.conftest import SynthTree
from tests.data.recs import flavour_a_rec, jpeg
from tests.hostile.check import fmlkit, fmlkit_process, nothing_complete, succeeded
from tests.processes import run_fmlkit


def test_rec_to_parquet_rows_are_the_image_records(tmp_path: Path) -> None:
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    rec = flavour_a_rec(tmp_path, labels)
    report = rec_to_parquet(rec, tmp_path / "ds", row_group_rows=4)
    assert (report.rows, report.classes, report.flavour, report.warnings) == (9, 3, "A", ())
    table = pq.read_table(tmp_path / "ds").sort_by("key")
    assert table["key"].to_pylist() == list(range(1, 10))
    assert table["label"].to_pylist() == labels
    images = [img["bytes"] for img in table["image"].to_pylist()]
    expected = [jpeg(k) + (MAGIC_BYTES if k % 2 else b"") for k in range(1, 10)]
    assert images == expected  # split records joined back, nothing truncated
    assert table["image"].to_pylist()[0]["path"] == "0/1.jpg"
    meta = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    assert meta["image"] == {"_type": "Image"}
    assert meta["label"] == {"names": ["0", "1", "2"], "_type": "ClassLabel"}
    manifest = read_manifest(tmp_path / "ds")
    assert manifest.rows == 9 and manifest.classes == 3 and manifest.source["flavour"] == "A"
    for shard in manifest.shards:  # digests are taken while writing: check them against the files
        data = (tmp_path / "ds" / shard["file"]).read_bytes()
        assert shard["sha256"] == hashlib.sha256(data).hexdigest() and shard["bytes"] == len(data)
    parquet = pq.ParquetFile(tmp_path / "ds" / "part-00000.parquet")
    assert parquet.num_row_groups == 3  # 4 + 4 + 1 rows
    assert parquet.metadata.row_group(0).column(0).compression == "UNCOMPRESSED"
    assert sum(b.num_rows for b in iter_batches(tmp_path / "ds")) == 9


def test_rec_to_parquet_without_idx_scans(tmp_path: Path) -> None:
    rec = tmp_path / "c.rec"
    with RecordWriter(rec, None) as writer:
        for key in range(5):
            writer.write(key, pack(IRHeader(0, float(key % 2)), jpeg(key)))
    report = rec_to_parquet(rec, tmp_path / "ds")
    assert (report.rows, report.classes, report.flavour) == (5, 2, "C")


def test_rec_to_parquet_warns_when_identity_records_disagree(tmp_path: Path) -> None:
    labels = [0, 0, 1, 1]
    rec = tmp_path / "train.rec"
    with RecordWriter(rec, tmp_path / "train.idx") as writer:
        writer.write(0, pack(IRHeader(2, (5.0, 7.0))))
        for key, label in enumerate(labels, 1):
            writer.write(key, pack(IRHeader(0, float(label)), jpeg(key)))
        writer.write(5, pack(IRHeader(2, (1.0, 4.0))))  # wrong: claims keys 1..3 for class 0
        writer.write(6, pack(IRHeader(2, (4.0, 5.0))))
    report = rec_to_parquet(rec, tmp_path / "ds")
    assert report.rows == 4 and pq.read_table(tmp_path / "ds")["label"].to_pylist() == labels
    assert any("1 of 2 identity records disagree" in w for w in report.warnings)


def test_rec_to_parquet_damaged_record_fails_and_leaves_nothing(tmp_path: Path) -> None:
    rec = flavour_a_rec(tmp_path, [0, 1, 1])
    with RecordWriter(tmp_path / "bad.rec", tmp_path / "bad.idx") as writer:
        writer.write(0, pack(IRHeader(0, 0.0), jpeg(0)))
        writer.write(1, pack(IRHeader(0, 1.0), b""))  # zero-length image
        writer.write(2, pack(IRHeader(0, 1.0), jpeg(2)))
    with pytest.raises(RecordIOError, match=r"key 1 at byte \d+: zero-length image"):
        rec_to_parquet(tmp_path / "bad.rec", tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds")]
    report = rec_to_parquet(tmp_path / "bad.rec", tmp_path / "ds", skip_bad=True)
    assert report.rows == 2 and [b.key for b in report.bad] == [1]
    assert "Skipped 1 bad records" in report.summary()
    assert rec.exists()


def test_rec_to_parquet_bad_labels_fail_or_are_skipped(tmp_path: Path) -> None:
    rec = tmp_path / "labels.rec"
    bad_labels = {2: -1.0, 3: 1.5, 4: float("nan"), 5: float("inf")}
    with RecordWriter(rec, tmp_path / "labels.idx") as writer:
        for key in range(7):
            writer.write(key, pack(IRHeader(0, bad_labels.get(key, 1.0)), jpeg(key)))
    with pytest.raises(RecordIOError, match=r"key 2 at byte [\d,]+: label -1.0 is not a class id"):
        rec_to_parquet(rec, tmp_path / "ds")
    report = rec_to_parquet(rec, tmp_path / "ds", skip_bad=True)
    assert sorted(b.key for b in report.bad) == [2, 3, 4, 5]
    assert pq.read_table(tmp_path / "ds")["key"].to_pylist() == [0, 1, 6]


def test_rec_to_parquet_workers_write_the_same_shards(tmp_path: Path) -> None:
    labels = [c for c in range(12) for _ in range(c % 4 + 1)]  # 30 images
    rec = flavour_a_rec(tmp_path, labels)
    one = rec_to_parquet(rec, tmp_path / "one", shard_bytes=2000, row_group_rows=3, workers=1)
    two = rec_to_parquet(rec, tmp_path / "two", shard_bytes=2000, row_group_rows=3, workers=2)
    assert one.shards == two.shards and one.shards is not None and one.shards > 3
    shards = read_manifest(tmp_path / "one").shards
    assert shards == read_manifest(tmp_path / "two").shards  # same files, same sha256
    for shard in shards:
        data = (tmp_path / "two" / shard["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
    table = pq.read_table(tmp_path / "two")
    assert table["key"].to_pylist() == list(range(1, 31)) and table["label"].to_pylist() == labels


def test_shard_planner_closes_a_shard_once_it_reaches_the_size() -> None:
    def plan(lengths: list[int], shard_bytes: int, group: int, blocks: int = 1) -> list:
        planner = ShardPlanner(shard_bytes, group)
        positions = np.arange(len(lengths)) * 2  # every other index entry is not an image
        for part in np.array_split(np.arange(len(lengths)), blocks):
            planner.add(positions[part], np.array(lengths, dtype=np.int64)[part])
        return planner.finish(2 * len(lengths))

    assert plan([10] * 10, 25, 2) == [(0, 7, 4), (7, 15, 4), (15, 20, 2)]
    assert plan([10] * 10, 25, 2, blocks=4) == plan([10] * 10, 25, 2)  # streamed in blocks
    assert plan([10] * 10, 1000, 4) == [(0, 20, 10)]
    assert plan([10] * 8, 40, 4) == [(0, 7, 4), (7, 16, 4)]  # last shard runs to the end
    assert plan([], 25, 2) == []
    with pytest.raises(InputError, match=r"rows 2\.\.3 exceed 2 GiB"):
        plan([1, 1, 2**30, 2**30], 25, 2)


@given(
    lengths=st.lists(st.integers(1, 50), max_size=60),
    shard_bytes=st.integers(1, 400),
    group=st.integers(1, 7),
    blocks=st.integers(1, 5),
)
def test_shard_planner_shards_cover_every_row_in_whole_row_groups(
    lengths: list[int], shard_bytes: int, group: int, blocks: int
) -> None:
    planner = ShardPlanner(shard_bytes, group)
    for part in np.array_split(np.arange(len(lengths)), blocks):
        planner.add(part, np.array(lengths, dtype=np.int64)[part])
    shards = planner.finish(len(lengths))
    assert sum(rows for _, _, rows in shards) == len(lengths)
    assert [first for first, _, _ in shards] == [0, *(end for _, end, _ in shards)][: len(shards)]
    assert not shards or shards[-1][1] == len(lengths)
    for first, end, rows in shards[:-1]:
        assert rows % group == 0 and end - first == rows
        assert sum(lengths[first:end]) >= shard_bytes  # closed only once full
        assert sum(lengths[first : end - group]) < shard_bytes  # and not a group later


def test_rec_to_parquet_truncated_file_is_an_error_naming_the_offset(tmp_path: Path) -> None:
    rec = flavour_a_rec(tmp_path, [0, 0, 1], identities=False)
    rec.write_bytes(rec.read_bytes()[:-10])
    with pytest.raises(RecordIOError, match="truncated"):
        rec_to_parquet(rec, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_rec_to_parquet_refuses_an_existing_output(tmp_path: Path) -> None:
    rec = flavour_a_rec(tmp_path, [0, 1])
    (tmp_path / "ds").mkdir()
    with pytest.raises(Exception, match="already exists"):
        rec_to_parquet(rec, tmp_path / "ds")
    rec_to_parquet(rec, tmp_path / "ds", overwrite=True)
    assert (tmp_path / "ds" / MANIFEST).is_file()


def test_rec_parquet_rec_round_trip_is_byte_identical(tmp_path: Path) -> None:
    rec = flavour_a_rec(tmp_path, [0, 0, 1, 1, 1, 2])
    rec_to_parquet(rec, tmp_path / "ds")
    out = tmp_path / "back" / "train.rec"
    out.parent.mkdir()
    report = parquet_to_rec(tmp_path / "ds", out)
    assert (report.flavour, report.rows, report.classes) == ("A", 6, 3)
    assert out.read_bytes() == rec.read_bytes()
    assert out.with_suffix(".idx").read_text() == rec.with_suffix(".idx").read_text()
    assert (out.parent / "property").read_text() == "3,16,16\n"


def test_parquet_to_rec_ungrouped_labels_is_flavour_c(tmp_path: Path) -> None:
    rec = tmp_path / "c.rec"
    with RecordWriter(rec, None) as writer:
        for key, label in enumerate([0, 1, 0, 1]):
            writer.write(key, pack(IRHeader(0, float(label)), jpeg(key)))
    rec_to_parquet(rec, tmp_path / "ds")
    report = parquet_to_rec(tmp_path / "ds", tmp_path / "out.rec")
    assert report.flavour == "C" and "not contiguous" in report.warnings[0]
    with RecordReader(tmp_path / "out.rec") as reader:
        assert list(reader.keys) == [0, 1, 2, 3]
        assert [unpack(p)[0].label for _, p in reader] == [0.0, 1.0, 0.0, 1.0]
    assert not (tmp_path / "property").exists()


def test_table_to_parquet_carries_columns_and_folder_round_trip(
    synth_filtered: Path, synth_tree: SynthTree, tmp_path: Path
) -> None:
    folds = tmp_path / "folds.csv"
    split_dataset(synth_filtered, folds, k=4, seed=1)
    report = table_to_parquet(folds, tmp_path / "ds", root=synth_tree.root)
    assert (report.rows, report.classes) == (160, 20)
    table = pq.read_table(tmp_path / "ds")
    info = read_table(folds)
    assert table["fold"].to_pylist() == info[FOLD].tolist()
    assert table["label_name"].to_pylist() == info[LABEL].tolist()
    assert table["label"].to_pylist() == [sorted(set(info[LABEL])).index(x) for x in info[LABEL]]
    first = table["image"][0].as_py()
    assert first["path"] == info[FILE_NAME][0]
    assert first["bytes"] == (synth_tree.root / info[FILE_NAME][0]).read_bytes()
    back = parquet_to_folder(tmp_path / "ds", tmp_path / "folder")
    assert back.rows == 160
    for name in info[FILE_NAME][:20]:
        assert (tmp_path / "folder" / name).read_bytes() == (synth_tree.root / name).read_bytes()


def test_table_to_parquet_error_rows_fail_or_are_skipped(
    synth_scan: Path, synth_tree: SynthTree, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match=r"error:\w+; --skip-bad skips it"):
        table_to_parquet(synth_scan, tmp_path / "ds", root=synth_tree.root)
    assert not (tmp_path / "ds").exists()
    report = table_to_parquet(synth_scan, tmp_path / "ds", root=synth_tree.root, skip_bad=True)
    assert len(report.bad) == 4 and report.rows == len(read_table(synth_scan)) - 4
    assert all(b.where.startswith("id") for b in report.bad)


def test_bin_to_parquet_writes_images_and_pairs(tmp_path: Path) -> None:
    images = [jpeg(i) for i in range(8)]
    write_bin(tmp_path / "lfw.bin", images, [True, False, True, False])
    report = bin_to_parquet(tmp_path / "lfw.bin", tmp_path / "ds")
    assert report.rows == 8
    table = pq.read_table(tmp_path / "ds")
    paths = [img["path"] for img in table["image"].to_pylist()]
    assert paths[:2] == ["lfw/00000.jpg", "lfw/00001.jpg"]
    assert [img["bytes"] for img in table["image"].to_pylist()] == images
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "ds.pairs.csv", "lfw.bin"]
    assert all(p.suffix == ".parquet" for p in (tmp_path / "ds").iterdir())  # polars reads ds/
    pairs = read_csv_pairs(tmp_path / "ds.pairs.csv")
    assert pairs.values.tolist() == [
        [1, "lfw/00000.jpg", "lfw/00001.jpg"],
        [0, "lfw/00002.jpg", "lfw/00003.jpg"],
        [1, "lfw/00004.jpg", "lfw/00005.jpg"],
        [0, "lfw/00006.jpg", "lfw/00007.jpg"],
    ]


def test_infer_conversion_from_paths(tmp_path: Path) -> None:
    rec = flavour_a_rec(tmp_path, [0, 1])
    rec_to_parquet(rec, tmp_path / "ds.parquet")  # a dataset directory named like a file
    (tmp_path / "info.csv").write_text("file_name,label\n")
    (tmp_path / "tree" / "a").mkdir(parents=True)
    cases = {
        (rec, tmp_path / "o"): "rec_to_parquet",
        (tmp_path / "info.csv", tmp_path / "o"): "table_to_parquet",
        (tmp_path / "tree", tmp_path / "o"): "folder_to_parquet",
        (tmp_path / "ds.parquet", tmp_path / "y.rec"): "parquet_to_rec",
        (tmp_path / "ds.parquet", tmp_path / "o"): "parquet_to_folder",
    }
    for (source, output), kind in cases.items():
        assert infer_conversion(source, output) == kind
    with pytest.raises(InputError, match="does not exist"):
        infer_conversion(tmp_path / "nope.rec", tmp_path / "o")
    with pytest.raises(InputError, match="cannot convert"):
        infer_conversion(rec, tmp_path / "o", "rec")
    with pytest.raises(InputError, match=r"must end in \.rec"):
        infer_conversion(tmp_path / "ds.parquet", tmp_path / "o", "rec")


def test_convert_command_chains_and_reports(
    synth_filtered: Path, synth_tree: SynthTree, tmp_path: Path
) -> None:
    ds, rec = tmp_path / "ds", tmp_path / "out" / "train.rec"
    out = run_fmlkit("convert", str(synth_filtered), str(ds), "--root", str(synth_tree.root))
    assert out.returncode == 0, out.stderr
    assert "dataset_info → parquet): 160 rows, 20 classes, 1 shard(s)" in out.stdout
    out = run_fmlkit("convert", str(ds), str(rec))
    assert out.returncode == 0, out.stderr
    assert "flavour A" in out.stdout and (tmp_path / "out" / "property").is_file()
    again = run_fmlkit("convert", str(ds), str(rec))
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = run_fmlkit("convert", str(ds), str(rec), "--shard-size", "12XB")
    assert bad.returncode == 2 and "--shard-size" in bad.stderr
    wrong = run_fmlkit("convert", str(rec), str(tmp_path / "ds2"), "--shuffle")
    assert wrong.returncode == 1 and "--shuffle applies to Parquet → .rec only" in wrong.stderr
    shuffled = run_fmlkit("convert", str(ds), str(tmp_path / "s.rec"), "--shuffle", "--seed", "2")
    assert shuffled.returncode == 0 and "flavour C" in shuffled.stdout


def _digests(*paths: Path) -> list[str | None]:
    """sha256 of each file, or of each folder's files and names; None where nothing is."""
    out: list[str | None] = []
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else [path] if path.exists() else []
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + f.read_bytes())
        out.append(h.hexdigest() if files else None)
    return out


def _left(folder: Path, *names: str) -> set[str]:
    """What is in ``folder`` besides ``names`` and hidden temporary entries of theirs."""
    return {
        p.name
        for p in folder.iterdir()
        if p.name not in names and not p.name.startswith(tuple(f".{n}.tmp-" for n in names))
    }


@pytest.mark.parametrize("point", ["written", "renamed"])
def test_convert_killed_half_way_leaves_no_dataset(tmp_path: Path, point: str) -> None:
    """convert .rec → Parquet killed at each point of putting its folder in place
    (``FMLKIT_FAULT_WRITE``): before the rename no dataset, or the previous one as it was;
    after it the new one whole. A rerun succeeds."""
    out = tmp_path / "ds"
    for n, labels in enumerate(([0, 0, 1], [0, 1, 1, 2])):  # first no dataset, then the first
        rec = flavour_a_rec(tmp_path / f"rec{n}", labels)
        fresh = rec_to_parquet(rec, tmp_path / f"fresh{n}")
        before = _digests(out)
        args = ("-q", "convert", rec, out, "--overwrite")
        killed = fmlkit_process(*args, env={FAULT_ENV: f"{point}@ds"})
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        if point == "renamed":
            assert read_manifest(out).rows == fresh.rows
        elif n == 0:
            nothing_complete(out)
        else:
            assert _digests(out) == before
        assert _left(tmp_path, "ds") == {f"rec{i}" for i in range(n + 1)} | {
            f"fresh{i}" for i in range(n + 1)
        }
        succeeded(fmlkit(*args))
        assert read_manifest(out).rows == len(labels)


# parquet → rec renames property, then x.idx, then x.rec: a kill at each point leaves this
# many of them (in that order) new, the rest as they were
_REC_RENAMED = {
    ("written", "property"): 0,
    ("renamed", "property"): 1,
    ("renamed", "x.idx"): 2,
    ("renamed", "x.rec"): 3,
}


@pytest.mark.parametrize(("point", "name"), list(_REC_RENAMED))
def test_convert_to_rec_killed_between_its_renames(tmp_path: Path, point: str, name: str) -> None:
    """convert Parquet → .rec killed at each point of renaming its three files, which are
    renamed one by one (``FMLKIT_FAULT_WRITE``): each is absent or as it was until its own
    rename, then whole; between renames a new .idx can sit beside the previous .rec. A rerun
    with --overwrite writes all three anew."""
    folder = tmp_path / "out"
    files = [folder / "property", folder / "x.idx", folder / "x.rec"]
    renamed = _REC_RENAMED[(point, name)]
    for n, labels in enumerate(([0, 0, 1], [0, 1, 1, 2])):  # first no .rec, then the first
        ds = rec_to_parquet(flavour_a_rec(tmp_path / f"rec{n}", labels), tmp_path / f"ds{n}")
        parquet_to_rec(ds.output, tmp_path / f"fresh{n}" / "x.rec")
        fresh = _digests(*(tmp_path / f"fresh{n}" / f.name for f in files))
        assert None not in fresh
        before = _digests(*files)
        args = ("-q", "convert", ds.output, files[2], "--overwrite")
        killed = fmlkit_process(*args, env={FAULT_ENV: f"{point}@{name}"})
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert _digests(*files) == fresh[:renamed] + before[renamed:]
        assert not _left(folder, "property", "x.idx", "x.rec")
        succeeded(fmlkit(*args))
        assert _digests(*files) == fresh


def test_parquet_to_rec_shuffle_keeps_every_record_in_a_seeded_order(tmp_path: Path) -> None:
    rec = flavour_a_rec(tmp_path, [0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    rec_to_parquet(rec, tmp_path / "ds")
    outs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        out = tmp_path / name / "shuffled.rec"
        report = parquet_to_rec(tmp_path / "ds", out, shuffle=True, seed=seed)
        assert (report.flavour, report.warnings) == ("C", ())
        with RecordReader(out) as reader:
            outs.append([unpack(p) for _, p in reader])
    original = [unpack(p) for k, p in RecordReader(rec) if 1 <= k <= 10]
    pairs = [sorted((h.label, img) for h, img in out) for out in outs]
    assert pairs[0] == sorted((h.label, img) for h, img in original)
    assert outs[0] == outs[1] and outs[0] != outs[2]
    assert [img for _, img in outs[0]] != [img for _, img in original]
    assert (tmp_path / "a" / "shuffled.rec").read_bytes() == (
        tmp_path / "b" / "shuffled.rec"
    ).read_bytes()
