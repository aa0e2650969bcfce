from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import imagehash
import pandas as pd
import pytest
from PIL import Image, ImageOps

from fmlkit.columns import (
    AHASH,
    DHASH,
    ERROR,
    FILE_NAME,
    FILE_SIZE,
    FORMAT,
    HEIGHT,
    LABEL,
    MD5,
    MODE,
    MTIME_NS,
    PHASH,
    WHASH,
    WIDTH,
)
from fmlkit.data.formats.table import read_dataset_info
from fmlkit.data.prepare.scan import scan_dataset
from fmlkit.errors import InputError
from fmlkit.io import FAULT_ENV, FAULT_POINTS
from tests.bad_tree import BadTree
from tests.conftest import SynthTree
from tests.hostile.check import fmlkit, fmlkit_process, nothing_complete, succeeded, unchanged
from tests.unprivileged import run_unprivileged, shared_tmp_dir

ALL_HASHES = (PHASH, DHASH, AHASH, WHASH)


def _scan(root: Path, out: Path, **kwargs: object) -> tuple[pd.DataFrame, object]:
    report = scan_dataset(root, out, **kwargs)  # type: ignore[arg-type]
    return read_dataset_info(out), report


@pytest.fixture(scope="module")
def bad_scan(bad_tree: BadTree, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    out = tmp_path_factory.mktemp("scan") / "info.csv"
    return _scan(bad_tree.root, out, hashes=ALL_HASHES, workers=2)


def test_scan_dataset_records_every_bad_input_with_its_reason(
    bad_tree: BadTree, bad_scan: tuple
) -> None:
    df, _ = bad_scan
    expected = dict(bad_tree.rows)
    if bad_tree.unreadable:
        # root reads a chmod-000 file; the unprivileged case has its own test
        reason = "" if os.geteuid() == 0 else "unreadable"
        size = (64, 48) if not reason else None
        expected[bad_tree.unreadable] = type(expected["alice/ok.jpg"])(
            reason, "RGB" if not reason else "", "JPEG" if not reason else "", size
        )
    assert sorted(df[FILE_NAME]) == sorted(expected)
    for row in df.itertuples(index=False):
        want = expected[row.file_name]
        got_size = None if pd.isna(row.width) else (int(row.width), int(row.height))
        assert (row.error, row.mode, row.format, got_size) == (
            want.error,
            want.mode,
            want.format,
            want.size,
        ), row.file_name


def test_scan_dataset_lists_skipped_entries_and_notices(bad_tree: BadTree, bad_scan: tuple) -> None:
    _, report = bad_scan
    assert {k: set(v) for k, v in report.skipped.items()} == bad_tree.skipped
    assert {k: set(v) for k, v in report.notices.items()} == bad_tree.notices
    summary = report.summary()
    for reason in bad_tree.skipped:
        assert reason in summary


def test_scan_dataset_labels_are_top_folders_and_root_files_have_none(bad_scan: tuple) -> None:
    df, report = bad_scan
    for row in df.itertuples(index=False):
        top = row.file_name.split("/", 1)[0] if "/" in row.file_name else ""
        assert row.label == top
    assert df.loc[df[FILE_NAME] == "stray.jpg", LABEL].item() == ""
    # "NA" stays a label and "1e10" stays a name: nothing is parsed as a number or missing
    assert "NA" in set(df[LABEL])
    assert report.labels == len(
        {lab for lab, err in zip(df[LABEL], df[ERROR], strict=True) if not err}
    )


def test_scan_dataset_sizes_and_md5_describe_the_file_bytes(
    bad_tree: BadTree, bad_scan: tuple
) -> None:
    import hashlib

    df, _ = bad_scan
    for row in df.itertuples(index=False):
        path = bad_tree.root / row.file_name
        st = path.stat()
        assert (row.file_size, row.mtime_ns) == (st.st_size, st.st_mtime_ns)
        if row.error in ("", "truncated", "corrupt", "not_image", "decompression_bomb"):
            assert row.md5 == hashlib.md5(path.read_bytes()).hexdigest()
    ok = df.set_index(FILE_NAME)
    assert ok.loc["bob/alias.jpg", MD5] == ok.loc["alice/ok.jpg", MD5]  # a link, followed


def test_scan_dataset_hashes_equal_imagehash_after_exif_transpose(
    bad_tree: BadTree, bad_scan: tuple
) -> None:
    df, _ = bad_scan
    functions = {
        PHASH: imagehash.phash,
        DHASH: imagehash.dhash,
        AHASH: imagehash.average_hash,
        WHASH: imagehash.whash,
    }
    readable = df[df[ERROR] == ""]
    assert len(readable) >= 15
    for row in readable.itertuples(index=False):
        with Image.open(bad_tree.root / row.file_name) as img:
            upright = ImageOps.exif_transpose(img)
            for column, fn in functions.items():
                assert getattr(row, column) == str(fn(upright)), (row.file_name, column)
    assert (df.loc[df[ERROR] != "", PHASH] == "").all()


def test_scan_dataset_matches_synth_truth(synth_tree: SynthTree, tmp_path: Path) -> None:
    df, report = _scan(synth_tree.root, tmp_path / "info.parquet", workers=2)
    truth = {t[FILE_NAME]: t for t in synth_tree.truth}
    assert list(df[FILE_NAME]) == sorted(truth)  # every file, sorted
    expected_error = {"empty": "empty", "not_image": "not_image", "corrupt": "truncated"}
    for row in df.itertuples(index=False):
        t = truth[row.file_name]
        assert row.label == t[LABEL]
        assert row.error == expected_error.get(t["kind"], ""), row.file_name
    assert report.images == len(truth)
    assert report.labels == synth_tree.identities
    assert report.read == len(truth) and report.reused == 0
    # exact duplicates share the md5 of their source
    by_name = df.set_index(FILE_NAME)
    for t in synth_tree.truth:
        if t["kind"] == "exact_duplicate":
            assert by_name.loc[t[FILE_NAME], MD5] == by_name.loc[t["source"], MD5]


def test_scan_dataset_output_does_not_depend_on_workers_or_chunks(
    synth_tree: SynthTree, tmp_path: Path
) -> None:
    scan_dataset(synth_tree.root, tmp_path / "a.csv", workers=1)
    scan_dataset(synth_tree.root, tmp_path / "b.csv", workers=2, chunk_files=3)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_scan_dataset_csv_and_parquet_hold_the_same_table(
    bad_tree: BadTree, tmp_path: Path
) -> None:
    csv_df, _ = _scan(bad_tree.root, tmp_path / "i.csv", workers=1, hashes=(PHASH, DHASH))
    pq_df, _ = _scan(bad_tree.root, tmp_path / "i.parquet", workers=1, hashes=(PHASH, DHASH))
    pd.testing.assert_frame_equal(csv_df, pq_df)
    assert list(csv_df.columns) == [
        FILE_NAME, LABEL, WIDTH, HEIGHT, MODE, FORMAT, FILE_SIZE, MTIME_NS, MD5, PHASH, DHASH,
        ERROR,
    ]  # fmt: skip


def test_scan_dataset_without_hashes_has_no_hash_columns(
    synth_tree: SynthTree, tmp_path: Path
) -> None:
    df, _ = _scan(synth_tree.root, tmp_path / "i.csv", hashes=(), workers=1)
    assert not {PHASH, DHASH, AHASH, WHASH} & set(df.columns)
    assert (df.loc[df[ERROR] == "", MD5].str.len() == 32).all()


def _mutate(root: Path) -> None:
    """Change a copied synth tree the ways a living dataset changes."""
    files = sorted(p for p in root.rglob("*.jpg") if p.stat().st_size > 1000)
    files[0].unlink()  # vanished
    shutil.copy(files[1], files[1].with_name("9000.jpg"))  # new file
    data = files[2].read_bytes()
    files[2].write_bytes(data[:-2] + bytes([data[-2] ^ 1]) + data[-1:])  # same size, new bytes
    os.utime(files[2], ns=(time.time_ns(), files[2].stat().st_mtime_ns + 10**9))
    files[3].write_bytes(files[4].read_bytes())  # new size
    (root / "id00001").rename(root / "id00001_renamed")  # a renamed class


def test_scan_dataset_previous_equals_fresh_scan(synth_tree: SynthTree, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(synth_tree.root, root, symlinks=True)
    old = tmp_path / "old.csv"
    scan_dataset(root, old, workers=2)
    _mutate(root)
    inc, inc_report = _scan(root, tmp_path / "inc.csv", previous=old, workers=2)
    fresh, _ = _scan(root, tmp_path / "fresh.csv", workers=1)
    pd.testing.assert_frame_equal(inc, fresh)
    assert inc_report.reused > 0.8 * len(fresh)
    # read: new, changed and renamed files, plus the broken ones (errors are re-checked)
    renamed = (fresh[LABEL] == "id00001_renamed").sum()
    broken = (fresh[ERROR] != "").sum()
    assert inc_report.read == 1 + 2 + renamed + broken
    assert inc_report.reused + inc_report.read == len(fresh)


def test_scan_dataset_previous_rows_are_reused_without_reading(
    synth_tree: SynthTree, tmp_path: Path
) -> None:
    out = tmp_path / "info.csv"
    scan_dataset(synth_tree.root, out, workers=1)
    df = read_dataset_info(out)
    # plant a marker in two unchanged rows: a reused row keeps it, a re-read row loses it (a
    # marker shaped like an md5: a row unlike what a scan writes is read again)
    df.loc[0, MD5] = "0123456789abcdef" * 2
    df.loc[1, MD5] = "re-read"
    df.loc[1, MTIME_NS] = df.loc[1, MTIME_NS] - 1
    from fmlkit.data.formats.table import write_dataset_info

    write_dataset_info(df, tmp_path / "tampered.csv")
    new, report = _scan(synth_tree.root, out, previous=tmp_path / "tampered.csv", workers=1)
    assert new.loc[0, MD5] == "0123456789abcdef" * 2
    assert new.loc[1, MD5] != "re-read" and len(new.loc[1, MD5]) == 32
    assert report.read == 1 + (new[ERROR] != "").sum()


def test_scan_dataset_previous_without_a_wanted_hash_reads_everything(
    synth_tree: SynthTree, tmp_path: Path
) -> None:
    scan_dataset(synth_tree.root, tmp_path / "old.csv", workers=1)  # phash only
    new, report = _scan(
        synth_tree.root, tmp_path / "new.csv", previous=tmp_path / "old.csv", hashes=(PHASH, DHASH)
    )
    assert report.reused == 0
    assert (new.loc[new[ERROR] == "", DHASH].str.len() == 16).all()


def test_scan_dataset_missing_or_file_root_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        scan_dataset(tmp_path / "nope", tmp_path / "i.csv")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        scan_dataset(tmp_path / "file", tmp_path / "i.csv")
    (tmp_path / "data").mkdir()
    with pytest.raises(InputError, match=r"\.csv or \.parquet"):
        scan_dataset(tmp_path / "data", tmp_path / "i.txt")
    with pytest.raises(InputError, match="unknown hash"):
        scan_dataset(tmp_path / "data", tmp_path / "i.csv", hashes=("md6",))
    assert not (tmp_path / "i.csv").exists()


def test_scan_dataset_unreadable_file_is_recorded() -> None:
    """A chmod-000 file, scanned by a user who cannot read it (not root)."""
    with shared_tmp_dir() as base:
        root = base / "data"
        (root / "cls").mkdir(parents=True)
        for p in (root, root / "cls"):
            p.chmod(0o755)
        Image.new("RGB", (8, 8)).save(root / "cls" / "ok.jpg")
        Image.new("RGB", (8, 8)).save(root / "cls" / "locked.jpg")
        (root / "cls" / "locked.jpg").chmod(0)
        done = run_unprivileged(
            "from fmlkit.data.prepare.scan import scan_dataset\n"
            "from fmlkit.data.prepare.probe import warm_up; warm_up(('phash',))",
            "scan_dataset(sys.argv[1], sys.argv[2], workers=1)",
            str(root),
            str(base / "i.csv"),
        )
        assert done.returncode == 0, done.stderr
        df = read_dataset_info(base / "i.csv").set_index(FILE_NAME)
    assert df.loc["cls/ok.jpg", ERROR] == ""
    row = df.loc["cls/locked.jpg"]
    assert (row[ERROR], row[MD5], pd.isna(row[WIDTH])) == ("unreadable", "", True)


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_killed_scan_leaves_no_complete_looking_output(tmp_path: Path, point: str) -> None:
    """prepare killed at each point of putting its table in place (``FMLKIT_FAULT_WRITE``):
    before the rename there is no table, or the previous one as it was; after it, the new one
    whole. Only hidden temporary entries are left, and a rerun succeeds."""
    from fmlkit.data.synth.synth import generate_synthetic_dataset

    root = tmp_path / "data"
    generate_synthetic_dataset(root, identities=2, images_per_identity=3, defects=False)
    out = tmp_path / "info.csv"
    args = ("-q", "prepare", root, "-o", out, "-j", "1", "--overwrite")
    fault = {FAULT_ENV: f"{point}@info.csv"}
    for rows in (6, 7):  # first no table, then the previous one
        if rows == 7:
            shutil.copy(next(root.rglob("*.jpg")), root / "id00001" / "extra.jpg")
        before = out.read_bytes() if out.exists() else None
        killed = fmlkit_process(*args, env=fault)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        if point == "renamed":
            assert len(read_dataset_info(out)) == rows
        elif before is None:
            nothing_complete(out)
        else:
            unchanged(out, before)
        left = {p.name for p in tmp_path.iterdir()} - {"data", "data.truth.csv", "info.csv"}
        assert all(name.startswith(".info.csv.tmp-") for name in left), left
        succeeded(fmlkit(*args))
        assert len(read_dataset_info(out)) == rows
