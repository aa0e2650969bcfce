"""`fmlkit prepare` against hostile input: odd trees, odd names, bad output paths and damaged
``--previous`` tables. Each case refuses with one ``Error:`` line and writes nothing, or scans
and records the reason in its output."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fmlkit.columns import FILE_NAME, LABEL, MD5, PHASH, WIDTH
from fmlkit.data.formats.pair_lists import read_csv_pairs
from fmlkit.data.formats.table import read_dataset_info
from tests.bad_tree import BadTree
from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded, unchanged
from tests.unprivileged import run_unprivileged, shared_tmp_dir

ODD_NAMES = ("new\nline.jpg", "tab\there.jpg", "a,b.jpg", 'say "hi".jpg', "it's.jpg", "=1+2.jpg")


def _image(path: Path, seed: int, size: int = 40) -> None:
    """A smooth random picture (distinct hashes for distinct seeds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    small = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC).save(path, "JPEG")


def _tree(root: Path, labels: dict[str, int]) -> Path:
    """``root/<label>/<k>.jpg``, ``labels[label]`` images each, every image distinct."""
    seed = 0
    for label, n in labels.items():
        for k in range(n):
            seed += 1
            _image(root / label / f"{k}.jpg", seed)
    return root


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return _tree(tmp_path / "data", {"alice": 3, "bob": 3})


@pytest.fixture
def scanned(small: Path, tmp_path: Path) -> Path:
    out = tmp_path / "info.csv"
    succeeded(fmlkit("prepare", small, "-o", out, "-j", "1"))
    return out


# --- the tree ----------------------------------------------------------------------------------


def test_bad_tree_is_scanned_with_every_entry_accounted_for(
    bad_tree: BadTree, tmp_path: Path
) -> None:
    out = tmp_path / "info.csv"
    result = fmlkit("prepare", bad_tree.root, "-o", out, "-j", "1")
    succeeded(result)
    rows = set(read_dataset_info(out)[FILE_NAME])
    expected = set(bad_tree.rows) | ({bad_tree.unreadable} if bad_tree.unreadable else set())
    assert rows == expected
    for reason in ("special_file", "symlink_outside", "symlink_loop", "undecodable_name"):
        assert reason in result.stdout  # the summary names what was left out, and why
    assert "bob/fifo.jpg" in result.stdout and "bob/caf\\xe9.jpg" in result.stdout


def test_fifos_devices_and_links_to_them_are_skipped_never_opened(
    small: Path, tmp_path: Path
) -> None:
    os.mkfifo(small / "alice" / "fifo.jpg")  # opening it would block forever
    (small / "alice" / "zero.jpg").symlink_to("/dev/zero")  # reading it would never end
    (small / "alice" / "null.jpg").symlink_to("/dev/null")
    (small / "bob" / "inner.jpg").symlink_to("../alice/fifo.jpg")  # a link inside, to a FIFO
    expected = {"alice/fifo.jpg", "bob/inner.jpg"}
    if os.geteuid() == 0:  # a character device inside the tree (only root may make one)
        os.mknod(small / "bob" / "dev.jpg", stat.S_IFCHR | 0o600, os.makedev(1, 5))
        expected.add("bob/dev.jpg")
    out = tmp_path / "info.csv"
    result = fmlkit("prepare", small, "-o", out, "-j", "1")
    succeeded(result)
    assert len(read_dataset_info(out)) == 6
    special = next(line for line in result.stdout.splitlines() if "special_file:" in line)
    assert {p.strip() for p in special.split(":", 1)[1].split(",")} == expected
    assert "symlink_outside: alice/null.jpg, alice/zero.jpg" in result.stdout


def test_odd_file_names_survive_prepare_filter_split_and_pairs(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for k, name in enumerate(ODD_NAMES):
        _image(root / "a" / name, k)
        _image(root / "b b" / name, k + 50)
    info, kept, folds, pairs = (tmp_path / n for n in ("i.csv", "f.csv", "s.csv", "p.csv"))
    succeeded(fmlkit("prepare", root, "-o", info, "-j", "1"))
    succeeded(fmlkit("filter", info, "-o", kept, "--dedup", "--root", root))
    succeeded(fmlkit("split", kept, "-o", folds, "--k", "2"))
    succeeded(
        fmlkit("pairs", folds, "-o", pairs, "--fold", "0", "--positives", "2", "--negatives", "2")
    )
    names = {f"{label}/{n}" for label in ("a", "b b") for n in ODD_NAMES}
    assert set(read_dataset_info(folds)[FILE_NAME]) == names
    listed = read_csv_pairs(pairs)
    assert set(listed["first"]) | set(listed["second"]) <= names
    for name in set(listed["first"]) | set(listed["second"]):
        assert (root / name).is_file()  # each name still points at its file


def test_labels_007_and_7_stay_two_identities_in_csv_and_parquet(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", {"007": 4, "7": 4, "7.0": 4})
    for suffix in (".csv", ".parquet"):
        info, folds = tmp_path / f"i{suffix}", tmp_path / f"s{suffix}"
        succeeded(fmlkit("prepare", root, "-o", info, "-j", "1"))
        succeeded(fmlkit("split", info, "-o", folds, "--k", "2", "--by", "image"))
        df = read_dataset_info(folds)
        assert sorted(set(df[LABEL])) == ["007", "7", "7.0"]
        assert df.groupby(LABEL).size().to_dict() == {"007": 4, "7": 4, "7.0": 4}


# --- output paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "code", "says"),
    [
        ("/", 2, "is a directory"),
        ("..", 2, "is a directory"),
        ("data/..", 2, "is a directory"),
        ("data/info.csv", 1, "inside the dataset folder"),
        ("data/alice/info.parquet", 1, "inside the dataset folder"),
        ("link/info.csv", 1, "inside the dataset folder"),  # the tree, reached by a link
    ],
)
def test_output_that_is_the_root_or_inside_the_tree_is_refused(
    small: Path, tmp_path: Path, output: str, code: int, says: str
) -> None:
    (tmp_path / "link").symlink_to(small)
    before = sorted(p.relative_to(small) for p in small.rglob("*"))
    refused(fmlkit("prepare", small, "-o", output, cwd=tmp_path), says=says, code=code)
    assert sorted(p.relative_to(small) for p in small.rglob("*")) == before


def test_output_that_is_a_folder_is_refused_in_the_library(small: Path, tmp_path: Path) -> None:
    from fmlkit.data.prepare.scan import scan_dataset
    from fmlkit.errors import InputError

    folder = tmp_path / "keep.csv"
    folder.mkdir()
    (folder / "mine.txt").write_text("mine")
    with pytest.raises(InputError, match="is a folder"):
        scan_dataset(small, folder, workers=1)
    assert (folder / "mine.txt").read_text() == "mine"


@pytest.mark.parametrize("what", ["empty", "only other files"])
def test_a_tree_without_images_is_refused_saying_what_it_met(tmp_path: Path, what: str) -> None:
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    if what == "only other files":
        (root / "a" / "x.gif").write_bytes(b"GIF89a")
        (root / "a" / "notes.txt").write_text("hi")
    out = tmp_path / "info.csv"
    says = ["no image file", "not_image_extension 2" if what != "empty" else "nothing at all"]
    refused(fmlkit("prepare", root, "-o", out), says=says)
    nothing_complete(out)


def test_absurd_worker_count_is_capped_not_forked(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "info.csv"
    result = fmlkit("prepare", small, "-o", out, "-j", str(10**9))
    succeeded(result)
    assert f"{10**9} workers asked for" in result.stderr
    assert len(read_dataset_info(out)) == 6


# --- unreadable files and folders (as a user without root's powers) -----------------------------


def _unprivileged_prepare(*args: str) -> subprocess.CompletedProcess[str]:
    return run_unprivileged(
        "from fmlkit.main import main\n"
        "import fmlkit.progress, pyarrow.csv, pandas\n"
        "from fmlkit.data.prepare.scan import scan_dataset\n"
        "from fmlkit.data.prepare.probe import warm_up; warm_up(('phash',))",
        "main(sys.argv[1:], prog_name='fmlkit')",
        "prepare",
        *args,
    )


def test_unreadable_folder_is_skipped_with_its_reason_and_unreadable_root_refused() -> None:
    with shared_tmp_dir() as base:
        root = _tree(base / "data", {"ok": 2, "locked": 2})
        for p in [root, *root.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        (root / "locked").chmod(0)
        done = _unprivileged_prepare(str(root), "-o", str(base / "i.csv"), "-j", "1")
        succeeded(done)
        assert "unreadable_folder: locked/" in done.stdout
        assert len(read_dataset_info(base / "i.csv")) == 2
        root.chmod(0)
        done = _unprivileged_prepare(str(root), "-o", str(base / "j.csv"))
        refused(done, says=["not readable", str(root)], code=2)
        root.chmod(0o755)
        nothing_complete(base / "j.csv")


def test_unreadable_previous_is_refused_naming_it(small: Path) -> None:
    with shared_tmp_dir() as base:
        root = _tree(base / "data", {"a": 2, "b": 2})
        for p in [root, *root.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        old = base / "old.csv"
        succeeded(fmlkit("prepare", root, "-o", old, "-j", "1"))
        old.chmod(0)
        done = _unprivileged_prepare(str(root), "-o", str(base / "i.csv"), "--previous", str(old))
        refused(done, says=["not readable", str(old)], code=2)
        nothing_complete(base / "i.csv")


# --- damaged --previous tables: refused whole, or the damaged rows read again -------------------


def _cut_mid_row(text: str) -> str:
    return text[: text.rindex(",", 0, len(text) - 25)]  # inside the last row's md5 or hash


def _latin1(text: str) -> bytes:
    return text.encode() + "alice/caf\xe9.jpg,alice,1,1,RGB,JPEG,1,1,,,\n".encode("latin-1")


def _set(column: str, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df[column] = df[column].astype(object)
        df.loc[1, column] = value
        return df

    return edit


REFUSED_PREVIOUS: dict[str, tuple[Callable[[str], str | bytes], list[str]]] = {
    "cut mid-row": (_cut_mid_row, ["field(s) where the header has 11", "cut off"]),
    "not utf-8": (_latin1, ["not UTF-8", "line 8"]),
    "zero bytes": (lambda text: "", ["empty (zero bytes)"]),
    "header only, no line end": (lambda text: text.split("\n")[0], []),  # zero rows: fine
    "missing column": (lambda text: text.replace(",error\n", "\n", 1), ["field(s)"]),
    "extra field in a row": (lambda text: text.replace("\n", ",x\n", 2), ["field(s)"]),
    "duplicated header name": (
        lambda text: text.replace("mode,format", "mode,mode"),
        ["more than once"],
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED_PREVIOUS))
def test_previous_that_cannot_be_read_whole_is_refused(
    small: Path, scanned: Path, tmp_path: Path, case: str
) -> None:
    damage, says = REFUSED_PREVIOUS[case]
    old = tmp_path / "old.csv"
    data = damage(scanned.read_text(encoding="utf-8"))
    old.write_bytes(data if isinstance(data, bytes) else data.encode())
    out = tmp_path / "new.csv"
    result = fmlkit("prepare", small, "-o", out, "--previous", old, "-j", "1")
    if not says:  # the header of an empty table: nothing to reuse, every file read
        succeeded(result)
        assert "reused 0 rows" in result.stdout
        return
    refused(result, says=[str(old), *says, "without it"])
    nothing_complete(out)


@pytest.mark.parametrize(
    ("column", "value", "says"),
    [
        ("file_size", "nan", "file_size holds 'nan'"),
        ("file_size", "-5", "file_size holds '-5'"),
        ("width", "1e308", "width holds '1e308'"),  # once read as -9223372036854775808
        ("width", "99999999999999999999999", "width holds"),
        ("width", "-1", "from 0 to 2,147,483,647"),
        ("mtime_ns", "1.5", "mtime_ns holds '1.5'"),
        ("file_name", "alice/0.jpg", "appear in more than one row"),  # a file named twice
    ],
)
def test_previous_with_a_bad_value_is_refused_naming_row_and_column(
    small: Path, scanned: Path, tmp_path: Path, column: str, value: str, says: str
) -> None:
    old = tmp_path / "old.csv"
    df = read_dataset_info(scanned)
    _set(column, value)(df).to_csv(old, index=False)
    out = tmp_path / "new.csv"
    before = scanned.read_bytes()
    message = refused(fmlkit("prepare", small, "-o", out, "--previous", old), says=says)
    if column != "file_name":
        assert "row 2 (file_name 'alice/1.jpg')" in message
    nothing_complete(out)
    unchanged(scanned, before)


@pytest.mark.parametrize(
    ("column", "value", "says"),
    [
        (PHASH, "not-a-hash", "phash 'not-a-hash' is not 16 hexadecimal digits"),
        (PHASH, "", "phash '' is not 16"),
        (MD5, "x" * 32, "is not 32 hexadecimal digits"),
        (LABEL, "mallory", "label 'mallory', but the file lies in 'alice'"),
        (WIDTH, "", "no width or height"),
    ],
)
def test_previous_rows_unlike_a_scan_are_read_again_with_a_warning(
    small: Path, scanned: Path, tmp_path: Path, column: str, value: str, says: str
) -> None:
    old = tmp_path / "old.csv"
    df = read_dataset_info(scanned)
    _set(column, value)(df).to_csv(old, index=False)
    out = tmp_path / "new.csv"
    result = fmlkit("prepare", small, "-o", out, "--previous", old, "-j", "1")
    succeeded(result)
    assert says in result.stdout and "read again" in result.stdout  # the summary says
    assert says in result.stderr  # and the log
    pd.testing.assert_frame_equal(read_dataset_info(out), read_dataset_info(scanned))


def test_previous_may_be_the_output_and_survives_a_refusal(small: Path, scanned: Path) -> None:
    text = scanned.read_text(encoding="utf-8")
    scanned.write_text(_cut_mid_row(text), encoding="utf-8")
    cut = scanned.read_bytes()
    args = ("prepare", small, "-o", scanned, "--previous", scanned, "--overwrite")
    refused(fmlkit(*args), says="cut off")
    unchanged(scanned, cut)
