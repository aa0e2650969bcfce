"""`fmlkit synth` against hostile requests: absurd counts and sizes (memory and disk bounded),
outputs that are the file-system root, a parent or a folder synth did not write."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from fmlkit.data.synth.checks import MAX_CLEAN_IMAGES, estimated_bytes
from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded, unchanged


def _digest(folder: Path) -> str:
    """A hash of every path and byte under ``folder``."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("-n", "0", "-m", "1"), 2, "--identities"),
        (("-n", "1", "-m", "-3"), 2, "--images-per-identity"),
        (("-n", "1", "-m", "1", "--size", str(10**6)), 2, "--size"),
        (("-n", "1", "-m", "1", "--size", "8"), 2, "--size"),
        (("-n", str(10**30), "-m", "1"), 1, f"at most {MAX_CLEAN_IMAGES:,}"),
        (("-n", "5000", "-m", "5000"), 1, "25,000,000 images"),
    ],
)
def test_absurd_counts_and_sizes_are_refused_before_anything_is_written(
    tmp_path: Path, args: tuple[str, ...], code: int, says: str
) -> None:
    out = tmp_path / "d"
    refused(fmlkit("synth", out, *args), says=says, code=code)
    nothing_complete(out, tmp_path / "d.truth.csv")
    assert list(tmp_path.iterdir()) == []  # not even a temporary folder


def test_a_tree_larger_than_the_free_disk_is_refused(tmp_path: Path) -> None:
    n = MAX_CLEAN_IMAGES - 1
    if estimated_bytes(n, 1, 1024) <= shutil.disk_usage(tmp_path).free:
        pytest.skip("this disk could hold the largest request")
    out = tmp_path / "d"
    refused(fmlkit("synth", out, "-n", str(n), "-m", "1", "--size", "1024"), says="GiB free")
    nothing_complete(out)


@pytest.mark.parametrize(
    ("out", "overwrite", "says"),
    [
        ("/", False, "root of the file system"),
        ("/", True, "root of the file system"),
        ("..", True, "holds the current folder"),
        (".", True, "holds the current folder"),
        ("mine", False, "already exists"),
        ("mine", True, "was not written by synth"),  # --overwrite never deletes a user's folder
    ],
)
def test_outputs_that_are_not_synths_to_replace_are_refused(
    tmp_path: Path, out: str, overwrite: bool, says: str
) -> None:
    work = tmp_path / "work"
    (work / "mine" / "id00000").mkdir(parents=True)
    (work / "mine" / "notes.txt").write_text("mine")
    before = _digest(tmp_path)
    flags = ("--overwrite",) if overwrite else ()
    refused(fmlkit("synth", out, "-n", "1", "-m", "1", *flags, cwd=work), says=says)
    assert _digest(tmp_path) == before


def test_existing_synth_output_is_kept_without_overwrite_and_replaced_with_it(
    tmp_path: Path,
) -> None:
    out, truth = tmp_path / "d", tmp_path / "d.truth.csv"
    succeeded(fmlkit("synth", out, "-n", "2", "-m", "2"))
    tree, table = _digest(out), truth.read_bytes()
    refused(fmlkit("synth", out, "-n", "3", "-m", "2", "--seed", "1"), says="already exists")
    assert _digest(out) == tree
    unchanged(truth, table)
    succeeded(fmlkit("synth", out, "-n", "3", "-m", "2", "--seed", "1", "--overwrite"))
    assert _digest(out) != tree


def test_a_truth_path_that_is_a_users_file_is_not_overwritten(tmp_path: Path) -> None:
    mine = tmp_path / "results.csv"
    mine.write_text("run,score\n1,0.9\n")
    out = tmp_path / "d"
    args = ("synth", out, "-n", "1", "-m", "1", "--truth", mine, "--overwrite")
    refused(fmlkit(*args), says=["results.csv", "was not written by synth"])
    unchanged(mine, b"run,score\n1,0.9\n")
    nothing_complete(out)


def test_absurd_worker_count_starts_one_worker_per_identity(tmp_path: Path) -> None:
    out = tmp_path / "d"
    succeeded(fmlkit("synth", out, "-n", "2", "-m", "2", "-j", str(10**6), "--no-defects"))
    assert sorted(p.name for p in out.iterdir()) == ["id00000", "id00001"]
